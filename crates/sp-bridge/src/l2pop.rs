//! l2population: how a VXLAN device learns, from the agent rather than by flooding,
//! where the other nodes and their ports are.
//!
//! | entry | what the agent runs | here |
//! |---|---|---|
//! | flood, per remote VTEP | `bridge fdb append 00:00:00:00:00:00 dev vxlan-N dst VTEP` | [`flood_add`] |
//! | per remote port | `ip neigh replace IP lladdr MAC dev vxlan-N nud permanent` + `bridge fdb replace MAC dev vxlan-N dst VTEP` | [`port_add`] |
//! | removal | `bridge fdb del …`, `ip neigh del …` | [`flood_del`], [`port_del`] |
//!
//! The flood entry must be *appended* (several VTEPs share the all-zeros MAC): the
//! message carries `NLM_F_APPEND`, which rtnetlink's builder cannot (its issue #60).

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;
use sp_neutron::vxlan_name;

use sp_kernel::links::{require_link, Links};

use sp_kernel::steps::RolledBack;

use crate::{Change, Error, Object, Result, Setting};

/// The all-zeros MAC of flood entries.
pub const FLOOD_MAC: [u8; 6] = [0; 6];

pub use sp_kernel::attrs::{FdbEntry, NeighEntry};

use sp_kernel::attrs::mac_text as mac_str;

fn ip_attr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// An `AF_BRIDGE` FDB message on `ifindex` for `self` (the VXLAN device's own table).
fn fdb_message(ifindex: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(ip_attr(dst)));
    m
}

/// A permanent IP neighbour on `ifindex`.
fn neigh_message(ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(ip_attr(ip)));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

/// A dumped neighbour as a request that puts it back: its header, destination and
/// hardware address (the dump's cache data is not for requests).
fn as_request(old: NeighbourMessage) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header = old.header;
    m.attributes = old
        .attributes
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                NeighbourAttribute::Destination(_) | NeighbourAttribute::LinkLayerAddress(_)
            )
        })
        .collect();
    m
}

/// The FDB entries of `vxlan-N` (`bridge fdb show dev vxlan-N`).
pub async fn fdb_entries(nl: &Netlink, vni: u32) -> Result<Vec<FdbEntry>> {
    let link = require_link(nl, &vxlan_name(vni))?;
    let all = nl.neighbours(AddressFamily::Bridge)?;
    Ok(attrs::entries_of(link.header.index, &all, &[]).0)
}

/// Whether l2population's (permanent) entry `mac → dst` is on `vxlan-N`. An entry the
/// device learned from traffic does not count: it ages out, and `replace` makes it ours.
async fn has_fdb(nl: &Netlink, vni: u32, mac: [u8; 6], dst: IpAddr) -> Result<bool> {
    let want = mac_str(&mac);
    Ok(fdb_entries(nl, vni)
        .await?
        .iter()
        .any(|e| e.permanent && e.mac == want && e.dst == Some(dst)))
}

/// Adds an FDB entry `mac → vtep` on `vxlan-N` unless present, with `flags`
/// (`NLM_F_APPEND` for flood entries, `NLM_F_REPLACE` for port entries).
async fn fdb_put(
    nl: &Netlink,
    vni: u32,
    mac: [u8; 6],
    vtep: IpAddr,
    flags: u16,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let dev = vxlan_name(vni);
    let link = require_link(nl, &dev)?;
    if has_fdb(nl, vni, mac, vtep).await? {
        return Ok(());
    }
    let (verb, done) = if flags & NLM_F_APPEND != 0 {
        ("append", "appended")
    } else {
        ("replace", "replaced")
    };
    let msg = fdb_message(link.header.index, mac, vtep);
    nl.ack(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | flags,
        || format!("bridge fdb {verb} {} dev {dev} dst {vtep}", mac_str(&mac)),
    )
    .await?;
    changes.push(Change::new(fdb_object(dev, mac, vtep), done));
    Ok(())
}

