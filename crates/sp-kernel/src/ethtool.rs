//! A device's transmit checksum offload (ethtool's `tx-checksumming`), read and set with
//! the `SIOCETHTOOL` ioctl — `ETHTOOL_GTXCSUM` and `ETHTOOL_STXCSUM` of
//! `linux/ethtool.h`, what `ethtool -k DEV` shows as `tx-checksumming` and `ethtool -K
//! DEV tx on|off` sets.
//!
//! Why: with the offload on, a veth leaves a UDP checksum *partial* (the pseudo-header
//! sum only, for a NIC to complete) and hands the packet on as it is; a guest behind a
//! tap (virtio) gets it so and drops it. Liberty fills the checksum of the DHCP replies
//! with `iptables -t mangle -A neutron-dhcp-age-POSTROUTING -p udp --dport 68 -j CHECKSUM
//! --checksum-fill` in every `qdhcp-` namespace; nf_tables has no such statement. With
//! the offload off on the `ns-` device the kernel computes every checksum the device
//! sends in software, so DHCP replies leave complete (`docs/dhcp.md`).
//!
//! The kernel keeps the ioctl as a thin layer over the device's features, the same
//! ones ethtool's netlink family sets: `ETHTOOL_GTXCSUM` answers whether any of the
//! transmit checksum features (`tx-checksum-ipv4`, `-ip-generic`, `-ipv6`, `-fcoe-crc`,
//! `-sctp`) is active; `ETHTOOL_STXCSUM` sets or clears all of them in the wanted
//! features and lets the kernel recompute the active ones (offloads that need checksums
//! — TSO, say — follow), which leaves a device as `ethtool -K DEV tx off` does. The ioctl acts on the
//! devices of the network namespace its socket was opened in: open a [`Socket`] inside
//! the namespace (`netns::run_in_each`) and use it from anywhere.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use sp_names::IfName;

use crate::{Error, Result};

/// `linux/ethtool.h`: get / set transmit checksum offload.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// A socket for `SIOCETHTOOL`, bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct Socket(OwnedFd);

impl Socket {
    /// Opens one in the calling thread's network namespace.
    pub fn open() -> Result<Socket> {
        socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map(Socket)
        .map_err(|e| Error::from_errno("open a socket for ethtool requests", e))
    }

    /// Whether transmit checksum offload is on for device `dev`.
    pub fn tx_checksum(&self, dev: &str) -> Result<bool> {
        let mut v = EthtoolValue {
            cmd: ETHTOOL_GTXCSUM,
            data: 0,
        };
        self.request(dev, &mut v, || format!("read tx checksum offload of {dev}"))?;
        Ok(v.data != 0)
    }

    /// Turns transmit checksum offload of device `dev` on or off (`ethtool -K DEV tx
    /// on|off`). Needs CAP_NET_ADMIN.
    pub fn set_tx_checksum(&self, dev: &str, on: bool) -> Result<()> {
        let mut v = EthtoolValue {
            cmd: ETHTOOL_STXCSUM,
            data: u32::from(on),
        };
        let word = if on { "on" } else { "off" };
        self.request(dev, &mut v, || {
            format!("set tx checksum offload of {dev} {word}")
        })
    }

    /// One `SIOCETHTOOL` request about device `dev`; `what` names it in an error.
    fn request(&self, dev: &str, v: &mut EthtoolValue, what: impl Fn() -> String) -> Result<()> {
        IfName::check(dev)?;
        // SAFETY: an all-zero `ifreq` is valid (a name of NULs, a null union).
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // IfName::check bounds the name below IFNAMSIZ, so a NUL ends it.
        for (d, s) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (v as *mut EthtoolValue).cast();
        // SAFETY: SIOCETHTOOL reads `ifr` and the `ethtool_value` it points at (both live
        // for the call) and writes at most that `ethtool_value`.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
        nix::errno::Errno::result(rc)
            .map(drop)
            .map_err(|e| Error::from_errno(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_kernel_would_not_take_is_refused_before_the_ioctl() {
        let s = Socket::open().expect("a datagram socket");
        for bad in ["a/b", "sixteen-chars-xx", ""] {
            let e = s.tx_checksum(bad).expect_err("refused");
            assert!(matches!(e, Error::Name(_)), "{bad:?}: {e}");
        }
    }
}
