//! rtnetlink, one handle per network namespace.
//!
//! A netlink socket stays in the namespace where it was created. [`Netlink::open_in`]
//! (and [`open_sockets_in`] for many namespaces at once) create the sockets on a
//! dedicated thread that enters the namespace and ends afterwards; the async side only
//! ever sees the finished sockets. Strict checking is on, so filtered dumps are filtered
//! by the kernel.
//!
//! Each handle holds two sockets. Changes go through rtnetlink's connection (requests
//! answered by acks, many in flight at once). Reads — dumps and single link lookups —
//! are answered on the second socket, read straight through by the caller (they are
//! plain functions): the kernel fills a dump's answers while it is read, so nothing
//! there waits on anything else,
//! and the link messages are parsed for what this workspace reads only ([`parse_link`]):
//! parsing every attribute of every link was most of a dump's cost.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use netlink_packet_core::{
    DecodeError, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkHeader, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use rtnetlink::Handle;

use crate::{netns, Error, Result};

/// An rtnetlink handle bound to one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    /// The socket reads are answered on (one dump at a time per socket).
    reads: Arc<Mutex<OwnedFd>>,
}

/// The two route-netlink sockets of a [`Netlink`], opened in one namespace: one for
/// rtnetlink's connection, one for reads ([`Sockets::reader`]).
pub struct Sockets {
    requests: OwnedFd,
    reads: Reader,
}

/// A route-netlink socket for reads alone, opened in one namespace: [`Reader::contents`]
/// and the others read on it without any async runtime — for a namespace hop reading
/// what is inside while there. One socket where a [`Sockets`] opens two: a hop through
/// hundreds of namespaces that only reads pays for one socket's creation and release
/// in each.
pub struct Reader(OwnedFd);

/// Opens a blocking route-netlink socket in the calling thread's namespace, with strict
/// dump checking.
fn open_socket() -> Result<OwnedFd> {
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open netlink socket", e))?;
    sock.bind_auto()
        .map_err(|e| Error::io("bind netlink socket", e))?;
    sock.set_netlink_get_strict_chk(true)
        .map_err(|e| Error::io("enable NETLINK_GET_STRICT_CHK", e))?;
    // SAFETY: `into_raw_fd` hands over sole ownership of a valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(sock.into_raw_fd()) })
}

/// A [`Netlink`]'s sockets in the calling thread's namespace. No async runtime needed;
/// pass them to [`Netlink::from_sockets`].
pub fn open_sockets() -> Result<Sockets> {
    Ok(Sockets {
        requests: open_socket()?,
        reads: open_reader()?,
    })
}

/// A [`Reader`] in the calling thread's namespace.
pub fn open_reader() -> Result<Reader> {
    Ok(Reader(open_socket()?))
}

/// Opens a [`Netlink`]'s sockets inside each namespace (one thread hop for all of them).
pub fn open_sockets_in<N: AsFd + Sync>(namespaces: &[N]) -> Result<Vec<Sockets>> {
    netns::run_in_each(namespaces, |_| open_sockets())
        .into_iter()
        .collect()
}

impl Sockets {
    /// The read socket.
    pub fn reader(&self) -> &Reader {
        &self.reads
    }
}

impl Reader {
    /// What the namespace holds: links, addresses, and the main table's routes of
    /// `route_families`.
    pub fn contents(&self, route_families: &[AddressFamily]) -> Result<Contents> {
        let sock = self.0.as_fd();
        let mut routes = Vec::new();
        for family in route_families {
            routes.extend(read_main_routes(sock, *family)?);
        }
        let (ipv4_forwarding, ipv6_forwarding) = self.forwarding()?;
        Ok(Contents {
            links: read_links(sock)?,
            addresses: read_addresses(sock)?,
            routes,
            ipv4_forwarding,
            ipv6_forwarding,
        })
    }

    /// What a namespace made just now holds of [`Reader::contents`]: only its forwarding
    /// (inherited from the host's for IPv4, `net.core.devconf_inherit_init_net`) can be
    /// other than empty — its one link, `lo` (index 1), is down without addresses.
    pub fn contents_of_new(&self) -> Result<Contents> {
        let (ipv4_forwarding, ipv6_forwarding) = self.forwarding()?;
        Ok(Contents {
            ipv4_forwarding,
            ipv6_forwarding,
            ..Contents::default()
        })
    }

