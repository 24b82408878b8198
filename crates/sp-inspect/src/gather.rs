//! Collecting the report: find every namespace, open netlink sockets inside each (one
//! thread hop for all) and read there what it holds — links, addresses, routes, the
//! FDB, nf_tables rules, the ids it gives the root and current namespaces — resolve
//! veth peers across namespaces through namespace ids, and attach processes from one
//! `/proc` pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use sp_kernel::netlink::{self, Contents};
use sp_kernel::netns::{self, NsId};
use sp_kernel::{attrs, procs, Error, Result};
use sp_neutron::{classify_namespace, NamespaceKind};

use crate::model::*;
use crate::names;

/// One namespace found, before it is read.
struct Found {
    id: NsId,
    names: Vec<String>,
    root: bool,
    current: bool,
    pids: Vec<i32>,
    /// The file to open it through (named, root and current namespaces; a
    /// process-held one is opened through any of its `pids`).
    path: PathBuf,
}

impl Found {
    fn label(&self) -> String {
        if let Some(n) = self.names.first() {
            n.clone()
        } else if self.root {
            "root".into()
        } else if self.current {
            "current".into()
        } else {
            format!("pid:{}", self.pids[0])
        }
    }
}

/// What a hop reads in a namespace besides [`Contents`].
struct Extra {
    /// The FDB (`AF_BRIDGE`) and IP neighbours, read only where a VXLAN device is.
    fdb: Vec<NeighbourMessage>,
    neighbours: Vec<NeighbourMessage>,
    /// The nf_tables ruleset, or why it could not be read.
    rules: std::result::Result<sp_nft::Ruleset, String>,
    /// (id, index in the namespaces opened) of the root and current namespaces, as this
    /// one numbers them.
    near_ids: Vec<(i32, usize)>,
}

impl Default for Extra {
    fn default() -> Self {
        Extra {
            fdb: vec![],
            neighbours: vec![],
            rules: Ok(sp_nft::Ruleset::default()),
            near_ids: vec![],
        }
    }
}

/// How to inspect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The ovsdb-server to ask; `None`: ovs-vsctl's default (`OVS_RUNDIR`), and no
    /// word about OVS when no server runs there.
    pub ovsdb: Option<sp_ovsdb::Endpoint>,
}

/// What can stop an inspection.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Kernel(#[from] Error),
    #[error(transparent)]
    Ovsdb(#[from] sp_ovsdb::Error),
}

/// Inspects every network namespace visible from here, and Open vSwitch if an
/// ovsdb-server answers at ovs-vsctl's default address. Must run inside a tokio runtime.
pub async fn inspect() -> Result<Report> {
    let ovs = default_ovs().await;
    Ok(finish(gather()?, ovs))
}

/// [`inspect`] with `opts`: an ovsdb-server named there that cannot be read fails it.
pub async fn inspect_with(opts: &Options) -> std::result::Result<Report, InspectError> {
    let ovs = match &opts.ovsdb {
        Some(e) => (Some(crate::ovs::read(e).await?), None),
        None => default_ovs().await,
    };
    Ok(finish(gather()?, ovs))
}

/// Open vSwitch at the default address: nothing when no server runs there; a server
/// that answers wrong is a problem, not a failure.
async fn default_ovs() -> (Option<Ovs>, Option<Problem>) {
    let endpoint = crate::ovs::default_endpoint();
    match crate::ovs::read(&endpoint).await {
        Ok(o) => (Some(o), None),
        Err(e) if crate::ovs::is_absent(&e) => (None, None),
        Err(e) => (
            None,
            Some(Problem {
                severity: Severity::Warning,
                kind: ProblemKind::OvsdbUnreadable,
                namespace: "current".into(),
                link: None,
                message: format!("Open vSwitch not read: {e}"),
            }),
        ),
    }
}

