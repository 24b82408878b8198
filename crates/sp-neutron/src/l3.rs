//! The L3 agent's iptables rules inside `qrouter-<router>` (Liberty,
//! `neutron/agent/l3/router_info.py` with the `neutron-l3-agent-` wrap prefix; the
//! reference's §2), as one `iptables-restore` input replacing the filter, mangle and nat
//! tables of the namespace atomically.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// The wrap prefix of the L3 agent's chains.
pub const WRAP: &str = "neutron-l3-agent";
/// The metadata proxy's port inside the namespace.
pub const METADATA_PORT: u16 = 9697;

/// A floating IP: traffic to `floating` goes to `fixed`, and `fixed` leaves as `floating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloatingIp {
    pub floating: Ipv4Addr,
    pub fixed: Ipv4Addr,
}

/// What a router's NAT depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterNat {
    /// The `qg-…` device.
    pub gateway_device: String,
    /// The router's address on the external network; `None` (no gateway) means no SNAT.
    pub gateway_ip: Option<Ipv4Addr>,
    /// `enable_snat` (default true).
    pub enable_snat: bool,
    pub floating_ips: Vec<FloatingIp>,
}

impl RouterNat {
    /// The `iptables-restore` input for the namespace.
    pub fn iptables_restore(&self) -> String {
        let w = WRAP;
        let qg = &self.gateway_device;
        let mut out = String::new();
        // filter
        out += "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
        for c in [
            "neutron-filter-top",
            &format!("{w}-FORWARD"),
            &format!("{w}-INPUT"),
            &format!("{w}-OUTPUT"),
            &format!("{w}-local"),
        ] {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        let _ = write!(
            out,
            "-A INPUT -j {w}-INPUT\n-A FORWARD -j neutron-filter-top\n-A FORWARD -j {w}-FORWARD\n\
             -A OUTPUT -j neutron-filter-top\n-A OUTPUT -j {w}-OUTPUT\n\
             -A neutron-filter-top -j {w}-local\n\
             -A {w}-INPUT -m mark --mark 0x1/0xffff -j ACCEPT\n\
             -A {w}-INPUT -p tcp -m tcp --dport {METADATA_PORT} -j DROP\nCOMMIT\n"
        );
        // mangle
        out += "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
        for c in ["PREROUTING", "mark"] {
            let _ = writeln!(out, ":{w}-{c} - [0:0]");
        }
        let _ = write!(
            out,
            "-A PREROUTING -j {w}-PREROUTING\n-A {w}-PREROUTING -j {w}-mark\n\
             -A {w}-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff\n\
             -A {w}-mark -i {qg} -j MARK --set-xmark 0x2/0xffff\nCOMMIT\n"
        );
        // nat
        out += "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
        for c in ["OUTPUT", "POSTROUTING", "PREROUTING", "float-snat", "snat"] {
            let _ = writeln!(out, ":{w}-{c} - [0:0]");
        }
        out += ":neutron-postrouting-bottom - [0:0]\n";
        let _ = write!(
            out,
            "-A PREROUTING -j {w}-PREROUTING\n-A OUTPUT -j {w}-OUTPUT\n-A POSTROUTING -j {w}-POSTROUTING\n\
             -A POSTROUTING -j neutron-postrouting-bottom\n"
        );
        for f in &self.floating_ips {
            let _ = writeln!(
                out,
                "-A {w}-OUTPUT -d {}/32 -j DNAT --to-destination {}",
                f.floating, f.fixed
            );
        }
        let _ = writeln!(
            out,
            "-A {w}-POSTROUTING ! -i {qg} ! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT"
        );
        // The floating IPs' DNAT, then the metadata redirect: Liberty's order.
        for f in &self.floating_ips {
            let _ = writeln!(
                out,
                "-A {w}-PREROUTING -d {}/32 -j DNAT --to-destination {}",
                f.floating, f.fixed
            );
        }
        let _ = writeln!(
            out,
            "-A {w}-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports {METADATA_PORT}"
        );
        for f in &self.floating_ips {
            let _ = writeln!(
                out,
                "-A {w}-float-snat -s {}/32 -j SNAT --to-source {}",
                f.fixed, f.floating
            );
        }
        let _ = writeln!(out, "-A {w}-snat -j {w}-float-snat");
        if let (Some(gw), true) = (self.gateway_ip, self.enable_snat) {
            let _ = write!(
                out,
                "-A {w}-snat -o {qg} -j SNAT --to-source {gw}\n\
                 -A {w}-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source {gw}\n"
            );
        }
        let _ = write!(
            out,
            "-A neutron-postrouting-bottom -m comment --comment \"Perform source NAT on outgoing traffic.\" -j {w}-snat\nCOMMIT\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_router_nat() {
        let nat = RouterNat {
            gateway_device: "qg-9477c16b-e5".into(),
            gateway_ip: Some("10.0.0.200".parse().unwrap()),
            enable_snat: true,
            floating_ips: vec![FloatingIp {
                floating: "10.0.0.201".parse().unwrap(),
                fixed: "192.168.0.3".parse().unwrap(),
            }],
        };
        let rules = nat.iptables_restore();
        for line in [
            "-A neutron-l3-agent-PREROUTING -d 10.0.0.201/32 -j DNAT --to-destination 192.168.0.3",
            "-A neutron-l3-agent-OUTPUT -d 10.0.0.201/32 -j DNAT --to-destination 192.168.0.3",
            "-A neutron-l3-agent-float-snat -s 192.168.0.3/32 -j SNAT --to-source 10.0.0.201",
            "-A neutron-l3-agent-snat -o qg-9477c16b-e5 -j SNAT --to-source 10.0.0.200",
            "-A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 10.0.0.200",
            "-A neutron-l3-agent-POSTROUTING ! -i qg-9477c16b-e5 ! -o qg-9477c16b-e5 -m conntrack ! --ctstate DNAT -j ACCEPT",
            "-A neutron-l3-agent-mark -i qg-9477c16b-e5 -j MARK --set-xmark 0x2/0xffff",
            "-A neutron-postrouting-bottom -m comment --comment \"Perform source NAT on outgoing traffic.\" -j neutron-l3-agent-snat",
            "-A neutron-l3-agent-INPUT -p tcp -m tcp --dport 9697 -j DROP",
        ] {
            assert!(rules.lines().any(|l| l == line), "missing {line:?} in\n{rules}");
        }
        assert_eq!(rules.matches("COMMIT").count(), 3);
        let no_snat = RouterNat {
            enable_snat: false,
            ..nat
        };
        assert!(!no_snat
            .iptables_restore()
            .contains("--to-source 10.0.0.200"));
    }
}
