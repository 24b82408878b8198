//! rtnetlink, one handle per network namespace.
//!
//! A netlink socket stays in the namespace where it was created. [`Netlink::open_in`]
//! (and [`open_sockets_in`] for many namespaces at once) create the socket on a dedicated
//! thread that enters the namespace and ends afterwards; the async side only ever sees
//! the finished socket. Strict checking is on, so filtered dumps are filtered by the kernel.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use futures::TryStreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
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
}

/// Opens a blocking route-netlink socket in the calling thread's namespace, with strict
/// dump checking. No async runtime needed; pass it to [`Netlink::from_socket`].
pub fn open_socket() -> Result<OwnedFd> {
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open netlink socket", e))?;
    sock.bind_auto()
        .map_err(|e| Error::io("bind netlink socket", e))?;
    sock.set_netlink_get_strict_chk(true)
        .map_err(|e| Error::io("enable NETLINK_GET_STRICT_CHK", e))?;
    // SAFETY: `into_raw_fd` hands over sole ownership of a valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(sock.into_raw_fd()) })
}

/// Opens one route-netlink socket inside each namespace (one thread hop for all of them).
pub fn open_sockets_in<N: AsFd + Sync>(namespaces: &[N]) -> Result<Vec<OwnedFd>> {
    netns::run_in_each(namespaces, |_| open_socket())
        .into_iter()
        .collect()
}

impl Netlink {
    /// Wraps a socket opened by [`open_socket`] (in whatever namespace) and starts its
    /// connection task. Must be called from within a tokio runtime.
    pub fn from_socket(fd: OwnedFd) -> Result<Self> {
        // SAFETY: we own `fd`; TokioSocket takes it over.
        let sock = unsafe { TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(sock);
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A handle in the calling thread's own namespace.
    pub fn current() -> Result<Self> {
        Self::from_socket(open_socket()?)
    }

    /// A handle inside the namespace `ns` (an open nsfs file).
    pub fn open_in(ns: OwnedFd) -> Result<Self> {
        let mut socks = open_sockets_in(std::slice::from_ref(&ns))?;
        Self::from_socket(socks.pop().expect("one socket per namespace"))
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

    /// The link named `name`, or `None` when there is none.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut req = self.handle.link().get().match_name(name.to_owned());
        skip_stats(req.message_mut());
        let mut links = req.execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.is_some_and(|c| -c.get() == libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::netlink(format!("look up link {name}"), e)),
        }
    }

    /// Every link (`ip link show`), without their counters.
    pub async fn links(&self) -> Result<Vec<LinkMessage>> {
        let mut req = self.handle.link().get();
        skip_stats(req.message_mut());
        req.execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump links", e))
    }

    /// Every address of both families (`ip addr show`).
    pub async fn addresses(&self) -> Result<Vec<AddressMessage>> {
        self.handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump addresses", e))
    }

    /// Every route of one family, all tables (`ip route show table all`).
    pub async fn routes(&self, family: AddressFamily) -> Result<Vec<RouteMessage>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        self.handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("dump routes", e))
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

/// What a namespace holds, read over a blocking socket from [`open_socket`] on the
/// calling thread — for threads that run no async runtime, such as a namespace hop
/// ([`netns::run_in_each`]) reading what is inside while it is there.
#[derive(Debug, Default)]
pub struct Contents {
    pub links: Vec<LinkMessage>,
    pub addresses: Vec<AddressMessage>,
    /// Routes of the families asked for, all tables.
    pub routes: Vec<RouteMessage>,
}

impl Contents {
    /// Links, addresses, and the routes of `route_families`.
    pub fn read(sock: BorrowedFd<'_>, route_families: &[AddressFamily]) -> Result<Contents> {
        let mut out = Contents::default();
        // The kernel fills a dump's reads up to the page size it picked (32 KiB at most).
        let rx = &mut vec![0u8; 64 * 1024];
        let mut link = LinkMessage::default();
        skip_stats(&mut link);
        for m in dump_blocking(sock, RouteNetlinkMessage::GetLink(link), rx, "dump links")? {
            if let RouteNetlinkMessage::NewLink(l) = m {
                out.links.push(l);
            }
        }
        let addr = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        for m in dump_blocking(sock, addr, rx, "dump addresses")? {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                out.addresses.push(a);
            }
        }
        for family in route_families {
            let mut route = RouteMessage::default();
            route.header.address_family = *family;
            let req = RouteNetlinkMessage::GetRoute(route);
            for m in dump_blocking(sock, req, rx, "dump routes")? {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    out.routes.push(r);
                }
            }
        }
        Ok(out)
    }
}

/// One dump request answered on a blocking socket, read through `rx`.
fn dump_blocking(
    sock: BorrowedFd<'_>,
    request: RouteNetlinkMessage,
    rx: &mut [u8],
    context: &str,
) -> Result<Vec<RouteNetlinkMessage>> {
    use nix::sys::socket::{recv, send, MsgFlags};
    let io = |e: nix::errno::Errno| Error::io(context, std::io::Error::from(e));
    let bad = |e: netlink_packet_core::DecodeError| {
        Error::io(
            context,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    };
    let mut req = NetlinkMessage::from(request);
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    send(sock.as_raw_fd(), &buf, MsgFlags::empty()).map_err(io)?;
    let mut out = Vec::new();
    loop {
        let n = recv(sock.as_raw_fd(), rx, MsgFlags::empty()).map_err(io)?;
        let mut at = 0;
        while at < n {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n]).map_err(bad)?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(Error::netlink(context, rtnetlink::Error::NetlinkError(e)))
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
}

/// Asks the kernel to leave the counters out of link answers (`RTEXT_FILTER_SKIP_STATS`,
/// as `ip link show` without `-s` does): nothing here reads them, and filling and
/// parsing them is a large share of a dump's cost.
fn skip_stats(msg: &mut LinkMessage) {
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
}
