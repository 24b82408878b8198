//! Router and DHCP ports: a veth whose namespace end is born inside the namespace
//! (`ns-`/`qr-`/`qg-` + port id), whose host end (`tap` + port id) sits on the network's
//! bridge — as the L3 and DHCP agents' `BridgeInterfaceDriver` plugs them — plus the
//! addresses, default route and namespace sysctls around it. A port whose device someone
//! else made on the host (an Open vSwitch internal port, as `OVSInterfaceDriver` plugs
//! them) is moved into its namespace instead ([`HostEnd::Moved`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ipnet::IpNet;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use netlink_packet_route::AddressFamily;
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sp_kernel::netlink::{self, Netlink};
use sp_kernel::{attrs, ethtool, netns};
use sp_neutron::{tap_name, PortKind};

use sp_kernel::links::{
    delete_link, ensure_master, ensure_mtu, ensure_up, no_link_local, require_link, set_link, Links,
};
use sp_names::{IfName, NsName};

use sp_kernel::steps::RolledBack;

use crate::{Change, Error, Object, Result, Setting};

/// One port to plug.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub port_id: String,
    pub kind: PortKind,
    /// `qdhcp-<network>` or `qrouter-<router>`; created when missing.
    pub namespace: String,
    /// What is on the host side.
    pub host: HostEnd,
    /// Neutron's port MAC, set on the namespace end.
    pub mac: Option<[u8; 6]>,
    /// Both ends; `None` takes the bridge's MTU (the VXLAN MTU on a VXLAN network), so
    /// the namespace end does not stay at 1500 behind a 1450 tap as in Liberty.
    pub mtu: Option<u32>,
    /// Addresses on the namespace end, exactly (other global ones are removed); `None`
    /// leaves them alone (an instance's guest takes its own by DHCP).
    pub addresses: Option<Vec<IpNet>>,
    /// `ip route replace default via GATEWAY dev <inner>` in the namespace.
    pub gateway: Option<IpAddr>,
    /// `net.ipv4.ip_forward=1` in the namespace (routers).
    pub ip_forward: bool,
}

/// The host side of a port.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEnd {
    /// A veth whose host end `tap…` sits on this Linux bridge (`brq…`), which must exist.
    Bridge(String),
    /// No host end: a device named like the namespace end (`qg-…`), made on the host by
    /// someone else — an Open vSwitch internal port — is moved into the namespace. It
    /// keeps its MTU unless one is asked for.
    Moved,
}

impl PortSpec {
    /// The host end: `tap` + port id[:11].
    pub fn tap(&self) -> String {
        tap_name(&self.port_id)
    }

    /// The namespace end: `ns-`/`qr-`/`qg-` + port id[:11].
    pub fn inner(&self) -> String {
        self.kind.device(&self.port_id)
    }

    fn validate(&self) -> Result<()> {
        IfName::check(&self.tap())?;
        IfName::check(&self.inner())?;
        if let HostEnd::Bridge(b) = &self.host {
            IfName::check(b)?;
        }
        NsName::check(&self.namespace)?;
        Ok(())
    }
}

/// A namespace opened for plugging: its handle and a descriptor for `IFLA_NET_NS_FD`.
struct Opened {
    nl: Netlink,
    fd: OwnedFd,
    /// For the transmit checksum offload of its DHCP ports (opened where it has one).
    ethtool: Option<ethtool::Socket>,
    /// What it held when it was opened.
    view: View,
}

/// What each namespace the ports name wants: `ip_forward`, the route families whose
/// default route a port of it sets, and whether it holds a DHCP port.
struct Wants<'a> {
    forward: BTreeMap<&'a str, bool>,
    families: BTreeMap<&'a str, Vec<AddressFamily>>,
    dhcp: BTreeSet<&'a str>,
}

