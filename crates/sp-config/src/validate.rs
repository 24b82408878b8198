//! Everything wrong with a topology against the guide's configuration, found before any
//! change is made — all of it at once, each problem named.

use std::collections::BTreeSet;

use crate::guide::GuideConfig;
use crate::topology::{
    dhcp_address, held_addresses, in_pool, Network, NetworkType, Role, Topology,
};

/// The pairs of `networks` (indices, the earlier first, in topology order) whose subnets
/// overlap. Subnets are CIDR blocks, so two overlap only when one holds the other:
/// sorted by first address, the wider first, each block is held by exactly the blocks
/// still open before it — O(n log n) and the pairs, where comparing every pair took
/// 2.5 ms of a 1000-network `plan`.
fn overlapping(networks: &[Network]) -> Vec<(usize, usize)> {
    let cidr = |i: usize| &networks[i].subnet.cidr;
    let mut order: Vec<usize> = (0..networks.len()).collect();
    order.sort_by_key(|&i| (cidr(i).network(), cidr(i).prefix_len()));
    let mut open: Vec<usize> = Vec::new();
    let mut pairs = Vec::new();
    for i in order {
        while open
            .last()
            .is_some_and(|&o| !cidr(o).contains(&cidr(i).network()))
        {
            open.pop();
        }
        pairs.extend(open.iter().map(|&o| (o.min(i), o.max(i))));
        open.push(i);
    }
    pairs.sort_unstable();
    pairs
}

