//! iproute2's words for rtnetlink numbers, so our output reads like `ip`'s.

/// `rtm_protocol` as `/etc/iproute2/rt_protos` names it.
pub fn route_protocol(p: u8) -> String {
    match p {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        8 => "gated",
        9 => "ra",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        17 => "mrouted",
        18 => "keepalived",
        42 => "babel",
        99 => "openr",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        192 => "eigrp",
        n => return n.to_string(),
    }
    .to_owned()
}

/// `rtm_scope` / `ifa_scope` as iproute2 prints it.
pub fn scope(s: u8) -> String {
    match s {
        0 => "global",
        200 => "site",
        253 => "link",
        254 => "host",
        255 => "nowhere",
        n => return n.to_string(),
    }
    .to_owned()
}

/// `rtm_type`.
pub fn route_type(t: u8) -> String {
    match t {
        0 => "unspec",
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        11 => "xresolve",
        n => return n.to_string(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_iproute2() {
        assert_eq!(route_protocol(2), "kernel");
        assert_eq!(route_protocol(16), "dhcp");
        assert_eq!(route_protocol(77), "77");
        assert_eq!(scope(253), "link");
        assert_eq!(scope(0), "global");
        assert_eq!(route_type(1), "unicast");
    }
}