    /// `net.ipv4.ip_forward`, and `net.ipv6.conf.all.forwarding` (`None`: no IPv6).
    fn forwarding(&self) -> Result<(bool, Option<bool>)> {
        let sock = self.0.as_fd();
        Ok((
            read_forwarding(sock, libc::AF_INET)?.unwrap_or(false),
            read_forwarding(sock, libc::AF_INET6)?,
        ))
    }

    /// The neighbour table of `family` (`AddressFamily::Bridge`: the FDB of every
    /// device, `bridge fdb show`; `Inet`/`Inet6`: `ip neigh show`).
    pub fn neighbours(&self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        read_neighbours(self.0.as_fd(), family)
    }

    /// [`Netlink::nsid_of`], answered on the read socket without an async runtime:
    /// from any thread, the id the sockets' namespace uses for the one open at `other`.
    pub fn nsid_of(&self, other: BorrowedFd<'_>) -> Result<Option<i32>> {
        const RTM_NEWNSID: u16 = 88;
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(other.as_raw_fd() as u32));
        let req = encode(RouteNetlinkMessage::GetNsId(msg), false);
        let found = exchange(
            self.0.as_fd(),
            &req,
            false,
            "request namespace id",
            |t, b| {
                (t == RTM_NEWNSID)
                    .then(|| NsidMessage::parse(b))
                    .transpose()
            },
        )?;
        Ok(found
            .iter()
            .flat_map(|m| &m.attributes)
            .find_map(|a| match a {
                NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                _ => None,
            }))
    }
}

impl Netlink {
    /// Wraps sockets opened by [`open_sockets`] (in whatever namespace) and starts the
    /// connection task. Must be called from within a tokio runtime.
    pub fn from_sockets(socks: Sockets) -> Result<Self> {
        // SAFETY: we own the descriptor; TokioSocket takes it over.
        let sock = unsafe { TokioSocket::from_raw_fd(socks.requests.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(sock);
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            reads: Arc::new(Mutex::new(socks.reads.0)),
        })
    }

    /// A handle in the calling thread's own namespace.
    pub fn current() -> Result<Self> {
        Self::from_sockets(open_sockets()?)
    }

    /// Runs `f` on a thread of its own inside named namespace `name`, with a
    /// current-thread runtime and a handle there; the thread ends with `f`, so no other
    /// thread ever changes namespace. For work that must run entirely inside one
    /// namespace (a node of a sandbox, a test host).
    pub fn block_on_in<T: Send>(name: &str, f: impl AsyncFnOnce(Netlink) -> T + Send) -> Result<T> {
        let ns = netns::open(&netns::named_path(name)?)?;
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                netns::enter(ns.as_fd())
                    .map_err(|e| Error::from_errno(format!("enter namespace {name}"), e))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("start a runtime", e))?;
                rt.block_on(async { Ok(f(Netlink::current()?).await) })
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// A handle inside the namespace `ns` (an open nsfs file).
    pub fn open_in(ns: OwnedFd) -> Result<Self> {
        let mut socks = open_sockets_in(std::slice::from_ref(&ns))?;
        Self::from_sockets(socks.pop().expect("sockets per namespace"))
    }

