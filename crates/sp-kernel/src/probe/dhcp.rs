//! A DHCPv4 exchange (DISCOVER → OFFER → REQUEST → ACK, RFC 2131) from a UDP socket bound
//! to one device — what an instance's DHCP client does at boot, to see what the network
//! would give it. Nothing is configured here; the caller applies the lease.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

/// What the server offered and acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    /// Option 26 (what the guide forces with `dhcp-option-force=26,1450`).
    pub mtu: Option<u16>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
}

const COOKIE: [u8; 4] = [99, 130, 83, 99];
const RESEND: Duration = Duration::from_secs(1);

fn message(kind: u8, xid: u32, mac: [u8; 6], extra: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // broadcast the answer: we have no address yet
    p[28..34].copy_from_slice(&mac);
    p.extend(COOKIE);
    p.extend([53, 1, kind]);
    for (code, value) in extra {
        p.push(*code);
        p.push(value.len() as u8);
        p.extend(value);
    }
    p.extend([55, 4, 1, 3, 6, 26, 255]);
    p
}

/// A server's answer: message type, `yiaddr`, options (code, value).
type Answer<'a> = (u8, Ipv4Addr, Vec<(u8, &'a [u8])>);

/// The message type and options of an answer to `xid`, with `yiaddr`.
fn parse(p: &[u8], xid: u32) -> Option<Answer<'_>> {
    if p.len() < 240 || p[0] != 2 || p[4..8] != xid.to_be_bytes() || p[236..240] != COOKIE {
        return None;
    }
    let yiaddr = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let mut opts = Vec::new();
    let mut i = 240;
    while i < p.len() {
        match p[i] {
            255 => break,
            0 => i += 1,
            code => {
                let len = usize::from(*p.get(i + 1)?);
                opts.push((code, p.get(i + 2..i + 2 + len)?));
                i += 2 + len;
            }
        }
    }
    let kind = opts
        .iter()
        .find(|o| o.0 == 53)
        .and_then(|o| o.1.first().copied())?;
    Some((kind, yiaddr, opts))
}

fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?))
}

/// Asks for a lease on `device` (in the calling thread's network namespace) for `mac`,
/// within `within`.
pub fn lease(device: &str, mac: [u8; 6], within: Duration) -> io::Result<Lease> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
    setsockopt(
        &sock,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(device),
    )
    .map_err(io::Error::from)?;
    sock.set_broadcast(true)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ std::process::id();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    // DISCOVER until an OFFER, then REQUEST until an ACK (a NAK starts over).
    let mut request: Option<(Ipv4Addr, Ipv4Addr)> = None;
    let mut sent = Instant::now() - RESEND;
    while Instant::now() < deadline {
        if sent.elapsed() >= RESEND {
            let msg = match request {
                None => message(1, xid, mac, &[]),
                Some((ip, server)) => message(
                    3,
                    xid,
                    mac,
                    &[(50, ip.octets().to_vec()), (54, server.octets().to_vec())],
                ),
            };
            sock.send_to(&msg, to)?;
            sent = Instant::now();
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let Some((kind, yiaddr, opts)) = parse(&buf[..n], xid) else {
            continue;
        };
        let opt = |c: u8| opts.iter().find(|o| o.0 == c).map(|o| o.1);
        let server = opt(54).and_then(ipv4).unwrap_or(Ipv4Addr::UNSPECIFIED);
        match (kind, request) {
            (2, None) => {
                request = Some((yiaddr, server));
                sent = Instant::now() - RESEND;
            }
            (5, Some(_)) => {
                let prefix_len = opt(1)
                    .and_then(ipv4)
                    .map_or(32, |m| u32::from(m).count_ones() as u8);
                return Ok(Lease {
                    ip: yiaddr,
                    prefix_len,
                    router: opt(3).and_then(ipv4),
                    mtu: opt(26)
                        .and_then(|b| Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))),
                    dns: opt(6)
                        .map(|b| b.chunks(4).filter_map(ipv4).collect())
                        .unwrap_or_default(),
                    server,
                });
            }
            (6, _) => request = None,
            _ => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no DHCP lease on {device} within {within:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mac = [0xfa, 0x16, 0x3e, 0x5d, 0x2c, 0x01];
        let mut ack = message(
            5,
            7,
            mac,
            &[
                (1, vec![255, 255, 255, 0]),
                (3, vec![192, 168, 0, 1]),
                (26, vec![5, 170]),
            ],
        );
        ack[0] = 2;
        ack[16..20].copy_from_slice(&[192, 168, 0, 3]);
        let (kind, ip, opts) = parse(&ack, 7).unwrap();
        assert_eq!((kind, ip), (5, Ipv4Addr::new(192, 168, 0, 3)));
        assert!(opts.contains(&(26, &[5u8, 170][..])), "MTU 1450");
        assert!(parse(&ack, 8).is_none(), "another exchange");
    }
}
