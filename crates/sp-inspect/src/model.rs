//! The report: what every namespace holds. Serialised as netns-inspect's `--json`
//! (schema documented in `docs/netns-inspect-json.md`; additions only within a version).

use serde::Serialize;
use sp_neutron::{DeviceRole, NamespaceKind};

/// Identifies the JSON layout. v2 added Open vSwitch, NAT and filtering, VXLAN
/// forwarding entries and neighbours; every v1 field is kept as it was.
pub const SCHEMA: &str = "stackplumb.netns-inspect/v2";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub namespaces: Vec<Namespace>,
    /// Open vSwitch as its ovsdb-server holds it; `None` when none answers.
    pub ovs: Option<Ovs>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ovs {
    /// The ovsdb-server asked (`unix:/var/run/openvswitch/db.sock`).
    pub db: String,
    pub bridges: Vec<OvsBridge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OvsBridge {
    pub name: String,
    /// `netdev` (userspace) or `system` (the kernel module); `None` when unset (system).
    pub datapath_type: Option<String>,
    /// `secure` or `standalone`; `None` when unset (standalone).
    pub fail_mode: Option<String>,
    /// Its ports, the bridge's own local port included, by name.
    pub ports: Vec<OvsPort>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OvsPort {
    pub name: String,
    pub bridge: String,
    /// The local VLAN (the OVS agent's tag per network on br-int); 4095 is its dead VLAN.
    pub tag: Option<u16>,
    pub interfaces: Vec<OvsInterface>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OvsInterface {
    pub name: String,
    /// `internal`, `patch`, `vxlan`, `system` (empty in the database)…
    #[serde(rename = "type")]
    pub iface_type: String,
    /// A patch port's peer (`options:peer`).
    pub peer: Option<String>,
    /// A tunnel's `options:remote_ip`/`local_ip`.
    pub remote_ip: Option<String>,
    pub local_ip: Option<String>,
    /// `external_ids:iface-id`: the Neutron port.
    pub iface_id: Option<String>,
    /// `external_ids:attached-mac`.
    pub attached_mac: Option<String>,
    pub ofport: Option<i64>,
    /// What ovs-vswitchd reported failing to set it up.
    pub error: Option<String>,
    pub external_ids: std::collections::BTreeMap<String, String>,
}

/// A link that is an OVS interface: where it is plugged.
#[derive(Debug, Clone, Serialize)]
pub struct OvsAttachment {
    pub bridge: String,
    pub port: String,
    pub tag: Option<u16>,
    #[serde(rename = "type")]
    pub iface_type: String,
    pub peer: Option<String>,
    pub iface_id: Option<String>,
    pub attached_mac: Option<String>,
    pub error: Option<String>,
}

/// A router's address translation, read from the namespace's nf_tables rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Nat {
    /// Per internal (`qr-`) subnet: the SNAT that carries it out, if any.
    pub subnets: Vec<RouterSubnet>,
    pub floating: Vec<FloatingIp>,
    pub metadata: Option<MetadataRedirect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouterSubnet {
    pub subnet: String,
    pub dev: String,
    /// The address the subnet is translated to going out; `None`: no SNAT.
    pub snat_to: Option<String>,
    /// The output device the SNAT rule names (`qg-…`).
    pub out_dev: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FloatingIp {
    pub floating: String,
    pub fixed: String,
    /// `ip daddr FLOATING dnat to FIXED` is there (the way in).
    pub dnat: bool,
    /// `ip saddr FIXED snat to FLOATING` is there (the way out).
    pub snat: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetadataRedirect {
    /// The destination port matched (80).
    pub dport: Option<u16>,
    /// The local port redirected to (the metadata proxy's 9697).
    pub to_port: u16,
    /// The input devices matched (`qr-*`).
    pub from: Option<String>,
}

/// One rule that filters a port.
#[derive(Debug, Clone, Serialize)]
pub struct FilterRule {
    /// `FAMILY NAME` of its table.
    pub table: String,
    pub chain: String,
    /// As `nft list` prints it.
    pub rule: String,
}

pub use sp_kernel::attrs::{FdbEntry, NeighEntry};

#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    /// How this report refers to the namespace: its first name, `root`, `current`,
    /// or `pid:N` for one held only by processes.
    pub label: String,
    /// Its names in `/run/netns` (usually one; none for root or process-held ones).
    pub names: Vec<String>,
    /// The nsfs inode: the namespace's identity (`ls -i /run/netns/X`).
    pub inode: u64,
    /// The host's root namespace (that of PID 1).
    pub root: bool,
    /// The namespace netns-inspect itself runs in.
    pub current: bool,
    pub kind: NamespaceKind,
    /// The router or network id for Neutron kinds.
    pub neutron_id: Option<String>,
    /// `net.ipv4.ip_forward` inside the namespace.
    pub ip_forward: Option<bool>,
    pub links: Vec<Link>,
    /// Routes of the main table, IPv4 then IPv6.
    pub routes: Vec<Route>,
    /// Processes living in it (not listed for the root namespace: see `process_count`).
    pub processes: Vec<Process>,
    pub process_count: usize,
    /// Its nf_tables tables, as `FAMILY NAME`.
    pub nft_tables: Vec<String>,
    /// Neutron's security groups are on here (their table or chains are present).
    pub security_groups: bool,
    /// The address translation its rules do (routers); `None` without NAT rules.
    pub nat: Option<Nat>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, `vxlan`, `tun`, `loopback`, `device` (no link kind: hardware)…
    pub kind: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operational state as iproute2 prints it: `UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`…
    pub operstate: String,
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    /// The bridge (or other master) this link is enslaved to.
    pub master: Option<String>,
    /// Neutron's reading of the name (`qr-`, `tap`, `brq`, `vxlan-`…).
    pub neutron: Option<DeviceRole>,
    /// For a veth: the other end, resolved across namespaces.
    pub peer: Option<Peer>,
    /// For a VXLAN device.
    pub vxlan: Option<Vxlan>,
    pub addresses: Vec<Address>,
    /// Where Open vSwitch has it plugged, when it is an OVS interface.
    pub ovs: Option<OvsAttachment>,
    /// For an instance port (`tap…` on a bridge): the nf_tables rules that filter it.
    pub filter: Option<Vec<FilterRule>>,
}

impl Link {
    /// A link with nothing known but its index, name and kind.
    pub fn new(index: u32, name: &str, kind: &str) -> Link {
        Link {
            index,
            name: name.into(),
            kind: kind.into(),
            up: false,
            operstate: "UNKNOWN".into(),
            mtu: None,
            mac: None,
            master: None,
            neutron: sp_neutron::classify_device(name),
            peer: None,
            vxlan: None,
            addresses: vec![],
            ovs: None,
            filter: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// Label of the namespace holding the peer (`root`, `qrouter-…`, `pid:N`).
    pub namespace: String,
    pub namespace_inode: u64,
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
    pub master: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vxlan {
    pub vni: Option<u32>,
    /// UDP destination port; `None` means the kernel default (8472).
    pub port: Option<u16>,
    /// The underlying device (`dev` of `ip link add … type vxlan`).
    pub dev: Option<String>,
    pub local: Option<String>,
    pub group: Option<String>,
    pub learning: Option<bool>,
    pub proxy: Option<bool>,
    /// Its forwarding entries (`bridge fdb show dev D`).
    pub fdb: Vec<FdbEntry>,
    /// Its IP neighbours (`ip neigh show dev D`).
    pub neighbours: Vec<NeighEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: &'static str,
    pub address: String,
    pub prefix_len: u8,
    /// `global`, `link`, `host`, `site`, `nowhere`.
    pub scope: String,
    pub broadcast: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub family: &'static str,
    /// `default` or `ADDRESS/PREFIX`.
    pub destination: String,
    /// True for the default route — the one that tells where traffic leaves.
    pub default: bool,
    pub gateway: Option<String>,
    pub dev: Option<String>,
    pub metric: Option<u32>,
    /// `kernel`, `boot`, `static`, `dhcp`, `ra`… as iproute2 names them.
    pub protocol: String,
    pub scope: String,
    /// `unicast`, `blackhole`, `unreachable`, `prohibit`…
    #[serde(rename = "type")]
    pub route_type: String,
    pub prefsrc: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: i32,
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A file in `/run/netns` with no namespace on it (left by a crash).
    StaleNetnsFile,
    /// A namespace that could not be entered or read.
    UnreadableNamespace,
    /// A `qdhcp-` namespace with no dnsmasq running in it.
    QdhcpWithoutDnsmasq,
    /// A `qrouter-` namespace that does not forward (`ip_forward=0`).
    QrouterNotForwarding,
    /// A veth whose peer is in no namespace we can see.
    OrphanVeth,
    /// A Neutron namespace with nothing but `lo` and no process: leaked after its
    /// router or network was deleted.
    EmptyNeutronNamespace,
    /// Two ends of a veth with different MTUs.
    MtuMismatch,
    /// Processes whose namespace cannot be read (no CAP_SYS_PTRACE).
    HiddenProcesses,
    /// An OVS interface ovs-vswitchd reports an error for.
    OvsInterfaceError,
    /// An OVS port on the dead VLAN 4095 (the agent could not bind it).
    OvsDeadVlan,
    /// A Neutron OVS internal port (`tap`, `qr-`, `qg-`) still in the namespace of
    /// ovs-vswitchd instead of its router's or network's.
    OvsInternalPortNotMoved,
    /// A floating IP whose way in (DNAT) is missing.
    FloatingIpWithoutDnat,
    /// A router subnet that no SNAT rule carries out.
    SubnetWithoutSnat,
    /// An instance port with no filtering rule while security groups are on.
    PortWithoutFilter,
    /// An ovsdb-server answers at the default address but could not be read.
    OvsdbUnreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    /// Label of the namespace concerned (for a stale file: its name).
    pub namespace: String,
    pub link: Option<String>,
    pub message: String,
}