    /// Runs `read` on the read socket (one reader at a time: a netlink socket answers
    /// one dump at a time).
    fn read<T>(&self, read: impl FnOnce(BorrowedFd<'_>) -> Result<T>) -> Result<T> {
        let sock = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        read(sock.as_fd())
    }

    /// The underlying rtnetlink handle, for requests this type does not wrap.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Sends one request with `flags` (plus `NLM_F_REQUEST | NLM_F_ACK`) and waits for
    /// the kernel's answer. For messages the rtnetlink builders cannot express — the
    /// `NLM_F_APPEND` of `bridge fdb append` (rtnetlink issue #60), group deletes.
    pub async fn ack(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        context: impl Fn() -> String,
    ) -> Result<()> {
        let mut req = NetlinkMessage::from(message);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut answers = handle
            .request(req)
            .map_err(|e| Error::netlink(context(), e))?;
        while let Some(answer) = futures::StreamExt::next(&mut answers).await {
            if let NetlinkPayload::Error(e) = answer.payload {
                if e.code.is_some() {
                    return Err(Error::netlink(context(), rtnetlink::Error::NetlinkError(e)));
                }
            }
        }
        Ok(())
    }

    /// Creates a link (`ip link add`: `RTM_NEWLINK` with `NLM_F_CREATE | NLM_F_EXCL`) and
    /// returns it as the kernel made it: the request asks for the kernel's echo
    /// (`NLM_F_ECHO`, honoured by link creation since Linux 6.3), so no query follows.
    /// A query by name would first run the new link's pending link-watch event, and for
    /// a device that is up without carrier (a bridge without ports) that deactivates its
    /// queues: an expedited RCU grace period under the RTNL. The echo is sent before the
    /// kernel applies `IFLA_MASTER` (a failure there fails the creation), so it carries
    /// no master. A kernel that sends no echo is asked by name (`name`).
    pub async fn create_link(
        &self,
        message: LinkMessage,
        name: &str,
        context: impl Fn() -> String,
    ) -> Result<LinkMessage> {
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(message));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
        let mut handle = self.handle.clone();
        let mut answers = handle
            .request(req)
            .map_err(|e| Error::netlink(context(), e))?;
        let mut made = None;
        while let Some(answer) = futures::StreamExt::next(&mut answers).await {
            match answer.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => made = Some(m),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(Error::netlink(context(), rtnetlink::Error::NetlinkError(e)))
                }
                _ => {}
            }
        }
        match made {
            Some(m) => Ok(m),
            None => self
                .link_by_name(name)?
                .ok_or_else(|| Error::NoSuchLink(name.to_owned())),
        }
    }

    /// Sends `requests` (each asking for an ack) in writes of up to `ACKS_PER_WRITE`
    /// requests, which the kernel carries out in order, and returns each one's answer in
    /// order (`context(i)` names request `i` in its error). Marking 403 links for a group
    /// delete request by request through the connection cost about 30 ms, 12 of them the
    /// kernel's.
    pub fn ack_each(
        &self,
        requests: Vec<RouteNetlinkMessage>,
        context: impl Fn(usize) -> String,
    ) -> Result<Vec<Result<()>>> {
        self.read(|sock| ack_each(sock, requests, &context))
    }

    /// The link named `name`, or `None` when there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        skip_stats(&mut msg);
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let context = || format!("look up link {name}");
        let req = encode(RouteNetlinkMessage::GetLink(msg), false);
        match self.read(|sock| exchange(sock, &req, false, &context(), parse_link)) {
            Ok(mut found) => Ok(found.pop()),
            Err(Error::Netlink { source, .. }) if is_errno(&source, libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link (`ip link show`), with the attributes [`parse_link`] keeps.
    pub fn links(&self) -> Result<Vec<LinkMessage>> {
        self.read(read_links)
    }

    /// Every address of both families (`ip addr show`).
    pub fn addresses(&self) -> Result<Vec<AddressMessage>> {
        self.read(read_addresses)
    }

    /// The main table's routes of one family (`ip route show`).
    pub fn main_routes(&self, family: AddressFamily) -> Result<Vec<RouteMessage>> {
        self.read(|sock| read_main_routes(sock, family))
    }

    /// The neighbour table of `family` ([`Sockets::neighbours`]).
    pub fn neighbours(&self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        self.read(|sock| read_neighbours(sock, family))
    }

    /// The id this namespace uses for the namespace open at `other`
    /// (`RTM_GETNSID` with `NETNSA_FD`, what `ip netns list-id` shows), or `None` when
    /// it has not assigned one. A link whose peer lives in `other` reports this id in
    /// `IFLA_LINK_NETNSID`.
    pub async fn nsid_of(&self, other: BorrowedFd<'_>) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(other.as_fd().as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut answers = handle
            .request(req)
            .map_err(|e| Error::netlink("request namespace id", e))?;
        while let Some(answer) = futures::StreamExt::next(&mut answers).await {
            match answer.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    return Ok(m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    }));
                }
                NetlinkPayload::Error(e) => {
                    return Err(Error::netlink(
                        "request namespace id",
                        rtnetlink::Error::NetlinkError(e),
                    ))
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// What a namespace holds ([`Sockets::contents`]).
#[derive(Debug, Default)]
pub struct Contents {
    pub links: Vec<LinkMessage>,
    pub addresses: Vec<AddressMessage>,
    /// Routes of the families asked for, of the main table alone (the kernel filters:
    /// the local table — a route per address, IPv6's multicast — is not walked).
    pub routes: Vec<RouteMessage>,
    /// `net.ipv4.ip_forward`.
    pub ipv4_forwarding: bool,
    /// `net.ipv6.conf.all.forwarding`; `None` on a kernel without IPv6.
    pub ipv6_forwarding: Option<bool>,
}

fn read_links(sock: BorrowedFd<'_>) -> Result<Vec<LinkMessage>> {
    let mut msg = LinkMessage::default();
    skip_stats(&mut msg);
    let req = encode(RouteNetlinkMessage::GetLink(msg), true);
    exchange(sock, &req, true, "dump links", parse_link)
}

/// Both families' addresses, one dump each: a dump of family 0 walks the families under
/// the RTNL (`rtnl_dump_all`), while each family's own dump does not take it, so readers
/// in other namespaces do not wait on one another. A family the kernel lacks falls back
/// to all of them, so an answer counts for the family asked only.
fn read_addresses(sock: BorrowedFd<'_>) -> Result<Vec<AddressMessage>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        let req = encode(RouteNetlinkMessage::GetAddress(msg), true);
        out.extend(exchange(sock, &req, true, "dump addresses", |t, b| {
            (t == libc::RTM_NEWADDR && b.first() == Some(&u8::from(family)))
                .then(|| AddressMessage::parse(b))
                .transpose()
        })?);
    }
    Ok(out)
}

/// The main table's routes of `family` (with strict checking the kernel dumps that table
/// alone). IPv4 makes its main table with the first route in it: a namespace without
/// one answers ENOENT, which is no route.
fn read_main_routes(sock: BorrowedFd<'_>, family: AddressFamily) -> Result<Vec<RouteMessage>> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = libc::RT_TABLE_MAIN;
    let req = encode(RouteNetlinkMessage::GetRoute(msg), true);
    let routes = exchange(sock, &req, true, "dump routes", |t, b| {
        (t == libc::RTM_NEWROUTE)
            .then(|| RouteMessage::parse(b))
            .transpose()
    });
    match routes {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(Vec::new()),
        r => r,
    }
}

fn read_neighbours(sock: BorrowedFd<'_>, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    let req = encode(RouteNetlinkMessage::GetNeighbour(msg), true);
    exchange(sock, &req, true, "dump neighbours", |t, b| {
        (t == libc::RTM_NEWNEIGH)
            .then(|| NeighbourMessage::parse(b))
            .transpose()
    })
}

/// Whether the namespace forwards IPv4 (`net.ipv4.ip_forward`, the same value as
/// `conf/all/forwarding`), asked by `RTM_GETNETCONF`: reading the file under
/// `/proc/sys/net` costs a walk over every namespace's entries of that name.
/// `forwarding` of all interfaces of `family` (AF_INET: `net.ipv4.ip_forward`, AF_INET6:
/// `net.ipv6.conf.all.forwarding`), asked by RTM_GETNETCONF; `None` when the kernel has
/// no such family.
fn read_forwarding(sock: BorrowedFd<'_>, family: i32) -> Result<Option<bool>> {
    // netlink-packet-route has no netconf messages: encoded here
    // (include/uapi/linux/netconf.h, rtnetlink.h).
    const RTM_NEWNETCONF: u16 = 80;
    const RTM_GETNETCONF: u16 = 82;
    const NETCONFA_IFINDEX: u16 = 1;
    const NETCONFA_FORWARDING: u16 = 2;
    const NETCONFA_IFINDEX_ALL: i32 = -1;
    let mut req = Vec::with_capacity(28);
    req.extend_from_slice(&28u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETNETCONF.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&next_sequence().to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    req.extend_from_slice(&[family as u8, 0, 0, 0]); // struct netconfmsg, padded
    req.extend_from_slice(&8u16.to_ne_bytes());
    req.extend_from_slice(&NETCONFA_IFINDEX.to_ne_bytes());
    req.extend_from_slice(&NETCONFA_IFINDEX_ALL.to_ne_bytes());
    let what = match family {
        libc::AF_INET => "read ipv4 forwarding",
        _ => "read ipv6 forwarding",
    };
    let found = match exchange(sock, &req, false, what, |t, b| {
        if t != RTM_NEWNETCONF {
            return Ok(None);
        }
        let attrs = b
            .get(4..)
            .ok_or("netconf message shorter than its header")?;
        for nla in NlasIterator::new(attrs) {
            let nla = nla?;
            if nla.kind() == NETCONFA_FORWARDING {
                let v = nla.value().get(..4).ok_or("short NETCONFA_FORWARDING")?;
                return Ok(Some(
                    i32::from_ne_bytes(v.try_into().expect("4 bytes")) != 0,
                ));
            }
        }
        Err("netconf answer without NETCONFA_FORWARDING".into())
    }) {
        Err(e) if family != libc::AF_INET && e.errno() == Some(libc::EOPNOTSUPP) => {
            return Ok(None)
        }
        Err(e) if family != libc::AF_INET && e.errno() == Some(libc::EAFNOSUPPORT) => {
            return Ok(None)
        }
        other => other?,
    };
    found.first().copied().map(Some).ok_or_else(|| {
        Error::io(
            what,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no netconf answer"),
        )
    })
}

/// A sequence number no other read of this process uses: answers to an earlier read
/// that ended early (an error mid-dump) are told apart and skipped.
fn next_sequence() -> u32 {
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `message` as a request, a dump when `dump`.
fn encode(message: RouteNetlinkMessage, dump: bool) -> Vec<u8> {
    let mut req = NetlinkMessage::from(message);
    req.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    req.header.sequence_number = next_sequence();
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    buf
}

/// Sends `request` (a dump when `dump`) on a blocking socket and parses each answer
/// with `parse` (message type, payload; `None` skips it) until the dump is done, or
/// the single answer came.
fn exchange<T>(
    sock: BorrowedFd<'_>,
    request: &[u8],
    dump: bool,
    context: &str,
    parse: impl Fn(u16, &[u8]) -> std::result::Result<Option<T>, DecodeError>,
) -> Result<Vec<T>> {
    use nix::sys::socket::{send, MsgFlags};
    let io = |e: nix::errno::Errno| Error::io(context, std::io::Error::from(e));
    send(sock.as_raw_fd(), request, MsgFlags::empty()).map_err(io)?;
    let sequence = u32::from_ne_bytes(request[8..12].try_into().expect("a netlink header"));
    thread_local! {
        // The kernel fills a dump's reads up to the size it picked (32 KiB at most).
        // One buffer per thread: zeroing a new one per read cost more than the read.
        static RX: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
    }
    RX.with_borrow_mut(|rx| receive(sock, sequence, dump, rx, context, parse))
}

/// Reads the answers of [`exchange`]'s request (`sequence`) through `rx`.
fn receive<T>(
    sock: BorrowedFd<'_>,
    sequence: u32,
    dump: bool,
    rx: &mut [u8],
    context: &str,
    parse: impl Fn(u16, &[u8]) -> std::result::Result<Option<T>, DecodeError>,
) -> Result<Vec<T>> {
    use netlink_packet_core::{NetlinkBuffer, NLMSG_DONE, NLMSG_ERROR};
    use nix::sys::socket::{recv, MsgFlags};
    let io = |e: nix::errno::Errno| Error::io(context, std::io::Error::from(e));
    let bad = |e: DecodeError| {
        Error::io(
            context,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    };
    let mut out = Vec::new();
    // A dump is read to its end even when an answer cannot be parsed: the socket
    // could not start another dump before that.
    let mut failed = None;
    loop {
        // MSG_TRUNC: the datagram's whole length, to tell one larger than `rx`.
        let n = match recv(sock.as_raw_fd(), rx, MsgFlags::MSG_TRUNC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.map_err(io)?,
        };
        if n > rx.len() {
            let e = format!("an answer of {n} bytes, more than the {} read", rx.len());
            failed.get_or_insert(bad(DecodeError::from(e)));
            continue;
        }
        let mut at = 0;
        while at < n {
            let msg = NetlinkBuffer::new_checked(&rx[at..n]).map_err(bad)?;
            let len = msg.length() as usize;
            at += (len + 3) & !3;
            if msg.sequence_number() != sequence {
                continue; // left over from an earlier read that ended early
            }
            let last = match msg.message_type() {
                // A dump that failed in the kernel says so in its DONE: an errno.
                NLMSG_DONE => {
                    let code = msg
                        .payload()
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")));
                    if code < 0 {
                        let e = std::io::Error::from_raw_os_error(-code);
                        failed.get_or_insert(Error::io(context, e));
                    }
                    true
                }
                NLMSG_ERROR => {
                    if let Some(e) =
                        refusal(msg.into_inner(), || context.to_owned()).map_err(bad)?
                    {
                        failed.get_or_insert(e);
                    }
                    true
                }
                t => {
                    match parse(t, msg.payload()) {
                        Ok(parsed) => out.extend(parsed),
                        Err(e) => {
                            failed.get_or_insert(bad(e));
                        }
                    }
                    !dump
                }
            };
            if last {
                return failed.map_or(Ok(out), Err);
            }
        }
    }
}

/// The refusal an `NLMSG_ERROR` answer (`message`, from its header on) carries, named by
/// `context`; `None` for an ack.
fn refusal(
    message: &[u8],
    context: impl FnOnce() -> String,
) -> std::result::Result<Option<Error>, DecodeError> {
    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(message)?;
    Ok(match m.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => {
            Some(Error::netlink(context(), rtnetlink::Error::NetlinkError(e)))
        }
        _ => None,
    })
}

/// Requests written at once by [`Netlink::ack_each`]: each ack queued for the reader is
/// a buffer of its own (about 0.8 KiB of the socket's receive budget, 208 KiB by
/// default), so a write is kept well below what the budget holds.
const ACKS_PER_WRITE: usize = 64;

fn ack_each(
    sock: BorrowedFd<'_>,
    requests: Vec<RouteNetlinkMessage>,
    context: &dyn Fn(usize) -> String,
) -> Result<Vec<Result<()>>> {
    use netlink_packet_core::{NetlinkBuffer, NLMSG_ERROR};
    use nix::sys::socket::{recv, send, MsgFlags};
    let io = |e: nix::errno::Errno| Error::io("send requests", std::io::Error::from(e));
    let mut out: Vec<Result<()>> = Vec::with_capacity(requests.len());
    let mut rx = vec![0u8; 16 * 1024];
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        // Sequence number → the request's place in `out`.
        let mut waiting: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        let mut buf = Vec::new();
        for m in requests.by_ref().take(ACKS_PER_WRITE) {
            let mut req = NetlinkMessage::from(m);
            req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
            req.header.sequence_number = next_sequence();
            req.finalize();
            let at = buf.len();
            buf.resize(at + req.buffer_len(), 0);
            req.serialize(&mut buf[at..]);
            waiting.insert(req.header.sequence_number, out.len());
            out.push(Ok(()));
        }
        // One datagram: the kernel takes all of it or none.
        while let Err(e) = send(sock.as_raw_fd(), &buf, MsgFlags::empty()) {
            if e != nix::errno::Errno::EINTR {
                return Err(io(e));
            }
        }
        while !waiting.is_empty() {
            let n = match recv(sock.as_raw_fd(), &mut rx, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.map_err(|e| Error::io("read acks", std::io::Error::from(e)))?,
            };
            let mut at = 0;
            while at < n {
                let bad = |e: DecodeError| {
                    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
                    Error::io("read acks", e)
                };
                let msg = NetlinkBuffer::new_checked(&rx[at..n]).map_err(bad)?;
                at += (msg.length() as usize + 3) & !3;
                let Some(i) = waiting.get(&msg.sequence_number()).copied() else {
                    continue; // left over from an earlier read that ended early
                };
                if msg.message_type() != NLMSG_ERROR {
                    continue;
                }
                waiting.remove(&msg.sequence_number());
                if let Some(e) = refusal(msg.into_inner(), || context(i)).map_err(bad)? {
                    out[i] = Err(e);
                }
            }
        }
    }
    Ok(out)
}

/// Whether a netlink error is `errno`.
fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.is_some_and(|c| -c.get() == errno))
}

