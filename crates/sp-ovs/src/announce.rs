//! Gratuitous ARP: after the host address moved to a device with another MAC, neighbours
//! that cached the old MAC (the gateway, an operator's workstation) are told the new one
//! at once instead of when their entry goes stale (`arping -U`, what ifup does).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;

/// An ARP request for `ip` from `ip` at `mac` (a gratuitous ARP).
fn packet(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Broadcasts one gratuitous ARP for `ip` out of device `index` whose MAC is `mac`.
pub fn gratuitous_arp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let proto = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2) call; the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = proto;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let p = packet(mac, ip);
    // SAFETY: `p` and `to` outlive the call; the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            p.as_ptr().cast(),
            p.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_asks_for_its_own_address() {
        let p = packet([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 50, 14, 50));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 50, 14, 50, 0, 0, 0, 0, 0, 0, 10, 50,
                14, 50
            ]
        );
    }
}