fn finish(mut report: Report, (ovs, problem): (Option<Ovs>, Option<Problem>)) -> Report {
    if let Some(ovs) = &ovs {
        crate::ovs::attach(ovs, &mut report.namespaces);
        crate::ovs::problems(ovs, &report.namespaces, &mut report.problems);
    }
    if let Some(mut p) = problem {
        if let Some(ns) = report.namespaces.iter().find(|n| n.current) {
            p.namespace = ns.label.clone();
        }
        report.problems.push(p);
    }
    report.ovs = ovs;
    report
}

fn gather() -> Result<Report> {
    let mut problems = Vec::new();
    let found = discover(&mut problems)?;

    // Open every namespace. One held only by processes is opened through any of them
    // that still lets us (they exit, or change credentials, while we look).
    let mut opened: Vec<(Found, OwnedFd)> = Vec::with_capacity(found.len());
    for f in found {
        if !f.names.is_empty() || f.root || f.current {
            let fd = netns::open(&f.path)?;
            opened.push((f, fd));
            continue;
        }
        let mut last_err = None;
        let fd = f.pids.iter().find_map(|pid| {
            netns::open(format!("/proc/{pid}/ns/net").as_ref())
                .map_err(|e| last_err = Some(e))
                .ok()
        });
        match (fd, last_err) {
            (Some(fd), _) => opened.push((f, fd)),
            (None, Some(e)) if !e.is_not_found() => problems.push(Problem {
                severity: Severity::Warning,
                kind: ProblemKind::UnreadableNamespace,
                namespace: f.label(),
                link: None,
                message: format!("cannot open the namespace of processes {:?}: {e}", f.pids),
            }),
            // Every process holding it is gone, and the namespace with them.
            (None, _) => {}
        }
    }
    let fds: Vec<BorrowedFd> = opened.iter().map(|(_, fd)| fd.as_fd()).collect();
    // The root and current namespaces, where Neutron's veth peers live: each namespace
    // with peers elsewhere asks, while there, which ids it uses for them.
    let near: Vec<usize> = (0..opened.len())
        .filter(|&i| opened[i].0.root || opened[i].0.current)
        .collect();
    // One hop through all namespaces: netlink sockets, what each holds, ip_forward,
    // the FDB and neighbours of VXLAN devices, the nf_tables rules, nearby nsids.
    let hopped = netns::run_in_each(&fds, |i| {
        let socks = netlink::open_reader()?;
        let held = socks.contents(&[AddressFamily::Inet, AddressFamily::Inet6])?;
        let mut extra = Extra::default();
        if held.links.iter().any(|l| attrs::vxlan(l).is_some()) {
            extra.fdb = socks.neighbours(AddressFamily::Bridge)?;
            extra.neighbours = socks.neighbours(AddressFamily::Inet)?;
            extra
                .neighbours
                .extend(socks.neighbours(AddressFamily::Inet6)?);
        }
        if held.links.iter().any(|l| attrs::link_peer(l).1.is_some()) {
            for &c in near.iter().filter(|&&c| c != i) {
                if let Some(id) = socks.nsid_of(fds[c])? {
                    extra.near_ids.push((id, c));
                }
            }
        }
        extra.rules = sp_nft::Socket::open()
            .and_then(|nft| nft.ruleset(sp_nft::Family::Other(0), None))
            .map_err(|e| e.to_string());
        Ok((socks, (held, extra)))
    });
    let mut namespaces = Vec::new();
    let mut sockets = Vec::new();
    let mut ns_fds = Vec::new();
    let mut dumps = Vec::new();
    let mut extras = Vec::new();
    // Index in `opened` → index among the namespaces read.
    let mut read_index = vec![None; opened.len()];
    for (i, ((f, fd), hop)) in opened.into_iter().zip(hopped).enumerate() {
        match hop {
            Ok((socks, held)) => {
                read_index[i] = Some(namespaces.len());
                sockets.push(socks);
                extras.push(held.1);
                dumps.push(held.0);
                ns_fds.push(fd);
                namespaces.push(f);
            }
            Err(e @ Error::NotPermitted { .. }) => return Err(e),
            Err(e) => problems.push(Problem {
                severity: Severity::Error,
                kind: ProblemKind::UnreadableNamespace,
                namespace: f.label(),
                link: None,
                message: format!("cannot read namespace {}: {e}", f.label()),
            }),
        }
    }
    let near_ids: HashMap<(usize, i32), usize> = extras
        .iter()
        .enumerate()
        .flat_map(|(a, x)| {
            let read_index = &read_index;
            x.near_ids
                .iter()
                .filter_map(move |&(id, c)| Some(((a, id), read_index[c]?)))
        })
        .collect();
    let peer_ns = resolve_nsids(&sockets, &ns_fds, &namespaces, &dumps, near_ids)?;

    let mut out: Vec<Namespace> = namespaces
        .iter()
        .zip(&dumps)
        .zip(&extras)
        .map(|((f, d), x)| build_namespace(f, d, x))
        .collect();
    link_peers(&mut out, &dumps, &peer_ns);
    for (ns, x) in out.iter_mut().zip(&extras) {
        match &x.rules {
            Ok(rs) => crate::rules::attach(ns, rs),
            Err(e) => problems.push(Problem {
                severity: Severity::Warning,
                kind: ProblemKind::UnreadableNamespace,
                namespace: ns.label.clone(),
                link: None,
                message: format!("cannot read the nf_tables rules of {}: {e}", ns.label),
            }),
        }
    }
    crate::problems::find(&out, &mut problems);
    Ok(Report {
        schema: SCHEMA,
        namespaces: out,
        ovs: None,
        problems,
    })
}

