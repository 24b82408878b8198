//! Router and DHCP ports: a veth whose namespace end is born inside the namespace
//! (`ns-`/`qr-`/`qg-` + port id), whose host end (`tap` + port id) sits on the network's
//! bridge — as the L3 and DHCP agents' `BridgeInterfaceDriver` plugs them — plus the
//! addresses, default route and namespace sysctls around it. A port whose device someone
//! else made on the host (an Open vSwitch internal port, as `OVSInterfaceDriver` plugs
//! them) is moved into its namespace instead ([`HostEnd::Moved`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use ipnet::IpNet;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};
use sp_kernel::netlink::{self, Netlink};
use sp_kernel::{attrs, netns};
use sp_neutron::{tap_name, PortKind};

use crate::network::{ensure_master, ensure_up, no_link_local_by_name, require_link, set_link};
use crate::{input, Change, Error, Result};

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
        input::ifname(&self.tap())?;
        input::ifname(&self.inner())?;
        if let HostEnd::Bridge(b) = &self.host {
            input::ifname(b)?;
        }
        netns::validate_name(&self.namespace)?;
        Ok(())
    }
}

/// A namespace opened for plugging: its handle and a descriptor for `IFLA_NET_NS_FD`.
struct Opened {
    nl: Netlink,
    fd: OwnedFd,
}

/// Opens (creating when missing) every namespace the ports name, in one thread hop:
/// new ones get `promote_secondaries=1` and `lo` up, routers `ip_forward=1`.
async fn open_namespaces(
    ports: &[PortSpec],
    created: &mut Vec<String>,
    changes: &mut Vec<Change>,
) -> Result<BTreeMap<String, Opened>> {
    let mut forward: BTreeMap<&str, bool> = BTreeMap::new();
    for p in ports {
        *forward.entry(&p.namespace).or_default() |= p.ip_forward;
    }
    let live: BTreeSet<String> = netns::list_named()?
        .into_iter()
        .filter(|e| e.state.is_ok())
        .map(|e| e.name)
        .collect();
    let (existing, missing): (Vec<&str>, Vec<&str>) =
        forward.keys().copied().partition(|n| live.contains(*n));

    // Inside each namespace: sysctls, a netlink socket, a descriptor of the namespace.
    let inside = |name: &str, fresh: bool| -> sp_kernel::Result<(OwnedFd, OwnedFd, Vec<Change>)> {
        let mut done = Vec::new();
        if fresh {
            netns::write_net_sysctl("ipv4/conf/all/promote_secondaries", "1")?;
            netns::write_net_sysctl("ipv4/conf/default/promote_secondaries", "1")?;
        }
        if forward[name] && netns::read_net_sysctl("ipv4/ip_forward")? != "1" {
            netns::write_net_sysctl("ipv4/ip_forward", "1")?;
            done.push(Change::new(format!("namespace {name}"), "ip_forward=1"));
        }
        Ok((
            netlink::open_socket()?,
            netns::open(netns::THREAD_SELF.as_ref())?,
            done,
        ))
    };
    let made = netns::create_each(&missing, |i| inside(missing[i], true))?;
    let paths: Vec<OwnedFd> = existing
        .iter()
        .map(|n| netns::open(&netns::named_path(n)?))
        .collect::<sp_kernel::Result<_>>()?;
    let entered = netns::run_in_each(&paths, |i| inside(existing[i], false));

    let mut out = BTreeMap::new();
    for (name, res) in missing.iter().zip(made) {
        let (sock, fd, done) = res?;
        created.push((*name).to_owned());
        changes.push(Change::new(format!("namespace {name}"), "created"));
        changes.extend(done);
        let nl = Netlink::from_socket(sock)?;
        set_link(
            &nl,
            LinkUnspec::new_with_index(1).up().build(),
            "lo",
            "set up",
        )
        .await?;
        out.insert((*name).to_owned(), Opened { nl, fd });
    }
    for (name, res) in existing.iter().zip(entered) {
        let (sock, fd, done) = res?;
        changes.extend(done);
        out.insert(
            (*name).to_owned(),
            Opened {
                nl: Netlink::from_socket(sock)?,
                fd,
            },
        );
    }
    Ok(out)
}

/// Plugs every port; changes only what differs. On failure, the veths and namespaces
/// this call created are removed again before the error is returned.
pub async fn plug(host: &Netlink, ports: &[PortSpec], changes: &mut Vec<Change>) -> Result<()> {
    for p in ports {
        p.validate()?;
    }
    // One dump of the host's links serves every lookup below (a query per link would
    // cost the kernel a walk over every namespace id per answer).
    let host_links: BTreeMap<String, LinkMessage> = host
        .links()
        .await?
        .into_iter()
        .filter_map(|l| Some((attrs::link_name(&l)?.to_owned(), l)))
        .collect();
    let mut created_ns = Vec::new();
    let result = plug_all(host, &host_links, ports, &mut created_ns, changes).await;
    if let Err(cause) = result {
        let mut rollback = Vec::new();
        for tap in ports
            .iter()
            .filter(|p| matches!(p.host, HostEnd::Bridge(_)))
            .map(PortSpec::tap)
            .filter(|t| !host_links.contains_key(t))
        {
            if let Err(e) = crate::teardown::delete_link(host, &tap).await {
                rollback.push(e);
            }
        }
        for ns in &created_ns {
            if let Err(e) = netns::delete(ns) {
                rollback.push(e.into());
            }
        }
        return Err(Error::RolledBack {
            cause: Box::new(cause),
            rollback,
        });
    }
    Ok(())
}

