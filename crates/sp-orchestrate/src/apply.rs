//! Executing a plan: the deletions one by one, then each unit's operation for the units
//! that have actions, in the agents' order. An operation changes exactly what differs
//! (the planner's comparisons); a unit without actions is not touched. Every object is
//! recorded as ours before it is made and forgotten after it is gone
//! ([`crate::owned`]).

use std::collections::{BTreeMap, BTreeSet};

use sp_bridge::network::{self, NetworkSpec, VxlanConfig};
use sp_bridge::port::{self, HostEnd, PortSpec};
use sp_bridge::{input, l2pop, uplink};
use sp_config::desired::NodePlan;
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::Faults;
use sp_kernel::Change;
use sp_neutron::{bridge_name, qdhcp_namespace};

use crate::current::Current;
use crate::owned::{Owned, OwnedFdb, OwnedNeighbour, OwnedUplink};
use crate::planner::{network_mtu, Action, Object, Op, Unit};
use crate::{Dirs, Error, Result};

/// An apply that stopped: what was done, what failed, what was not done.
#[derive(Debug)]
pub struct Failed {
    pub done: Vec<Action>,
    pub failed: Vec<Action>,
    pub not_done: Vec<Action>,
    pub cause: Error,
}

/// The VNI of `vxlan-N`.
fn vni_of(device: &str) -> Option<u32> {
    device.strip_prefix("vxlan-")?.parse().ok()
}

/// An FDB entry's MAC: `None` for the all-zeros flood entry, else a port's.
fn fdb_mac(mac: &str) -> Result<Option<[u8; 6]>> {
    match mac == "00:00:00:00:00:00" {
        true => Ok(None),
        false => Ok(Some(input::mac(mac)?)),
    }
}

/// Records what `actions` will make as ours.
fn intend(owned: &mut Owned, actions: &[Action]) {
    for a in actions {
        let creates = a.op == Op::Create;
        match (&a.object, creates) {
            (Object::Bridge { name }, true) => {
                owned.bridges.insert(name.clone());
            }
            (Object::Vxlan { name, .. }, true) => {
                owned.vxlans.insert(name.clone());
            }
            (Object::Uplink { nic, bridge }, true) => {
                owned.uplinks.insert(OwnedUplink {
                    nic: nic.clone(),
                    bridge: bridge.clone(),
                });
            }
            // Made anew (also after one of ours was deleted by hand): its identity is
            // the new one's, read once it exists — an older one recorded would make it
            // someone else's.
            (Object::Namespace { name }, true) => {
                owned.namespaces.insert(name.clone(), None);
            }
            (
                Object::Port {
                    port_id,
                    namespace,
                    tap: Some(_),
                    ..
                },
                true,
            ) => {
                owned.ports.insert(port_id.clone(), namespace.clone());
            }
            (Object::Fdb { device, mac, dst }, true) => {
                if let Some(vni) = vni_of(device) {
                    owned.fdb.insert(OwnedFdb {
                        vni,
                        mac: mac.clone(),
                        dst: *dst,
                    });
                }
            }
            (Object::Neighbour { device, ip, mac }, true) => {
                if let Some(vni) = vni_of(device) {
                    owned.neighbours.insert(OwnedNeighbour {
                        vni,
                        ip: *ip,
                        mac: mac.clone(),
                    });
                }
            }
            // dnsmasq and the NAT table are ours by their names (our pid file, our
            // table): also when an action only changes them.
            (Object::Dnsmasq { network_id }, _) => {
                owned.dnsmasq.insert(network_id.clone());
            }
            (Object::Nat { namespace }, _) => {
                owned.nat.insert(namespace.clone());
            }
            (Object::Firewall { .. }, _) => owned.firewall = true,
            (Object::VolumeGroup { name }, true) => owned.volume_group = Some(name.clone()),
            (Object::MetadataProxy, _) => owned.metadata_proxy = true,
            _ => {}
        }
    }
}

