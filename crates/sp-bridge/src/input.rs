//! Checking what users give us before anything touches the kernel (names are
//! `sp_names`' types).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Error, Result};

/// A VXLAN network identifier: 1–16777215.
pub fn vni(v: u64) -> Result<u32> {
    if (1..1 << 24).contains(&v) {
        Ok(v as u32)
    } else {
        Err(Error::InvalidVni(v))
    }
}

/// A port's MAC, `aa:bb:cc:dd:ee:ff` ([`sp_names::Mac`]: unicast, not all-zero).
pub fn mac(s: &str) -> Result<[u8; 6]> {
    Ok(s.parse::<sp_names::Mac>()?.octets())
}

/// `ADDRESS/PREFIX`, keeping the host part (`192.168.0.1/24`).
pub fn cidr(s: &str) -> Result<IpNet> {
    s.parse::<IpNet>()
        .map_err(|_| Error::InvalidCidr(s.to_owned()))
}

/// A plain IP address.
pub fn ip(s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| Error::InvalidIp(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_named() {
        assert_eq!(vni(1).unwrap(), 1);
        assert_eq!(vni(16_777_215).unwrap(), 16_777_215);
        assert!(vni(0).is_err() && vni(16_777_216).is_err());
        assert_eq!(
            mac("fa:16:3e:a7:24:00").unwrap(),
            [0xfa, 0x16, 0x3e, 0xa7, 0x24, 0]
        );
        for bad in [
            "fa:16:3e:a7:24",
            "fa:16:3e:a7:24:0g",
            "fa16.3ea7.2400",
            "fa:16:3e:a7:24:000",
            "01:00:5e:00:00:01",
        ] {
            assert!(mac(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            cidr("192.168.0.1/24").unwrap().to_string(),
            "192.168.0.1/24"
        );
        assert!(cidr("192.168.0.1").is_err() && cidr("192.168.0.1/33").is_err());
        assert!(ip("10.0.0.300").is_err());
    }
}
