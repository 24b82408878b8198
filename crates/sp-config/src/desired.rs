//! The desired state of every node, derived from the topology and the guide's files —
//! what each node's agents would have made. Pure: the orchestration compares it with
//! what is there and realises the difference.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use sp_lvm::size::Size;
use sp_lvm::vg::VgName;
use sp_names::{IfName, Mac, NeutronId, NsName};
use sp_neutron::dhcp::{DhcpHost, DhcpSubnet, Dnsmasq};
use sp_neutron::l3::{FloatingIp, RouterNat};
use sp_neutron::metadata::{self, Kind, Served};
use sp_neutron::sg::{self, AddressPair, Firewall, MemberSet, PortFirewall};
use sp_neutron::{bridge_name, qdhcp_namespace, qrouter_namespace, PortKind};

use crate::guide::GuideConfig;
use crate::topology::{
    dhcp_address, held_addresses, Instance, Network, NetworkType, Node, Role, Topology,
};
use crate::validate::validate;

/// Where the DHCP agent keeps its files (`$state_path/dhcp/<network>`).
pub const DEFAULT_STATE_PATH: &str = "/var/lib/neutron";
/// The multicast group of multicast mode (`vxlan_group` default).
pub const DEFAULT_VXLAN_GROUP: &str = "224.0.0.1";
/// The metadata address the DHCP port carries with isolated metadata.
pub const METADATA_CIDR: &str = "169.254.169.254/16";

/// Everything one node should have.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    pub node: String,
    pub tunnel_ip: IpAddr,
    pub networks: Vec<NetPlan>,
    pub ports: Vec<PortPlan>,
    pub l2pop: Vec<L2Entry>,
    pub dhcp: Vec<Dnsmasq>,
    pub routers: Vec<RouterPlan>,
    /// The namespaces the metadata proxy listens in (the routers', the isolated
    /// networks' DHCP namespaces), each with the agent's socket it forwards to.
    pub metadata: Vec<Served>,
    pub cinder: Option<CinderPlan>,
    /// The security groups of the node's instance ports with port security (empty
    /// when the agent's `firewall_driver` enforces none).
    pub firewall: Firewall,
}

/// A network's bridge on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPlan {
    pub network_id: NeutronId,
    pub bridge: IfName,
    /// VXLAN networks: VNI, `local_ip` (the node's tunnel address), l2population, and the
    /// group in multicast mode.
    pub vxlan: Option<VxlanPlan>,
    /// Flat networks: the NIC `physical_interface_mappings` names.
    pub uplink: Option<IfName>,
    /// The network is the L3 agent's `external_network_bridge` on this node: `bridge`
    /// is an Open vSwitch bridge (`br-ex`) holding the uplink, and the router gateway
    /// ports on it are OVS internal ports (the packstack notes' flavour), not veths on
    /// a Linux bridge.
    pub ovs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VxlanPlan {
    pub vni: u32,
    pub local_ip: IpAddr,
    pub l2_population: bool,
    pub group: Option<IpAddr>,
}

/// A port plugged on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PortPlan {
    pub port_id: NeutronId,
    pub kind: PortKind,
    pub network_id: NeutronId,
    pub namespace: NsName,
    pub mac: Mac,
    /// Fixed addresses; `None` for instances, whose guest asks DHCP.
    pub addresses: Option<Vec<IpNet>>,
    /// The port's own address on its network (also for instances), for l2population.
    pub ip: IpAddr,
    pub gateway: Option<IpAddr>,
    pub ip_forward: bool,
}

/// An l2population entry on a node's `vxlan-N`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum L2Entry {
    Flood {
        vni: u32,
        vtep: IpAddr,
    },
    Port {
        vni: u32,
        mac: Mac,
        ip: IpAddr,
        vtep: IpAddr,
    },
}

/// A router's namespace and NAT.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterPlan {
    pub namespace: NsName,
    pub nat: RouterNat,
}

/// Cinder's volume group on its node.
#[derive(Debug, Clone, PartialEq)]
pub struct CinderPlan {
    pub volume_group: VgName,
    pub size: Size,
}