/// `bridge fdb append 00:00:00:00:00:00 dev vxlan-N dst VTEP`, unless present.
pub async fn flood_add(
    nl: &Netlink,
    vni: u32,
    vtep: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    fdb_put(nl, vni, FLOOD_MAC, vtep, NLM_F_APPEND, changes).await
}

/// `bridge fdb del 00:00:00:00:00:00 dev vxlan-N dst VTEP`, if present.
pub async fn flood_del(
    nl: &Netlink,
    vni: u32,
    vtep: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    fdb_del(nl, vni, FLOOD_MAC, vtep, changes).await
}

/// `bridge fdb del MAC dev vxlan-N dst VTEP`, if present.
pub async fn fdb_del(
    nl: &Netlink,
    vni: u32,
    mac: [u8; 6],
    dst: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let dev = vxlan_name(vni);
    let link = require_link(nl, &dev)?;
    if !has_fdb(nl, vni, mac, dst).await? {
        return Ok(());
    }
    let msg = fdb_message(link.header.index, mac, dst);
    nl.ack(RouteNetlinkMessage::DelNeighbour(msg), 0, || {
        format!("bridge fdb del {} dev {dev} dst {dst}", mac_str(&mac))
    })
    .await?;
    changes.push(Change::new(fdb_object(dev, mac, dst), "deleted"));
    Ok(())
}

fn fdb_object(device: String, mac: [u8; 6], dst: IpAddr) -> Object {
    Object::Fdb {
        device,
        mac: mac_str(&mac),
        dst,
    }
}

/// The permanent neighbour entry for `ip` on `ifindex`, if any.
async fn neighbour(nl: &Netlink, ifindex: u32, ip: IpAddr) -> Result<Option<NeighbourMessage>> {
    let all: Vec<NeighbourMessage> = nl
        .handle()
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| sp_kernel::Error::netlink("dump neighbours", e))?;
    Ok(all
        .into_iter()
        .find(|n| n.header.ifindex == ifindex && attrs::neighbour_dst(n) == Some(ip)))
}

/// `ip neigh replace IP lladdr MAC dev vxlan-N nud permanent`, unless it is so.
pub async fn neigh_add(
    nl: &Netlink,
    vni: u32,
    ip: IpAddr,
    mac: [u8; 6],
    changes: &mut Vec<Change>,
) -> Result<()> {
    let dev = vxlan_name(vni);
    let link = require_link(nl, &dev)?;
    let current = neighbour(nl, link.header.index, ip).await?;
    if current.as_ref().is_some_and(|n| {
        attrs::neighbour_mac(n) == Some(&mac[..]) && n.header.state == NeighbourState::Permanent
    }) {
        return Ok(());
    }
    let msg = neigh_message(link.header.index, ip, mac);
    nl.ack(
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
        || {
            format!(
                "ip neigh replace {ip} lladdr {} dev {dev} nud permanent",
                mac_str(&mac)
            )
        },
    )
    .await?;
    changes.push(Change::set(
        Object::Neighbour { device: dev, ip },
        Setting::Lladdr {
            value: mac_str(&mac),
        },
    ));
    Ok(())
}

/// `ip neigh del IP dev vxlan-N`, if present.
pub async fn neigh_del(
    nl: &Netlink,
    vni: u32,
    ip: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let dev = vxlan_name(vni);
    let link = require_link(nl, &dev)?;
    if let Some(n) = neighbour(nl, link.header.index, ip).await? {
        nl.ack(RouteNetlinkMessage::DelNeighbour(n), 0, || {
            format!("ip neigh del {ip} dev {dev}")
        })
        .await?;
        changes.push(Change::new(
            Object::Neighbour { device: dev, ip },
            "deleted",
        ));
    }
    Ok(())
}

/// `bridge fdb replace MAC dev vxlan-N dst VTEP`, unless present.
pub async fn fdb_add(
    nl: &Netlink,
    vni: u32,
    mac: [u8; 6],
    vtep: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    fdb_put(nl, vni, mac, vtep, NLM_F_REPLACE, changes).await
}