/// Every problem found; empty when the topology can be realised.
pub fn validate(t: &Topology, cfg: &GuideConfig) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for name in t
        .nodes
        .iter()
        .map(|n| ("node", n.name.as_str()))
        .chain(t.networks.iter().map(|n| ("network", n.name.as_str())))
        .chain(t.routers.iter().map(|r| ("router", r.name.as_str())))
        .chain(t.instances.iter().map(|i| ("instance", i.name.as_str())))
    {
        if !seen.insert(name) {
            errs.push(format!("{} {:?} is defined twice", name.0, name.1));
        }
    }
    // Devices and namespaces are cut from the ids (the first 11 characters): two ids that
    // make one name would share a bridge, a tap or a namespace.
    let mut made = std::collections::BTreeMap::new();
    let ports = t
        .routers
        .iter()
        .flat_map(|r| r.gateway.iter().chain(&r.interfaces))
        .map(|p| &p.port_id)
        .chain(t.instances.iter().map(|i| &i.port_id));
    for (what, name, owner) in t
        .networks
        .iter()
        .map(|n| ("bridge", sp_neutron::bridge_name(&n.id), n.id.to_string()))
        .chain(t.routers.iter().map(|r| {
            (
                "namespace",
                sp_neutron::qrouter_namespace(&r.id),
                r.id.to_string(),
            )
        }))
        .chain(ports.map(|p| ("device", sp_neutron::tap_name(p), p.to_string())))
    {
        if let Some(other) = made.insert((what, name.clone()), owner.clone()) {
            errs.push(if other == owner {
                format!("id {owner} is used twice")
            } else {
                format!("ids {other} and {owner} both make the {what} {name}")
            });
        }
    }
    let ext = cfg
        .l3
        .as_ref()
        .map_or("", |l3| l3.external_network_bridge.as_str());
    if !ext.is_empty() {
        if let Err(e) = sp_names::IfName::check(ext) {
            errs.push(format!(
                "l3_agent.ini external_network_bridge = {ext:?} is not a device name: {}",
                e.reason
            ));
        }
    }
    if !t.nodes.iter().any(|n| n.roles.contains(&Role::Network)) {
        errs.push("no node has the network role (it runs the routers and DHCP)".into());
    }
    // The tunnel addresses are VXLAN's underlay: a host's own unicast address, one family.
    for n in &t.nodes {
        let ip = n.tunnel_ip;
        let why = if ip.is_unspecified() {
            Some("unspecified")
        } else if ip.is_loopback() {
            Some("a loopback address")
        } else if ip.is_multicast() {
            Some("a multicast address")
        } else if matches!(ip, std::net::IpAddr::V4(a) if a.is_broadcast()) {
            Some("the broadcast address")
        } else {
            None
        };
        if let Some(why) = why {
            errs.push(format!(
                "node {}: tunnel_ip {ip} is {why}, not an address of the host to carry VXLAN",
                n.name
            ));
        }
    }
    if let Some(first) = t.nodes.first() {
        for n in t
            .nodes
            .iter()
            .filter(|n| n.tunnel_ip.is_ipv4() != first.tunnel_ip.is_ipv4())
        {
            errs.push(format!(
                "node {}: tunnel_ip {} is not of the family of node {}'s {} (VXLAN tunnels join one family)",
                n.name, n.tunnel_ip, first.name, first.tunnel_ip
            ));
        }
    }
    for (a, b) in overlapping(&t.networks) {
        let (a, b) = (&t.networks[a], &t.networks[b]);
        errs.push(format!(
            "subnets of {} ({}) and {} ({}) overlap",
            a.name, a.subnet.cidr, b.name, b.subnet.cidr
        ));
    }
    let held = held_addresses(t);
    for n in &t.networks {
        let s = &n.subnet;
        if let Some(gw) = s.gateway {
            if !s.cidr.contains(&gw) || gw == s.cidr.network() || gw == s.cidr.broadcast() {
                errs.push(format!(
                    "{}: gateway {gw} is not a host address of {}",
                    n.name, s.cidr
                ));
            }
        }
        let mut pools_ok = true;
        for p in &s.allocation_pools {
            if !s.cidr.contains(&p.start) || !s.cidr.contains(&p.end) || p.start > p.end {
                pools_ok = false;
                errs.push(format!(
                    "{}: pool {}–{} is not within {}",
                    n.name, p.start, p.end, s.cidr
                ));
            } else if s.gateway.is_some_and(|g| p.start <= g && g <= p.end) {
                errs.push(format!(
                    "{}: pool {}–{} contains the gateway",
                    n.name, p.start, p.end
                ));
            }
        }
        if s.enable_dhcp && pools_ok && dhcp_address(t, &held, n).is_none() {
            errs.push(format!(
                "{}: no free address in {} for the DHCP port (the gateway, routers and instances hold every address {}); widen it or set enable_dhcp = false",
                n.name,
                s.cidr,
                match s.allocation_pools.is_empty() {
                    true => "of the subnet",
                    false => "of its allocation pools",
                }
            ));
        }
        // ml2_conf.ini is the server's (the network node's); a node without it takes
        // the networks as the topology gives them.
        let ml2 = cfg.ml2.as_ref();
        match n.network_type {
            NetworkType::Vxlan => match n.segmentation_id {
                None => errs.push(format!(
                    "{}: a vxlan network needs segmentation_id (its VNI)",
                    n.name
                )),
                Some(vni)
                    if ml2.is_some_and(|m| !m.vni_ranges.iter().any(|r| r.contains(&vni))) =>
                {
                    errs.push(format!(
                        "{}: VNI {vni} is outside vni_ranges ({})",
                        n.name,
                        ml2.map_or(&[][..], |m| &m.vni_ranges)
                            .iter()
                            .map(|r| format!("{}:{}", r.start(), r.end()))
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                }
                Some(_) => {}
            },
            NetworkType::Flat => match &n.physical_network {
                None => errs.push(format!("{}: a flat network needs physical_network", n.name)),
                Some(p) => {
                    if !cfg.agent.physical_interface_mappings.contains_key(p) {
                        errs.push(format!(
                            "{}: physical network {p:?} has no mapping in physical_interface_mappings",
                            n.name
                        ));
                    }
                    if ml2.is_some_and(|m| !m.flat_networks.iter().any(|f| f == p || f == "*")) {
                        errs.push(format!(
                            "{}: physical network {p:?} is not in flat_networks",
                            n.name
                        ));
                    }
                }
            },
        }
        let ty = match n.network_type {
            NetworkType::Flat => "flat",
            NetworkType::Vxlan => "vxlan",
        };
        if ml2.is_some_and(|m| !m.type_drivers.iter().any(|d| d == ty)) {
            errs.push(format!("{}: type {ty} is not in type_drivers", n.name));
        }
    }
    let mut used_ips = BTreeSet::new();
    let mut claim = |errs: &mut Vec<String>, net: &str, ip: std::net::IpAddr, who: &str| {
        if !used_ips.insert((net.to_owned(), ip)) {
            errs.push(format!("{who}: address {ip} on {net} is used twice"));
        }
    };
    let networks = t.networks_by_name();
    for r in &t.routers {
        for (leg, external) in r
            .gateway
            .iter()
            .map(|g| (g, true))
            .chain(r.interfaces.iter().map(|i| (i, false)))
        {
            match networks.get(leg.network.as_str()) {
                None => errs.push(format!("router {}: no network {:?}", r.name, leg.network)),
                Some(n) => {
                    if external && !n.external {
                        errs.push(format!(
                            "router {}: gateway network {} is not external",
                            r.name, n.name
                        ));
                    }
                    if !n.subnet.cidr.contains(&leg.ip) {
                        errs.push(format!(
                            "router {}: {} is outside {} ({})",
                            r.name, leg.ip, n.name, n.subnet.cidr
                        ));
                    }
                    claim(&mut errs, &n.name, leg.ip, &format!("router {}", r.name));
                }
            }
        }
    }
    for i in &t.instances {
        if t.node(&i.node).is_none() {
            errs.push(format!("instance {}: no node {:?}", i.name, i.node));
        }
        match networks.get(i.network.as_str()) {
            None => errs.push(format!("instance {}: no network {:?}", i.name, i.network)),
            Some(n) => {
                if !n.subnet.cidr.contains(&i.ip) {
                    errs.push(format!(
                        "instance {}: {} is outside {} ({})",
                        i.name, i.ip, n.name, n.subnet.cidr
                    ));
                }
                claim(&mut errs, &n.name, i.ip, &format!("instance {}", i.name));
            }
        }
        if let Some(fip) = i.floating_ip {
            let ext = t
                .networks
                .iter()
                .find(|n| n.external && n.subnet.cidr.contains(&fip));
            match ext {
                Some(n) if in_pool(&n.subnet, fip) => claim(&mut errs, &n.name, fip, &format!("instance {}", i.name)),
                _ => errs.push(format!(
                    "instance {}: floating IP {fip} is outside every external network's allocation pool",
                    i.name
                )),
            }
        }
    }
    errs.extend(security_groups(t));
    if let Some(c) = &t.cinder {
        if t.node(&c.node).is_none() {
            errs.push(format!("cinder: no node {:?}", c.node));
        }
    }
    errs
}

/// The security groups' problems: names and ids given twice, rules that cannot be
/// (`SecurityGroupRule::problems`), remote groups and instances' groups that do not
/// exist, allowed address pairs on a port without port security.
fn security_groups(t: &Topology) -> Vec<String> {
    let mut errs = Vec::new();
    let groups = t.groups();
    let (mut names, mut ids) = (BTreeSet::new(), BTreeSet::new());
    for g in &t.security_groups {
        if !names.insert(g.name.as_str()) {
            errs.push(format!("security group {:?} is defined twice", g.name));
        }
        if !ids.insert(g.id.as_str()) {
            errs.push(format!(
                "security group {}: id {} is used twice",
                g.name, g.id
            ));
        }
    }
    for g in &groups {
        for (n, r) in g.rules.iter().enumerate() {
            for p in r.problems() {
                errs.push(format!("security group {} rule {}: {p}", g.name, n + 1));
            }
            if let Some(remote) = &r.remote_group {
                if !groups.iter().any(|g| &g.name == remote) {
                    errs.push(format!(
                        "security group {} rule {}: no security group {remote:?}",
                        g.name,
                        n + 1
                    ));
                }
            }
        }
    }
    for i in &t.instances {
        for name in &i.security_groups {
            if !groups.iter().any(|g| &g.name == name) {
                errs.push(format!("instance {}: no security group {name:?}", i.name));
            }
        }
        if !i.port_security_enabled && !i.allowed_address_pairs.is_empty() {
            errs.push(format!(
                "instance {}: allowed_address_pairs need port_security_enabled",
                i.name
            ));
        }
    }
    errs
}