impl<'a> Wants<'a> {
    fn of(ports: &'a [PortSpec]) -> Self {
        let mut w = Wants {
            forward: BTreeMap::new(),
            families: BTreeMap::new(),
            dhcp: BTreeSet::new(),
        };
        for p in ports {
            if p.kind == PortKind::Dhcp {
                w.dhcp.insert(&p.namespace);
            }
            *w.forward.entry(&p.namespace).or_default() |= p.ip_forward;
            let f = w.families.entry(&p.namespace).or_default();
            if let Some(gw) = p.gateway {
                let family = match gw {
                    IpAddr::V4(_) => AddressFamily::Inet,
                    IpAddr::V6(_) => AddressFamily::Inet6,
                };
                if !f.contains(&family) {
                    f.push(family);
                }
            }
        }
        w
    }

    /// Inside namespace `name` (`fresh`: just made): sysctls, netlink sockets, what it
    /// holds — read on this thread, so no request of the runtime waits for it.
    fn inside(&self, name: &str, fresh: bool) -> sp_kernel::Result<Inside> {
        let mut done = Vec::new();
        if fresh {
            netns::write_net_sysctl("ipv4/conf/all/promote_secondaries", "1")?;
            netns::write_net_sysctl("ipv4/conf/default/promote_secondaries", "1")?;
        }
        let socks = netlink::open_sockets()?;
        let c = match fresh {
            true => socks.reader().contents_of_new()?,
            false => socks.reader().contents(&self.families[name])?,
        };
        if self.forward[name] && !c.ipv4_forwarding {
            netns::write_net_sysctl("ipv4/ip_forward", "1")?;
            done.push(Change::set(
                Object::namespace(name),
                Setting::IpForward { value: 1 },
            ));
        }
        // A router forwards IPv6 too, as Liberty's L3 agent sets it.
        if self.forward[name] && c.ipv6_forwarding == Some(false) {
            netns::write_net_sysctl("ipv6/conf/all/forwarding", "1")?;
            done.push(Change::set(
                Object::namespace(name),
                Setting::Ipv6Forwarding { value: 1 },
            ));
        }
        let view = View {
            links: c.links,
            addresses: c.addresses,
            defaults: c.routes.into_iter().filter(is_main_default).collect(),
        };
        let ethtool = match self.dhcp.contains(name) {
            true => Some(ethtool::Socket::open()?),
            false => None,
        };
        Ok((socks, ethtool, view, done))
    }
}

type Inside = (netlink::Sockets, Option<ethtool::Socket>, View, Vec<Change>);

/// The ports' namespaces that exist, entered and read (and `ip_forward` set where a
/// port wants it): what [`plug_with`] starts from.
pub struct Entered {
    /// By name: the descriptor it was entered by (for `IFLA_NET_NS_FD`), and what the
    /// hop found.
    namespaces: BTreeMap<String, (OwnedFd, Inside)>,
}

/// Enters every existing namespace `ports` name (one hop, a thread per CPU) while the
/// calling thread runs `meanwhile` — reading the host's links, say.
pub fn enter_while<R>(ports: &[PortSpec], meanwhile: impl FnOnce() -> R) -> (Result<Entered>, R) {
    let wants = Wants::of(ports);
    let existing = || -> Result<(Vec<&str>, Vec<OwnedFd>)> {
        for p in ports {
            p.validate()?;
        }
        let live: BTreeSet<String> = netns::list_named()?
            .into_iter()
            .filter(|e| e.state.is_ok())
            .map(|e| e.name)
            .collect();
        let names: Vec<&str> = wants
            .forward
            .keys()
            .copied()
            .filter(|n| live.contains(*n))
            .collect();
        let fds = names
            .iter()
            .map(|n| netns::open(&netns::named_path(n)?))
            .collect::<sp_kernel::Result<_>>()?;
        Ok((names, fds))
    };
    let (names, fds) = match existing() {
        Ok(found) => found,
        Err(e) => return (Err(e), meanwhile()),
    };
    let (read, here) = netns::run_in_each_while(&fds, |i| wants.inside(names[i], false), meanwhile);
    let entered = names
        .iter()
        .zip(fds)
        .zip(read)
        .map(|((name, fd), r)| Ok(((*name).to_owned(), (fd, r?))))
        .collect::<Result<_>>()
        .map(|namespaces| Entered { namespaces });
    (entered, here)
}

