//! Security groups as Liberty's `IptablesFirewallDriver` applies them to a port
//! (`neutron/agent/linux/iptables_firewall.py`, `ipset_manager.py`): the typed rules a
//! topology declares, the firewall of one port (its MAC, fixed IPs, allowed address
//! pairs, DHCP servers, its groups' rules) and the members of the remote groups — and
//! the `iptables-restore` / `ipset restore` input Liberty's agent loads for them, the
//! reference `sp-sg`'s nf_tables rules are checked against (`docs/security-groups.md`)
//! and the baseline of `sp-bench sg`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sp_names::{Mac, NeutronId};

/// The Linux bridge agent's iptables wrap prefix (`neutron-linuxbri-`, cut from
/// `neutron-linuxbridge-agent`).
pub const WRAP: &str = "neutron-linuxbri";

/// Which way a rule lets traffic pass, seen from the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// `ethertype` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EtherType {
    #[serde(rename = "IPv4")]
    Ipv4,
    #[serde(rename = "IPv6")]
    Ipv6,
}

impl EtherType {
    pub fn as_str(self) -> &'static str {
        match self {
            EtherType::Ipv4 => "IPv4",
            EtherType::Ipv6 => "IPv6",
        }
    }

    pub fn of(ip: &IpAddr) -> EtherType {
        match ip {
            IpAddr::V4(_) => EtherType::Ipv4,
            IpAddr::V6(_) => EtherType::Ipv6,
        }
    }
}

/// `protocol` of a rule (`icmp` with IPv6 is ICMPv6, as Neutron maps it).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    /// The IP protocol number for `ethertype` (none for any).
    pub fn number(self, ethertype: EtherType) -> Option<u8> {
        match (self, ethertype) {
            (Protocol::Any, _) => None,
            (Protocol::Tcp, _) => Some(6),
            (Protocol::Udp, _) => Some(17),
            (Protocol::Icmp, EtherType::Ipv4) => Some(1),
            (Protocol::Icmp, EtherType::Ipv6) => Some(58),
        }
    }
}

/// Where the other end of a rule's traffic may be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Remote {
    /// Anywhere (`remote_ip_prefix` unset or a /0).
    Any,
    Prefix(IpNet),
    /// The addresses of the ports in that group (an ipset, a named set).
    Group(NeutronId),
}

/// One rule of a group, checked: the port range only with tcp/udp (`min <= max`), the
/// ICMP type/code only with icmp (a code only with a type), a prefix of the rule's
/// ethertype.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub direction: Direction,
    pub ethertype: EtherType,
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote: Remote,
}

/// An allowed address pair: more addresses (a host or a prefix) the port may send
/// from, with their MAC (the port's unless given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressPair {
    pub ip: IpNet,
    pub mac: Mac,
}

/// The firewall of one instance port with port security on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFirewall {
    pub port_id: NeutronId,
    /// The host end, `tap<port id[:11]>`, a port of its network's bridge.
    pub device: String,
    pub mac: Mac,
    pub fixed_ips: Vec<IpAddr>,
    pub pairs: Vec<AddressPair>,
    /// The DHCP ports' addresses on the port's network (their replies are let in).
    pub dhcp_servers: Vec<IpAddr>,
    /// Its groups' rules, in order, without duplicates.
    pub rules: Vec<Rule>,
}

impl PortFirewall {
    /// Liberty's per-port chain suffix: the first 10 characters of the port id.
    pub fn chain_id(&self) -> String {
        self.port_id.as_str().chars().take(10).collect()
    }

    /// Every (address or prefix, MAC) the port may send from: its fixed IPs with its
    /// MAC, then the allowed pairs.
    pub fn sources(&self) -> Vec<(IpNet, Mac)> {
        self.fixed_ips
            .iter()
            .map(|ip| (IpNet::from(*ip), self.mac))
            .chain(self.pairs.iter().map(|p| (p.ip, p.mac)))
            .collect()
    }

    /// The IPv6 link-local address the port's MAC gives (EUI-64), which Liberty lets
    /// out with the port's MAC.
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac.octets();
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }
}

/// The members of a remote group of one ethertype: the addresses of every port in the
/// group (fixed IPs and allowed pairs), wherever it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSet {
    pub group_id: NeutronId,
    pub ethertype: EtherType,
    pub members: Vec<IpNet>,
}

