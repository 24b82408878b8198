//! What a node holds now, read from the kernel and the daemons once per run — never
//! from our records. Plain data: the planner is a pure function of
//! it, and its tests build one by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::AddressFamily;
use sp_config::desired::NodePlan;
use sp_kernel::attrs::{self, BridgeData, VxlanData};
use sp_kernel::netlink::{self, Netlink};
use sp_kernel::netns::{self, NsId};
use sp_neutron::PortKind;

use crate::owned::Owned;
use crate::{Dirs, Result};

/// One link as the planner needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkView {
    pub name: String,
    pub index: u32,
    /// `veth`, `bridge`, `vxlan`, `tun`… or `device` (no kind of its own).
    pub kind: String,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub master: Option<u32>,
    pub up: bool,
    /// A veth's peer index (in the peer's namespace).
    pub peer: Option<u32>,
    pub vxlan: Option<VxlanData>,
    pub bridge: Option<BridgeData>,
    /// Transmit checksum offload (ethtool's `tx-checksumming`), read for the DHCP ports'
    /// devices only (`ns-…` in `qdhcp-…`); `None` elsewhere.
    pub tx_checksum: Option<bool>,
}

impl LinkView {
    pub fn of(l: &LinkMessage) -> Option<LinkView> {
        Some(LinkView {
            name: attrs::link_name(l)?.to_owned(),
            index: l.header.index,
            kind: attrs::link_kind_word(l),
            mtu: attrs::link_mtu(l).unwrap_or(0),
            mac: attrs::link_mac(l).and_then(|m| m.try_into().ok()),
            master: attrs::link_master(l),
            up: attrs::link_is_up(l),
            peer: attrs::link_peer(l).0,
            vxlan: attrs::vxlan(l),
            bridge: attrs::bridge(l),
            tx_checksum: None,
        })
    }
}

/// A global-scope address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrView {
    pub index: u32,
    pub net: IpNet,
}

/// A default route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// What one network namespace holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Space {
    pub links: Vec<LinkView>,
    /// Global-scope addresses only (link-local ones are the kernel's).
    pub addresses: Vec<AddrView>,
    pub defaults: Vec<RouteView>,
    pub forwarding: bool,
    /// `net.ipv6.conf.all.forwarding`; `None` without IPv6.
    pub forwarding6: Option<bool>,
    /// The links by name and by index, made on the first lookup (a node with a thousand
    /// networks holds thousands of links, and the planner looks each port up).
    pub(crate) index: std::sync::OnceLock<LinkIndex>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LinkIndex {
    /// How many links there were when it was made: a space that grew since is searched.
    len: usize,
    by_name: HashMap<String, usize>,
    by_index: HashMap<u32, usize>,
}

impl Space {
    fn index(&self) -> Option<&LinkIndex> {
        let ix = self.index.get_or_init(|| LinkIndex {
            len: self.links.len(),
            by_name: self
                .links
                .iter()
                .enumerate()
                .map(|(i, l)| (l.name.clone(), i))
                .collect(),
            by_index: self
                .links
                .iter()
                .enumerate()
                .map(|(i, l)| (l.index, i))
                .collect(),
        });
        (ix.len == self.links.len()).then_some(ix)
    }

    pub fn link(&self, name: &str) -> Option<&LinkView> {
        // A link renamed since the index was made is searched for.
        match self.index().map(|ix| ix.by_name.get(name)) {
            Some(None) => None,
            Some(Some(&i)) if self.links[i].name == name => Some(&self.links[i]),
            _ => self.links.iter().find(|l| l.name == name),
        }
    }

    pub fn by_index(&self, index: u32) -> Option<&LinkView> {
        match self.index().map(|ix| ix.by_index.get(&index)) {
            Some(None) => None,
            Some(Some(&i)) if self.links[i].index == index => Some(&self.links[i]),
            _ => self.links.iter().find(|l| l.index == index),
        }
    }