/// Makes the namespaces `ports` name that `entered` lacks (one thread hop: like `ip netns
/// add`, `promote_secondaries=1`, `lo` up, routers `ip_forward=1`), and opens all of them
/// for plugging.
async fn open_namespaces(
    ports: &[PortSpec],
    entered: Entered,
    created: &mut Vec<String>,
    changes: &mut Vec<Change>,
) -> Result<BTreeMap<String, Opened>> {
    let wants = Wants::of(ports);
    let missing: Vec<&str> = wants
        .forward
        .keys()
        .copied()
        .filter(|n| !entered.namespaces.contains_key(*n))
        .collect();
    // A new namespace's descriptor (for `IFLA_NET_NS_FD`) is taken while inside it.
    let made = netns::create_each(&missing, |i| {
        let fd = netns::open(netns::THREAD_SELF.as_ref())?;
        wants.inside(missing[i], true).map(|r| (fd, r))
    })?;

    // Every namespace made is rolled back on a failure, also those made after one that
    // failed.
    created.extend(
        missing
            .iter()
            .zip(&made)
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| (*n).to_owned()),
    );
    let mut out = BTreeMap::new();
    for (name, res) in missing.iter().zip(made) {
        let (fd, (socks, ethtool, view, done)) = res?;
        changes.push(Change::new(Object::namespace(name), "created"));
        changes.extend(done);
        let nl = Netlink::from_sockets(socks)?;
        set_link(
            &nl,
            LinkUnspec::new_with_index(1).up().build(),
            "lo",
            "set up",
        )
        .await?;
        out.insert(
            (*name).to_owned(),
            Opened {
                nl,
                fd,
                ethtool,
                view,
            },
        );
    }
    for (name, (fd, (socks, ethtool, view, done))) in entered.namespaces {
        changes.extend(done);
        let nl = Netlink::from_sockets(socks)?;
        // `lo` up — also in a namespace a killed run made but did not finish.
        if let Some(lo) = view
            .links
            .iter()
            .find(|l| attrs::link_name(l) == Some("lo"))
        {
            ensure_up(&nl, lo, &format!("lo in {name}"), changes).await?;
        }
        out.insert(
            name,
            Opened {
                nl,
                fd,
                ethtool,
                view,
            },
        );
    }
    Ok(out)
}

/// Plugs every port; changes only what differs. On failure, the veths and namespaces
/// this call created are removed again before the error is returned.
pub async fn plug(host: &Netlink, ports: &[PortSpec], changes: &mut Vec<Change>) -> Result<()> {
    let (entered, links) = enter_while(ports, || Links::read(host));
    plug_with(host, &links?, entered?, ports, changes).await
}

/// [`plug`] from what is known already: the host's links as they are now (one dump
/// serves every lookup — a query per link would cost the kernel a walk over every
/// namespace id per answer), and the ports' existing namespaces, [`enter_while`]d.
pub async fn plug_with(
    host: &Netlink,
    host_links: &Links,
    entered: Entered,
    ports: &[PortSpec],
    changes: &mut Vec<Change>,
) -> Result<()> {
    for p in ports {
        p.validate()?;
    }
    let mut created_ns = Vec::new();
    let result = plug_all(host, host_links, entered, ports, &mut created_ns, changes).await;
    if let Err(cause) = result {
        let mut rollback = Vec::new();
        for tap in ports
            .iter()
            .filter(|p| matches!(p.host, HostEnd::Bridge(_)))
            .map(PortSpec::tap)
            .filter(|t| host_links.get(t).is_none())
        {
            if let Err(e) = delete_link(host, &tap).await {
                rollback.push(e.into());
            }
        }
        for ns in &created_ns {
            if let Err(e) = netns::delete(ns) {
                rollback.push(e.into());
            }
        }
        return Err(Error::RolledBack(Box::new(RolledBack { cause, rollback })));
    }
    Ok(())
}

