//! Deleting in batches: links through one link group per call
//! (`sp_kernel::links::delete_links`: each link deleted on its own costs an RCU grace
//! period, 20–40 ms measured here). Namespaces go with a lazy unmount each; the kernel
//! frees them (and the links inside) in batches of its own.

use std::collections::{HashMap, HashSet};

use netlink_packet_route::link::LinkMessage;
use sp_kernel::links::delete_links;
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::Faults;
use sp_kernel::{attrs, netns};
use sp_neutron::{bridge_name, qdhcp_namespace, tap_name, DeviceRole};

use crate::{uplink, Change, Object, Result};

/// Unplugs ports: deletes their `tap…` host ends (the namespace ends go with them).
pub async fn unplug(nl: &Netlink, port_ids: &[String], changes: &mut Vec<Change>) -> Result<()> {
    let all = nl.links()?;
    let mut doomed = Vec::new();
    for id in port_ids {
        let tap = tap_name(id);
        if let Some(l) = all
            .iter()
            .find(|l| attrs::link_name(l) == Some(tap.as_str()))
        {
            doomed.push(l.clone());
            changes.push(Change::saying(
                Object::Veth { name: tap },
                "deleted",
                Default::default(),
                "deleted (with its peer)",
            ));
        }
    }
    Ok(delete_links(nl, &doomed, &all).await?)
}

/// Deletes networks as the agent does on `network_delete`: the bridge, its VXLAN
/// devices and taps (their namespace ends with them), the network's `qdhcp-` namespace.
/// Any other port of the bridge is an uplink, not ours: it gets its addresses and
/// routes back and is left in place.
pub async fn delete_networks(
    nl: &Netlink,
    network_ids: &[String],
    changes: &mut Vec<Change>,
) -> Result<()> {
    let all = nl.links()?;
    // One pass to index the links: by name, and the ports of each master.
    let mut by_name: HashMap<&str, &LinkMessage> = HashMap::new();
    let mut ports_of: HashMap<u32, Vec<&LinkMessage>> = HashMap::new();
    for l in &all {
        if let Some(n) = attrs::link_name(l) {
            by_name.insert(n, l);
        }
        if let Some(m) = attrs::link_master(l) {
            ports_of.entry(m).or_default().push(l);
        }
    }
    let mut doomed = Vec::new();
    for id in network_ids {
        let name = bridge_name(id);
        let Some(bridge) = by_name.get(name.as_str()) else {
            continue;
        };
        for port in ports_of.get(&bridge.header.index).into_iter().flatten() {
            let pname = attrs::link_name(port).unwrap_or("?");
            let ours = matches!(
                sp_neutron::classify_device(pname),
                Some(DeviceRole::Tap { .. } | DeviceRole::Vxlan { .. })
            );
            if !ours {
                // Not a device of ours: the flat network's uplink (a NIC — or a veth or
                // macvlan in a container), which goes back as it was and stays.
                uplink::detach(nl, &name, pname, &mut Faults::none(), changes).await?;
            } else {
                doomed.push((*port).clone());
                changes.push(Change::new(Object::link(pname), "deleted"));
            }
        }
        doomed.push((*bridge).clone());
        changes.push(Change::new(Object::bridge(&name), "deleted"));
    }
    delete_links(nl, &doomed, &all).await?;
    let live: HashSet<String> = netns::list_named()?.into_iter().map(|e| e.name).collect();
    let namespaces: Vec<String> = network_ids
        .iter()
        .map(|id| qdhcp_namespace(id))
        .filter(|n| live.contains(n))
        .collect();
    delete_namespaces(&namespaces, changes)
}

/// Deletes named namespaces (`ip netns delete`); missing ones are skipped.
pub fn delete_namespaces(names: &[String], changes: &mut Vec<Change>) -> Result<()> {
    for name in names {
        match netns::delete(name) {
            Ok(()) => changes.push(Change::new(Object::namespace(name), "deleted")),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
