//! Reading rtnetlink messages: the attributes every caller needs, in one place.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

/// `IFLA_IFNAME`.
pub fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// `IFLA_INFO_KIND` (`veth`, `bridge`, `vxlan`…); `None` for devices without one.
pub fn link_kind(l: &LinkMessage) -> Option<&InfoKind> {
    link_info(l).find_map(|i| match i {
        LinkInfo::Kind(k) => Some(k),
        _ => None,
    })
}

/// `IFLA_INFO_DATA`.
pub fn link_data(l: &LinkMessage) -> Option<&InfoData> {
    link_info(l).find_map(|i| match i {
        LinkInfo::Data(d) => Some(d),
        _ => None,
    })
}

fn link_info(l: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    l.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos.iter()),
            _ => None,
        })
        .flatten()
}

/// `IFLA_MASTER`: the index of the bridge (or bond…) the link is enslaved to.
pub fn link_master(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// `IFLA_MTU`.
pub fn link_mtu(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// `IFLA_ADDRESS`: the hardware address.
pub fn link_mac(l: &LinkMessage) -> Option<&[u8]> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// `IFLA_LINK` (a veth's peer index) and `IFLA_LINK_NETNSID` (the peer's namespace id,
/// absent when the peer is in the same namespace).
pub fn link_peer(l: &LinkMessage) -> (Option<u32>, Option<i32>) {
    let mut peer = (None, None);
    for a in &l.attributes {
        match a {
            LinkAttribute::Link(i) => peer.0 = Some(*i),
            LinkAttribute::LinkNetNsId(id) => peer.1 = Some(*id),
            _ => {}
        }
    }
    peer
}

/// Administratively up (`IFF_UP`).
pub fn link_is_up(l: &LinkMessage) -> bool {
    l.header.flags.contains(LinkFlags::Up)
}

/// The address of an address message: `IFA_LOCAL`, else `IFA_ADDRESS` (as iproute2).
pub fn address_ip(a: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// An IP from a route attribute.
pub fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some((*ip).into()),
        RouteAddress::Inet6(ip) => Some((*ip).into()),
        _ => None,
    }
}

/// `RTA_TABLE`, else the header's table.
pub fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(r.header.table as u32)
}

/// `RTA_OIF`.
pub fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// `RTA_GATEWAY`.
pub fn route_gateway(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_ip(g),
        _ => None,
    })
}

/// `RTA_PRIORITY` (the metric), 0 when absent.
pub fn route_metric(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0)
}

/// `NDA_LLADDR`.
pub fn neighbour_mac(n: &NeighbourMessage) -> Option<&[u8]> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// `NDA_DST`. For AF_BRIDGE (FDB) dumps the kernel's bytes arrive undecoded: 4 or 16
/// bytes are read as IPv4/IPv6 here.
pub fn neighbour_dst(n: &NeighbourMessage) -> Option<IpAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some((*ip).into()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some((*ip).into()),
        NeighbourAttribute::Destination(NeighbourAddress::Other(raw)) => match raw.len() {
            4 => Some(<[u8; 4]>::try_from(raw.as_slice()).ok()?.into()),
            16 => Some(<[u8; 16]>::try_from(raw.as_slice()).ok()?.into()),
            _ => None,
        },
        _ => None,
    })
}