impl MemberSet {
    /// Liberty's ipset name: `N` + ethertype + group id, cut to 29 characters.
    pub fn name(&self) -> String {
        set_name(&self.group_id, self.ethertype)
    }
}

/// The ipset (and our named set) of `group`'s `ethertype` members.
pub fn set_name(group: &NeutronId, ethertype: EtherType) -> String {
    format!("N{}{}", ethertype.as_str(), group.as_str())
        .chars()
        .take(29)
        .collect()
}

/// A node's security groups: its ports with port security, the member sets their
/// remote-group rules look up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firewall {
    pub ports: Vec<PortFirewall>,
    pub sets: Vec<MemberSet>,
}

fn cidr(n: &IpNet) -> String {
    match n {
        IpNet::V4(n) => format!("{}/{}", n.addr(), n.prefix_len()),
        IpNet::V6(n) => format!("{}/{}", n.addr(), n.prefix_len()),
    }
}

/// iptables' match of a rule (`-p tcp -m tcp --dport 22`, `-s 10.0.0.0/8`, `-m set`).
fn rule_match(r: &Rule) -> String {
    let mut m = String::new();
    let src = r.direction == Direction::Ingress;
    match &r.remote {
        Remote::Any => {}
        Remote::Prefix(p) => {
            let _ = write!(m, "{} {} ", if src { "-s" } else { "-d" }, cidr(p));
        }
        Remote::Group(g) => {
            let _ = write!(
                m,
                "-m set --match-set {} {} ",
                set_name(g, r.ethertype),
                if src { "src" } else { "dst" }
            );
        }
    }
    match (r.protocol, r.ethertype) {
        (Protocol::Any, _) => {}
        (Protocol::Icmp, EtherType::Ipv4) => {
            m += "-p icmp ";
            if let Some(t) = r.icmp_type {
                let _ = write!(m, "-m icmp --icmp-type {t}");
                if let Some(c) = r.icmp_code {
                    let _ = write!(m, "/{c}");
                }
                m += " ";
            }
        }
        (Protocol::Icmp, EtherType::Ipv6) => {
            m += "-p ipv6-icmp ";
            if let Some(t) = r.icmp_type {
                let _ = write!(m, "-m icmp6 --icmpv6-type {t}");
                if let Some(c) = r.icmp_code {
                    let _ = write!(m, "/{c}");
                }
                m += " ";
            }
        }
        (p @ (Protocol::Tcp | Protocol::Udp), _) => {
            let name = if p == Protocol::Tcp { "tcp" } else { "udp" };
            let _ = write!(m, "-p {name} -m {name} ");
            match r.ports {
                Some((a, b)) if a == b => {
                    let _ = write!(m, "--dport {a} ");
                }
                Some((a, b)) => {
                    let _ = write!(m, "--dport {a}:{b} ");
                }
                None => {}
            }
        }
    }
    m
}

