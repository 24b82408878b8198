//! Realising one node's desired state ([`sp_config::desired::NodePlan`]) in the calling
//! thread's network namespace, in the agents' order, with the operations (floor 4):
//!
//! 1. flat networks: bridge, then the uplink NIC moved under it (its address and
//!    default route with it) — before VXLAN, so `vxlan-N` is bound to the device that
//!    holds `local_ip` afterwards; with `external_network_bridge`, the router gateways'
//!    network on the Open vSwitch bridge instead ([`ovs`]);
//! 2. tenant networks: bridge + `vxlan-N`;
//! 3. router, DHCP and instance ports (namespaces made when missing; OVS gateway ports
//!    made on their bridge first, then moved in);
//! 4. l2population entries towards the other nodes;
//! 5. dnsmasq per DHCP network, in its `qdhcp-` namespace;
//! 6. each router's NAT in its `qrouter-` namespace;
//! 7. Cinder's volume group on loop-backed files (`sp-loopvg`), on its node.
//!
//! Every step is ensure-style: realising twice changes nothing the second time.
//! [`take_down`] removes what [`realise`] made, and nothing else.

use std::path::PathBuf;

pub mod demo;
mod ovs;
pub mod supervise;

use serde::Serialize;
use sp_bridge::network::{self, NetworkSpec, VxlanConfig};
use sp_bridge::port::{self, HostEnd, PortSpec};
use sp_bridge::{input, l2pop, teardown, uplink};
use sp_config::desired::{L2Entry, NodePlan};
use sp_kernel::links::Links;
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::Faults;
use sp_kernel::Change;
use sp_neutron::bridge_name;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bridge(#[from] sp_bridge::Error),
    #[error(transparent)]
    Dhcp(#[from] sp_dhcp::Error),
    #[error(transparent)]
    Nat(#[from] sp_l3::Error),
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error(transparent)]
    Cinder(#[from] sp_loopvg::Error),
    #[error(transparent)]
    Ovs(#[from] sp_ovs::Error),
    #[error("{0}")]
    Preflight(String),
    #[error("state file {path}: {1}", path = .0.display())]
    State(PathBuf, #[source] std::io::Error),
    #[error("{0}")]
    Locked(String),
}

/// Where state lives, and where Open vSwitch listens.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The agents' `state_path` (dnsmasq files, bridges we made).
    pub state: PathBuf,
    /// Cinder's backing files (`/var/lib/cinder`, as the packstack notes keep them).
    pub cinder: PathBuf,
    /// ovsdb-server, for `external_network_bridge` ([`sp_ovs::DEFAULT_DB`]).
    pub ovsdb: sp_ovs::Endpoint,
}

impl Dirs {
    /// State and Cinder's files where given; Open vSwitch where a standard install
    /// has it.
    pub fn new(state: PathBuf, cinder: PathBuf) -> Dirs {
        Dirs {
            state,
            cinder,
            ovsdb: sp_ovs::DEFAULT_DB.parse().expect("a valid endpoint"),
        }
    }
}

fn loopvg(dirs: &Dirs) -> sp_loopvg::Loopvg<'static> {
    sp_loopvg::Loopvg {
        dir: dirs.cinder.clone(),
        description: "Write from stackplumb".into(),
        ..Default::default()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn port_specs(plan: &NodePlan) -> Result<Vec<PortSpec>> {
    plan.ports
        .iter()
        .map(|p| {
            let ovs = plan
                .networks
                .iter()
                .any(|n| n.ovs && n.network_id == p.network_id);
            Ok(PortSpec {
                port_id: p.port_id.clone(),
                kind: p.kind,
                namespace: p.namespace.clone(),
                host: match ovs {
                    true => HostEnd::Moved,
                    false => HostEnd::Bridge(bridge_name(&p.network_id)),
                },
                mac: Some(input::mac(&p.mac)?),
                mtu: None,
                addresses: p.addresses.clone(),
                gateway: p.gateway,
                ip_forward: p.ip_forward,
            })
        })
        .collect()
}

/// Realises `plan` in the calling thread's namespace (that namespace is the node);
/// `state` is the agents' `state_path` (dnsmasq files).
pub async fn realise(nl: &Netlink, plan: &NodePlan, dirs: &Dirs) -> Result<Vec<Change>> {
    let state = dirs.state.as_path();
    preflight(nl, plan).await?;
    let ovs = ovs::connect(plan, dirs).await?;
    let mut changes = Vec::new();
    // 1. Flat networks and their uplinks; the external network on Open vSwitch.
    for n in plan.networks.iter().filter(|n| n.vxlan.is_none() && !n.ovs) {
        network::ensure_network(nl, &n.network_id, None, &mut changes).await?;
        if let Some(nic) = &n.uplink {
            uplink::attach(nl, &n.bridge, nic, &mut Faults::none(), &mut changes).await?;
        }
    }
    if let Some(ovs) = &ovs {
        ovs::ensure_bridges(ovs, nl, plan, state, &mut changes).await?;
    }
    // 2. Tenant networks.
    let specs: Vec<NetworkSpec> = plan
        .networks
        .iter()
        .filter_map(|n| {
            let v = n.vxlan.as_ref()?;
            Some(NetworkSpec {
                network_id: n.network_id.clone(),
                vxlan: Some(VxlanConfig {
                    vni: v.vni,
                    local_ip: v.local_ip,
                    l2_population: v.l2_population,
                    group: v.group,
                    port: None,
                }),
            })
        })
        .collect();
    // One dump of the links serves the networks, the ports and l2population — read
    // again only when a step before the ports added some — read by this thread while
    // others enter the ports' namespaces and read what they hold.
    let ports = port_specs(plan)?;
    let (entered, links) = port::enter_while(&ports, || Links::read(nl));
    let (entered, mut links) = (entered?, links?);
    let mark = changes.len();
    network::ensure_networks(nl, &specs, Some(&links), &mut changes).await?;
    // 3. Ports.
    if let Some(ovs) = &ovs {
        ovs::ensure_ports(ovs, nl, plan, &mut changes).await?;
    }
    if changes.len() > mark {
        links = Links::read(nl)?;
    }
    port::plug_with(nl, &links, entered, &ports, &mut changes).await?;
    // 4. l2population: what is there read once, only the missing entries written.
    let have = match plan.l2pop.is_empty() {
        true => l2pop::Snapshot::default(),
        false => l2pop::Snapshot::read_with(nl, &links).await?,
    };
    for e in &plan.l2pop {
        match e {
            L2Entry::Flood { vni, vtep } if !have.has_flood(*vni, *vtep) => {
                l2pop::flood_add(nl, *vni, *vtep, &mut changes).await?
            }
            L2Entry::Port { vni, mac, ip, vtep } => {
                let mac = input::mac(mac)?;
                if !have.has_port(*vni, mac, *ip, *vtep) {
                    l2pop::port_add(nl, *vni, mac, *ip, *vtep, &mut changes).await?
                }
            }
            L2Entry::Flood { .. } => {}
        }
    }
    // 5. DHCP.
    for d in &plan.dhcp {
        sp_dhcp::ensure(d, &sp_neutron::qdhcp_namespace(&d.network_id), &mut changes)?;
    }
    // 6. NAT.
    let routers: Vec<(&str, &sp_neutron::l3::RouterNat)> = plan
        .routers
        .iter()
        .map(|r| (r.namespace.as_str(), &r.nat))
        .collect();
    // Read what each router's table holds; load only those that differ.
    let names: Vec<&str> = routers.iter().map(|(ns, _)| *ns).collect();
    let mut stale = Vec::new();
    for (r, have) in routers.iter().zip(sp_l3::read_each(&names)?) {
        if !have?.is_some_and(|c| c.matches(&sp_l3::NatRules::of(r.1))) {
            stale.push(*r);
        }
    }
    sp_l3::load_each(&stale, &mut changes)?;
    // 7. Cinder's volume group: made once, bound again after a reboot.
    if let Some(c) = &plan.cinder {
        let lv = loopvg(dirs);
        // The VG whose files are Cinder's directory (by identity); a same-named VG
        // elsewhere on the host is not ours, and create refuses its name.
        match lv.here(&c.volume_group) {
            Ok(Some(v)) if v.active => {}
            Ok(Some(_)) => {
                lv.activate(Some(&c.volume_group))?;
                changes.push(Change::new(
                    format!("volume group {}", c.volume_group),
                    "activated",
                ));
            }
            Ok(None) => {
                lv.create(&c.volume_group, &c.size, false)?;
                changes.push(Change::new(
                    format!("volume group {}", c.volume_group),
                    format!(
                        "created ({} on loop files in {})",
                        c.size,
                        dirs.cinder.display()
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(changes)
}

/// What this node must already have before anything is changed: every uplink NIC, and
/// an interface holding the tunnel address (`local_ip`) when a VXLAN network is wanted.
async fn preflight(nl: &Netlink, plan: &NodePlan) -> Result<()> {
    use sp_kernel::caps::{self, Cap};
    // Namespaces, links, sysctls; dnsmasq binds port 67 on raw sockets and drops to
    // nobody; loop devices for the volume group.
    let mut wanted = vec![Cap::NetAdmin, Cap::SysAdmin];
    if !plan.dhcp.is_empty() {
        wanted.extend([Cap::NetBindService, Cap::NetRaw, Cap::Setuid, Cap::Setgid]);
    }
    let missing = caps::missing(&wanted);
    if !missing.is_empty() {
        return Err(Error::Preflight(format!(
            "stackplumb on node {} {}; nothing was changed",
            plan.node,
            caps::explain(&missing)
        )));
    }
    sp_kernel::netns::check_net_sysctl_writable()
        .map_err(|e| Error::Preflight(format!("{e}; nothing was changed")))?;
    for n in &plan.networks {
        if let Some(nic) = &n.uplink {
            if nl.link_by_name(nic)?.is_none() {
                return Err(Error::Preflight(format!(
                    "uplink {nic} of network {} (physical_interface_mappings) does not exist on node {}; nothing was changed",
                    n.network_id, plan.node
                )));
            }
        }
    }
    if plan.networks.iter().any(|n| n.vxlan.is_some()) {
        let held = nl
            .addresses()?
            .iter()
            .any(|a| sp_kernel::attrs::address_ip(a) == Some(plan.tunnel_ip));
        if !held {
            return Err(Error::Preflight(format!(
                "no interface of node {} holds its tunnel address {} (local_ip); nothing was changed",
                plan.node, plan.tunnel_ip
            )));
        }
    }
    Ok(())
}

/// Takes down what [`realise`] made on this node: dnsmasq ended, the namespaces of
/// its ports deleted (their veths with them), uplinks given their addresses back,
/// bridges and VXLAN devices deleted in one batch.
/// Cinder's volume group is deactivated (its loop devices released), its files kept —
/// removed with them only when `purge`.
pub async fn take_down(
    nl: &Netlink,
    plan: &NodePlan,
    dirs: &Dirs,
    purge: bool,
) -> Result<Vec<Change>> {
    let state = dirs.state.as_path();
    // Open vSwitch reachable before anything is taken down.
    let ovs = ovs::connect(plan, dirs).await?;
    let mut changes = Vec::new();
    if let Some(c) = &plan.cinder {
        let lv = loopvg(dirs);
        // Only the VG whose files are in Cinder's directory: never a same-named VG
        // elsewhere on the host.
        match lv.here(&c.volume_group) {
            Ok(Some(_)) if purge => {
                lv.remove(&c.volume_group, false)?;
                changes.push(Change::new(
                    format!("volume group {}", c.volume_group),
                    "removed with its files",
                ));
            }
            Ok(Some(v)) if v.active => {
                lv.deactivate(&c.volume_group)?;
                changes.push(Change::new(
                    format!("volume group {}", c.volume_group),
                    "deactivated (files kept)",
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for d in &plan.dhcp {
        sp_dhcp::stop(d, &sp_neutron::qdhcp_namespace(&d.network_id), &mut changes)?;
    }
    for r in &plan.routers {
        if sp_l3::remove(&r.namespace)? {
            changes.push(Change::new(
                format!("nat rules in {}", r.namespace),
                "deleted",
            ));
        }
    }
    if let Some(ovs) = &ovs {
        ovs::remove_ports(ovs, plan, &mut changes).await?;
    }
    let mut namespaces: Vec<String> = plan.ports.iter().map(|p| p.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    teardown::delete_namespaces(&namespaces, &mut changes)?;
    let ids: Vec<String> = plan
        .networks
        .iter()
        .filter(|n| !n.ovs)
        .map(|n| n.network_id.clone())
        .collect();
    teardown::delete_networks(nl, &ids, &mut changes).await?;
    if let Some(ovs) = &ovs {
        ovs::take_down(ovs, nl, plan, state, &mut changes).await?;
    }
    Ok(changes)
}

/// One object of a node's desired state and whether it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// What: `bridge brq5b6a8b87-fd`, `fdb 00:00:00:00:00:00 dst 10.0.0.102 on vxlan-1`…
    pub object: String,
    pub present: bool,
}

/// Reads, without changing anything, which objects of `plan` exist on this node (the
/// calling thread's namespace). Objects, not every attribute: an existing object with
/// a drifted attribute reads as present, and `realise` puts the attribute right.
pub async fn survey(nl: &Netlink, plan: &NodePlan, dirs: &Dirs) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut item = |object: String, present: bool| items.push(Item { object, present });
    let links = nl.links()?;
    let by_name = |n: &str| {
        links
            .iter()
            .find(|l| sp_kernel::attrs::link_name(l) == Some(n))
    };
    for n in plan.networks.iter().filter(|n| !n.ovs) {
        let br = by_name(&n.bridge);
        item(format!("bridge {}", n.bridge), br.is_some());
        if let Some(v) = &n.vxlan {
            let name = sp_neutron::vxlan_name(v.vni);
            item(
                format!("vxlan {name} on {}", n.bridge),
                by_name(&name).is_some(),
            );
        }
        if let Some(nic) = &n.uplink {
            let attached = match (by_name(nic), br) {
                (Some(l), Some(b)) => sp_kernel::attrs::link_master(l) == Some(b.header.index),
                _ => false,
            };
            item(format!("uplink {nic} on {}", n.bridge), attached);
        }
    }
    let live: std::collections::BTreeSet<String> = sp_kernel::netns::list_named()?
        .into_iter()
        .filter(|e| e.state.is_ok())
        .map(|e| e.name)
        .collect();
    let mut namespaces: Vec<&str> = plan.ports.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        item(format!("namespace {ns}"), live.contains(ns));
    }
    let on_ovs: Vec<&str> = ovs::ovs_ports(plan)
        .map(|(p, _)| p.port_id.as_str())
        .collect();
    for p in plan
        .ports
        .iter()
        .filter(|p| !on_ovs.contains(&p.port_id.as_str()))
    {
        let tap = sp_neutron::tap_name(&p.port_id);
        item(
            format!(
                "port {tap} ↔ {} in {}",
                p.kind.device(&p.port_id),
                p.namespace
            ),
            by_name(&tap).is_some(),
        );
    }
    ovs::survey(nl, plan, dirs, &mut item).await?;
    let mut fdb: std::collections::BTreeMap<u32, Vec<sp_bridge::l2pop::FdbEntry>> =
        Default::default();
    for e in &plan.l2pop {
        let (vni, mac, vtep) = match e {
            L2Entry::Flood { vni, vtep } => (*vni, "00:00:00:00:00:00".to_owned(), *vtep),
            L2Entry::Port { vni, mac, vtep, .. } => (*vni, mac.clone(), *vtep),
        };
        if let std::collections::btree_map::Entry::Vacant(slot) = fdb.entry(vni) {
            // One dump per VXLAN device, and none when the device is not there yet.
            let entries = if by_name(&sp_neutron::vxlan_name(vni)).is_some() {
                l2pop::fdb_entries(nl, vni).await?
            } else {
                vec![]
            };
            slot.insert(entries);
        }
        let present = fdb[&vni]
            .iter()
            .any(|f| f.mac == mac && f.dst == Some(vtep));
        item(
            format!("fdb {mac} dst {vtep} on {}", sp_neutron::vxlan_name(vni)),
            present,
        );
    }
    for d in &plan.dhcp {
        let running = matches!(
            live.contains(&sp_neutron::qdhcp_namespace(&d.network_id))
                .then(|| sp_dhcp::status(d, &sp_neutron::qdhcp_namespace(&d.network_id)))
                .transpose()?,
            Some(sp_dhcp::State::Running(_))
        );
        item(format!("dnsmasq of {}", d.network_id), running);
    }
    let names: Vec<&str> = plan.routers.iter().map(|r| r.namespace.as_str()).collect();
    for (r, have) in plan.routers.iter().zip(sp_l3::read_each(&names)?) {
        let loaded = have.is_ok_and(|c| c.is_some_and(|c| c.matches(&sp_l3::NatRules::of(&r.nat))));
        item(format!("nat rules in {}", r.namespace), loaded);
    }
    if let Some(c) = &plan.cinder {
        let active = loopvg(dirs)
            .here(&c.volume_group)
            .is_ok_and(|v| v.is_some_and(|v| v.active));
        item(
            format!("volume group {} ({})", c.volume_group, c.size),
            active,
        );
    }
    Ok(items)
}

/// What netns-inspect finds wrong in this node's namespaces (its own, shown as
/// `current`, and those of its ports): a qdhcp without dnsmasq, a router that does not
/// forward, an orphan veth, an MTU mismatch, a leaked namespace…
pub async fn problems(plan: &NodePlan) -> Result<Vec<sp_inspect::Problem>> {
    let ours: std::collections::BTreeSet<&str> = plan
        .ports
        .iter()
        .map(|p| p.namespace.as_str())
        .chain(["current"])
        .collect();
    Ok(sp_inspect::inspect()
        .await?
        .problems
        .into_iter()
        .filter(|p| ours.contains(p.namespace.as_str()))
        .collect())
}