/// A remote port, as the agent adds it: [`neigh_add`] and [`fdb_add`].
pub async fn port_add(
    nl: &Netlink,
    vni: u32,
    mac: [u8; 6],
    ip: IpAddr,
    vtep: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let link = require_link(nl, &vxlan_name(vni))?;
    let before = neighbour(nl, link.header.index, ip).await?;
    let mut made = Vec::new();
    neigh_add(nl, vni, ip, mac, &mut made).await?;
    if let Err(cause) = fdb_add(nl, vni, mac, vtep, &mut made).await {
        // Nothing half-done: the neighbour goes back to what it was.
        let undo = match (made.is_empty(), before) {
            (true, _) => Ok(()),
            (false, Some(old)) => nl
                .ack(
                    RouteNetlinkMessage::NewNeighbour(as_request(old)),
                    NLM_F_CREATE | NLM_F_REPLACE,
                    || format!("put neighbour {ip} on vxlan-{vni} back"),
                )
                .await
                .map_err(Into::into),
            (false, None) => neigh_del(nl, vni, ip, &mut Vec::new()).await,
        };
        return Err(Error::RolledBack(Box::new(RolledBack {
            cause,
            rollback: undo.err().into_iter().collect(),
        })));
    }
    changes.extend(made);
    Ok(())
}

/// Removes a remote port: [`neigh_del`] and [`fdb_del`].
pub async fn port_del(
    nl: &Netlink,
    vni: u32,
    mac: [u8; 6],
    ip: IpAddr,
    vtep: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    neigh_del(nl, vni, ip, changes).await?;
    fdb_del(nl, vni, mac, vtep, changes).await
}

/// Every l2population entry present in the namespace, read with one dump of each
/// table: for deciding, across many VXLAN devices, which entries are missing without
/// a dump per entry.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (device, MAC, destination) of permanent FDB entries.
    pub fdb: std::collections::HashSet<(String, String, IpAddr)>,
    /// (device, IP, MAC) of permanent neighbours.
    pub neigh: std::collections::HashSet<(String, IpAddr, String)>,
}

impl Snapshot {
    /// The entries of the namespace `nl` is in, with the links (for their names) read
    /// by the caller: plain reads on the handle's read socket, no runtime involved.
    pub fn read_with(nl: &Netlink, links: &Links) -> Result<Self> {
        let name = |i: u32| links.name(i).map(str::to_owned);
        let mut snap = Snapshot::default();
        for n in nl.neighbours(AddressFamily::Bridge)? {
            if let (Some(dev), Some(mac), Some(dst)) = (
                name(n.header.ifindex),
                attrs::neighbour_mac(&n),
                attrs::neighbour_dst(&n),
            ) {
                if attrs::neighbour_is_permanent(&n) {
                    snap.fdb.insert((dev, mac_str(mac), dst));
                }
            }
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for n in nl.neighbours(family)? {
                if let (Some(dev), Some(mac), Some(ip)) = (
                    name(n.header.ifindex),
                    attrs::neighbour_mac(&n),
                    attrs::neighbour_dst(&n),
                ) {
                    if attrs::neighbour_is_permanent(&n) {
                        snap.neigh.insert((dev, ip, mac_str(mac)));
                    }
                }
            }
        }
        Ok(snap)
    }

    /// The flood entry towards `vtep` on `vxlan-N` is there.
    pub fn has_flood(&self, vni: u32, vtep: IpAddr) -> bool {
        self.fdb
            .contains(&(vxlan_name(vni), mac_str(&FLOOD_MAC), vtep))
    }

    /// A remote port's FDB entry and permanent neighbour on `vxlan-N` are there.
    pub fn has_port(&self, vni: u32, mac: [u8; 6], ip: IpAddr, vtep: IpAddr) -> bool {
        let dev = vxlan_name(vni);
        self.fdb.contains(&(dev.clone(), mac_str(&mac), vtep))
            && self.neigh.contains(&(dev, ip, mac_str(&mac)))
    }
}
