//! "Does the gateway still answer?" — one ICMP (IPv4) or ICMPv6 echo exchange over a raw
//! socket bound to the device the traffic must take (`SO_BINDTODEVICE`, which also scopes
//! a link-local IPv6 gateway), resent every 200 ms until an answer or the timeout. No
//! `ping` process.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrLike,
    SockaddrStorage,
};
use tokio::io::unix::AsyncFd;
use tokio::time::{interval, timeout, MissedTickBehavior};

/// (echo request, echo reply) types of ICMP and ICMPv6.
const ICMP: (u8, u8) = (8, 0);
const ICMPV6: (u8, u8) = (128, 129);
const RESEND: Duration = Duration::from_millis(200);

/// RFC 1071 internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request of type `kind` with identifier `id`, sequence `seq` and payload
/// `cookie`. (For ICMPv6 the kernel replaces the checksum with one over the pseudo-header.)
fn request(kind: u8, id: u16, seq: u16, cookie: &[u8]) -> Vec<u8> {
    let mut p = vec![kind, 0, 0, 0];
    p.extend(id.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend(cookie);
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether `icmp` is an echo reply of type `kind` to one of our requests.
fn is_reply(icmp: &[u8], kind: u8, id: u16, cookie: &[u8]) -> bool {
    icmp.len() >= 8 + cookie.len()
        && icmp[0] == kind
        && icmp[4..6] == id.to_be_bytes()
        && &icmp[8..8 + cookie.len()] == cookie
}

/// The ICMP message in what a raw socket delivers: IPv4 comes with its header, IPv6
/// without.
fn icmp_of(packet: &[u8], v4: bool) -> &[u8] {
    if !v4 {
        return packet;
    }
    let ihl = packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    &packet[ihl.min(packet.len())..]
}

fn io(context: &str, e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::new(std::io::Error::from(e).kind(), format!("{context}: {e}"))
}

/// Sends echo requests to `target` out of `device` until one is answered (`Ok(true)`)
/// or `within` has passed (`Ok(false)`). Errors are the socket's own.
pub async fn answers(target: IpAddr, device: &str, within: Duration) -> std::io::Result<bool> {
    let v4 = target.is_ipv4();
    let ((family, proto), (ask, reply)) = match v4 {
        true => ((AddressFamily::Inet, SockProtocol::Icmp), ICMP),
        false => ((AddressFamily::Inet6, SockProtocol::IcmpV6), ICMPV6),
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .map_err(|e| io("open a raw ICMP socket", e))?;
    setsockopt(&fd, sockopt::BindToDevice, &device.into())
        .map_err(|e| io(&format!("bind the ICMP socket to {device}"), e))?;
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open until it is dropped.
    let fd = unsafe { AsyncFd::register(fd) }?;
    let id = (std::process::id() & 0xffff) as u16;
    let cookie = *b"stackplumb-gw";
    let dest = SockaddrStorage::from(SocketAddr::new(target, 0));
    let mut tick = interval(RESEND);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let exchange = async {
        let mut seq: u16 = 0;
        let mut buf = [0u8; 1500];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq = seq.wrapping_add(1);
                    let p = request(ask, id, seq, &cookie);
                    // A send can fail while the neighbour is unresolved (EHOSTUNREACH)
                    // or the device has just come up: the next tick tries again.
                    let _ = socket::sendto(fd.as_raw_fd(), &p, &dest, socket::MsgFlags::empty());
                }
                ready = fd.readable() => {
                    let mut guard = ready?;
                    match guard.try_io(|fd| {
                        socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf)
                            .map_err(std::io::Error::from)
                    }) {
                        Ok(Ok((n, Some(from))))
                            if source(&from) == Some(target)
                                && is_reply(icmp_of(&buf[..n], v4), reply, id, &cookie) =>
                        {
                            return Ok(())
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(e)) => return Err(e),
                    }
                }
            }
        }
    };
    match timeout(within, exchange).await {
        Ok(r) => r.map(|()| true),
        Err(_) => Ok(false),
    }
}

/// The IP address of a received packet's source.
fn source(from: &SockaddrStorage) -> Option<IpAddr> {
    match from.family()? {
        AddressFamily::Inet => Some(from.as_sockaddr_in()?.ip().into()),
        AddressFamily::Inet6 => Some(from.as_sockaddr_in6()?.ip().into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero_and_reply_is_recognised() {
        let p = request(ICMP.0, 0x1234, 7, b"abc");
        assert_eq!(checksum(&p), 0);
        let mut packet = vec![0x45u8; 20];
        let mut icmp = p.clone();
        icmp[0] = ICMP.1;
        packet.extend(&icmp);
        let reply = icmp_of(&packet, true);
        assert!(is_reply(reply, ICMP.1, 0x1234, b"abc"));
        assert!(!is_reply(reply, ICMP.1, 0x1235, b"abc"));
        assert!(!is_reply(&p, ICMP.1, 0x1234, b"abc"), "our own request");
        let mut v6 = request(ICMPV6.0, 0x1234, 7, b"abc");
        v6[0] = ICMPV6.1;
        assert!(is_reply(icmp_of(&v6, false), ICMPV6.1, 0x1234, b"abc"));
    }
}
