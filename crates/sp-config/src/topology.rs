//! The topology: what the guide creates with `neutron net-create / subnet-create /
//! router-create / router-interface-add / router-gateway-set`, the instances and their
//! floating IPs, the nodes, and the Cinder volume group's size. A TOML file
//! (`docs/topology.md`); built in as the default: the guide's own cloud.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sp_lvm::size::Size;
use sp_names::{Mac, NeutronId, NsName};
use sp_neutron::sg;

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub networks: Vec<Network>,
    #[serde(default)]
    pub routers: Vec<Router>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// Security groups (`neutron security-group-create`, `…-rule-create`); a group
    /// named `default` that is not declared is Neutron's own (see [`Topology::groups`]).
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
    pub cinder: Option<CinderStore>,
}

/// A security group and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub name: String,
    pub id: NeutronId,
    #[serde(default)]
    pub rules: Vec<SecurityGroupRule>,
}

/// A rule as `neutron security-group-rule-create` takes it. Checked by `validate`
/// (ranges only with tcp/udp, ICMP type/code only with icmp, one remote at most, a
/// prefix of the rule's ethertype, a remote group that exists) and made a typed
/// [`sg::Rule`] by [`SecurityGroupRule::typed`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRule {
    pub direction: sg::Direction,
    #[serde(default = "ipv4")]
    pub ethertype: sg::EtherType,
    #[serde(default)]
    pub protocol: sg::Protocol,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote_ip_prefix: Option<IpNet>,
    /// The name of a group whose members are the remote end.
    pub remote_group: Option<String>,
}

fn ipv4() -> sg::EtherType {
    sg::EtherType::Ipv4
}

impl SecurityGroupRule {
    /// What is wrong with the rule, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ranged = matches!(self.protocol, sg::Protocol::Tcp | sg::Protocol::Udp);
        match (self.port_range_min, self.port_range_max) {
            (None, None) => {}
            _ if !ranged => out.push("a port range needs protocol tcp or udp".into()),
            (None, Some(_)) => out.push("port_range_max without port_range_min".into()),
            (Some(a), Some(b)) if a > b => {
                out.push(format!("port_range_min {a} above port_range_max {b}"))
            }
            (Some(0), _) => out.push("port 0".into()),
            _ => {}
        }
        if self.protocol != sg::Protocol::Icmp
            && (self.icmp_type.is_some() || self.icmp_code.is_some())
        {
            out.push("icmp_type/icmp_code need protocol icmp".into());
        }
        if self.icmp_code.is_some() && self.icmp_type.is_none() {
            out.push("icmp_code without icmp_type".into());
        }
        if self.remote_ip_prefix.is_some() && self.remote_group.is_some() {
            out.push("remote_ip_prefix and remote_group both given".into());
        }
        if let Some(p) = self.remote_ip_prefix {
            if sg::EtherType::of(&p.addr()) != self.ethertype {
                out.push(format!(
                    "remote_ip_prefix {p} is not {}",
                    self.ethertype.as_str()
                ));
            }
        }
        out
    }

    /// The typed rule, with the remote group's id (`group_id` of `remote_group`).
    pub fn typed(&self, group_id: impl Fn(&str) -> Option<NeutronId>) -> Option<sg::Rule> {
        let remote = match (&self.remote_ip_prefix, &self.remote_group) {
            (Some(p), _) if p.prefix_len() > 0 => sg::Remote::Prefix(p.trunc()),
            (Some(_), _) | (None, None) => sg::Remote::Any,
            (None, Some(g)) => sg::Remote::Group(group_id(g)?),
        };
        Some(sg::Rule {
            direction: self.direction,
            ethertype: self.ethertype,
            protocol: self.protocol,
            ports: self
                .port_range_min
                .map(|a| (a, self.port_range_max.unwrap_or(a))),
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            remote,
        })
    }
}

/// The id Neutron's own `default` group has here when the topology does not declare
/// one.
pub const DEFAULT_GROUP_ID: &str = "de4a017e-0000-4000-8000-000000000000";

fn default_groups() -> Vec<String> {
    vec!["default".into()]
}

/// An allowed address pair: a host address or a prefix, and the MAC it comes with
/// (the port's when unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedAddressPair {
    pub ip_address: HostOrNet,
    pub mac_address: Option<Mac>,
}

