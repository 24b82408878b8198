//! Sockets of the calling thread's network namespace, asked of the kernel over
//! `NETLINK_SOCK_DIAG` (what `ss` reads): the socket is opened in the calling thread's
//! namespace, so call it on a thread that entered one (`netns::run_in_each`).
//!
//! Not `/proc/net/tcp`: its reader walks the whole established-socket hash of the host
//! for every namespace (1.25 ms per namespace here, with 100 router namespaces), and a
//! dump of the listening sockets still walks the host's whole listening hash (every
//! bucket, some 20 µs per namespace). The one socket that would take a connection to
//! an address is looked up instead, as the kernel does for an arriving SYN.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Error, Result};

/// `SOCK_DIAG_BY_FAMILY`.
const BY_FAMILY: u16 = 20;
/// The kernel's `TCP_LISTEN` state.
const TCP_LISTEN: u8 = 10;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
const HEADER_LEN: usize = 16;

/// The inode of the IPv4 TCP socket listening on `addr` in the calling thread's network
/// namespace — bound to that address and port (a wildcard listener does not count for a
/// specific address) — if there is one.
pub fn tcp_listener_here(addr: SocketAddrV4) -> Result<Option<u64>> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(Error::io(
            "sock_diag socket",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let req = request(addr);
    // SAFETY: a buffer of ours, its length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent != req.len() as isize {
        return Err(Error::io(
            "sock_diag request",
            std::io::Error::last_os_error(),
        ));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: a buffer of ours, its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("sock_diag answer", e));
        }
        if let Some(found) = read_answer(&buf[..n as usize], addr)? {
            return Ok(found);
        }
    }
}

/// The lookup of the socket that would take a connection to `addr`
/// (`inet_diag_req_v2`, not a dump): the kernel's own lookup of an arriving SYN from
/// 0.0.0.0:0, which finds no established socket and so the listener.
fn request(addr: SocketAddrV4) -> Vec<u8> {
    let len = (HEADER_LEN + 56) as u32;
    let flags = libc::NLM_F_REQUEST as u16;
    let mut req = Vec::with_capacity(len as usize);
    req.extend(len.to_ne_bytes());
    req.extend(BY_FAMILY.to_ne_bytes());
    req.extend(flags.to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // sequence
    req.extend(0u32.to_ne_bytes()); // port id: the kernel's
    req.extend([libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend((1u32 << TCP_LISTEN).to_ne_bytes());
    // inet_diag_sockid: the local port and address; no remote end, no interface.
    req.extend(addr.port().to_be_bytes());
    req.extend([0u8; 2]);
    req.extend(addr.ip().octets());
    req.extend([0u8; 12 + 16 + 4]);
    req.extend([0xffu8; 8]); // INET_DIAG_NOCOOKIE twice: any socket
    req
}

/// Reads the answer of [`request`]: `Some(Some(inode))` for a socket listening on `addr`,
/// `Some(None)` for none (ENOENT, or the socket found listens elsewhere — a wildcard —
/// or is not listening), `None` when the buffer held no answer yet. Total on any bytes:
/// a message that does not fit is an error, not a panic.
fn read_answer(data: &[u8], addr: SocketAddrV4) -> Result<Option<Option<u64>>> {
    let bad = |what: &str| Error::io("sock_diag answer", std::io::Error::other(what.to_owned()));
    let mut off = 0;
    while data.len() - off >= HEADER_LEN {
        let word = |at: usize| u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let len = word(off) as usize;
        let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
        if len < HEADER_LEN || len > data.len() - off {
            return Err(bad("a message longer than what was read"));
        }
        let body = &data[off + HEADER_LEN..off + len];
        match kind {
            k if k == libc::NLMSG_ERROR as u16 => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                return match code {
                    0 => Ok(Some(None)),
                    c if c == -libc::ENOENT => Ok(Some(None)),
                    c => Err(Error::io(
                        "sock_diag lookup",
                        std::io::Error::from_raw_os_error(-c),
                    )),
                };
            }
            BY_FAMILY if body.len() >= DIAG_MSG_LEN => {
                let sport = u16::from_be_bytes([body[4], body[5]]);
                let src = Ipv4Addr::new(body[8], body[9], body[10], body[11]);
                let inode = u32::from_ne_bytes(body[68..72].try_into().expect("4 bytes"));
                let listening = body[0] == libc::AF_INET as u8 && body[1] == TCP_LISTEN;
                let here = listening && sport == addr.port() && src == *addr.ip();
                return Ok(Some(here.then_some(u64::from(inode))));
            }
            _ => {}
        }
        off += len.next_multiple_of(4).min(data.len() - off);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(sport: u16, src: [u8; 4], state: u8, inode: u32) -> Vec<u8> {
        let mut body = vec![0u8; DIAG_MSG_LEN];
        body[0] = libc::AF_INET as u8;
        body[1] = state;
        body[4..6].copy_from_slice(&sport.to_be_bytes());
        body[8..12].copy_from_slice(&src);
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        let mut m = ((HEADER_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend(BY_FAMILY.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(body);
        m
    }

    fn error(code: i32) -> Vec<u8> {
        let mut m = 36u32.to_ne_bytes().to_vec();
        m.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(code.to_ne_bytes());
        m.extend([0u8; 16]);
        m
    }

    #[test]
    fn the_answer_names_the_listener_on_the_address_alone() {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9697);
        let meta = SocketAddrV4::new(Ipv4Addr::new(169, 254, 169, 254), 80);
        let wildcard = answer(9697, [0, 0, 0, 0], TCP_LISTEN, 51234);
        assert_eq!(read_answer(&wildcard, any).unwrap(), Some(Some(51234)));
        // The wildcard listener found for a specific address is not listening on it.
        let on_80 = answer(80, [0, 0, 0, 0], TCP_LISTEN, 51234);
        assert_eq!(read_answer(&on_80, meta).unwrap(), Some(None));
        let meta_ans = answer(80, [169, 254, 169, 254], TCP_LISTEN, 777);
        assert_eq!(read_answer(&meta_ans, meta).unwrap(), Some(Some(777)));
        let closing = answer(9697, [0, 0, 0, 0], 1, 9);
        assert_eq!(read_answer(&closing, any).unwrap(), Some(None));
        assert_eq!(read_answer(&error(-libc::ENOENT), any).unwrap(), Some(None));
        assert!(read_answer(&error(-libc::EPERM), any).is_err());
        assert_eq!(read_answer(&[], any).unwrap(), None);
        // Cut anywhere: an error or "more", never a panic.
        for cut in 0..meta_ans.len() {
            let _ = read_answer(&meta_ans[..cut], meta);
        }
        let req = request(meta);
        assert_eq!(req.len(), 72);
        assert_eq!(&req[24..26], &80u16.to_be_bytes());
        assert_eq!(&req[28..32], &[169, 254, 169, 254]);
        assert_eq!(&req[64..72], &[0xff; 8]);
    }
}
