//! Reading rtnetlink messages: the attributes every caller needs, in one place.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
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

/// `IFLA_GROUP`: the link's group, 0 (the default group) when absent.
pub fn link_group(l: &LinkMessage) -> u32 {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Group(g) => Some(*g),
            _ => None,
        })
        .unwrap_or(0)
}

/// The kernel's VXLAN UDP port when none is given (what the Liberty agent relies on).
pub const KERNEL_VXLAN_PORT: u16 = 8472;

/// A VXLAN device's settings (`IFLA_INFO_DATA` of kind `vxlan`), as the kernel reports
/// them. The kernel leaves out a group or local address that is unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanData {
    /// `IFLA_VXLAN_ID`.
    pub vni: Option<u32>,
    /// `IFLA_VXLAN_LINK`: the index of the underlying device (`dev`).
    pub dev: Option<u32>,
    /// `IFLA_VXLAN_LOCAL` / `LOCAL6`.
    pub local: Option<IpAddr>,
    /// `IFLA_VXLAN_GROUP` / `GROUP6`: the multicast group or the unicast remote.
    pub group: Option<IpAddr>,
    /// `IFLA_VXLAN_PORT`: the UDP destination port; `None` when not reported.
    pub port: Option<u16>,
    pub learning: Option<bool>,
    pub proxy: Option<bool>,
}

impl VxlanData {
    /// The UDP port, the kernel's default when not reported.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(KERNEL_VXLAN_PORT)
    }
}

/// The VXLAN settings of `l`, when it is a VXLAN device.
pub fn vxlan(l: &LinkMessage) -> Option<VxlanData> {
    let Some(InfoData::Vxlan(opts)) = link_data(l) else {
        return None;
    };
    let mut v = VxlanData::default();
    for o in opts {
        match o {
            InfoVxlan::Id(i) => v.vni = Some(*i),
            InfoVxlan::Link(i) => v.dev = Some(*i),
            InfoVxlan::Local(ip) if !ip.is_unspecified() => v.local = Some((*ip).into()),
            InfoVxlan::Local6(ip) if !ip.is_unspecified() => v.local = Some((*ip).into()),
            InfoVxlan::Group(g) if !g.is_unspecified() => v.group = Some((*g).into()),
            InfoVxlan::Group6(g) if !g.is_unspecified() => v.group = Some((*g).into()),
            InfoVxlan::Port(p) => v.port = Some(*p),
            InfoVxlan::Learning(b) => v.learning = Some(*b),
            InfoVxlan::Proxy(b) => v.proxy = Some(*b),
            _ => {}
        }
    }
    Some(v)
}

/// A bridge's settings (`IFLA_INFO_DATA` of kind `bridge`) that the agent sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeData {
    /// `IFLA_BR_FORWARD_DELAY`, in the kernel's centiseconds.
    pub forward_delay: Option<u32>,
    /// `IFLA_BR_STP_STATE`.
    pub stp: Option<BridgeStpState>,
}

impl BridgeData {
    /// STP is on (any state but disabled).
    pub fn stp_on(&self) -> bool {
        self.stp.is_some_and(|s| s != BridgeStpState::Disabled)
    }
}

/// The bridge settings of `l`: `Some` for a bridge (empty when its data was not
/// reported), `None` for any other link.
pub fn bridge(l: &LinkMessage) -> Option<BridgeData> {
    if link_kind(l) != Some(&InfoKind::Bridge) {
        return None;
    }
    let mut b = BridgeData::default();
    if let Some(InfoData::Bridge(opts)) = link_data(l) {
        for o in opts {
            match o {
                InfoBridge::ForwardDelay(d) => b.forward_delay = Some(*d),
                InfoBridge::StpState(s) => b.stp = Some(*s),
                _ => {}
            }
        }
    }
    Some(b)
}