// Link attribute numbers (include/uapi/linux/if_link.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_GROUP: u16 = 27;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;

/// A link message with the attributes this workspace reads — name, MTU, MAC, master,
/// operstate, group, the peer (`IFLA_LINK`, `IFLA_LINK_NETNSID`), kind and kind data —
/// and the header (index, flags). The rest (per-family settings, a bridge port's data,
/// queues, maps…) is most of a message's bytes and is skipped unparsed.
pub fn parse_link(
    kind: u16,
    payload: &[u8],
) -> std::result::Result<Option<LinkMessage>, DecodeError> {
    if kind != libc::RTM_NEWLINK {
        return Ok(None);
    }
    let mut link = LinkMessage::default();
    link.header = LinkHeader::parse(payload)?;
    let family = link.header.interface_family;
    let attrs = payload
        .get(16..)
        .ok_or("link message shorter than its header")?;
    for nla in NlasIterator::new(attrs) {
        let nla = nla?;
        match nla.kind() {
            IFLA_ADDRESS | IFLA_IFNAME | IFLA_MTU | IFLA_LINK | IFLA_MASTER | IFLA_OPERSTATE
            | IFLA_GROUP | IFLA_LINK_NETNSID => link
                .attributes
                .push(LinkAttribute::parse_with_param(&nla, family)?),
            IFLA_LINKINFO => {
                // Kind and data only: the port data a bridge's port carries is large
                // and unread.
                let mut kept = vec![0u8; 4];
                for info in NlasIterator::new(nla.value()) {
                    let info = info?;
                    if matches!(info.kind(), IFLA_INFO_KIND | IFLA_INFO_DATA) {
                        let raw = &info.into_inner()[..info.length() as usize];
                        kept.extend_from_slice(raw);
                        kept.resize(kept.len().next_multiple_of(4), 0);
                    }
                }
                // A device of no kind of its own (a NIC) on a bridge carries only the
                // port's data: nothing to keep.
                if kept.len() == 4 {
                    continue;
                }
                let len = u16::try_from(kept.len()).map_err(|_| "IFLA_LINKINFO too long")?;
                kept[..2].copy_from_slice(&len.to_ne_bytes());
                kept[2..4].copy_from_slice(&IFLA_LINKINFO.to_ne_bytes());
                let info = NlaBuffer::new_checked(&kept[..])?;
                link.attributes
                    .push(LinkAttribute::parse_with_param(&info, family)?);
            }
            _ => {}
        }
    }
    Ok(Some(link))
}