    pub fn addresses_of(&self, index: u32) -> impl Iterator<Item = &IpNet> {
        self.addresses
            .iter()
            .filter(move |a| a.index == index)
            .map(|a| &a.net)
    }

    /// The link holding address `ip`.
    pub fn holder(&self, ip: IpAddr) -> Option<&LinkView> {
        let a = self.addresses.iter().find(|a| a.net.addr() == ip)?;
        self.by_index(a.index)
    }

    fn of(links: &[LinkMessage], addrs: &[AddressMessage], routes: &[RouteMessage]) -> Space {
        Space {
            links: links.iter().filter_map(LinkView::of).collect(),
            addresses: addrs
                .iter()
                .filter(|a| u8::from(a.header.scope) == 0)
                .filter_map(|a| {
                    let ip = attrs::address_ip(a)?;
                    Some(AddrView {
                        index: a.header.index,
                        net: IpNet::new(ip, a.header.prefix_len).ok()?,
                    })
                })
                .collect(),
            defaults: routes
                .iter()
                .filter(|r| {
                    r.header.destination_prefix_length == 0
                        && attrs::route_table(r) == 254
                        && u8::from(r.header.kind) == 1
                })
                .map(|r| RouteView {
                    gateway: attrs::route_gateway(r),
                    oif: attrs::route_oif(r),
                })
                .collect(),
            forwarding: false,
            forwarding6: None,
            index: Default::default(),
        }
    }
}

/// A named namespace that exists, with its identity and contents.
#[derive(Debug, Clone, PartialEq)]
pub struct NsView {
    pub id: Option<NsId>,
    pub space: Space,
}

/// A network's dnsmasq as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpView {
    pub state: sp_dhcp::State,
    /// The files (`host`, `addn_hosts`, `opts`) whose content differs from what is
    /// wanted: whether each is there at all, what it holds and should hold.
    pub stale_files: Vec<sp_dhcp::StaleFile>,
    /// A dnsmasq that is not ours serving the network's namespace (started from another
    /// state directory): its pid and pid file.
    pub foreign: Option<(i32, std::path::PathBuf)>,
}

/// A router's NAT table as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatView {
    Absent,
    Matches,
    /// How it differs from the rules wanted (none listed for a router no longer
    /// wanted, whose table is pruned without comparing).
    Differs(Vec<sp_nft::Difference>),
}

/// The security groups' tables of the node as the kernel holds them (with
/// br_netfilter's sysctls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FirewallView {
    #[default]
    Absent,
    Matches,
    /// How they differ (none listed when no port wants them: they are pruned).
    Differs(Vec<sp_nft::Difference>),
}

/// The metadata proxy as it stands: its process (pid file and command line) and, for a
/// running one, the namespaces it should serve where the kernel shows none of its
/// sockets listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataView {
    pub state: sp_metadata::State,
    pub deaf: Vec<String>,
}

/// The volume group, when Cinder's directory holds one of this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgView {
    pub active: bool,
}

/// An l2population entry present (permanent, NUD 0x80 with or without NOARP 0x40).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2View {
    /// (device, MAC, destination).
    pub fdb: HashSet<(String, String, IpAddr)>,
    /// (device, IP, MAC).
    pub neigh: HashSet<(String, IpAddr, String)>,
}

/// Everything the planner compares with the desired state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub root: Space,
    /// Every named namespace that exists (name → identity), read or not.
    pub live: BTreeMap<String, Option<NsId>>,
    /// The namespaces the desired state names, read; missing ones absent (those this
    /// node made and no longer wants are in `live` alone: deleted whole).
    pub namespaces: BTreeMap<String, NsView>,
    pub l2: L2View,
    pub dhcp: BTreeMap<String, DhcpView>,
    /// The NAT tables of the namespaces read: routers wanted, and routers this node made
    /// whose namespace stays.
    pub nat: BTreeMap<String, NatView>,
    /// Read when wanted or owned; absent otherwise.
    pub firewall: FirewallView,
    /// Read when a proxy is wanted or this node made one.
    pub metadata: Option<MetadataView>,
    pub vg: Option<VgView>,
    /// Open vSwitch objects wanted — typed, and as the text output names them — and
    /// whether they are there (one OVSDB read).
    pub ovs: Vec<(sp_kernel::Object, String, bool)>,
}

