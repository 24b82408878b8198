//! Floor 0: the names every layer passes around, each checked in one place.
//!
//! * [`IfName`] — a network device name the kernel takes (`dev_valid_name`): 1–15 bytes,
//!   not `.`/`..`, no `/`, `:`, whitespace or control character.
//! * [`NsName`] — a named network namespace, a file under `/run/netns`: 1–255 bytes, no
//!   `/`, no NUL, not `.`, no `..` anywhere.
//! * [`NeutronId`] — a Neutron resource id: a UUID (`8-4-4-4-12` hex digits), kept in
//!   Neutron's lower-case form, since device and namespace names are cut from it.
//! * [`Mac`] — a port's MAC address: six octets, unicast and not all-zero (what Neutron
//!   takes for a port), read `aa:bb:cc:dd:ee:ff` in either case, written in lower case.
//!
//! A value of these types cannot hold a name that would reach the kernel cut short,
//! escape a directory or read differently from what the user wrote. They parse from
//! `&str` (`FromStr`, `TryFrom`), deserialise through the same check, and read back as
//! `&str` (`Deref`, `AsRef`, `Display`).

use std::fmt;

/// Longest network device name: `IFNAMSIZ` (16) less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// Longest namespace name (a file name under `/run/netns`: `NAME_MAX`).
pub const NSNAME_MAX: usize = 255;

/// A name that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} {name:?}: {reason}", .what.noun())]
pub struct NameError {
    pub what: What,
    pub name: String,
    pub reason: &'static str,
}

/// Which kind of name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Interface,
    Namespace,
    NeutronId,
    Mac,
}

impl What {
    fn noun(self) -> &'static str {
        match self {
            // ovs-attach's wording, which its users (and tests) know.
            What::Interface => "name",
            What::Namespace => "namespace name",
            What::NeutronId => "Neutron id",
            What::Mac => "MAC address",
        }
    }
}

fn check(what: What, name: &str, rule: fn(&str) -> Option<&'static str>) -> Result<(), NameError> {
    match rule(name) {
        None => Ok(()),
        Some(reason) => Err(NameError {
            what,
            name: name.to_owned(),
            reason,
        }),
    }
}