/// Asks the kernel to leave the counters out of link answers (`RTEXT_FILTER_SKIP_STATS`,
/// as `ip link show` without `-s` does): nothing here reads them, and filling them is a
/// large share of a dump's cost.
fn skip_stats(msg: &mut LinkMessage) {
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute: header, value, padding.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// An `RTM_NEWLINK` payload: `ifinfomsg` (index 7, flags up) and `attrs`.
    fn link(attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0u8; 16];
        out[4..8].copy_from_slice(&7i32.to_ne_bytes());
        out[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        attrs.iter().for_each(|a| out.extend_from_slice(a));
        out
    }

    #[test]
    fn a_nic_on_a_bridge_has_no_kind_and_still_parses() {
        // A NIC has no rtnl_link_ops: on a bridge its IFLA_LINKINFO holds only the
        // port's kind and data (IFLA_INFO_SLAVE_KIND = 4, IFLA_INFO_SLAVE_DATA = 5).
        let info = [nla(4, b"bridge\0"), nla(5, &nla(1, &[3]))].concat();
        let payload = link(&[
            nla(IFLA_IFNAME, b"eno1\0"),
            nla(IFLA_MASTER, &9u32.to_ne_bytes()),
            nla(IFLA_LINKINFO, &info),
        ]);
        let l = parse_link(libc::RTM_NEWLINK, &payload).unwrap().unwrap();
        assert_eq!(l.header.index, 7);
        assert_eq!(crate::attrs::link_name(&l), Some("eno1"));
        assert_eq!(crate::attrs::link_master(&l), Some(9));
        assert_eq!(crate::attrs::link_kind(&l), None);
    }

    #[test]
    fn a_veth_on_a_bridge_keeps_its_kind_not_the_port_data() {
        let info = [
            nla(IFLA_INFO_KIND, b"veth\0"),
            nla(4, b"bridge\0"),
            nla(5, &nla(1, &[3])),
        ]
        .concat();
        let payload = link(&[nla(IFLA_IFNAME, b"tap1\0"), nla(IFLA_LINKINFO, &info)]);
        let l = parse_link(libc::RTM_NEWLINK, &payload).unwrap().unwrap();
        assert_eq!(
            crate::attrs::link_kind(&l),
            Some(&netlink_packet_route::link::InfoKind::Veth)
        );
        let LinkAttribute::LinkInfo(infos) = &l.attributes[1] else {
            panic!("{l:?}");
        };
        assert_eq!(infos.len(), 1, "{infos:?}");
    }

    #[test]
    fn other_messages_are_not_links() {
        assert!(parse_link(libc::RTM_NEWADDR, &link(&[])).unwrap().is_none());
    }
}