async fn plug_all(
    host: &Netlink,
    host_links: &Links,
    entered: Entered,
    ports: &[PortSpec],
    created_ns: &mut Vec<String>,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let bridges: BTreeSet<&str> = ports
        .iter()
        .filter_map(|p| match &p.host {
            HostEnd::Bridge(b) => Some(b.as_str()),
            HostEnd::Moved => None,
        })
        .collect();
    let mut bridge_links = BTreeMap::new();
    for b in bridges {
        let link = host_links
            .get(b)
            .ok_or_else(|| sp_kernel::Error::NoSuchLink(b.to_owned()))?;
        if attrs::bridge(link).is_none() {
            return Err(Error::WrongKind {
                name: b.into(),
                found: attrs::link_kind_word(link),
                wanted: "bridge",
            });
        }
        bridge_links.insert(b.to_owned(), link);
    }
    let namespaces = open_namespaces(ports, entered, created_ns, changes).await?;
    // What each namespace holds; also to refuse duplicate addresses before any change.
    for p in ports {
        let View {
            links,
            addresses: addrs,
            ..
        } = &namespaces[&p.namespace].view;
        for want in p.addresses.iter().flatten() {
            let holder = addrs
                .iter()
                .find(|a| attrs::address_ip(a) == Some(want.addr()));
            if let Some(a) = holder {
                let on = links
                    .iter()
                    .find(|l| l.header.index == a.header.index)
                    .and_then(attrs::link_name)
                    .unwrap_or("?");
                if on != p.inner() {
                    return Err(Error::AddressInUse {
                        address: want.to_string(),
                        link: on.to_owned(),
                        namespace: Some(p.namespace.clone()),
                    });
                }
            }
        }
    }
    // The host's namespace, where the taps are born (`IFLA_NET_NS_FD`).
    let host_fd = netns::open(netns::THREAD_SELF.as_ref())?;
    let (namespaces, bridge_links, host_fd) = (&namespaces, &bridge_links, &host_fd);
    let per_port = ports.iter().map(|p| {
        let ns = &namespaces[&p.namespace];
        let view = &ns.view;
        async move {
            match &p.host {
                HostEnd::Bridge(b) => {
                    let tap = host_links.get(&p.tap()).cloned();
                    let host = (host, host_fd.as_fd());
                    plug_one(host, ns, view, bridge_links[b.as_str()], tap, p).await
                }
                HostEnd::Moved => move_in(host, ns, view, host_links.get(&p.inner()), p).await,
            }
        }
    });
    for res in futures::future::join_all(per_port).await {
        changes.extend(res?);
    }
    Ok(())
}