/// Forgets an object that is gone.
fn forget(owned: &mut Owned, object: &Object) {
    match object {
        Object::Bridge { name } => {
            owned.bridges.remove(name);
        }
        Object::Vxlan { name, .. } => {
            owned.vxlans.remove(name);
            if let Some(vni) = vni_of(name) {
                owned.fdb.retain(|f| f.vni != vni);
                owned.neighbours.retain(|n| n.vni != vni);
            }
        }
        Object::Uplink { nic, bridge } => {
            owned.uplinks.remove(&OwnedUplink {
                nic: nic.clone(),
                bridge: bridge.clone(),
            });
        }
        Object::Namespace { name } => {
            owned.namespaces.remove(name);
            owned.nat.remove(name);
            // Its veths went with it.
            owned.ports.retain(|_, ns| ns != name);
        }
        Object::Port { port_id, .. } => {
            owned.ports.remove(port_id);
        }
        Object::Fdb { device, mac, dst } => {
            if let Some(vni) = vni_of(device) {
                owned.fdb.remove(&OwnedFdb {
                    vni,
                    mac: mac.clone(),
                    dst: *dst,
                });
            }
        }
        Object::Neighbour { device, ip, mac } => {
            if let Some(vni) = vni_of(device) {
                owned.neighbours.remove(&OwnedNeighbour {
                    vni,
                    ip: *ip,
                    mac: mac.clone(),
                });
            }
        }
        Object::Dnsmasq { network_id } => {
            owned.dnsmasq.remove(network_id);
        }
        Object::Nat { namespace } => {
            owned.nat.remove(namespace);
        }
        Object::Firewall { .. } => owned.firewall = false,
        Object::VolumeGroup { .. } => owned.volume_group = None,
        Object::MetadataProxy => owned.metadata_proxy = false,
        _ => {}
    }
}

/// The link a deletion removes, when it is one of the node's own links.
fn link_of(o: &Object) -> Option<&str> {
    match o {
        Object::Port { tap: Some(tap), .. } => Some(tap),
        Object::Vxlan { name, .. } | Object::Bridge { name } => Some(name),
        _ => None,
    }
}

/// Deletes the links of `group` in one kernel batch (those already gone are skipped).
async fn delete_link_group(nl: &Netlink, group: &[Action]) -> Result<()> {
    let names: BTreeSet<&str> = group.iter().filter_map(|a| link_of(&a.object)).collect();
    let all = nl.links()?;
    let doomed: Vec<_> = all
        .iter()
        .filter(|l| sp_kernel::attrs::link_name(l).is_some_and(|n| names.contains(n)))
        .cloned()
        .collect();
    Ok(sp_kernel::links::delete_links(nl, &doomed, &all).await?)
}

/// Removes one object this node made and no longer wants.
async fn prune(nl: &Netlink, a: &Action, plan: &NodePlan, dirs: &Dirs, purge: bool) -> Result<()> {
    let mut changes: Vec<Change> = Vec::new();
    match &a.object {
        Object::MetadataProxy => {
            let proxy = crate::metadata_proxy(plan, dirs)?;
            sp_metadata::stop(&proxy.pid_file, &mut changes)?;
        }
        Object::Dnsmasq { network_id } => {
            // The id is checked before it names a directory (the record is a file).
            sp_names::NeutronId::check(network_id)?;
            let dir = dirs.state.join("dhcp").join(network_id);
            sp_dhcp::stop_dir(&dir, network_id, &qdhcp_namespace(network_id), &mut changes)?;
        }
        Object::Nat { namespace } => {
            sp_l3::remove(namespace)?;
        }
        Object::Firewall { .. } => {
            sp_sg::remove()?;
        }
        Object::Fdb { device, mac, dst } => {
            let vni = vni_of(device).unwrap_or(0);
            match fdb_mac(mac)? {
                None => l2pop::flood_del(nl, vni, *dst, &mut changes).await?,
                Some(m) => l2pop::fdb_del(nl, vni, m, *dst, &mut changes).await?,
            }
        }
        Object::Neighbour { device, ip, .. } => {
            l2pop::neigh_del(nl, vni_of(device).unwrap_or(0), *ip, &mut changes).await?;
        }

        Object::Namespace { name } => match sp_kernel::netns::delete(name) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        },
        Object::Uplink { nic, bridge } => {
            uplink::detach(nl, bridge, nic, &mut Faults::none(), &mut changes).await?;
        }

        Object::VolumeGroup { name } => {
            let lv = crate::loopvg(dirs);
            match purge {
                true => lv.remove(name, false).map(drop)?,
                false => lv.deactivate(name).map(drop)?,
            }
        }
        other => {
            return Err(Error::Preflight(format!(
                "no way to remove {other} (a bug: the planner never deletes it)"
            )))
        }
    }
    Ok(())
}