/// 32 bits of FNV-1a over `s`: stable ids and MACs for the ports Neutron would have
/// made with random ones (DHCP ports).
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The DHCP port of a network: a stable id and a Neutron-style MAC.
pub fn dhcp_port(network_id: &str) -> (NeutronId, Mac) {
    let h = fnv(&format!("dhcp:{network_id}"));
    let g = fnv(&format!("dhcp2:{network_id}"));
    let id = format!(
        "{h:08x}-{:04x}-4{:03x}-8{:03x}-{g:08x}{:04x}",
        g >> 16,
        h & 0xfff,
        g & 0xfff,
        h >> 16
    );
    let [_, a, b, c] = h.to_be_bytes();
    (
        NeutronId::new(id).expect("formatted as a UUID"),
        Mac::new([0xfa, 0x16, 0x3e, a, b, c]).expect("fa:16:3e:… is unicast"),
    )
}

/// A name cut from a Neutron id by `sp_neutron` (`brq…`, `qrouter-…`, `qdhcp-…`): valid
/// by construction (a prefix and the id's hex digits and dashes).
fn ifname(name: String) -> IfName {
    IfName::new(name).expect("a Neutron device name cut from a UUID")
}

fn nsname(name: String) -> NsName {
    NsName::new(name).expect("a Neutron namespace name made of a UUID")
}

fn with_prefix(ip: IpAddr, net: &IpNet) -> IpNet {
    IpNet::new(ip, net.prefix_len()).expect("prefix of a valid subnet")
}

/// What every node's plan is cut from, derived from the topology alone — so the ports
/// of other nodes (l2population's entries) come out the same whichever node computes
/// them, from whichever of the guide's files it has.
struct Ports<'t> {
    network_node: &'t Node,
    /// Every port, with the node that holds it. DHCP ports carry their subnet address
    /// only; the metadata address comes from `dhcp_agent.ini` on the network node.
    ports: Vec<(&'t str, PortPlan)>,
    /// The DHCP-enabled networks with their port's address.
    dhcp: Vec<(&'t Network, IpAddr)>,
    /// Every network by name ([`Topology::networks_by_name`]).
    networks: HashMap<&'t str, &'t Network>,
}

fn ports(t: &Topology) -> Ports<'_> {
    let network_node = t
        .nodes
        .iter()
        .find(|n| n.roles.contains(&Role::Network))
        .expect("validated: a network node exists");
    let networks = t.networks_by_name();
    let mut ports: Vec<(&str, PortPlan)> = Vec::new();
    for r in &t.routers {
        let ns = nsname(qrouter_namespace(&r.id));
        let legs = r
            .gateway
            .iter()
            .map(|g| (g, PortKind::RouterGateway))
            .chain(r.interfaces.iter().map(|i| (i, PortKind::RouterInternal)));
        for (leg, kind) in legs {
            let net = networks[leg.network.as_str()];
            let mut addresses = vec![with_prefix(leg.ip, &net.subnet.cidr)];
            let mut gateway = None;
            if kind == PortKind::RouterGateway {
                gateway = net.subnet.gateway;
                // Floating IPs live on qg- as /32.
                for i in t.instances.iter().filter(|i| router_serves(r, &i.network)) {
                    if let Some(fip) = i.floating_ip {
                        addresses.push(IpNet::new(fip, fip_prefix(fip)).expect("host prefix"));
                    }
                }
            }
            ports.push((
                &network_node.name,
                PortPlan {
                    port_id: leg.port_id.clone(),
                    kind,
                    network_id: net.id.clone(),
                    namespace: ns.clone(),
                    mac: leg.mac.unwrap_or_else(|| dhcp_port(&leg.port_id).1),
                    addresses: Some(addresses),
                    ip: leg.ip,
                    gateway,
                    ip_forward: true,
                },
            ));
        }
    }
    let mut dhcp = Vec::new();
    let held = held_addresses(t);
    for n in t.networks.iter().filter(|n| n.subnet.enable_dhcp) {
        let (port_id, mac) = dhcp_port(&n.id);
        let dhcp_ip = dhcp_address(t, &held, n).expect("validated: the subnet has room");
        dhcp.push((n, dhcp_ip));
        ports.push((
            &network_node.name,
            PortPlan {
                port_id,
                kind: PortKind::Dhcp,
                network_id: n.id.clone(),
                namespace: nsname(qdhcp_namespace(&n.id)),
                mac,
                addresses: Some(vec![with_prefix(dhcp_ip, &n.subnet.cidr)]),
                ip: dhcp_ip,
                gateway: n.subnet.gateway,
                ip_forward: false,
            },
        ));
    }
    for i in &t.instances {
        let net = networks[i.network.as_str()];
        ports.push((
            &i.node,
            PortPlan {
                port_id: i.port_id.clone(),
                kind: PortKind::Instance,
                network_id: net.id.clone(),
                namespace: i.name.clone(),
                mac: i.mac,
                addresses: None,
                ip: i.ip,
                gateway: None,
                ip_forward: false,
            },
        ));
    }
    Ports {
        network_node,
        ports,
        dhcp,
        networks,
    }
}