/// Named namespaces, the root and our own, and those held only by processes.
fn discover(problems: &mut Vec<Problem>) -> Result<Vec<Found>> {
    let root = netns::root();
    let current = NsId::of_path(netns::THREAD_SELF.as_ref())?;
    let mut by_id: BTreeMap<NsId, Found> = BTreeMap::new();
    let mut order: Vec<NsId> = Vec::new();
    let mut add = |by_id: &mut BTreeMap<NsId, Found>, id: NsId, path: PathBuf| {
        by_id.entry(id).or_insert_with(|| {
            order.push(id);
            Found {
                id,
                names: vec![],
                root: root.as_ref().is_some_and(|(r, _)| *r == id),
                current: id == current,
                pids: vec![],
                path,
            }
        });
    };
    if let Some((id, path)) = root.clone() {
        add(&mut by_id, id, path);
    }
    add(&mut by_id, current, netns::THREAD_SELF.into());
    for entry in netns::list_named()? {
        match entry.state {
            Ok(id) => {
                add(&mut by_id, id, entry.path.clone());
                let f = by_id.get_mut(&id).expect("just added");
                if f.names.is_empty() && !f.root && !f.current {
                    f.path = entry.path;
                }
                f.names.push(entry.name);
            }
            Err(reason) => problems.push(Problem {
                severity: Severity::Error,
                kind: ProblemKind::StaleNetnsFile,
                namespace: entry.name.clone(),
                link: None,
                message: format!(
                    "{} is a stale entry: {reason}; `ip netns delete {}` removes it",
                    entry.path.display(),
                    entry.name
                ),
            }),
        }
    }
    let scan = procs::scan();
    for p in scan.procs {
        add(
            &mut by_id,
            p.netns,
            PathBuf::from(format!("/proc/{}/ns/net", p.pid)),
        );
        by_id
            .get_mut(&p.netns)
            .expect("just added")
            .pids
            .push(p.pid);
    }
    if !scan.hidden.is_empty() {
        // Without CAP_SYS_PTRACE another user's namespace link cannot be read. dnsmasq
        // (running as nobody) is still placed: Neutron starts it with
        // `--pid-file=STATE/dhcp/<network id>/pid`, and that file holds its pid.
        for &pid in scan
            .hidden
            .iter()
            .filter(|p| procs::runs_as_dnsmasq_user(**p))
        {
            let qdhcp = procs::pid_file_of(pid).and_then(|f| {
                // STATE/dhcp/<network id>/pid.
                let dir = f.parent()?;
                (dir.parent()?.file_name()? == "dhcp").then_some(())?;
                let id = sp_names::NeutronId::new(dir.file_name()?.to_str()?).ok()?;
                Some(sp_neutron::qdhcp_namespace(&id))
            });
            if let Some(f) = qdhcp.and_then(|ns| by_id.values_mut().find(|f| f.names.contains(&ns)))
            {
                f.pids.push(pid);
            }
        }
    }
    // Root first, then our own, then named by name, then process-held by pid.
    let mut found: Vec<Found> = order
        .into_iter()
        .map(|id| by_id.remove(&id).expect("ordered ids exist"))
        .collect();
    found.sort_by_key(|f| {
        (
            !f.root,
            !f.current,
            f.names.is_empty(),
            f.names.first().cloned(),
            f.pids.first().copied(),
        )
    });
    // Only a missing CAP_SYS_PTRACE is reported: with it, what is still hidden (a PID 1
    // of another user namespace or a security module's) is nothing a flag would change.
    let without_ptrace = !sp_kernel::caps::missing(&[sp_kernel::caps::Cap::SysPtrace]).is_empty();
    if without_ptrace && !scan.hidden.is_empty() {
        problems.push(Problem {
            severity: Severity::Warning,
            kind: ProblemKind::HiddenProcesses,
            // Reported where this process is: the one namespace always there to see.
            namespace: found
                .iter()
                .find(|f| f.current)
                .map_or_else(|| "current".into(), Found::label),
            link: None,
            message: format!(
                "the network namespaces of {} processes cannot be read (first pids: {}): \
                 that needs CAP_SYS_PTRACE (in a container: --cap-add SYS_PTRACE, or \
                 --privileged); the namespaces only they hold and their processes are not \
                 listed, but for dnsmasq, placed in its qdhcp namespace by its pid file",
                scan.hidden.len(),
                scan.hidden
                    .iter()
                    .take(5)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(found)
}

/// Maps (namespace index, nsid it uses) to the index of the namespace that id names.
///
/// 1. `near`: each namespace asked, on its hop, about the root and the current
///    namespace only (where Neutron's veth peers live) — at most two `RTM_GETNSID`.
/// 2. What a veth pair tells without asking: when the end in `a` (index `i`, id `x`)
///    was resolved to `b`, the peer in `b` is at the index `a` gave, and the id that
///    peer carries in `b` names `a`. So the host side — one namespace with a thousand
///    ids — learns them all from the other ends. Asking it instead cost a thousand
///    sequential requests, each a walk of the kernel over its thousand ids
///    (`peernet2id`'s `idr_for_each`): what grew with the square of the namespaces.
/// 3. Ids still unknown (a pair between two other namespaces) are asked of every
///    other namespace in turn, until all are known.
fn resolve_nsids(
    sockets: &[netlink::Reader],
    fds: &[OwnedFd],
    namespaces: &[Found],
    dumps: &[Contents],
    mut map: HashMap<(usize, i32), usize>,
) -> Result<HashMap<(usize, i32), usize>> {
    // 2. The other ends of resolved pairs.
    let by_index: Vec<HashMap<u32, &LinkMessage>> = dumps
        .iter()
        .map(|d| d.links.iter().map(|l| (l.header.index, l)).collect())
        .collect();
    let mut inferred = Vec::new();
    for (a, d) in dumps.iter().enumerate() {
        for l in &d.links {
            let (Some(peer), Some(id)) = attrs::link_peer(l) else {
                continue;
            };
            let Some(&b) = map.get(&(a, id)) else {
                continue;
            };
            if let Some(back) = by_index[b].get(&peer) {
                if let (Some(i), Some(id_b)) = attrs::link_peer(back) {
                    if i == l.header.index {
                        inferred.push(((b, id_b), a));
                    }
                }
            }
        }
    }
    for (k, v) in inferred {
        map.entry(k).or_insert(v);
    }
    // 3. Whatever is left, asked of the others.
    for (a, d) in dumps.iter().enumerate() {
        let mut left: HashSet<i32> = d
            .links
            .iter()
            .filter_map(|l| attrs::link_peer(l).1)
            .filter(|id| !map.contains_key(&(a, *id)))
            .collect();
        for b in (0..namespaces.len()).filter(|&b| b != a) {
            if left.is_empty() {
                break;
            }
            if let Some(id) = sockets[a].nsid_of(fds[b].as_fd())? {
                if left.remove(&id) {
                    map.insert((a, id), b);
                }
            }
        }
    }
    Ok(map)
}

fn build_namespace(f: &Found, d: &Contents, x: &Extra) -> Namespace {
    let (kind, id) = match f
        .names
        .iter()
        .map(|n| classify_namespace(n))
        .find(|c| c.0 != NamespaceKind::Plain)
    {
        Some((k, id)) => (k, id.map(str::to_owned)),
        None if f.root => (NamespaceKind::Root, None),
        None => (NamespaceKind::Plain, None),
    };
    let names_by_index: HashMap<u32, String> = d
        .links
        .iter()
        .filter_map(|l| attrs::link_name(l).map(|n| (l.header.index, n.to_owned())))
        .collect();
    let links = d
        .links
        .iter()
        .map(|l| build_link(l, &names_by_index, &d.addresses, x))
        .collect();
    let routes = d
        .routes
        .iter()
        .map(|r| build_route(r, &names_by_index))
        .collect();
    let processes = if f.root {
        vec![]
    } else {
        f.pids
            .iter()
            .filter_map(|&pid| procs::command_line(pid).map(|command| Process { pid, command }))
            .collect()
    };
    Namespace {
        label: f.label(),
        names: f.names.clone(),
        inode: f.id.ino,
        root: f.root,
        current: f.current,
        kind,
        neutron_id: id,
        ip_forward: Some(d.ipv4_forwarding),
        links,
        routes,
        processes,
        process_count: f.pids.len(),
        nft_tables: vec![],
        security_groups: false,
        nat: None,
    }
}

fn build_link(
    l: &LinkMessage,
    names: &HashMap<u32, String>,
    addrs: &[AddressMessage],
    x: &Extra,
) -> Link {
    let kind = if l.header.flags.contains(LinkFlags::Loopback) {
        "loopback"
    } else {
        "device"
    };
    let mut link = Link::new(
        l.header.index,
        attrs::link_name(l).unwrap_or_default(),
        kind,
    );
    link.up = l.header.flags.contains(LinkFlags::Up);
    link.addresses = addrs
        .iter()
        .filter(|a| a.header.index == l.header.index)
        .filter_map(build_address)
        .collect();
    link.vxlan = build_vxlan(l, names, x);
    for a in &l.attributes {
        match a {
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Address(mac) => link.mac = Some(attrs::mac_text(mac)),
            LinkAttribute::OperState(s) => link.operstate = s.to_string(),
            LinkAttribute::Controller(i) => {
                link.master = Some(names.get(i).cloned().unwrap_or_else(|| format!("if{i}")))
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Other(k)) => link.kind = k.clone(),
                        LinkInfo::Kind(k) => link.kind = k.to_string(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn build_vxlan(l: &LinkMessage, names: &HashMap<u32, String>, x: &Extra) -> Option<Vxlan> {
    let v = attrs::vxlan(l)?;
    let (fdb, neighbours) = attrs::entries_of(l.header.index, &x.fdb, &x.neighbours);
    Some(Vxlan {
        fdb,
        neighbours,
        vni: v.vni,
        port: v.port,
        dev: v.dev.and_then(|i| names.get(&i).cloned()),
        local: v.local.map(|ip| ip.to_string()),
        group: v.group.map(|ip| ip.to_string()),
        learning: v.learning,
        proxy: v.proxy,
    })
}

fn family_word(f: AddressFamily) -> Option<&'static str> {
    match f {
        AddressFamily::Inet => Some("inet"),
        AddressFamily::Inet6 => Some("inet6"),
        _ => None,
    }
}

fn build_address(a: &AddressMessage) -> Option<Address> {
    let family = family_word(a.header.family)?;
    let broadcast = a.attributes.iter().find_map(|attr| match attr {
        AddressAttribute::Broadcast(ip) => Some(ip.to_string()),
        _ => None,
    });
    let ip = attrs::address_ip(a)?;
    Some(Address {
        family,
        address: ip.to_string(),
        prefix_len: a.header.prefix_len,
        scope: names::scope(a.header.scope.into()),
        broadcast,
    })
}

fn route_addr(a: &RouteAddress) -> Option<String> {
    match a {
        RouteAddress::Inet(ip) => Some(ip.to_string()),
        RouteAddress::Inet6(ip) => Some(ip.to_string()),
        _ => None,
    }
}

fn build_route(r: &RouteMessage, names: &HashMap<u32, String>) -> Route {
    let family = family_word(r.header.address_family).unwrap_or("other");
    let mut dst = None;
    let mut route = Route {
        family,
        destination: String::new(),
        default: false,
        gateway: None,
        dev: None,
        metric: None,
        protocol: names::route_protocol(r.header.protocol.into()),
        scope: names::scope(r.header.scope.into()),
        route_type: names::route_type(r.header.kind.into()),
        prefsrc: None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_addr(d),
            RouteAttribute::Gateway(g) => route.gateway = route_addr(g),
            RouteAttribute::Oif(i) => route.dev = names.get(i).cloned(),
            RouteAttribute::Priority(m) => route.metric = Some(*m),
            RouteAttribute::PrefSource(s) => route.prefsrc = route_addr(s),
            _ => {}
        }
    }
    let len = r.header.destination_prefix_length;
    route.default = len == 0;
    route.destination = match dst {
        Some(d) => format!("{d}/{len}"),
        None if len == 0 => "default".into(),
        None => format!("?/{len}"),
    };
    route
}

/// Fills in every veth's peer: same namespace when the link carries no
/// `IFLA_LINK_NETNSID`, else the namespace that id names.
fn link_peers(out: &mut [Namespace], dumps: &[Contents], peer_ns: &HashMap<(usize, i32), usize>) {
    let mut peers = Vec::new();
    for (a, d) in dumps.iter().enumerate() {
        for l in &d.links {
            let (peer_index, nsid) = attrs::link_peer(l);
            let is_veth = attrs::link_kind(l) == Some(&InfoKind::Veth);
            if !is_veth {
                continue;
            }
            let b = match nsid {
                None => Some(a),
                Some(id) => peer_ns.get(&(a, id)).copied(),
            };
            let peer = b.zip(peer_index).and_then(|(b, idx)| {
                let ns = &out[b];
                ns.links.iter().find(|p| p.index == idx).map(|p| Peer {
                    namespace: ns.label.clone(),
                    namespace_inode: ns.inode,
                    index: p.index,
                    name: p.name.clone(),
                    mtu: p.mtu,
                    master: p.master.clone(),
                })
            });
            peers.push((a, l.header.index, peer));
        }
    }
    for (a, index, peer) in peers {
        if let Some(link) = out[a].links.iter_mut().find(|l| l.index == index) {
            link.peer = peer;
        }
    }
}