/// The ports of `plan` as the port operation takes them, at their network's MTU.
fn port_specs(plan: &NodePlan, cur: &Current) -> Result<Vec<PortSpec>> {
    let nets: std::collections::HashMap<&str, _> = plan
        .networks
        .iter()
        .map(|n| (n.network_id.as_str(), (n, network_mtu(&cur.root, n))))
        .collect();
    plan.ports
        .iter()
        .map(|p| {
            let net = nets.get(p.network_id.as_str());
            let ovs = net.is_some_and(|(n, _)| n.ovs);
            Ok(PortSpec {
                port_id: p.port_id.to_string(),
                kind: p.kind,
                namespace: p.namespace.to_string(),
                host: match ovs {
                    true => HostEnd::Moved,
                    false => HostEnd::Bridge(bridge_name(&p.network_id)),
                },
                mac: Some(p.mac.octets()),
                mtu: match (ovs, net) {
                    (false, Some((_, mtu))) => Some(*mtu),
                    _ => None,
                },
                addresses: p.addresses.clone(),
                gateway: p.gateway,
                ip_forward: p.ip_forward,
            })
        })
        .collect()
}

/// Units run together: a flat network with its uplink (one reversible move), and the
/// tenant networks, the ports of all namespaces and the routers' NAT each in one call
/// (one dump of the links, one namespace hop, one hop for the NAT tables).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Flat(String),
    Ovs,
    Networks,
    Ports,
    L2,
    Dhcp(String),
    Nat,
    Firewall,
    Metadata,
    Cinder,
}

fn phase_of(unit: &Unit, plan: &NodePlan) -> Phase {
    let flat = |id: &str| {
        plan.networks
            .iter()
            .any(|n| n.network_id.as_str() == id && n.vxlan.is_none())
    };
    match unit {
        Unit::Network(id) | Unit::Uplink(id) if flat(id) => Phase::Flat(id.clone()),
        Unit::Network(_) | Unit::Uplink(_) => Phase::Networks,
        Unit::Ovs => Phase::Ovs,
        Unit::Ports(_) => Phase::Ports,
        Unit::L2 => Phase::L2,
        Unit::Dhcp(id) => Phase::Dhcp(id.clone()),
        Unit::Nat(_) => Phase::Nat,
        Unit::Firewall => Phase::Firewall,
        Unit::Metadata => Phase::Metadata,
        Unit::Cinder => Phase::Cinder,
        Unit::Prune => unreachable!("deletions run one by one"),
    }
}

fn network_spec(n: &sp_config::desired::NetPlan, cur: &Current) -> NetworkSpec {
    NetworkSpec {
        network_id: n.network_id.to_string(),
        vxlan: n.vxlan.as_ref().map(|v| VxlanConfig {
            vni: v.vni,
            local_ip: v.local_ip,
            l2_population: v.l2_population,
            group: v.group,
            port: None,
            mtu: Some(network_mtu(&cur.root, n)),
        }),
    }
}