/// The kind as a word: `veth`, `bridge`, `vxlan`… or `device` for a link without a kind
/// of its own (a NIC).
pub fn link_kind_word(l: &LinkMessage) -> String {
    link_kind(l).map_or_else(|| "device".into(), |k| k.to_string())
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

/// `RTA_DST`.
pub fn route_destination(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => route_ip(d),
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

/// `NUD_PERMANENT`.
const NUD_PERMANENT: u16 = 0x80;

/// Whether a neighbour or FDB entry is permanent: `NUD_PERMANENT` set, whatever else
/// is. Neutron's agents write `nud permanent` through iproute2, which the kernel keeps
/// as 0xc0 (`PERMANENT | NOARP`); an entry made with `NUD_PERMANENT` alone is 0x80.
/// Both are the same entry to the data plane.
pub fn neighbour_is_permanent(n: &NeighbourMessage) -> bool {
    u16::from(n.header.state) & NUD_PERMANENT != 0
}

/// The `NUD_*` bits of a neighbour's state in iproute2's words (`ip neigh`,
/// `bridge fdb`): 0xc0 is `["noarp", "permanent"]`.
pub fn neighbour_state_words(n: &NeighbourMessage) -> Vec<&'static str> {
    const WORDS: [(u16, &str); 8] = [
        (0x01, "incomplete"),
        (0x02, "reachable"),
        (0x04, "stale"),
        (0x08, "delay"),
        (0x10, "probe"),
        (0x20, "failed"),
        (0x40, "noarp"),
        (NUD_PERMANENT, "permanent"),
    ];
    let state = u16::from(n.header.state);
    WORDS
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, w)| *w)
        .collect()
}

/// The `NTF_*` flags of an FDB entry in `bridge fdb`'s words (`self`, `master`,
/// `extern_learn`…).
pub fn neighbour_flag_words(n: &NeighbourMessage) -> Vec<&'static str> {
    const WORDS: [(u8, &str); 8] = [
        (0x01, "use"),
        (0x02, "self"),
        (0x04, "master"),
        (0x08, "proxy"),
        (0x10, "extern_learn"),
        (0x20, "offload"),
        (0x40, "sticky"),
        (0x80, "router"),
    ];
    let flags = n.header.flags.bits();
    WORDS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, w)| *w)
        .collect()
}

/// One forwarding entry of a device (`bridge fdb show dev D`), as the kernel keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FdbEntry {
    pub mac: String,
    pub dst: Option<IpAddr>,
    /// `NUD_PERMANENT` set: l2population's entries (0x80, or the agents' 0xc0
    /// `permanent|noarp`) — [`neighbour_is_permanent`].
    pub permanent: bool,
    /// The `NUD_*` state in iproute2's words: `["noarp", "permanent"]` for 0xc0.
    pub state: Vec<&'static str>,
    /// The `NTF_*` flags (`self`, `master`, `extern_learn`…).
    pub flags: Vec<&'static str>,
}

impl FdbEntry {
    /// The entry of an `AF_BRIDGE` neighbour message; `None` without a MAC.
    pub fn of(n: &NeighbourMessage) -> Option<FdbEntry> {
        Some(FdbEntry {
            mac: mac_text(neighbour_mac(n)?),
            dst: neighbour_dst(n),
            permanent: neighbour_is_permanent(n),
            state: neighbour_state_words(n),
            flags: neighbour_flag_words(n),
        })
    }
}

/// As `bridge fdb` prints it: `MAC dst IP FLAGS STATE`.
impl std::fmt::Display for FdbEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} dst ", self.mac)?;
        match self.dst {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("-")?,
        }
        for w in self.flags.iter().chain(&self.state) {
            write!(f, " {w}")?;
        }
        Ok(())
    }
}

/// One IP neighbour of a device (`ip neigh show dev D`): l2population's are permanent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NeighEntry {
    pub ip: IpAddr,
    pub mac: Option<String>,
    pub permanent: bool,
    pub state: Vec<&'static str>,
}

impl NeighEntry {
    /// The entry of an `AF_INET`/`AF_INET6` neighbour message; `None` without an address.
    pub fn of(n: &NeighbourMessage) -> Option<NeighEntry> {
        Some(NeighEntry {
            ip: neighbour_dst(n)?,
            mac: neighbour_mac(n).map(mac_text),
            permanent: neighbour_is_permanent(n),
            state: neighbour_state_words(n),
        })
    }
}

/// As `ip neigh` prints it: `IP lladdr MAC STATE`.
impl std::fmt::Display for NeighEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lladdr {}",
            self.ip,
            self.mac.as_deref().unwrap_or("-")
        )?;
        for w in &self.state {
            write!(f, " {w}")?;
        }
        Ok(())
    }
}

/// The FDB entries and IP neighbours of device `ifindex`, from a namespace's tables.
pub fn entries_of(
    ifindex: u32,
    fdb: &[NeighbourMessage],
    neigh: &[NeighbourMessage],
) -> (Vec<FdbEntry>, Vec<NeighEntry>) {
    (
        fdb.iter()
            .filter(|n| n.header.ifindex == ifindex)
            .filter_map(FdbEntry::of)
            .collect(),
        neigh
            .iter()
            .filter(|n| n.header.ifindex == ifindex)
            .filter_map(NeighEntry::of)
            .collect(),
    )
}

/// A hardware address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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