/// One port: the veth (created in place if missing), then both ends' settings.
/// `view` is what the namespace held when the plugging began (links, addresses): it
/// answers every question about ports that were already there without a query each.
async fn plug_one(
    (host, host_fd): (&Netlink, BorrowedFd<'_>),
    ns: &Opened,
    view: &View,
    bridge: &LinkMessage,
    tap_link: Option<LinkMessage>,
    p: &PortSpec,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let (tap, inner) = (p.tap(), p.inner());
    let bridge_name = attrs::link_name(bridge).unwrap_or_default();
    let mtu = p.mtu.or(attrs::link_mtu(bridge)).unwrap_or(1500);
    let inner_link = view
        .links
        .iter()
        .find(|l| attrs::link_name(l) == Some(&inner))
        .cloned();
    // A pair is right when both ends exist and point at each other.
    let paired = match (&tap_link, &inner_link) {
        (Some(t), Some(i)) => {
            attrs::link_peer(t).0 == Some(i.header.index)
                && attrs::link_peer(i).0 == Some(t.header.index)
        }
        _ => false,
    };
    if !paired {
        for (nl, link, name) in [(host, &tap_link, &tap), (&ns.nl, &inner_link, &inner)] {
            if let Some(l) = link {
                nl.handle()
                    .link()
                    .del(l.header.index)
                    .execute()
                    .await
                    .map_err(|e| sp_kernel::Error::netlink(format!("delete stale {name}"), e))?;
                changes.push(Change::saying(
                    Object::link(name),
                    "deleted",
                    Default::default(),
                    "deleted (stale half of a pair)",
                ));
            }
        }
        // Made from inside the namespace, its end the device asked for and up at once
        // (a veth's peer cannot be: veth_open() of a peer whose pair is still being made
        // fails with ENOTCONN), the tap born on the host as the peer. The tap is enslaved
        // with its link-local address switched off, in one request, and then set up.
        let mut end = one_queue(LinkVeth::new(&inner, &tap)).mtu(mtu).up();
        if let Some(mac) = p.mac {
            end = end.address(mac.to_vec());
        }
        let peer = one_queue(
            LinkUnspec::new_with_name(&tap)
                .setns_by_fd(host_fd.as_raw_fd())
                .mtu(mtu),
        );
        let msg = end
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let made = ns
            .nl
            .create_link(msg, &inner, || {
                format!("create veth {tap} ↔ {inner} in {}", p.namespace)
            })
            .await?;
        changes.push(Change::veth(
            &tap.to_string(),
            &inner.to_string(),
            &p.namespace.to_string(),
        ));
        // The tap's index is the namespace end's peer in the kernel's echo.
        let tap_index = attrs::link_peer(&made)
            .0
            .ok_or_else(|| sp_kernel::Error::NoSuchLink(tap.clone()))?;
        let enslave = LinkUnspec::new_with_index(tap_index)
            .controller(bridge.header.index)
            .build();
        let what = format!("enslave to {bridge_name} (addrgenmode none):");
        no_link_local(host, enslave, &tap, &what).await?;
        set_link(
            host,
            LinkUnspec::new_with_index(tap_index).up().build(),
            &tap,
            "set up",
        )
        .await?;
        let end = End::Made(made.header.index);
        return finish_inner(ns, p, (&inner, end), view, mtu, changes).await;
    }
    let (tap_link, inner_link) = (tap_link.expect("paired"), inner_link.expect("paired"));
    // Host end: on the bridge, up, at the MTU.
    ensure_master(
        host,
        &tap_link,
        &tap,
        bridge_name,
        bridge.header.index,
        &mut changes,
    )
    .await?;
    ensure_mtu(host, &tap_link, &tap, mtu, &mut changes).await?;
    ensure_up(host, &tap_link, &tap, &mut changes).await?;
    let end = End::Existing(&inner_link);
    finish_inner(ns, p, (&inner, end), view, mtu, changes).await
}

/// One transmit and one receive queue, asked for at creation. Without them a veth end
/// is allocated with a queue per CPU and then cut down to one (`veth_init_queues`), and
/// cutting the queues of a registered device waits for an expedited RCU grace period
/// under the RTNL — twice per pair. `ip -batch` of 200 pairs in a fresh namespace: 76 and
/// 230 ms as iproute2 makes them, 48 and 49 ms with `numtxqueues 1 numrxqueues 1` on
/// both ends. The result is the same one queue each way that the kernel leaves.
fn one_queue<T>(link: LinkMessageBuilder<T>) -> LinkMessageBuilder<T> {
    link.append_extra_attribute(LinkAttribute::NumTxQueues(1))
        .append_extra_attribute(LinkAttribute::NumRxQueues(1))
}

/// A device made on the host by someone else, moved into the namespace when it is not
/// there yet, then set like a veth's namespace end.
async fn move_in(
    host: &Netlink,
    ns: &Opened,
    view: &View,
    on_host: Option<&LinkMessage>,
    p: &PortSpec,
) -> Result<Vec<Change>> {
    let inner = p.inner();
    let mut changes = Vec::new();
    let (link, fresh) = match view
        .links
        .iter()
        .find(|l| attrs::link_name(l) == Some(&inner))
    {
        Some(l) => (l.clone(), false),
        None => {
            let l = on_host.ok_or_else(|| sp_kernel::Error::NoSuchLink(inner.clone()))?;
            let msg = LinkUnspec::new_with_index(l.header.index)
                .setns_by_fd(ns.fd.as_raw_fd())
                .build();
            set_link(host, msg, &format!("{inner} into {}", p.namespace), "move").await?;
            changes.push(Change::moved_into(
                Object::link(&inner),
                &p.namespace.to_string(),
            ));
            (require_link(&ns.nl, &inner)?, true)
        }
    };
    let mtu = p.mtu.or(attrs::link_mtu(&link)).unwrap_or(1500);
    let end = match fresh {
        true => End::Moved(&link),
        false => End::Existing(&link),
    };
    finish_inner(ns, p, (&inner, end), view, mtu, changes).await
}

/// What a namespace held when the plugging began: it answers every question about
/// ports that were already there without a query each.
struct View {
    links: Vec<LinkMessage>,
    addresses: Vec<AddressMessage>,
    /// The main table's default routes of the families its ports want one of.
    defaults: Vec<RouteMessage>,
}

/// The namespace end as [`finish_inner`] finds it.
enum End<'a> {
    /// There when the plugging began: the view knows its addresses.
    Existing(&'a LinkMessage),
    /// Moved into the namespace just now (a move flushes addresses), read after it.
    Moved(&'a LinkMessage),
    /// Made just now (this index), up, with the MAC and MTU asked for, no addresses.
    Made(u32),
}

/// The namespace end (`inner`, as found): MAC, MTU, up, a DHCP port's transmit
/// checksum offload off, addresses, default route.
async fn finish_inner(
    ns: &Opened,
    p: &PortSpec,
    (inner, end): (&str, End<'_>),
    view: &View,
    mtu: u32,
    mut changes: Vec<Change>,
) -> Result<Vec<Change>> {
    let (index, addresses) = match end {
        End::Existing(l) => (l.header.index, &view.addresses[..]),
        End::Moved(l) => (l.header.index, &[][..]),
        End::Made(index) => (index, &[][..]),
    };
    match end {
        End::Existing(link) | End::Moved(link) => {
            if let Some(mac) = p.mac {
                if attrs::link_mac(link) != Some(&mac[..]) {
                    let msg = LinkUnspec::new_with_index(index)
                        .address(mac.to_vec())
                        .build();
                    set_link(&ns.nl, msg, inner, "set MAC of").await?;
                    changes.push(Change::set(
                        Object::link(inner),
                        Setting::Mac {
                            value: attrs::mac_text(&mac),
                            of: None,
                        },
                    ));
                }
            }
            ensure_mtu(&ns.nl, link, inner, mtu, &mut changes).await?;
            ensure_up(&ns.nl, link, inner, &mut changes).await?;
        }
        End::Made(_) => {}
    }
    if p.kind == PortKind::Dhcp {
        let sock = ns.ethtool.as_ref().expect("opened where a DHCP port is");
        ensure_tx_checksum_off(sock, inner, &mut changes)?;
    }
    if let Some(want) = &p.addresses {
        ensure_addresses(&ns.nl, index, inner, want, addresses, &mut changes).await?;
    }
    if let Some(gw) = p.gateway {
        // A default route through a link new here cannot be among the view's.
        let on = (index, inner);
        ensure_default_route(&ns.nl, on, gw, &view.defaults, &mut changes).await?;
    }
    Ok(changes)
}

/// A DHCP port's device computes its UDP checksums itself: its transmit checksum offload
/// off, so that DHCP replies leave complete — what Liberty's `CHECKSUM --checksum-fill`
/// rule in `qdhcp-` does (`docs/dhcp.md`). Written only when it is on.
fn ensure_tx_checksum_off(
    sock: &ethtool::Socket,
    name: &str,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if sock.tx_checksum(name)? {
        sock.set_tx_checksum(name, false)?;
        changes.push(Change::set(
            Object::link(name),
            Setting::TxChecksum { value: "off" },
        ));
    }
    Ok(())
}

/// Exactly `want` as the global addresses of link `index` (link-local ones untouched):
/// `ip addr add CIDR scope global dev X brd +`, stale ones deleted. `current` is what the
/// namespace holds (any links).
async fn ensure_addresses(
    nl: &Netlink,
    index: u32,
    name: &str,
    want: &[IpNet],
    current: &[AddressMessage],
    changes: &mut Vec<Change>,
) -> Result<()> {
    let have: Vec<&AddressMessage> = current
        .iter()
        .filter(|a| a.header.index == index && u8::from(a.header.scope) == 0)
        .collect();
    let same = |a: &AddressMessage, w: &IpNet| {
        attrs::address_ip(a) == Some(w.addr()) && a.header.prefix_len == w.prefix_len()
    };
    for a in &have {
        if !want.iter().any(|w| same(a, w)) {
            nl.handle()
                .address()
                .del((*a).clone())
                .execute()
                .await
                .map_err(|e| {
                    sp_kernel::Error::netlink(format!("delete stale address from {name}"), e)
                })?;
            let ip = attrs::address_ip(a).map_or("?".into(), |ip| ip.to_string());
            let address = format!("{ip}/{}", a.header.prefix_len);
            changes.push(Change::new(Object::address(address, Some(name)), "deleted"));
        }
    }
    for w in want {
        if !have.iter().any(|a| same(a, w)) {
            let mut req = nl.handle().address().add(index, w.addr(), w.prefix_len());
            // `brd +`, as the agents add them: a floating IP's /32 gets itself.
            if let (IpAddr::V4(ip), 31..=32) = (w.addr(), w.prefix_len()) {
                req.message_mut().attributes.push(
                    netlink_packet_route::address::AddressAttribute::Broadcast(
                        sp_kernel::steps::broadcast_of(ip, w.prefix_len()),
                    ),
                );
            }
            req.execute()
                .await
                .map_err(|e| sp_kernel::Error::netlink(format!("add {w} to {name}"), e))?;
            changes.push(Change::new(Object::address(w, Some(name)), "added"));
        }
    }
    Ok(())
}

/// A default route of the main table.
fn is_main_default(r: &RouteMessage) -> bool {
    r.header.destination_prefix_length == 0
        && attrs::route_table(r) == 254
        && u8::from(r.header.kind) == 1
}

/// `ip route replace default via GW dev NAME`, unless it is already so.
/// `current`: the namespace's default routes.
async fn ensure_default_route(
    nl: &Netlink,
    (index, name): (u32, &str),
    gw: IpAddr,
    current: &[RouteMessage],
    changes: &mut Vec<Change>,
) -> Result<()> {
    if current
        .iter()
        .any(|r| attrs::route_gateway(r) == Some(gw) && attrs::route_oif(r) == Some(index))
    {
        return Ok(());
    }
    // `proto boot`, as `ip route replace` leaves the agents' default routes.
    let msg = match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(g)
            .output_interface(index)
            .protocol(RouteProtocol::Boot)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(g)
            .output_interface(index)
            .protocol(RouteProtocol::Boot)
            .build(),
    };
    nl.handle()
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| sp_kernel::Error::netlink(format!("default via {gw} dev {name}"), e))?;
    changes.push(Change::set(
        Object::DefaultRoute {
            device: name.into(),
        },
        Setting::Gateway { value: gw },
    ));
    Ok(())
}