/// Runs one phase's operations for its actions.
async fn run_phase(
    nl: &Netlink,
    phase: &Phase,
    actions: &[Action],
    plan: &NodePlan,
    cur: &Current,
    dirs: &Dirs,
) -> Result<()> {
    let mut changes: Vec<Change> = Vec::new();
    let units: BTreeSet<&Unit> = actions.iter().map(|a| &a.unit).collect();
    match phase {
        Phase::Flat(id) => {
            let n = plan
                .networks
                .iter()
                .find(|n| n.network_id.as_str() == id)
                .expect("planned from this plan");
            network::ensure_networks(nl, &[network_spec(n, cur)], &mut changes).await?;
            if let Some(nic) = &n.uplink {
                uplink::attach(
                    nl,
                    &n.bridge,
                    nic,
                    Some(uplink::GATEWAY_TIMEOUT),
                    &mut Faults::none(),
                    &mut changes,
                )
                .await?;
            }
        }
        Phase::Networks => {
            let specs: Vec<NetworkSpec> = plan
                .networks
                .iter()
                .filter(|n| units.contains(&Unit::Network(n.network_id.to_string())))
                .map(|n| network_spec(n, cur))
                .collect();
            network::ensure_networks(nl, &specs, &mut changes).await?;
        }
        Phase::Ovs => {
            let ovs = crate::ovs::connect(plan, dirs)
                .await?
                .ok_or_else(|| Error::Preflight("no Open vSwitch network planned".into()))?;
            crate::ovs::ensure_bridges(&ovs, nl, plan, &dirs.state, &mut changes).await?;
            crate::ovs::ensure_ports(&ovs, nl, plan, &mut changes).await?;
        }
        Phase::Ports => {
            let specs: Vec<PortSpec> = port_specs(plan, cur)?
                .into_iter()
                .filter(|p| units.contains(&Unit::Ports(p.namespace.clone())))
                .collect();
            port::plug(nl, &specs, &mut changes).await?;
        }
        Phase::L2 => {
            for a in actions {
                match &a.object {
                    Object::Fdb { device, mac, dst } => {
                        let vni = vni_of(device).unwrap_or(0);
                        match fdb_mac(mac)? {
                            None => l2pop::flood_add(nl, vni, *dst, &mut changes).await?,
                            Some(m) => l2pop::fdb_add(nl, vni, m, *dst, &mut changes).await?,
                        }
                    }
                    Object::Neighbour { device, ip, mac } => {
                        let vni = vni_of(device).unwrap_or(0);
                        l2pop::neigh_add(nl, vni, *ip, input::mac(mac)?, &mut changes).await?
                    }
                    _ => {}
                }
            }
        }
        Phase::Dhcp(id) => {
            let d = plan
                .dhcp
                .iter()
                .find(|d| d.network_id.as_str() == id)
                .expect("planned from this plan");
            sp_dhcp::ensure(d, &qdhcp_namespace(&d.network_id), &mut changes)?;
        }
        Phase::Nat | Phase::Firewall => load_rules(phase, actions, plan)?,
        Phase::Metadata => start_metadata(plan, dirs)?,
        Phase::Cinder => {
            let c = plan.cinder.as_ref().expect("planned from this plan");
            let lv = crate::loopvg(dirs);
            match actions.iter().any(|a| a.op == Op::Create) {
                true => lv
                    .create(&c.volume_group.to_string(), &c.size.to_string(), false)
                    .map(drop)?,
                false => lv.activate(Some(&c.volume_group.to_string())).map(drop)?,
            }
        }
    }
    Ok(())
}

/// The nf_tables phases: the routers' NAT of `actions`, or the security groups.
fn load_rules(phase: &Phase, actions: &[Action], plan: &NodePlan) -> Result<()> {
    let mut changes = Vec::new();
    match phase {
        Phase::Nat => {
            let units: BTreeSet<&Unit> = actions.iter().map(|a| &a.unit).collect();
            let routers: Vec<(&str, &sp_neutron::l3::RouterNat)> = plan
                .routers
                .iter()
                .filter(|r| units.contains(&Unit::Nat(r.namespace.to_string())))
                .map(|r| (r.namespace.as_str(), &r.nat))
                .collect();
            sp_l3::load_each(&routers, &mut changes)?;
        }
        _ => sp_sg::load(&plan.firewall, &mut changes)?,
    }
    Ok(())
}

/// The metadata proxy (re)started for `plan`'s namespaces.
fn start_metadata(plan: &NodePlan, dirs: &Dirs) -> Result<()> {
    sp_metadata::restart(&crate::metadata_proxy(plan, dirs)?, &mut Vec::new())?;
    Ok(())
}