async fn plug_all(
    host: &Netlink,
    host_links: &BTreeMap<String, LinkMessage>,
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
            .ok_or_else(|| Error::NoSuchLink(b.to_owned()))?;
        if attrs::link_kind(link) != Some(&InfoKind::Bridge) {
            return Err(Error::WrongKind {
                name: b.into(),
                found: attrs::link_kind(link).map_or("device".into(), |k| k.to_string()),
                wanted: "bridge",
            });
        }
        bridge_links.insert(b.to_owned(), link);
    }
    let namespaces = open_namespaces(ports, created_ns, changes).await?;
    // Addresses already used in each namespace, to refuse duplicates before any change.
    let mut ns_addrs: BTreeMap<&str, (Vec<LinkMessage>, Vec<AddressMessage>)> = BTreeMap::new();
    for (name, o) in &namespaces {
        let links = o.nl.links().await?;
        // `lo` up in every namespace of ours — also in one a killed run made but did
        // not finish.
        if let Some(lo) = links.iter().find(|l| attrs::link_name(l) == Some("lo")) {
            ensure_up(&o.nl, lo, &format!("lo in {name}"), changes).await?;
        }
        ns_addrs.insert(name, (links, o.nl.addresses().await?));
    }
    for p in ports {
        let (links, addrs) = &ns_addrs[p.namespace.as_str()];
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
    let (namespaces, ns_addrs, bridge_links) = (&namespaces, &ns_addrs, &bridge_links);
    let per_port = ports.iter().map(|p| {
        let ns = &namespaces[&p.namespace];
        let view = &ns_addrs[p.namespace.as_str()];
        async move {
            match &p.host {
                HostEnd::Bridge(b) => {
                    let tap = host_links.get(&p.tap()).cloned();
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
    host: &Netlink,
    ns: &Opened,
    view: &(Vec<LinkMessage>, Vec<AddressMessage>),
    bridge: &LinkMessage,
    tap_link: Option<LinkMessage>,
    p: &PortSpec,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let (tap, inner) = (p.tap(), p.inner());
    let mtu = p.mtu.or(attrs::link_mtu(bridge)).unwrap_or(1500);
    let inner_link = view
        .0
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
                changes.push(Change::new(
                    format!("link {name}"),
                    "deleted (stale half of a pair)",
                ));
            }
        }
        // Not up yet: veth_open() of a peer whose pair is still being made fails with
        // ENOTCONN; the namespace end is set up right after.
        let mut peer = LinkUnspec::new_with_name(&inner)
            .setns_by_fd(ns.fd.as_raw_fd())
            .mtu(mtu);
        if let Some(mac) = p.mac {
            peer = peer.address(mac.to_vec());
        }
        let msg = LinkVeth::new(&tap, &inner)
            .mtu(mtu)
            .controller(bridge.header.index)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        host.handle().link().add(msg).execute().await.map_err(|e| {
            sp_kernel::Error::netlink(format!("create veth {tap} ↔ {inner} in {}", p.namespace), e)
        })?;
        changes.push(Change::new(
            format!("veth {tap}"),
            format!("created, peer {inner} in {}", p.namespace),
        ));
        // The tap is addressed by name from here on: a link query would make the
        // kernel search this namespace's ids for the peer's, which costs a walk over
        // every namespace with a veth into here.
        no_link_local_by_name(host, &tap).await?;
        set_link(
            host,
            LinkUnspec::new_with_name(&tap).up().build(),
            &tap,
            "set up",
        )
        .await?;
        let inner_link = require_link(&ns.nl, &inner).await?;
        return finish_inner(ns, p, &inner, inner_link, &[], mtu, changes).await;
    }
    let (tap_link, inner_link) = (tap_link.expect("paired"), inner_link.expect("paired"));
    // Host end: on the bridge, up, at the MTU.
    let bridge_name = attrs::link_name(bridge).unwrap_or_default().to_owned();
    ensure_master(
        host,
        &tap_link,
        &tap,
        &bridge_name,
        bridge.header.index,
        &mut changes,
    )
    .await?;
    ensure_mtu(host, &tap_link, &tap, mtu, &mut changes).await?;
    ensure_up(host, &tap_link, &tap, &mut changes).await?;
    finish_inner(ns, p, &inner, inner_link, &view.1, mtu, changes).await
}

/// A device made on the host by someone else, moved into the namespace when it is not
/// there yet, then set like a veth's namespace end.
async fn move_in(
    host: &Netlink,
    ns: &Opened,
    view: &(Vec<LinkMessage>, Vec<AddressMessage>),
    on_host: Option<&LinkMessage>,
    p: &PortSpec,
) -> Result<Vec<Change>> {
    let inner = p.inner();
    let mut changes = Vec::new();
    let (link, addresses) = match view.0.iter().find(|l| attrs::link_name(l) == Some(&inner)) {
        Some(l) => (l.clone(), &view.1[..]),
        None => {
            let l = on_host.ok_or_else(|| Error::NoSuchLink(inner.clone()))?;
            let msg = LinkUnspec::new_with_index(l.header.index)
                .setns_by_fd(ns.fd.as_raw_fd())
                .build();
            set_link(host, msg, &format!("{inner} into {}", p.namespace), "move").await?;
            changes.push(Change::new(
                format!("link {inner}"),
                format!("moved into {}", p.namespace),
            ));
            (require_link(&ns.nl, &inner).await?, &[][..])
        }
    };
    let mtu = p.mtu.or(attrs::link_mtu(&link)).unwrap_or(1500);
    finish_inner(ns, p, &inner, link, addresses, mtu, changes).await
}

/// The namespace end: MAC, MTU, up, addresses, default route.
/// `addresses` are the namespace's addresses as they were (none for a new link).
async fn finish_inner(
    ns: &Opened,
    p: &PortSpec,
    inner: &str,
    inner_link: LinkMessage,
    addresses: &[AddressMessage],
    mtu: u32,
    mut changes: Vec<Change>,
) -> Result<Vec<Change>> {
    if let Some(mac) = p.mac {
        if attrs::link_mac(&inner_link) != Some(&mac[..]) {
            let msg = LinkUnspec::new_with_index(inner_link.header.index)
                .address(mac.to_vec())
                .build();
            set_link(&ns.nl, msg, inner, "set MAC of").await?;
            changes.push(Change::new(format!("link {inner}"), "MAC set"));
        }
    }
    ensure_mtu(&ns.nl, &inner_link, inner, mtu, &mut changes).await?;
    ensure_up(&ns.nl, &inner_link, inner, &mut changes).await?;
    if let Some(want) = &p.addresses {
        ensure_addresses(
            &ns.nl,
            inner_link.header.index,
            inner,
            want,
            addresses,
            &mut changes,
        )
        .await?;
    }
    if let Some(gw) = p.gateway {
        ensure_default_route(&ns.nl, inner_link.header.index, inner, gw, &mut changes).await?;
    }
    Ok(changes)
}

async fn ensure_mtu(
    nl: &Netlink,
    link: &LinkMessage,
    name: &str,
    mtu: u32,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if attrs::link_mtu(link) != Some(mtu) {
        set_link(
            nl,
            LinkUnspec::new_with_index(link.header.index)
                .mtu(mtu)
                .build(),
            name,
            "set MTU of",
        )
        .await?;
        changes.push(Change::new(format!("link {name}"), format!("mtu {mtu}")));
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
            changes.push(Change::new(
                format!("address {ip}/{} on {name}", a.header.prefix_len),
                "deleted",
            ));
        }
    }
    for w in want {
        if !have.iter().any(|a| same(a, w)) {
            nl.handle()
                .address()
                .add(index, w.addr(), w.prefix_len())
                .execute()
                .await
                .map_err(|e| sp_kernel::Error::netlink(format!("add {w} to {name}"), e))?;
            changes.push(Change::new(format!("address {w} on {name}"), "added"));
        }
    }
    Ok(())
}

/// The main table's default route of `gw`'s family.
pub(crate) async fn default_routes(
    nl: &Netlink,
    family: AddressFamily,
) -> Result<Vec<RouteMessage>> {
    Ok(nl
        .routes(family)
        .await?
        .into_iter()
        .filter(|r| {
            r.header.destination_prefix_length == 0
                && attrs::route_table(r) == 254
                && u8::from(r.header.kind) == 1
        })
        .collect())
}

/// `ip route replace default via GW dev NAME`, unless it is already so.
async fn ensure_default_route(
    nl: &Netlink,
    index: u32,
    name: &str,
    gw: IpAddr,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let family = if gw.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let current = default_routes(nl, family).await?;
    if current
        .iter()
        .any(|r| attrs::route_gateway(r) == Some(gw) && attrs::route_oif(r) == Some(index))
    {
        return Ok(());
    }
    let msg = match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(g)
            .output_interface(index)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(g)
            .output_interface(index)
            .build(),
    };
    nl.handle()
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| sp_kernel::Error::netlink(format!("default via {gw} dev {name}"), e))?;
    changes.push(Change::new(
        format!("default route in namespace of {name}"),
        format!("via {gw}"),
    ));
    Ok(())
}