impl Firewall {
    /// The filter table Liberty's agent loads for these ports (`iptables-restore -n`
    /// of the IPv4 rules, or the IPv6 ones for `ip6tables-restore`): the wrapped
    /// chains, the `physdev` jumps, each port's `i`/`o`/`s` chains.
    pub fn iptables_restore(&self, ethertype: EtherType) -> String {
        let w = WRAP;
        let v4 = ethertype == EtherType::Ipv4;
        // As Liberty's IptablesManager hands it to `iptables-restore -n`: the whole
        // table (the built-in chains declared, so flushed and filled again).
        let mut out = String::from(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        let mut chains = vec![
            "neutron-filter-top".to_owned(),
            format!("{w}-FORWARD"),
            format!("{w}-INPUT"),
            format!("{w}-OUTPUT"),
            format!("{w}-local"),
            format!("{w}-sg-chain"),
            format!("{w}-sg-fallback"),
        ];
        for p in &self.ports {
            let id = p.chain_id();
            chains.extend(["i", "o", "s"].map(|k| format!("{w}-{k}{id}")));
        }
        for c in &chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        let _ = write!(
            out,
            "-A FORWARD -j neutron-filter-top\n-A FORWARD -j {w}-FORWARD\n\
             -A INPUT -j {w}-INPUT\n-A OUTPUT -j neutron-filter-top\n\
             -A OUTPUT -j {w}-OUTPUT\n-A neutron-filter-top -j {w}-local\n"
        );
        let physdev =
            |dir: &str, dev: &str| format!("-m physdev --physdev-{dir} {dev} --physdev-is-bridged");
        for p in &self.ports {
            let (id, dev) = (p.chain_id(), &p.device);
            let _ = writeln!(
                out,
                "-A {w}-FORWARD {} -m comment --comment \"Direct traffic from the VM interface to the security group chain.\" -j {w}-sg-chain",
                physdev("out", dev)
            );
            let _ = writeln!(
                out,
                "-A {w}-FORWARD {} -m comment --comment \"Direct traffic from the VM interface to the security group chain.\" -j {w}-sg-chain",
                physdev("in", dev)
            );
            let _ = writeln!(
                out,
                "-A {w}-INPUT {} -m comment --comment \"Direct incoming traffic from VM to the security group chain.\" -j {w}-o{id}",
                physdev("in", dev)
            );
            let _ = writeln!(out, "-A {w}-sg-chain {} -j {w}-i{id}", physdev("out", dev));
            let _ = writeln!(out, "-A {w}-sg-chain {} -j {w}-o{id}", physdev("in", dev));
        }
        let _ = writeln!(out, "-A {w}-sg-chain -j ACCEPT");
        let _ = writeln!(
            out,
            "-A {w}-sg-fallback -m comment --comment \"Default drop rule for unmatched traffic.\" -j DROP"
        );
        let related = "-m state --state RELATED,ESTABLISHED -m comment --comment \"Direct packets associated with a known session to the RETURN chain.\" -j RETURN";
        let invalid = "-m state --state INVALID -m comment --comment \"Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack.\" -j DROP";
        let fallback = format!(
            "-m comment --comment \"Send unmatched traffic to the fallback chain.\" -j {w}-sg-fallback"
        );
        for p in &self.ports {
            let id = p.chain_id();
            // Ingress.
            let i = format!("{w}-i{id}");
            let _ = writeln!(out, "-A {i} {related}");
            if v4 {
                for s in p.dhcp_servers.iter().filter(|s| s.is_ipv4()) {
                    let _ = writeln!(
                        out,
                        "-A {i} -s {s}/32 -p udp -m udp --sport 67 --dport 68 -j RETURN"
                    );
                }
            } else {
                for t in ICMPV6_IN {
                    let _ = writeln!(
                        out,
                        "-A {i} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN"
                    );
                }
            }
            for r in p
                .rules
                .iter()
                .filter(|r| r.direction == Direction::Ingress && r.ethertype == ethertype)
            {
                let _ = writeln!(out, "-A {i} {}-j RETURN", rule_match(r));
            }
            let _ = writeln!(out, "-A {i} {invalid}");
            let _ = writeln!(out, "-A {i} {fallback}");
            // Egress.
            let o = format!("{w}-o{id}");
            let s = format!("{w}-s{id}");
            if v4 {
                let _ = writeln!(out, "-A {o} -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -m comment --comment \"Allow DHCP client traffic.\" -j RETURN");
            } else {
                for t in ICMPV6_OUT_DAD {
                    let _ = writeln!(out, "-A {o} -s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN");
                }
            }
            let _ = writeln!(out, "-A {o} -j {s}");
            if v4 {
                let _ = writeln!(out, "-A {o} -p udp -m udp --sport 68 --dport 67 -m comment --comment \"Allow DHCP client traffic.\" -j RETURN");
                let _ = writeln!(out, "-A {o} -p udp -m udp --sport 67 --dport 68 -m comment --comment \"Prevent DHCP Spoofing by VM.\" -j DROP");
            } else {
                let _ = writeln!(out, "-A {o} -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment \"Drop IPv6 Router Advts from VM Instance.\" -j DROP");
                let _ = writeln!(out, "-A {o} -p ipv6-icmp -j RETURN");
            }
            let _ = writeln!(out, "-A {o} {related}");
            for r in p
                .rules
                .iter()
                .filter(|r| r.direction == Direction::Egress && r.ethertype == ethertype)
            {
                let _ = writeln!(out, "-A {o} {}-j RETURN", rule_match(r));
            }
            let _ = writeln!(out, "-A {o} {invalid}");
            let _ = writeln!(out, "-A {o} {fallback}");
            // Anti-spoofing.
            let mut sources = p.sources();
            if !v4 {
                sources.push((IpNet::from(IpAddr::V6(p.link_local())), p.mac));
            }
            for (ip, mac) in sources.iter().filter(|(ip, _)| (ip.addr().is_ipv4()) == v4) {
                let _ = writeln!(
                    out,
                    "-A {s} -s {} -m mac --mac-source {} -m comment --comment \"Allow traffic from defined IP/MAC pairs.\" -j RETURN",
                    cidr(ip),
                    mac.to_string().to_uppercase()
                );
            }
            let _ = writeln!(out, "-A {s} -m comment --comment \"Drop traffic without an IP/MAC allow rule.\" -j DROP");
        }
        out += "COMMIT\n";
        out
    }

    /// The `ipset restore` input for the member sets of `ethertype` (`hash:net`,
    /// created if missing, members added).
    pub fn ipset_restore(&self, ethertype: EtherType) -> String {
        let mut out = String::new();
        let family = match ethertype {
            EtherType::Ipv4 => "inet",
            EtherType::Ipv6 => "inet6",
        };
        for s in self.sets.iter().filter(|s| s.ethertype == ethertype) {
            let _ = writeln!(out, "create {} hash:net family {family} -exist", s.name());
            for m in &s.members {
                let _ = writeln!(out, "add {} {} -exist", s.name(), cidr(m));
            }
        }
        out
    }
}

/// The ICMPv6 types Liberty lets in to every port (MLD query, report, done, neighbour
/// solicitation and advertisement).
pub const ICMPV6_IN: [u8; 5] = [130, 131, 132, 135, 136];
/// The ICMPv6 types a port may send from `::` to `ff02::/16` (duplicate address
/// detection: MLD report, neighbour solicitation, MLDv2 report).
pub const ICMPV6_OUT_DAD: [u8; 3] = [131, 135, 143];

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> PortFirewall {
        PortFirewall {
            port_id: "a7b1762b-3b4c-4d5e-8f90-123456789abc".parse().unwrap(),
            device: "tapa7b1762b-3b".into(),
            mac: "fa:16:3e:5d:2c:01".parse().unwrap(),
            fixed_ips: vec!["192.168.0.3".parse().unwrap()],
            pairs: vec![],
            dhcp_servers: vec!["192.168.0.2".parse().unwrap()],
            rules: vec![Rule {
                direction: Direction::Ingress,
                ethertype: EtherType::Ipv4,
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
                icmp_type: None,
                icmp_code: None,
                remote: Remote::Any,
            }],
        }
    }

