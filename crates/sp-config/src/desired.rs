//! The desired state of every node, derived from the topology and the guide's files —
//! what each node's agents would have made. Pure: the orchestration compares it with
//! what is there and realises the difference.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use sp_lvm::size::Size;
use sp_lvm::vg::VgName;
use sp_names::{IfName, Mac, NeutronId, NsName};
use sp_neutron::dhcp::{DhcpHost, DhcpSubnet, Dnsmasq};
use sp_neutron::l3::{FloatingIp, RouterNat};
use sp_neutron::{bridge_name, qdhcp_namespace, qrouter_namespace, PortKind};

use crate::guide::GuideConfig;
use crate::topology::{NetworkType, Role, Topology};
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
    pub cinder: Option<CinderPlan>,
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

/// The desired state of every node, or every validation problem (nothing is planned
/// from a topology that cannot be realised).
pub fn plan(
    t: &Topology,
    cfg: &GuideConfig,
    state_path: &Path,
) -> Result<Vec<NodePlan>, Vec<String>> {
    let errs = validate(t, cfg);
    if !errs.is_empty() {
        return Err(errs);
    }
    let network_node = t
        .nodes
        .iter()
        .find(|n| n.roles.contains(&Role::Network))
        .expect("validated: a network node exists");
    let group: IpAddr = cfg
        .agent
        .vxlan_group
        .as_deref()
        .unwrap_or(DEFAULT_VXLAN_GROUP)
        .parse()
        .unwrap_or_else(|_| DEFAULT_VXLAN_GROUP.parse().expect("literal"));

    // Every port, on the node that holds it.
    let mut ports: Vec<(String, PortPlan)> = Vec::new();
    for r in &t.routers {
        let ns = nsname(qrouter_namespace(&r.id));
        let legs = r
            .gateway
            .iter()
            .map(|g| (g, PortKind::RouterGateway))
            .chain(r.interfaces.iter().map(|i| (i, PortKind::RouterInternal)));
        for (leg, kind) in legs {
            let net = t.network(&leg.network).expect("validated");
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
                network_node.name.clone(),
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
    for n in t.networks.iter().filter(|n| n.subnet.enable_dhcp) {
        let (port_id, mac) = dhcp_port(&n.id);
        let used: BTreeSet<IpAddr> = ports
            .iter()
            .filter(|(_, p)| p.network_id == n.id)
            .map(|(_, p)| p.ip)
            .chain(
                t.instances
                    .iter()
                    .filter(|i| i.network == n.name)
                    .map(|i| i.ip),
            )
            .chain(n.subnet.gateway)
            .collect();
        let dhcp_ip = n
            .subnet
            .cidr
            .hosts()
            .find(|ip| !used.contains(ip) && crate::topology::in_pool(&n.subnet, *ip))
            .expect("validated subnets have room");
        let mut addresses = vec![with_prefix(dhcp_ip, &n.subnet.cidr)];
        if cfg.dhcp.enable_isolated_metadata {
            addresses.push(METADATA_CIDR.parse().expect("literal"));
        }
        let isolated = !t
            .routers
            .iter()
            .any(|r| r.interfaces.iter().any(|i| i.network == n.name));
        let inner = PortKind::Dhcp.device(&port_id);
        let mut hosts: Vec<DhcpHost> = ports
            .iter()
            .filter(|(_, p)| p.network_id == n.id)
            .map(|(_, p)| DhcpHost {
                mac: p.mac.to_string(),
                ip: p.ip,
            })
            .chain(
                t.instances
                    .iter()
                    .filter(|i| i.network == n.name)
                    .map(|i| DhcpHost {
                        mac: i.mac.to_string(),
                        ip: i.ip,
                    }),
            )
            .collect();
        hosts.push(DhcpHost {
            mac: mac.to_string(),
            ip: dhcp_ip,
        });
        dhcp.push(Dnsmasq {
            network_id: n.id.to_string(),
            dir: state_path.join("dhcp").join(&n.id),
            interface: inner,
            subnets: vec![DhcpSubnet {
                cidr: n.subnet.cidr,
                gateway: n.subnet.gateway,
                dns_nameservers: n.subnet.dns_nameservers.clone(),
                isolated,
                dhcp_ip,
            }],
            hosts,
            // Read below the configuration root, like every other file.
            conf_file: cfg
                .dhcp
                .dnsmasq_config_file
                .as_deref()
                .map(|f| crate::guide::reroot(&cfg.root, f)),
            isolated_metadata: cfg.dhcp.enable_isolated_metadata,
        });
        ports.push((
            network_node.name.clone(),
            PortPlan {
                port_id,
                kind: PortKind::Dhcp,
                network_id: n.id.clone(),
                namespace: nsname(qdhcp_namespace(&n.id)),
                mac,
                addresses: Some(addresses),
                ip: dhcp_ip,
                gateway: n.subnet.gateway,
                ip_forward: false,
            },
        ));
    }
    for i in &t.instances {
        let net = t.network(&i.network).expect("validated");
        ports.push((
            i.node.clone(),
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

    let ext_bridge = cfg.l3.external_network_bridge.as_str();
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for node in &t.nodes {
        let mine: Vec<PortPlan> = ports
            .iter()
            .filter(|(n, _)| *n == node.name)
            .map(|(_, p)| p.clone())
            .collect();
        let net_ids: BTreeSet<&str> = mine.iter().map(|p| p.network_id.as_str()).collect();
        // With `external_network_bridge`, the networks the network node's routers have
        // their gateway on live on that OVS bridge there.
        let on_ovs = |net: &str| {
            !ext_bridge.is_empty()
                && node.name == network_node.name
                && mine
                    .iter()
                    .any(|p| p.network_id == net && p.kind == PortKind::RouterGateway)
        };
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
                vxlan: (n.network_type == NetworkType::Vxlan && !on_ovs(&n.id)).then(|| {
                    VxlanPlan {
                        vni: n.segmentation_id.expect("validated"),
                        local_ip: node.tunnel_ip,
                        l2_population: cfg.agent.l2_population,
                        group: (!cfg.agent.l2_population).then_some(group),
                    }
                }),
                uplink: n
                    .physical_network
                    .as_ref()
                    .and_then(|p| cfg.agent.physical_interface_mappings.get(p).cloned()),
            })
            .collect();
        let mut l2pop = Vec::new();
        if cfg.agent.l2_population {
            for net in networks
                .iter()
                .filter_map(|n| n.vxlan.as_ref().map(|v| (n, v)))
            {
                let (n, v) = net;
                for other in t.nodes.iter().filter(|o| o.name != node.name) {
                    let theirs: Vec<&PortPlan> = ports
                        .iter()
                        .filter(|(o, p)| *o == other.name && p.network_id == n.network_id)
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
        let is_network_node = node.name == network_node.name;
        let routers = if is_network_node {
            t.routers
                .iter()
                .filter_map(|r| {
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
                })
                .collect()
        } else {
            vec![]
        };
        out.push(NodePlan {
            node: node.name.clone(),
            tunnel_ip: node.tunnel_ip,
            networks,
            ports: mine,
            l2pop,
            dhcp: if is_network_node {
                dhcp.clone()
            } else {
                vec![]
            },
            routers,
            cinder: t
                .cinder
                .as_ref()
                .filter(|c| c.node == node.name)
                .map(|c| CinderPlan {
                    volume_group: cfg.cinder.volume_group.clone(),
                    size: c.size,
                }),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(out)
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
