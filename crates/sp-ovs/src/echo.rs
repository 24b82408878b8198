//! "Does the gateway still answer?" — one ICMP echo exchange over a raw socket bound to
//! the device the traffic must take (`SO_BINDTODEVICE`), resent every 200 ms until an
//! answer or the timeout. No `ping` process.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use tokio::io::unix::AsyncFd;
use tokio::time::{interval, timeout, MissedTickBehavior};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
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

/// An echo request with identifier `id`, sequence `seq` and payload `cookie`.
fn request(id: u16, seq: u16, cookie: &[u8]) -> Vec<u8> {
    let mut p = vec![ECHO_REQUEST, 0, 0, 0];
    p.extend(id.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend(cookie);
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether `packet` (IPv4 header + ICMP, as a raw socket delivers it) is a reply from
/// `from` to one of our requests.
fn is_reply(packet: &[u8], from: Ipv4Addr, id: u16, cookie: &[u8]) -> bool {
    let Some(ihl) = packet.first().map(|b| usize::from(b & 0x0f) * 4) else {
        return false;
    };
    if packet.len() < 20 || packet[12..16] != from.octets() {
        return false;
    }
    let icmp = &packet[ihl.min(packet.len())..];
    icmp.len() >= 8 + cookie.len()
        && icmp[0] == ECHO_REPLY
        && icmp[4..6] == id.to_be_bytes()
        && &icmp[8..8 + cookie.len()] == cookie
}

fn io(context: &str, e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::new(std::io::Error::from(e).kind(), format!("{context}: {e}"))
}

/// Sends echo requests to `target` out of `device` until one is answered (`Ok(true)`)
/// or `within` has passed (`Ok(false)`). Errors are the socket's own.
pub async fn answers(target: Ipv4Addr, device: &str, within: Duration) -> std::io::Result<bool> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .map_err(|e| io("open a raw ICMP socket", e))?;
    setsockopt(&fd, sockopt::BindToDevice, &device.into())
        .map_err(|e| io(&format!("bind the ICMP socket to {device}"), e))?;
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open until it is dropped.
    let fd = unsafe { AsyncFd::register(fd) }?;
    let id = (std::process::id() & 0xffff) as u16;
    let cookie = *b"stackplumb-gw";
    let dest = SockaddrIn::from(std::net::SocketAddrV4::new(target, 0));
    let mut tick = interval(RESEND);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let exchange = async {
        let mut seq: u16 = 0;
        let mut buf = [0u8; 1500];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    seq = seq.wrapping_add(1);
                    let p = request(id, seq, &cookie);
                    // A send can fail while the neighbour is unresolved (EHOSTUNREACH)
                    // or the device has just come up: the next tick tries again.
                    let _ = socket::sendto(fd.as_raw_fd(), &p, &dest, socket::MsgFlags::empty());
                }
                ready = fd.readable() => {
                    let mut guard = ready?;
                    match guard.try_io(|fd| {
                        socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty())
                            .map_err(std::io::Error::from)
                    }) {
                        Ok(Ok(n)) if is_reply(&buf[..n], target, id, &cookie) => return Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums_to_zero_and_reply_is_recognised() {
        let p = request(0x1234, 7, b"abc");
        assert_eq!(checksum(&p), 0);
        let from = Ipv4Addr::new(10, 50, 14, 1);
        let mut reply = vec![0x45u8; 20];
        reply[12..16].copy_from_slice(&from.octets());
        let mut icmp = p.clone();
        icmp[0] = ECHO_REPLY;
        reply.extend(&icmp);
        assert!(is_reply(&reply, from, 0x1234, b"abc"));
        assert!(!is_reply(
            &reply,
            Ipv4Addr::new(10, 50, 14, 2),
            0x1234,
            b"abc"
        ));
        assert!(!is_reply(&reply, from, 0x1235, b"abc"));
        reply[20] = ECHO_REQUEST;
        assert!(!is_reply(&reply, from, 0x1234, b"abc"), "our own request");
    }
}
