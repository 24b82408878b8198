//! The report: what every namespace holds. Serialised as netns-inspect's `--json`
//! (schema documented in `docs/netns-inspect-json.md`; additions only within v1).

use serde::Serialize;
use sp_neutron::{DeviceRole, NamespaceKind};

/// Identifies the JSON layout; bumped only on an incompatible change.
pub const SCHEMA: &str = "stackplumb.netns-inspect/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub namespaces: Vec<Namespace>,
    pub problems: Vec<Problem>,
}

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