/// Executes `actions` (planned from `cur`), reporting each as it completes.
/// `purge`: a volume group pruned goes with its files (destroy --purge).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    nl: &Netlink,
    plan: &NodePlan,
    cur: &Current,
    owned: &mut Owned,
    actions: Vec<Action>,
    dirs: &Dirs,
    purge: bool,
    done: &mut dyn FnMut(&Action),
) -> std::result::Result<Vec<Action>, Box<Failed>> {
    tracing::info!(node = %plan.node, actions = actions.len(), "carrying out the plan");
    let mut finished: Vec<Action> = Vec::new();
    let fail = |finished: Vec<Action>, failed: Vec<Action>, rest: Vec<Action>, cause| {
        Box::new(Failed {
            done: finished,
            failed,
            not_done: rest,
            cause,
        })
    };
    let (prunes, rest): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| a.unit == Unit::Prune);
    // Deletions, each forgotten once gone; links that follow each other (ports; VXLAN
    // devices and bridges) go in one kernel batch — one at a time each would cost an RCU
    // grace period.
    let mut prunes = prunes.into_iter().peekable();
    while let Some(first) = prunes.next() {
        let mut group = vec![first];
        if link_of(&group[0].object).is_some() {
            while let Some(next) = prunes.next_if(|a| link_of(&a.object).is_some()) {
                group.push(next);
            }
        }
        let result = match group.len() {
            1 if link_of(&group[0].object).is_none() => {
                prune(nl, &group[0], plan, dirs, purge).await
            }
            _ => delete_link_group(nl, &group).await,
        };
        if let Err(cause) = result {
            let _ = owned.save(&dirs.state);
            let mut not_done: Vec<Action> = prunes.collect();
            not_done.extend(rest);
            return Err(fail(finished, group, not_done, cause));
        }
        for a in group {
            forget(owned, &a.object);
            done(&a);
            finished.push(a);
        }
    }
    if let Err(cause) = owned.save(&dirs.state) {
        return Err(fail(finished, vec![], rest, cause));
    }
    // What will be made, recorded before it is made.
    intend(owned, &rest);
    if let Err(cause) = owned.save(&dirs.state) {
        return Err(fail(finished, vec![], rest, cause));
    }
    // The phases in plan order (the planner orders the units as the agents do).
    let mut phases: Vec<(Phase, Vec<Action>)> = Vec::new();
    for a in rest {
        let ph = phase_of(&a.unit, plan);
        match phases.iter_mut().find(|(p, _)| *p == ph) {
            Some((_, list)) => list.push(a),
            None => phases.push((ph, vec![a])),
        }
    }
    let mut result = Ok(());
    let mut phases = phases.into_iter().peekable();
    while let Some((phase, actions)) = phases.next() {
        // The metadata proxy starts on a thread of its own while the nf_tables phase
        // before it loads: neither takes the RTNL, and the start is mostly the proxy's
        // exec. Its outcome is reported after that phase's, whatever each was.
        let nft = matches!(phase, Phase::Nat | Phase::Firewall);
        let outcomes = match phases.next_if(|(p, _)| nft && *p == Phase::Metadata) {
            None => {
                let r = run_phase(nl, &phase, &actions, plan, cur, dirs).await;
                vec![(actions, r)]
            }
            Some((_, meta)) => std::thread::scope(|s| {
                let proxy = s.spawn(|| start_metadata(plan, dirs));
                let rules = load_rules(&phase, &actions, plan);
                let started = proxy.join().expect("the metadata proxy's start panicked");
                vec![(actions, rules), (meta, started)]
            }),
        };
        let mut failure: Option<(Vec<Action>, Error)> = None;
        for (actions, r) in outcomes {
            match (r, &mut failure) {
                (Ok(()), _) => {
                    for a in &actions {
                        done(a);
                    }
                    finished.extend(actions);
                }
                (Err(cause), None) => failure = Some((actions, cause)),
                // Both failed: the first cause is reported, the second logged.
                (Err(cause), Some((failed, _))) => {
                    tracing::error!(%cause, "the metadata proxy did not start either");
                    failed.extend(actions);
                }
            }
        }
        if let Some((failed, cause)) = failure {
            let not_done = phases.flat_map(|(_, a)| a).collect();
            result = Err(fail(std::mem::take(&mut finished), failed, not_done, cause));
            break;
        }
    }
    // The identities of the namespaces made (and of any recorded before a kill).
    if let Ok(live) = sp_kernel::netns::list_named() {
        let ids: BTreeMap<String, _> = live
            .into_iter()
            .filter_map(|e| Some((e.name, e.state.ok()?)))
            .collect();
        let unknown: BTreeSet<String> = owned
            .namespaces
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for n in unknown {
            if let Some(id) = ids.get(&n) {
                owned.namespaces.insert(n, Some((*id).into()));
            }
        }
    }
    let saved = owned.save(&dirs.state);
    match (result, saved) {
        (Err(f), _) => Err(f),
        (Ok(()), Err(cause)) => Err(fail(finished, vec![], vec![], cause)),
        (Ok(()), Ok(())) => Ok(finished),
    }
}