/// A dnsmasq serving `d`'s network that is not `d`'s: in the network's namespace (or,
/// where its namespace cannot be read, by a pid file of the same network), with another
/// pid file than `d`'s.
fn foreign_dnsmasq(
    scan: &sp_kernel::procs::Scan,
    ns: Option<NsId>,
    d: &sp_neutron::dhcp::Dnsmasq,
) -> Option<(i32, std::path::PathBuf)> {
    use sp_kernel::procs;
    let ours = d.pid_file();
    let in_ns = scan
        .procs
        .iter()
        .filter(|p| Some(p.netns) == ns)
        .map(|p| p.pid);
    let same_network = |f: &std::path::Path| {
        f.parent()
            .and_then(|dir| dir.file_name())
            .is_some_and(|n| n == d.network_id.as_str())
    };
    in_ns
        .chain(scan.hidden.iter().copied())
        .filter(|pid| procs::command_line(*pid).is_some_and(|a| procs::is_dnsmasq(&a)))
        .filter_map(|pid| Some((pid, procs::pid_file_of(pid)?)))
        .find(|(_, f)| *f != ours && same_network(f))
}

/// The transmit checksum offload of `devs` among `space`'s links, read in the calling
/// thread's namespace (a device gone since the dump stays unread).
fn read_tx_checksums(space: &mut Space, devs: &[String]) -> sp_kernel::Result<()> {
    let sock = sp_kernel::ethtool::Socket::open()?;
    for l in space.links.iter_mut().filter(|l| devs.contains(&l.name)) {
        match sock.tx_checksum(&l.name) {
            Ok(on) => l.tx_checksum = Some(on),
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODEV as i32) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A router's NAT table as found, against the rules its NAT wants (`None`: a router no
/// longer wanted, whose table is pruned).
fn nat_view(found: Option<sp_l3::Current>, want: Option<&sp_neutron::l3::RouterNat>) -> NatView {
    match (found, want) {
        (None, _) => NatView::Absent,
        (Some(c), Some(w)) => match c.differences(&sp_l3::NatRules::of(w)) {
            d if d.is_empty() => NatView::Matches,
            d => NatView::Differs(d),
        },
        (Some(_), None) => NatView::Differs(Vec::new()),
    }
}

/// What [`read`] reads in the node's own namespace while the hop reads the others.
struct Here {
    root: Space,
    l2: L2View,
    firewall: FirewallView,
    dhcp: BTreeMap<String, DhcpView>,
    /// The metadata proxy, how it runs, and the sockets it holds — `None` when it does
    /// not run or hides its descriptors (no CAP_SYS_PTRACE).
    metadata: Option<(
        sp_metadata::Proxy,
        sp_metadata::State,
        Option<BTreeSet<u64>>,
    )>,
}

/// The node's namespace — links, addresses, default routes (for the uplink's gateway),
/// the l2population entries, our security-group tables — and the daemons.
fn read_here(
    nl: &Netlink,
    plan: &NodePlan,
    owned: &Owned,
    dirs: &Dirs,
    live: &BTreeMap<String, Option<NsId>>,
) -> Result<Here> {
    let links = nl.links()?;
    let addrs = nl.addresses()?;
    let mut routes = nl.main_routes(AddressFamily::Inet)?;
    routes.extend(nl.main_routes(AddressFamily::Inet6)?);
    let root = Space::of(&links, &addrs, &routes);
    // The security groups: our tables in the node's namespace.
    let mut firewall = FirewallView::default();
    if !plan.firewall.ports.is_empty() || owned.firewall {
        firewall = match sp_sg::read()? {
            None => FirewallView::Absent,
            Some(_) if plan.firewall.ports.is_empty() => FirewallView::Differs(Vec::new()),
            Some(c) => {
                let want = sp_sg::SgRules::of(&plan.firewall)?;
                match c.differences(&want) {
                    d if d.is_empty() => FirewallView::Matches,
                    d => FirewallView::Differs(d),
                }
            }
        };
    }
    // l2population: one dump of each neighbour table, when this node wants or made
    // entries (the planner looks at nothing else) and has VXLAN devices. Not otherwise:
    // the kernel answers the FDB dump by walking each bridge's whole table once for
    // every port of it — 5 % of a 1000-router `plan`'s CPU for an external bridge with
    // 1000 gateway ports.
    let mut l2 = L2View::default();
    let concerned = !plan.l2pop.is_empty() || !owned.fdb.is_empty() || !owned.neighbours.is_empty();
    if concerned && root.links.iter().any(|l| l.vxlan.is_some()) {
        let known = sp_kernel::links::Links::from(links);
        let snap = sp_bridge::l2pop::Snapshot::read_with(nl, &known)?;
        l2 = L2View {
            fdb: snap.fdb,
            neigh: snap.neigh,
        };
    }
    // dnsmasq: pid file, command line, files; the processes of the host only when one
    // of ours is not running (is another dnsmasq there?).
    let mut dhcp = BTreeMap::new();
    let mut scan: Option<sp_kernel::procs::Scan> = None;
    for d in &plan.dhcp {
        let ns = sp_neutron::qdhcp_namespace(&d.network_id);
        let state = match live.contains_key(&ns) {
            true => sp_dhcp::status(d, &ns)?,
            false => sp_dhcp::State::Stopped,
        };
        let foreign = match state {
            sp_dhcp::State::Running(_) => None,
            _ => {
                let scan = scan.get_or_insert_with(sp_kernel::procs::scan);
                foreign_dnsmasq(scan, live.get(&ns).copied().flatten(), d)
            }
        };
        dhcp.insert(
            d.network_id.to_string(),
            DhcpView {
                foreign,
                state,
                stale_files: sp_dhcp::stale_files(d),
            },
        );
    }
    let mut metadata = None;
    if !plan.metadata.is_empty() || owned.metadata_proxy {
        let proxy = crate::metadata_proxy(plan, dirs)?;
        let state = sp_metadata::status(&proxy);
        let held = match &state {
            sp_metadata::State::Running(pid) => sp_kernel::procs::socket_inodes(*pid),
            _ => None,
        };
        metadata = Some((proxy, state, held));
    }
    Ok(Here {
        root,
        l2,
        firewall,
        dhcp,
        metadata,
    })
}

/// Reads what `plan` and `owned` concern on this node (the calling thread's namespace).
/// The namespaces are read on threads of their own (one hop) while this thread reads
/// its own namespace and the daemons.
pub async fn read(nl: &Netlink, plan: &NodePlan, owned: &Owned, dirs: &Dirs) -> Result<Current> {
    let mut cur = Current::default();
    // Namespaces: every one that exists, with its identity; those we want entered in
    // one hop. One this node made and no longer wants is deleted whole, by its identity
    // alone: what it holds is never planned from, so it is not read (a destroy of 100
    // routers read 200 namespaces' links, addresses, routes and NAT tables for nothing).
    for e in netns::list_named()? {
        cur.live.insert(e.name, e.state.ok());
    }
    let wanted: BTreeSet<&str> = plan
        .ports
        .iter()
        .map(|p| p.namespace.as_str())
        .filter(|n| cur.live.contains_key(*n))
        .collect();
    let mut fds = Vec::with_capacity(wanted.len());
    let mut opened = Vec::with_capacity(wanted.len());
    for n in wanted {
        // A stale file (a run killed between creating it and mounting the namespace on
        // it) holds no namespace to enter: read as absent, so the namespace is made
        // again (`create_each` finishes such a file). A namespace deleted since the
        // listing is simply not there.
        if cur.live.get(n).copied().flatten().is_none() {
            continue;
        }
        if let Ok(fd) = netns::open(&netns::named_path(n)?) {
            fds.push(fd);
            opened.push(n);
        }
    }
    let families = [AddressFamily::Inet, AddressFamily::Inet6];
    // The routers' NAT tables are read, and compared with what is wanted, in the same
    // hop; those of routers no longer wanted too, where their namespace stays (to prune them).
    // The rules wanted are made there too, in parallel, not before the hop.
    let mut nat_ns: BTreeMap<&str, Option<&sp_neutron::l3::RouterNat>> =
        owned.nat.iter().map(|n| (n.as_str(), None)).collect();
    nat_ns.extend(
        plan.routers
            .iter()
            .map(|r| (r.namespace.as_str(), Some(&r.nat))),
    );
    // The DHCP ports' devices: their transmit checksum offload, read in the same hop.
    let mut dhcp_devs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in plan.ports.iter().filter(|p| p.kind == PortKind::Dhcp) {
        let devs = dhcp_devs.entry(p.namespace.as_str()).or_default();
        devs.push(p.kind.device(p.port_id.as_str()));
    }
    // The metadata proxy's listening sockets, looked for in the same hop.
    let listen_at: BTreeMap<String, std::net::SocketAddr> = plan
        .metadata
        .iter()
        .map(|s| (s.namespace(), s.listen()))
        .collect();
    let (read, here) = netns::run_in_each_while(
        &fds,
        |i| {
            let socks = netlink::open_reader()?;
            let c = socks.contents(&families)?;
            let mut space = Space::of(&c.links, &c.addresses, &c.routes);
            space.forwarding = c.ipv4_forwarding;
            space.forwarding6 = c.ipv6_forwarding;
            if let Some(devs) = dhcp_devs.get(opened[i]) {
                read_tx_checksums(&mut space, devs)?;
            }
            let nat = nat_ns.get(opened[i]).map(|want| {
                sp_l3::read_in_this_thread(opened[i]).map(|found| nat_view(found, *want))
            });
            let listening = match listen_at.get(opened[i]) {
                Some(std::net::SocketAddr::V4(a)) => sp_kernel::diag::tcp_listener_here(*a)?,
                _ => None,
            };
            Ok(((space, listening), nat))
        },
        || read_here(nl, plan, owned, dirs, &cur.live),
    );
    let here = here?;
    cur.root = here.root;
    cur.l2 = here.l2;
    cur.firewall = here.firewall;
    cur.dhcp = here.dhcp;
    let mut listeners: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for (name, got) in opened.iter().zip(read) {
        let ((space, listening), nat) = got?;
        listeners.insert((*name).to_owned(), listening);
        let id = cur.live.get(*name).copied().flatten();
        cur.namespaces
            .insert((*name).to_owned(), NsView { id, space });
        if let Some(nat) = nat {
            cur.nat.insert((*name).to_owned(), nat?);
        }
    }
    if let Some((proxy, state, held)) = here.metadata {
        let deaf = match held {
            // Not running, or its descriptors hidden: the pid file and the command line
            // stand for it, as for dnsmasq's namespace.
            None => vec![],
            Some(held) => proxy
                .namespaces()
                .into_iter()
                .filter(|ns| {
                    !listeners
                        .get(ns)
                        .is_some_and(|l| l.is_some_and(|i| held.contains(&i)))
                })
                .collect(),
        };
        cur.metadata = Some(MetadataView { state, deaf });
    }
    // The volume group wanted, else the one this node made (to prune it).
    let vg = plan
        .cinder
        .as_ref()
        .map(|c| c.volume_group.to_string())
        .or_else(|| owned.volume_group.clone());
    if let Some(name) = vg {
        cur.vg = crate::loopvg(dirs)
            .here(&name)?
            .map(|v| VgView { active: v.active });
    }
    cur.ovs = crate::ovs::survey_items(nl, plan, dirs).await?;
    Ok(cur)
}
