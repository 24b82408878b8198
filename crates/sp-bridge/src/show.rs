//! What is there: every bridge with its ports, VXLAN options and forwarding entries.

use netlink_packet_route::link::{BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVxlan};
use serde::Serialize;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;

use crate::l2pop::{fdb_entries, FdbEntry};
use crate::network::KERNEL_VXLAN_PORT;
use crate::Result;

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
    pub port: u16,
    pub proxy: bool,
    pub learning: bool,
    pub group: Option<String>,
    pub fdb: Vec<FdbEntry>,
}

/// Every bridge of the handle's namespace.
pub async fn show(nl: &Netlink) -> Result<Vec<BridgeView>> {
    let links = nl.links()?;
    let addrs = nl.addresses()?;
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.header.index == i)
            .and_then(attrs::link_name)
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for br in links
        .iter()
        .filter(|l| attrs::link_kind(l) == Some(&InfoKind::Bridge))
    {
        let name = attrs::link_name(br).unwrap_or_default().to_owned();
        let (mut forward_delay, mut stp) = (None, false);
        if let Some(InfoData::Bridge(opts)) = attrs::link_data(br) {
            for o in opts {
                match o {
                    InfoBridge::ForwardDelay(d) => forward_delay = Some(*d),
                    InfoBridge::StpState(s) => stp = *s != BridgeStpState::Disabled,
                    _ => {}
                }
            }
        }
        let mut ports = Vec::new();
        for p in links
            .iter()
            .filter(|l| attrs::link_master(l) == Some(br.header.index))
        {
            let mut vxlan = None;
            if let Some(InfoData::Vxlan(opts)) = attrs::link_data(p) {
                let mut v = VxlanView {
                    vni: None,
                    dev: None,
                    port: KERNEL_VXLAN_PORT,
                    proxy: false,
                    learning: false,
                    group: None,
                    fdb: vec![],
                };
                for o in opts {
                    match o {
                        InfoVxlan::Id(i) => v.vni = Some(*i),
                        InfoVxlan::Link(i) => v.dev = name_of(*i),
                        InfoVxlan::Port(p) => v.port = *p,
                        InfoVxlan::Proxy(b) => v.proxy = *b,
                        InfoVxlan::Learning(b) => v.learning = *b,
                        InfoVxlan::Group(g) if !g.is_unspecified() => v.group = Some(g.to_string()),
                        InfoVxlan::Group6(g) if !g.is_unspecified() => {
                            v.group = Some(g.to_string())
                        }
                        _ => {}
                    }
                }
                if let Some(vni) = v.vni {
                    v.fdb = fdb_entries(nl, vni).await?;
                }
                vxlan = Some(v);
            }
            ports.push(PortView {
                name: attrs::link_name(p).unwrap_or_default().to_owned(),
                kind: attrs::link_kind(p).map_or("device".into(), |k| k.to_string()),
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
            forward_delay,
            stp,
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
