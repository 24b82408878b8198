//! Deleting in batches. Each link deleted on its own costs an RCU grace period
//! (20–40 ms measured here); the kernel deletes every link of a *link group* in one
//! request, one batch. So links to delete are first moved into a group of their own,
//! then the group is deleted. Namespaces go with a lazy unmount each; the kernel frees
//! them (and the links inside) in batches of its own.

use std::collections::{HashMap, HashSet};

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;
use sp_kernel::netlink::Netlink;
use sp_kernel::{attrs, netns};
use sp_neutron::{bridge_name, qdhcp_namespace, tap_name, DeviceRole};

use crate::network::set_link;
use crate::{uplink, Change, Error, Faults, Result};

/// Deletes link `name` if it exists; true when it did.
pub async fn delete_link(nl: &Netlink, name: &str) -> Result<bool> {
    match nl.link_by_name(name)? {
        Some(l) => {
            delete_links(nl, &[l]).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn group_of(l: &LinkMessage) -> u32 {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Group(g) => Some(*g),
            _ => None,
        })
        .unwrap_or(0)
}

/// Deletes `links` in one kernel batch: moves them into a link group no other link
/// uses, then deletes that group (`ip link delete group N`).
pub async fn delete_links(nl: &Netlink, links: &[LinkMessage]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let used: Vec<u32> = nl.links()?.iter().map(group_of).collect();
    let mut group = 0x5350_0000 | (std::process::id() & 0xffff);
    while used.contains(&group) {
        group = group.wrapping_add(0x1_0000);
    }
    let moves = links.iter().map(|l| {
        let name = attrs::link_name(l).unwrap_or("?").to_owned();
        let msg = LinkUnspec::new_with_index(l.header.index)
            .link_group(group)
            .build();
        async move { set_link(nl, msg, &name, "mark for deletion").await }
    });
    for r in futures::future::join_all(moves).await {
        match r {
            // Gone meanwhile (a veth whose other end's namespace is being freed).
            Err(Error::Kernel(e)) if e.errno() == Some(libc::ENODEV) => {}
            other => other?,
        }
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    nl.ack(RouteNetlinkMessage::DelLink(msg), 0, || {
        format!("delete {} links (group {group:#x})", links.len())
    })
    .await?;
    Ok(())
}

/// Unplugs ports: deletes their `tap…` host ends (the namespace ends go with them).
pub async fn unplug(nl: &Netlink, port_ids: &[String], changes: &mut Vec<Change>) -> Result<()> {
    let mut doomed = Vec::new();
    for id in port_ids {
        let tap = tap_name(id);
        if let Some(l) = nl.link_by_name(&tap)? {
            doomed.push(l);
            changes.push(Change::new(
                format!("veth {tap}"),
                "deleted (with its peer)",
            ));
        }
    }
    delete_links(nl, &doomed).await
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
                changes.push(Change::new(format!("link {pname}"), "deleted"));
            }
        }
        doomed.push((*bridge).clone());
        changes.push(Change::new(format!("bridge {name}"), "deleted"));
    }
    delete_links(nl, &doomed).await?;
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
            Ok(()) => changes.push(Change::new(format!("namespace {name}"), "deleted")),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