    #[test]
    fn liberty_names_its_chains_and_sets_by_cut_ids() {
        let p = port();
        assert_eq!(p.chain_id(), "a7b1762b-3");
        let g: NeutronId = "0c2b5a4e-1f6d-4e8a-9b7c-3d2e1f0a9b8c".parse().unwrap();
        assert_eq!(
            set_name(&g, EtherType::Ipv4),
            "NIPv40c2b5a4e-1f6d-4e8a-9b7c-"
        );
        assert_eq!(set_name(&g, EtherType::Ipv4).len(), 29);
        assert_eq!(p.link_local().to_string(), "fe80::f816:3eff:fe5d:2c01");
    }

    #[test]
    fn the_port_chains_hold_liberty_rules() {
        let fw = Firewall {
            ports: vec![port()],
            sets: vec![],
        };
        let t = fw.iptables_restore(EtherType::Ipv4);
        for line in [
            "-A neutron-linuxbri-sg-chain -m physdev --physdev-out tapa7b1762b-3b --physdev-is-bridged -j neutron-linuxbri-ia7b1762b-3",
            "-A neutron-linuxbri-ia7b1762b-3 -s 192.168.0.2/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
            "-A neutron-linuxbri-ia7b1762b-3 -p tcp -m tcp --dport 22 -j RETURN",
            "-A neutron-linuxbri-sa7b1762b-3 -s 192.168.0.3/32 -m mac --mac-source FA:16:3E:5D:2C:01 -m comment --comment \"Allow traffic from defined IP/MAC pairs.\" -j RETURN",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in\n{t}");
        }
        assert!(t.ends_with("COMMIT\n"));
    }
}
