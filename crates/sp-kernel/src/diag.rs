//! Sockets of the calling thread's network namespace, asked of the kernel over
//! `NETLINK_SOCK_DIAG` (what `ss` reads): the socket is opened in the calling thread's
//! namespace, so call it on a thread that entered one (`netns::run_in_each`).
//!
//! Not `/proc/net/tcp`: its reader walks the whole established-socket hash of the host
//! for every namespace (1.25 ms per namespace here, with 100 router namespaces); a dump
//! of listening sockets only walks the listening hash (some 20 µs).

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

/// The inodes of the listening IPv4 TCP sockets bound to `addr` in the calling thread's
/// network namespace.
pub fn tcp_listeners_here(addr: SocketAddrV4) -> Result<Vec<u64>> {
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
    let req = request();
    // SAFETY: a buffer of ours, its length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent != req.len() as isize {
        return Err(Error::io(
            "sock_diag request",
            std::io::Error::last_os_error(),
        ));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
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
        if read_answers(&buf[..n as usize], addr, &mut out)? {
            return Ok(out);
        }
    }
}

/// A dump of the namespace's listening IPv4 TCP sockets (`inet_diag_req_v2`).
fn request() -> Vec<u8> {
    let len = (HEADER_LEN + 56) as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut req = Vec::with_capacity(len as usize);
    req.extend(len.to_ne_bytes());
    req.extend(BY_FAMILY.to_ne_bytes());
    req.extend(flags.to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // sequence
    req.extend(0u32.to_ne_bytes()); // port id: the kernel's
    req.extend([libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend((1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend([0u8; 48]); // inet_diag_sockid: any
    req
}

/// Reads one buffer of answers into `out` (the inodes of sockets listening on `addr`);
/// true once the dump is done. Total on any bytes: a message that does not fit is an
/// error, not a panic.
fn read_answers(data: &[u8], addr: SocketAddrV4, out: &mut Vec<u64>) -> Result<bool> {
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
            k if k == libc::NLMSG_DONE as u16 => return Ok(true),
            k if k == libc::NLMSG_ERROR as u16 => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                if code != 0 {
                    return Err(Error::io(
                        "sock_diag dump",
                        std::io::Error::from_raw_os_error(-code),
                    ));
                }
            }
            BY_FAMILY if body.len() >= DIAG_MSG_LEN => {
                let sport = u16::from_be_bytes([body[4], body[5]]);
                let src = Ipv4Addr::new(body[8], body[9], body[10], body[11]);
                let inode = u32::from_ne_bytes(body[68..72].try_into().expect("4 bytes"));
                let listening = body[0] == libc::AF_INET as u8 && body[1] == TCP_LISTEN;
                if listening && sport == addr.port() && src == *addr.ip() {
                    out.push(u64::from(inode));
                }
            }
            _ => {}
        }
        off += len.next_multiple_of(4).min(data.len() - off);
    }
    Ok(false)
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

    #[test]
    fn listeners_on_the_address_are_picked_from_a_dump() {
        let mut data = answer(9697, [0, 0, 0, 0], TCP_LISTEN, 51234);
        data.extend(answer(80, [169, 254, 169, 254], TCP_LISTEN, 777));
        data.extend(answer(9697, [0, 0, 0, 0], 1, 9));
        let mut out = Vec::new();
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9697);
        assert!(!read_answers(&data, any, &mut out).unwrap());
        assert_eq!(out, [51234]);
        let mut done = 20u32.to_ne_bytes().to_vec();
        done.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
        done.extend([0u8; 14]);
        let mut out = Vec::new();
        let meta = SocketAddrV4::new(Ipv4Addr::new(169, 254, 169, 254), 80);
        data.extend(done);
        assert!(read_answers(&data, meta, &mut out).unwrap());
        assert_eq!(out, [777]);
        // Cut anywhere: an error or "more", never a panic.
        for cut in 0..data.len() {
            let _ = read_answers(&data[..cut], meta, &mut Vec::new());
        }
        assert_eq!(request().len(), 72);
    }
}
