//! What is there: every bridge with its ports, VXLAN options and forwarding entries.

use serde::Serialize;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;

use netlink_packet_route::AddressFamily;

use crate::Result;
use sp_kernel::attrs::{entries_of, FdbEntry, NeighEntry};

#[derive(Debug, Clone, Serialize)]
pub struct BridgeView {
    pub name: String,
    pub index: u32,
    /// Neutron's reading of `brq…` names.
    pub network_id_prefix: Option<String>,
    pub up: bool,
    pub mtu: Option<u32>,
    pub forward_delay: Option<u32>,
    pub stp: bool,
    pub ipv6_disabled: Option<bool>,
    pub addresses: Vec<String>,
    pub ports: Vec<PortView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortView {
    pub name: String,
    /// `veth`, `vxlan`, `tun`… or `device` for a physical NIC.
    pub kind: String,
    pub up: bool,
    pub mtu: Option<u32>,
    pub vxlan: Option<VxlanView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VxlanView {
    pub vni: Option<u32>,
    pub dev: Option<String>,
    /// The local VTEP address (`local` of `ip link add … type vxlan`).
    pub local: Option<String>,
    pub port: u16,
    pub proxy: bool,
    pub learning: bool,
    pub group: Option<String>,
    pub fdb: Vec<FdbEntry>,
    /// IP neighbours on the device: l2population's permanent ARP entries.
    pub neighbours: Vec<NeighEntry>,
}

/// Every bridge of the handle's namespace.
pub fn show(nl: &Netlink) -> Result<Vec<BridgeView>> {
    let links = nl.links()?;
    let addrs = nl.addresses()?;
    // One dump of each table for every VXLAN device, only when there is one.
    let (fdb, neigh) = if links.iter().any(|l| attrs::vxlan(l).is_some()) {
        let mut neigh = nl.neighbours(AddressFamily::Inet)?;
        neigh.extend(nl.neighbours(AddressFamily::Inet6)?);
        (nl.neighbours(AddressFamily::Bridge)?, neigh)
    } else {
        (vec![], vec![])
    };
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.header.index == i)
            .and_then(attrs::link_name)
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for (br, opts) in links.iter().filter_map(|l| Some((l, attrs::bridge(l)?))) {
        let name = attrs::link_name(br).unwrap_or_default().to_owned();
        let mut ports = Vec::new();
        for p in links
            .iter()
            .filter(|l| attrs::link_master(l) == Some(br.header.index))
        {
            let mut vxlan = None;
            if let Some(data) = attrs::vxlan(p) {
                let (fdb, neighbours) = entries_of(p.header.index, &fdb, &neigh);
                vxlan = Some(VxlanView {
                    vni: data.vni,
                    dev: data.dev.and_then(name_of),
                    local: data.local.map(|ip| ip.to_string()),
                    port: data.port_or_default(),
                    proxy: data.proxy.unwrap_or(false),
                    learning: data.learning.unwrap_or(false),
                    group: data.group.map(|g| g.to_string()),
                    fdb,
                    neighbours,
                });
            }
            ports.push(PortView {
                name: attrs::link_name(p).unwrap_or_default().to_owned(),
                kind: attrs::link_kind_word(p),
                up: attrs::link_is_up(p),
                mtu: attrs::link_mtu(p),
                vxlan,
            });
        }
        out.push(BridgeView {
            network_id_prefix: match sp_neutron::classify_device(&name) {
                Some(sp_neutron::DeviceRole::NetworkBridge { network_id_prefix }) => {
                    Some(network_id_prefix)
                }
                _ => None,
            },
            ipv6_disabled: netns::read_net_sysctl(&format!("ipv6/conf/{name}/disable_ipv6"))
                .ok()
                .map(|v| v == "1"),
            index: br.header.index,
            up: attrs::link_is_up(br),
            mtu: attrs::link_mtu(br),
            forward_delay: opts.forward_delay,
            stp: opts.stp_on(),
            addresses: addrs
                .iter()
                .filter(|a| a.header.index == br.header.index)
                .filter_map(|a| Some(format!("{}/{}", attrs::address_ip(a)?, a.header.prefix_len)))
                .collect(),
            ports,
            name,
        });
    }
    Ok(out)
}