/// An address (`10.0.0.5`, a host prefix) or a prefix (`10.0.0.0/24`), as Neutron
/// takes `ip_address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostOrNet(pub IpNet);

impl TryFrom<String> for HostOrNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
            (Ok(n), _) => Ok(HostOrNet(n.trunc())),
            (_, Ok(a)) => Ok(HostOrNet(IpNet::from(a))),
            _ => Err(format!("{s:?} is neither an address nor a prefix")),
        }
    }
}

impl From<HostOrNet> for String {
    fn from(h: HostOrNet) -> String {
        h.0.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the L3 and DHCP agents (and, in the guide, Cinder): the controller.
    Network,
    /// Runs instances.
    Compute,
    /// Holds the Cinder volume group.
    Volume,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Network => "network",
            Role::Compute => "compute",
            Role::Volume => "volume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub roles: Vec<Role>,
    /// The node's `[vxlan] local_ip` (its address on the management/tunnel network).
    pub tunnel_ip: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    Flat,
    Vxlan,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub id: NeutronId,
    #[serde(rename = "type")]
    pub network_type: NetworkType,
    /// Flat networks: the physical network (`public`), mapped to a NIC by
    /// `physical_interface_mappings`.
    pub physical_network: Option<String>,
    /// VXLAN networks: the VNI.
    pub segmentation_id: Option<u32>,
    /// `--router:external`.
    #[serde(default)]
    pub external: bool,
    pub subnet: Subnet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    #[serde(default = "yes")]
    pub enable_dhcp: bool,
    #[serde(default)]
    pub dns_nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub allocation_pools: Vec<Pool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Router {
    pub name: String,
    pub id: NeutronId,
    /// `router-gateway-set`: the external network and the router's address on it.
    pub gateway: Option<RouterPort>,
    /// `router-interface-add`: one leg per tenant subnet.
    #[serde(default)]
    pub interfaces: Vec<RouterPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterPort {
    pub network: String,
    pub ip: IpAddr,
    pub port_id: NeutronId,
    /// A unicast MAC (`fa:16:3e:…`); a stable one derived from the port id when absent.
    pub mac: Option<Mac>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Also the name of the instance's namespace in the sandbox (a `/run/netns` file).
    pub name: NsName,
    pub node: String,
    pub network: String,
    pub port_id: NeutronId,
    pub mac: Mac,
    pub ip: IpAddr,
    pub floating_ip: Option<IpAddr>,
    /// The groups of its port, by name (Neutron's `default` when not given).
    #[serde(default = "default_groups")]
    pub security_groups: Vec<String>,
    /// Off: no firewall, no anti-spoofing on the port.
    #[serde(default = "yes")]
    pub port_security_enabled: bool,
    #[serde(default)]
    pub allowed_address_pairs: Vec<AllowedAddressPair>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CinderStore {
    /// The node holding the volume group.
    pub node: String,
    /// Size of the backing store (`20G`), in the units `loopvg` takes.
    pub size: Size,
}

impl Topology {
    /// Parses a topology file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Topology, String> {
        toml::from_str(text).map_err(|e| format!("{file}: {e}"))
    }

    /// Each network by name, the first of a name where two share it (validation names
    /// those): built once for the lookups of every router leg and instance, which a
    /// walk of the networks made quadratic (2 M name compares at 1000 routers).
    pub fn networks_by_name(&self) -> std::collections::HashMap<&str, &Network> {
        let mut by_name = std::collections::HashMap::with_capacity(self.networks.len());
        for n in &self.networks {
            by_name.entry(n.name.as_str()).or_insert(n);
        }
        by_name
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The guide's cloud: controller 10.0.0.101 and compute 10.0.0.102; ext-net (flat on
    /// `public`, 10.0.0.0/24, gateway 10.0.0.1, pool .200–.250, no DHCP); demo-net
    /// (VXLAN, 192.168.0.0/24, gateway .1, DNS 8.8.8.8); demo-router with qr 192.168.0.1
    /// and qg 10.0.0.200; vm1 on compute with a floating IP; cinder-volumes 20G.
    /// The security groups: those declared and, when none is named `default`,
    /// Neutron's own default group (all egress, IPv4 and IPv6; ingress from its
    /// members), which every tenant has.
    pub fn groups(&self) -> Vec<SecurityGroup> {
        let mut out = self.security_groups.clone();
        if !out.iter().any(|g| g.name == "default") {
            out.push(SecurityGroup {
                name: "default".into(),
                id: DEFAULT_GROUP_ID.parse().expect("literal"),
                rules: default_rules(),
            });
        }
        out
    }

    pub fn guide() -> Topology {
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        let uuid = |s: &str| s.parse::<NeutronId>().expect("literal");
        let mac = |s: &str| s.parse::<Mac>().expect("literal");
        Topology {
            nodes: vec![
                Node {
                    name: "controller".into(),
                    roles: vec![Role::Network, Role::Volume],
                    tunnel_ip: ip("10.0.0.101"),
                },
                Node {
                    name: "compute".into(),
                    roles: vec![Role::Compute],
                    tunnel_ip: ip("10.0.0.102"),
                },
            ],
            networks: vec![
                Network {
                    name: "ext-net".into(),
                    id: uuid("78983ca2-77e3-4cdf-9747-ae1b34addeb7"),
                    network_type: NetworkType::Flat,
                    physical_network: Some("public".into()),
                    segmentation_id: None,
                    external: true,
                    subnet: Subnet {
                        cidr: "10.0.0.0/24".parse().expect("literal"),
                        gateway: Some(ip("10.0.0.1")),
                        enable_dhcp: false,
                        dns_nameservers: vec![],
                        allocation_pools: vec![Pool {
                            start: ip("10.0.0.200"),
                            end: ip("10.0.0.250"),
                        }],
                    },
                },
                Network {
                    name: "demo-net".into(),
                    id: uuid("5b6a8b87-fd03-46b5-a968-72bac5091b7c"),
                    network_type: NetworkType::Vxlan,
                    physical_network: None,
                    segmentation_id: Some(1),
                    external: false,
                    subnet: Subnet {
                        cidr: "192.168.0.0/24".parse().expect("literal"),
                        gateway: Some(ip("192.168.0.1")),
                        enable_dhcp: true,
                        dns_nameservers: vec![ip("8.8.8.8")],
                        allocation_pools: vec![],
                    },
                },
            ],
            routers: vec![Router {
                name: "demo-router".into(),
                id: uuid("006df4cc-6fb2-40e7-af58-dc68b6755165"),
                gateway: Some(RouterPort {
                    network: "ext-net".into(),
                    ip: ip("10.0.0.200"),
                    port_id: uuid("9477c16b-e5f1-4b52-9a3c-6d1e2f3a4b5c"),
                    mac: Some(mac("fa:16:3e:b2:d8:f0")),
                }),
                interfaces: vec![RouterPort {
                    network: "demo-net".into(),
                    ip: ip("192.168.0.1"),
                    port_id: uuid("7337070d-45e1-4a2b-9c3d-1234567890ab"),
                    mac: Some(mac("fa:16:3e:a7:24:00")),
                }],
            }],
            instances: vec![Instance {
                name: "vm1".parse().expect("literal"),
                node: "compute".into(),
                network: "demo-net".into(),
                port_id: uuid("a7b1762b-3b4c-4d5e-8f90-123456789abc"),
                mac: mac("fa:16:3e:5d:2c:01"),
                ip: ip("192.168.0.3"),
                floating_ip: Some(ip("10.0.0.201")),
                security_groups: default_groups(),
                port_security_enabled: true,
                allowed_address_pairs: vec![],
            }],
            // 12-4: `nova secgroup-add-rule default icmp -1 -1 0.0.0.0/0` and
            // `… tcp 22 22 0.0.0.0/0` on the default group.
            security_groups: vec![SecurityGroup {
                name: "default".into(),
                id: uuid("3b4f5e2a-8c1d-4f6e-9a7b-0c1d2e3f4a5b"),
                rules: default_rules()
                    .into_iter()
                    .chain([
                        rule(sg::Direction::Ingress, sg::Protocol::Icmp, None),
                        rule(sg::Direction::Ingress, sg::Protocol::Tcp, Some(22)),
                    ])
                    .collect(),
            }],
            cinder: Some(CinderStore {
                node: "controller".into(),
                size: "20G".parse().expect("literal"),
            }),
        }
    }
}

/// The addresses a pool hands out, or the whole subnet without its network, broadcast
/// and gateway addresses when no pool is given (as Neutron allocates).
/// A rule of `protocol` (a port when given) from or to anywhere (`0.0.0.0/0`).
fn rule(direction: sg::Direction, protocol: sg::Protocol, port: Option<u16>) -> SecurityGroupRule {
    SecurityGroupRule {
        direction,
        ethertype: sg::EtherType::Ipv4,
        protocol,
        port_range_min: port,
        port_range_max: port,
        icmp_type: None,
        icmp_code: None,
        remote_ip_prefix: Some("0.0.0.0/0".parse().expect("literal")),
        remote_group: None,
    }
}

/// Neutron's rules of a new `default` group: egress anywhere, ingress from its members,
/// for IPv4 and IPv6.
fn default_rules() -> Vec<SecurityGroupRule> {
    let mut out = Vec::new();
    for ethertype in [sg::EtherType::Ipv4, sg::EtherType::Ipv6] {
        for (direction, remote_group) in [
            (sg::Direction::Egress, None),
            (sg::Direction::Ingress, Some("default".to_owned())),
        ] {
            out.push(SecurityGroupRule {
                direction,
                ethertype,
                protocol: sg::Protocol::Any,
                port_range_min: None,
                port_range_max: None,
                icmp_type: None,
                icmp_code: None,
                remote_ip_prefix: None,
                remote_group,
            });
        }
    }
    out
}

pub fn in_pool(subnet: &Subnet, ip: IpAddr) -> bool {
    if subnet.allocation_pools.is_empty() {
        return subnet.cidr.contains(&ip)
            && ip != subnet.cidr.network()
            && ip != subnet.cidr.broadcast();
    }
    subnet
        .allocation_pools
        .iter()
        .any(|p| p.start <= ip && ip <= p.end)
}

/// The addresses router legs and instances hold, by the name of their network.
pub type HeldAddresses<'a> = std::collections::HashMap<&'a str, Vec<IpAddr>>;

/// [`HeldAddresses`] of `t`, gathered once for every network's DHCP address (a walk of
/// every leg and instance per network was quadratic in the routers).
pub fn held_addresses(t: &Topology) -> HeldAddresses<'_> {
    let mut held = HeldAddresses::new();
    let legs = t
        .routers
        .iter()
        .flat_map(|r| r.gateway.iter().chain(&r.interfaces))
        .map(|l| (l.network.as_str(), l.ip));
    for (network, ip) in legs.chain(t.instances.iter().map(|i| (i.network.as_str(), i.ip))) {
        held.entry(network).or_default().push(ip);
    }
    held
}

/// The IPv4 network address of a subnet (for dnsmasq's `--dhcp-range`).
pub fn network_address(subnet: &Subnet) -> Option<Ipv4Addr> {
    match subnet.cidr.network() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The address the DHCP port of network `n` gets: the first address of its pools (or of
/// the subnet without its network and broadcast addresses) that no gateway, router leg,
/// instance or floating IP holds — `None` when there is none. The pools' ranges are searched
/// directly, so the search takes at most (addresses held + 1) steps per range, whatever
/// the subnet's size (an IPv6 /64 is 2^64 addresses). `held` is [`held_addresses`].
pub fn dhcp_address(t: &Topology, held: &HeldAddresses<'_>, n: &Network) -> Option<IpAddr> {
    let s = &n.subnet;
    let held: BTreeSet<u128> = held
        .get(n.name.as_str())
        .into_iter()
        .flatten()
        .copied()
        .chain(
            t.instances
                .iter()
                .filter_map(|i| i.floating_ip)
                .filter(|f| s.cidr.contains(f)),
        )
        .chain(s.gateway)
        .chain([s.cidr.network(), s.cidr.broadcast()])
        .map(bits)
        .collect();
    let ranges: Vec<(u128, u128)> = if s.allocation_pools.is_empty() {
        vec![(bits(s.cidr.network()), bits(s.cidr.broadcast()))]
    } else {
        s.allocation_pools
            .iter()
            .map(|p| (bits(p.start), bits(p.end)))
            .collect()
    };
    ranges
        .into_iter()
        .filter_map(|(start, end)| {
            // Within a range, the first address not held: past at most every held one.
            let mut a = start;
            for h in held.range(start..=end) {
                if *h != a {
                    break;
                }
                a = a.checked_add(1)?;
            }
            (a <= end).then_some(a)
        })
        .min()
        .map(|a| from_bits(a, s.cidr.network()))
}

/// An address as a number (IPv4 in the low 32 bits).
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// [`bits`] back, in the family of `like`.
fn from_bits(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}