fn ifname_rule(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > IFNAME_MAX {
        Some("longer than 15 bytes (the kernel's IFNAMSIZ limit)")
    } else if name == "." || name == ".." {
        Some("not a device name")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains(':') {
        Some("contains ':'")
    } else if name.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.contains('%') {
        // `br%d` is a template to the kernel: the device would get another name.
        Some("contains '%' (the kernel would number it)")
    } else if name.as_bytes().contains(&0xa0) {
        // The kernel's isspace() takes byte 0xA0 (inside some UTF-8 letters) for a space.
        Some("contains byte 0xA0, which the kernel takes for a space")
    } else {
        None
    }
}

fn nsname_rule(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > NSNAME_MAX {
        Some("longer than 255 bytes")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.contains("..") || name == "." {
        Some("contains '..' or is '.'")
    } else {
        None
    }
}

fn uuid_rule(id: &str) -> Option<&'static str> {
    let b = id.as_bytes();
    let shaped = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    (!shaped).then_some("expected a UUID like 5b6a8b87-fd03-46b5-a968-72bac5091b7c")
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:expr, $rule:expr, $norm:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Checks `name` and takes it.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name: String = name.into();
                check($what, &name, $rule)?;
                let norm: fn(String) -> String = $norm;
                Ok($ty(norm(name)))
            }

            /// Checks `name` without keeping it.
            pub fn check(name: &str) -> Result<(), NameError> {
                check($what, name, $rule)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$ty> for String {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$ty> for str {
            fn eq(&self, other: &$ty) -> bool {
                self == other.0
            }
        }

        /// One path component: the name can hold neither `/` nor `..`.
        impl AsRef<std::path::Path> for $ty {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl AsRef<std::ffi::OsStr> for $ty {
            fn as_ref(&self) -> &std::ffi::OsStr {
                std::ffi::OsStr::new(&self.0)
            }
        }
    };
}

name_type!(
    /// A network device name the kernel takes as it is (see the crate docs).
    IfName,
    What::Interface,
    ifname_rule,
    |s| s
);

name_type!(
    /// A named network namespace: a file under `/run/netns` that cannot escape it.
    NsName,
    What::Namespace,
    nsname_rule,
    |s| s
);

name_type!(
    /// A Neutron resource id (network, subnet, router, port): a UUID, lower case as
    /// Neutron writes it — `brq`/`tap`/`qr-` names and `qrouter-`/`qdhcp-` namespaces are
    /// cut from it, so `5B6A…` must name the same devices as `5b6a…`.
    NeutronId,
    What::NeutronId,
    uuid_rule,
    |s| s.to_ascii_lowercase()
);

/// A port's MAC address: six octets, unicast and not all-zero — the addresses Neutron
/// gives a port (a multicast or zero source address is dropped by every bridge and host).
/// Parsed from `aa:bb:cc:dd:ee:ff` (either case), shown in lower case, serialised as
/// that string.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Mac([u8; 6]);

impl Mac {
    /// Checks the octets of a port's address and takes them.
    pub fn new(octets: [u8; 6]) -> Result<Mac, NameError> {
        let reason = if octets == [0; 6] {
            Some("all zero (not a port's address)")
        } else if octets[0] & 1 == 1 {
            Some("a multicast address (a port's MAC must be unicast: the first octet even)")
        } else {
            None
        };
        match reason {
            None => Ok(Mac(octets)),
            Some(reason) => Err(NameError {
                what: What::Mac,
                name: Mac(octets).to_string(),
                reason,
            }),
        }
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for Mac {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Mac, NameError> {
        let bad = |reason| NameError {
            what: What::Mac,
            name: s.to_owned(),
            reason,
        };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut octets {
            let p = parts
                .next()
                .ok_or_else(|| bad("expected six octets like fa:16:3e:a7:24:00"))?;
            // Two hex digits exactly (from_str_radix alone would take `+0`).
            *o = (p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
                .ok_or_else(|| bad("expected six octets like fa:16:3e:a7:24:00"))?;
        }
        if parts.next().is_some() {
            return Err(bad("expected six octets like fa:16:3e:a7:24:00"));
        }
        Mac::new(octets).map_err(|e| bad(e.reason))
    }
}

impl TryFrom<String> for Mac {
    type Error = NameError;
    fn try_from(s: String) -> Result<Mac, NameError> {
        s.parse()
    }
}

impl TryFrom<&str> for Mac {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Mac, NameError> {
        s.parse()
    }
}

impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_the_kernel_takes_and_the_ones_it_would_not() {
        for ok in [
            "brq5b6a8b87-fd",
            "qg-48cdaf68-67",
            "tap754104f3-90",
            "vxlan-1",
            "eno1",
            "br-ex",
        ] {
            assert_eq!(IfName::new(ok).unwrap(), ok);
        }
        for (bad, why) in [
            ("", "empty"),
            ("qg-48cdaf68-67xx", "15 bytes"),
            ("a/b", "'/'"),
            ("a:b", "':'"),
            ("eth0:1", "':'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a\0b", "control"),
            ("a\x7f", "control"),
            ("br%d", "'%'"),
            ("vxl\u{e0}n", "0xA0"),
            (".", "not a device"),
            ("..", "not a device"),
        ] {
            let e = IfName::new(bad).unwrap_err();
            assert_eq!(e.what, What::Interface);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
        // 15 bytes, counted in bytes, not characters.
        assert!(IfName::new("ééééééé").is_ok());
        assert!(IfName::new("éééééééé").is_err());
        assert_eq!(
            IfName::new("qg-48cdaf68-67ab").unwrap_err().to_string(),
            "invalid name \"qg-48cdaf68-67ab\": longer than 15 bytes (the kernel's IFNAMSIZ limit)"
        );
    }

    #[test]
    fn namespace_names_cannot_escape_run_netns() {
        for bad in ["", "a/b", "../etc", "..", ".", "x..y", "a\0b"] {
            let e = NsName::new(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid namespace name"), "{e}");
        }
        assert!(NsName::new("x".repeat(256)).is_err());
        for good in [
            "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165",
            "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c",
            "x".repeat(255).as_str(),
            "a.b",
        ] {
            NsName::new(good).unwrap();
        }
    }

    #[test]
    fn neutron_ids_are_uuids_in_lower_case() {
        let id = NeutronId::new("5B6A8B87-fd03-46b5-a968-72bac5091b7c").unwrap();
        assert_eq!(id, "5b6a8b87-fd03-46b5-a968-72bac5091b7c");
        for bad in [
            "",
            "5b6a8b87",
            "5b6a8b87-fd03-46b5-a968-72bac5091b7",
            "5b6a8b87-fd03-46b5-a968-72bac5091b7cc",
            "5b6a8b87/fd03-46b5-a968-72bac5091b7c",
            "5b6a8b87-fd03-46b5-a968-72bac5091b7g",
            "5b6a8b87-fd03-46b5-a968 72bac5091b7c",
            "../../../../../../../../../../../tmp",
        ] {
            let e = NeutronId::new(bad).unwrap_err();
            assert!(e.to_string().contains("expected a UUID"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn deserialising_runs_the_same_check() {
        let ok: IfName = serde_json::from_str("\"br-ex\"").unwrap();
        assert_eq!(ok, "br-ex");
        let e = serde_json::from_str::<IfName>("\"br/ex\"").unwrap_err();
        assert!(e.to_string().contains("contains '/'"), "{e}");
        let e = serde_json::from_str::<NeutronId>("\"net1\"").unwrap_err();
        assert!(e.to_string().contains("expected a UUID"), "{e}");
        assert_eq!(
            serde_json::to_string(&NsName::new("qdhcp-x").unwrap()).unwrap(),
            "\"qdhcp-x\""
        );
    }

    #[test]
    fn macs_are_unicast_non_zero_and_written_in_lower_case() {
        let m: Mac = "FA:16:3E:a7:24:00".parse().unwrap();
        assert_eq!(m.octets(), [0xfa, 0x16, 0x3e, 0xa7, 0x24, 0]);
        assert_eq!(m.to_string(), "fa:16:3e:a7:24:00");
        assert_eq!(Mac::new(m.octets()).unwrap(), m);
        // Locally administered (bit 1) is a port's address too.
        "02:00:00:00:00:01".parse::<Mac>().unwrap();
        for (bad, why) in [
            ("", "six octets"),
            ("fa:16:3e:a7:24", "six octets"),
            ("fa:16:3e:a7:24:00:01", "six octets"),
            ("fa:16:3e:a7:24:0g", "six octets"),
            ("fa:16:3e:a7:24:000", "six octets"),
            ("fa16.3ea7.2400", "six octets"),
            ("fa:16:3e:a7:24:+0", "six octets"),
            ("fa:16:3e:a7:24: 0", "six octets"),
            ("00:00:00:00:00:00", "all zero"),
            ("01:00:5e:00:00:01", "multicast"),
            ("ff:ff:ff:ff:ff:ff", "multicast"),
            ("33:33:00:00:00:01", "multicast"),
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert_eq!(e.what, What::Mac);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("invalid MAC address"), "{e}");
        }
        assert!(Mac::new([1, 0, 0, 0, 0, 0]).is_err());
        assert!(Mac::new([0; 6]).is_err());
    }

    #[test]
    fn macs_serialise_as_their_text() {
        let m: Mac = serde_json::from_str("\"FA:16:3E:5D:2C:01\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"fa:16:3e:5d:2c:01\"");
        let e = serde_json::from_str::<Mac>("\"01:00:5e:00:00:01\"").unwrap_err();
        assert!(e.to_string().contains("multicast"), "{e}");
    }
}