/// The desired state of every node from one set of the guide's files (which must then
/// hold what every role reads), or every validation problem (nothing is planned from a
/// topology that cannot be realised).
pub fn plan(
    t: &Topology,
    cfg: &GuideConfig,
    state_path: &Path,
) -> Result<Vec<NodePlan>, Vec<String>> {
    let errs = validate(t, cfg);
    if !errs.is_empty() {
        return Err(errs);
    }
    let all = ports(t);
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for node in &t.nodes {
        match node_plan(t, &all, cfg, state_path, node) {
            Ok(p) => out.push(p),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(out)
}

/// The desired state of node `name`, run on that node with its own files (`cfg`, read
/// by [`GuideConfig::load_for`] its roles): the topology validated against them, and
/// their `[vxlan] local_ip` the node's `tunnel_ip`.
pub fn plan_node(
    t: &Topology,
    cfg: &GuideConfig,
    state_path: &Path,
    name: &str,
) -> Result<NodePlan, Vec<String>> {
    let mut errs = validate(t, cfg);
    let Some(node) = t.node(name) else {
        errs.push(format!("no node {name:?} in the topology"));
        return Err(errs);
    };
    if let Some(local) = cfg.agent.local_ip.filter(|ip| *ip != node.tunnel_ip) {
        errs.push(format!(
            "local_ip = {local} in {}, but node {}'s tunnel_ip is {}",
            cfg.root.join(crate::guide::LINUXBRIDGE_AGENT).display(),
            node.name,
            node.tunnel_ip
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    node_plan(t, &ports(t), cfg, state_path, node)
}

/// The node whose `tunnel_ip` is `ip` (`[vxlan] local_ip` names the node it is on).
pub fn node_with_tunnel_ip(t: &Topology, ip: IpAddr) -> Option<&Node> {
    t.nodes.iter().find(|n| n.tunnel_ip == ip)
}

/// A file the node's roles read that `cfg` does not hold.
fn needs<'c, T>(part: &'c Option<T>, file: &str, node: &Node) -> Result<&'c T, String> {
    part.as_ref().ok_or_else(|| {
        format!(
            "node {} needs {file} for its roles, and it was not read",
            node.name
        )
    })
}

fn node_plan(
    t: &Topology,
    all: &Ports<'_>,
    cfg: &GuideConfig,
    state_path: &Path,
    node: &Node,
) -> Result<NodePlan, Vec<String>> {
    let is_network_node = node.name == all.network_node.name;
    let mut errors = Vec::new();
    let mut mine: Vec<PortPlan> = all
        .ports
        .iter()
        .filter(|(n, _)| *n == node.name)
        .map(|(_, p)| p.clone())
        .collect();
    let (l3, dhcp_cfg) = match is_network_node {
        true => {
            let l3 = needs(&cfg.l3, crate::guide::L3_AGENT, node);
            let dhcp = needs(&cfg.dhcp, crate::guide::DHCP_AGENT, node);
            match (l3, dhcp) {
                (Ok(l3), Ok(dhcp)) => (Some(l3), Some(dhcp)),
                (l3, dhcp) => {
                    errors.extend(l3.err().into_iter().chain(dhcp.err()));
                    return Err(errors);
                }
            }
        }
        false => (None, None),
    };
    let cinder = match t.cinder.as_ref().filter(|c| c.node == node.name) {
        None => None,
        Some(c) => match needs(&cfg.cinder, crate::guide::CINDER_CONF, node) {
            Ok(conf) => Some(CinderPlan {
                volume_group: conf.volume_group.clone(),
                size: c.size,
            }),
            Err(e) => return Err(vec![e]),
        },
    };
    let ext_bridge = l3.map_or("", |l3| l3.external_network_bridge.as_str());
    let isolated_metadata = dhcp_cfg.is_some_and(|d| d.enable_isolated_metadata);
    if isolated_metadata {
        for p in mine.iter_mut().filter(|p| p.kind == PortKind::Dhcp) {
            p.addresses
                .get_or_insert_with(Vec::new)
                .push(METADATA_CIDR.parse().expect("literal"));
        }
    }
    let group: IpAddr = cfg
        .agent
        .vxlan_group
        .as_deref()
        .unwrap_or(DEFAULT_VXLAN_GROUP)
        .parse()
        .unwrap_or_else(|_| DEFAULT_VXLAN_GROUP.parse().expect("literal"));
    let net_ids: BTreeSet<&str> = mine.iter().map(|p| p.network_id.as_str()).collect();
    // With `external_network_bridge`, the networks the network node's routers have
    // their gateway on live on that OVS bridge there.
    let gateway_nets: HashSet<&str> = mine
        .iter()
        .filter(|p| p.kind == PortKind::RouterGateway)
        .map(|p| p.network_id.as_str())
        .collect();
    let on_ovs =
        |net: &str| !ext_bridge.is_empty() && is_network_node && gateway_nets.contains(net);
    for n in t.networks.iter().filter(|n| on_ovs(&n.id)) {
        for p in mine
            .iter()
            .filter(|p| p.network_id == n.id && p.kind != PortKind::RouterGateway)
        {
            errors.push(format!(
                "l3_agent.ini external_network_bridge = {ext_bridge} puts network {} on the Open vSwitch bridge {ext_bridge} on node {}, where it also has a {} port ({}): only router gateways can be on {ext_bridge}; disable DHCP on {} or set external_network_bridge empty",
                n.name,
                node.name,
                p.kind.device_owner(),
                p.port_id,
                n.name
            ));
        }
    }
    let networks: Vec<NetPlan> = t
        .networks
        .iter()
        .filter(|n| net_ids.contains(n.id.as_str()))
        .map(|n| NetPlan {
            network_id: n.id.clone(),
            ovs: on_ovs(&n.id),
            bridge: if on_ovs(&n.id) {
                IfName::new(ext_bridge).expect("validated: a device name")
            } else {
                ifname(bridge_name(&n.id))
            },
            // On br-ex a gateway is plugged untagged, whatever the network's type.
            vxlan: (n.network_type == NetworkType::Vxlan && !on_ovs(&n.id)).then(|| VxlanPlan {
                vni: n.segmentation_id.expect("validated"),
                local_ip: node.tunnel_ip,
                l2_population: cfg.agent.l2_population,
                group: (!cfg.agent.l2_population).then_some(group),
            }),
            uplink: n
                .physical_network
                .as_ref()
                .and_then(|p| cfg.agent.physical_interface_mappings.get(p).cloned()),
        })
        .collect();
    // Every port by its network, in the ports' order: the l2population entries and each
    // dnsmasq's hosts (a walk of every port per network was quadratic).
    let mut on_network: HashMap<&str, Vec<&(&str, PortPlan)>> = HashMap::new();
    for p in &all.ports {
        on_network
            .entry(p.1.network_id.as_str())
            .or_default()
            .push(p);
    }
    let on = |net: &str| on_network.get(net).map_or(&[][..], Vec::as_slice);
    let mut l2pop = Vec::new();
    if cfg.agent.l2_population {
        for (n, v) in networks
            .iter()
            .filter_map(|n| n.vxlan.as_ref().map(|v| (n, v)))
        {
            for other in t.nodes.iter().filter(|o| o.name != node.name) {
                let theirs: Vec<&PortPlan> = on(n.network_id.as_str())
                    .iter()
                    .filter(|(o, _)| *o == other.name)
                    .map(|(_, p)| p)
                    .collect();
                if theirs.is_empty() {
                    continue;
                }
                l2pop.push(L2Entry::Flood {
                    vni: v.vni,
                    vtep: other.tunnel_ip,
                });
                for p in theirs {
                    l2pop.push(L2Entry::Port {
                        vni: v.vni,
                        mac: p.mac,
                        ip: p.ip,
                        vtep: other.tunnel_ip,
                    });
                }
            }
        }
    }
    let routed: HashSet<&str> = t
        .routers
        .iter()
        .flat_map(|r| &r.interfaces)
        .map(|i| i.network.as_str())
        .collect();
    let dhcp = match dhcp_cfg {
        Some(d) => all
            .dhcp
            .iter()
            .map(|(n, dhcp_ip)| {
                let isolated = !routed.contains(n.name.as_str());
                let ports = on(n.id.as_str());
                dnsmasq(d, &cfg.root, state_path, n, *dhcp_ip, isolated, ports)
            })
            .collect(),
        None => vec![],
    };
    let routers = match is_network_node {
        true => t.routers.iter().filter_map(|r| router_plan(t, r)).collect(),
        false => vec![],
    };
    // The proxy Neutron's agents start: one per router (the L3 agent's socket), one
    // per DHCP namespace of an isolated network (the DHCP agent's).
    let mut served = Vec::new();
    let mut socket = |value: Option<&str>, file: &str| {
        metadata::socket_path(value, state_path).map_err(|e| {
            errors.push(format!(
                "metadata_proxy_socket in {}: {e}",
                cfg.root.join(file).display()
            ))
        })
    };
    if let (true, Some(l3)) = (is_network_node, l3) {
        let with_nat: Vec<&str> = t
            .routers
            .iter()
            .filter(|r| router_plan(t, r).is_some())
            .map(|r| r.id.as_str())
            .collect();
        if let (false, Ok(s)) = (
            with_nat.is_empty(),
            socket(l3.metadata_proxy_socket.as_deref(), crate::guide::L3_AGENT),
        ) {
            served.extend(with_nat.into_iter().map(|id| Served {
                kind: Kind::Router,
                id: id.to_owned(),
                socket: s.clone(),
            }));
        }
    }
    if let Some(d) = dhcp_cfg {
        let isolated: Vec<&Dnsmasq> = dhcp.iter().filter(|d| d.serves_metadata()).collect();
        if let (false, Ok(s)) = (
            isolated.is_empty(),
            socket(d.metadata_proxy_socket.as_deref(), crate::guide::DHCP_AGENT),
        ) {
            served.extend(isolated.into_iter().map(|n| Served {
                kind: Kind::Network,
                id: n.network_id.clone(),
                socket: s.clone(),
            }));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NodePlan {
        node: node.name.clone(),
        tunnel_ip: node.tunnel_ip,
        networks,
        ports: mine,
        l2pop,
        dhcp,
        routers,
        metadata: served,
        cinder,
        firewall: match cfg.agent.firewall {
            true => firewall(t, all, node),
            false => Firewall::default(),
        },
    })
}

/// The firewall of `node`'s instance ports with port security: each port's MAC, fixed
/// IP, allowed pairs, its network's DHCP server, its groups' rules (in the groups'
/// order, each rule once); and the member sets those rules name — every port in the
/// group, on whichever node, with its fixed IP and its pairs' host addresses.
fn firewall(t: &Topology, all: &Ports<'_>, node: &Node) -> Firewall {
    let groups = t.groups();
    let id_of = |name: &str| groups.iter().find(|g| g.name == name).map(|g| g.id.clone());
    let pairs = |i: &Instance| -> Vec<AddressPair> {
        i.allowed_address_pairs
            .iter()
            .map(|p| AddressPair {
                ip: p.ip_address.0,
                mac: p.mac_address.unwrap_or(i.mac),
            })
            .collect()
    };
    let secured = || t.instances.iter().filter(|i| i.port_security_enabled);
    let mut ports = Vec::new();
    let mut remote = BTreeSet::new();
    for i in secured().filter(|i| i.node == node.name) {
        let net = all.networks[i.network.as_str()];
        let mut rules: Vec<sg::Rule> = Vec::new();
        for g in i
            .security_groups
            .iter()
            .filter_map(|n| groups.iter().find(|g| &g.name == n))
        {
            for r in g.rules.iter().filter_map(|r| r.typed(id_of)) {
                if let sg::Remote::Group(id) = &r.remote {
                    remote.insert((id.clone(), r.ethertype));
                }
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        }
        ports.push(PortFirewall {
            port_id: i.port_id.clone(),
            device: sp_neutron::tap_name(&i.port_id),
            mac: i.mac,
            fixed_ips: vec![i.ip],
            pairs: pairs(i),
            dhcp_servers: all
                .dhcp
                .iter()
                .filter(|(n, _)| n.id == net.id)
                .map(|(_, ip)| *ip)
                .collect(),
            rules,
        });
    }
    ports.sort_by(|a, b| a.port_id.cmp(&b.port_id));
    let sets = remote
        .into_iter()
        .map(|(group_id, ethertype)| {
            let name = groups
                .iter()
                .find(|g| g.id == group_id)
                .map(|g| g.name.as_str())
                .expect("a group named by a rule exists");
            let mut members: Vec<IpNet> = secured()
                .filter(|i| i.security_groups.iter().any(|g| g == name))
                .flat_map(|i| {
                    std::iter::once(IpNet::from(i.ip))
                        .chain(pairs(i).into_iter().map(|p| p.ip))
                        .collect::<Vec<_>>()
                })
                .filter(|m| sg::EtherType::of(&m.addr()) == ethertype)
                // Our sets hold addresses: a pair's wider prefix lets the port send
                // from it but makes no member (docs/security-groups.md).
                .filter(|m| m.prefix_len() == m.max_prefix_len())
                .collect();
            members.sort();
            members.dedup();
            MemberSet {
                group_id,
                ethertype,
                members,
            }
        })
        .collect();
    Firewall { ports, sets }
}

/// The dnsmasq of DHCP network `n`, whose port has `dhcp_ip`; `isolated` when no router
/// has an interface on it; `ports` every port on it, with its node.
fn dnsmasq(
    d: &crate::guide::DhcpAgent,
    root: &Path,
    state_path: &Path,
    n: &Network,
    dhcp_ip: IpAddr,
    isolated: bool,
    ports: &[&(&str, PortPlan)],
) -> Dnsmasq {
    let (port_id, mac) = dhcp_port(&n.id);
    // Every port on the network gets its fixed address: router legs and instances, then
    // the DHCP port itself.
    let mut hosts: Vec<DhcpHost> = ports
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.kind != PortKind::Dhcp)
        .map(|p| DhcpHost {
            mac: p.mac.to_string(),
            ip: p.ip,
        })
        .collect();
    hosts.push(DhcpHost {
        mac: mac.to_string(),
        ip: dhcp_ip,
    });
    Dnsmasq {
        network_id: n.id.to_string(),
        dir: state_path.join("dhcp").join(&n.id),
        interface: PortKind::Dhcp.device(&port_id),
        subnets: vec![DhcpSubnet {
            cidr: n.subnet.cidr,
            gateway: n.subnet.gateway,
            dns_nameservers: n.subnet.dns_nameservers.clone(),
            isolated,
            dhcp_ip,
        }],
        hosts,
        // Read below the configuration root, like every other file.
        conf_file: d
            .dnsmasq_config_file
            .as_deref()
            .map(|f| crate::guide::reroot(root, f)),
        isolated_metadata: d.enable_isolated_metadata,
    }
}

/// A router's namespace and NAT (routers with an IPv4 gateway).
fn router_plan(t: &Topology, r: &crate::topology::Router) -> Option<RouterPlan> {
    let gw = r.gateway.as_ref()?;
    let IpAddr::V4(gateway_ip) = gw.ip else {
        return None;
    };
    let floating_ips = t
        .instances
        .iter()
        .filter(|i| router_serves(r, &i.network))
        .filter_map(|i| match (i.floating_ip, i.ip) {
            (Some(IpAddr::V4(f)), IpAddr::V4(x)) => Some(FloatingIp {
                floating: f,
                fixed: x,
            }),
            _ => None,
        })
        .collect();
    Some(RouterPlan {
        namespace: nsname(qrouter_namespace(&r.id)),
        nat: RouterNat {
            gateway_device: PortKind::RouterGateway.device(&gw.port_id),
            gateway_ip: Some(gateway_ip),
            enable_snat: true,
            floating_ips,
        },
    })
}

/// Whether router `r` has a leg on network `name`.
fn router_serves(r: &crate::topology::Router, name: &str) -> bool {
    r.interfaces.iter().any(|i| i.network == name)
}

fn fip_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}
