//! Floor 4: a node's security groups — Liberty's `IptablesFirewallDriver` on the
//! node's instance ports (`sp_neutron::sg::Firewall`), as nf_tables objects of our
//! own in the node's namespace, written and read over netlink through `sp-nft`
//! (`docs/security-groups.md`).
//!
//! Two tables named `neutron-linuxbri` (the Linux bridge agent's iptables prefix):
//!
//! * **`bridge neutron-linuxbri`** sees each frame with the bridge port it came in on
//!   and goes out of (`iifname`/`oifname` = the tap). Its `PREROUTING` chain sends
//!   every frame from a port through the port's anti-spoofing chain `s<port>` (source
//!   MAC, source IP, ARP sender — Liberty's `s` chain and ebtables' ARP chain) and marks
//!   it with the port's number in the high 16 bits of the packet mark; its `FORWARD`
//!   chain marks a frame going out to a port with the port's number in the low 16 bits.
//! * **`inet neutron-linuxbri`** holds the stateful part: this kernel has no conntrack
//!   in the bridge family (`CONFIG_NF_CONNTRACK_BRIDGE` unset: `ct` there is refused),
//!   so the rules live where br_netfilter hands bridged IPv4/IPv6 packets to the inet
//!   hooks — which name the bridge, not the port, as the devices; the marks say the
//!   port. `FORWARD` jumps to the port's ingress chain `i<port>` by the low mark and to
//!   its egress chain `o<port>` by the high one (Liberty's `sg-chain`), `INPUT` to the
//!   egress chain (traffic from a port to the node itself). Remote groups are named
//!   sets (`NIPv4<group>`, Liberty's ipsets).
//!
//! br_netfilter must pass bridged packets to those hooks: `net.bridge.bridge-nf-call-
//! iptables` and `-ip6tables` are per network namespace on this kernel; [`load`] sets
//! them to 1 in the node's namespace (through `/proc/sys`), [`read`] reports them.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use sp_kernel::{netns, Change, Object, Setting};
use sp_names::Mac;
use sp_neutron::sg::{
    Direction, EtherType, Firewall, PortFirewall, Protocol, Remote, Rule as SgRule, ICMPV6_IN,
    ICMPV6_OUT_DAD,
};
use sp_nft::expr::{ct_state, CmpOp, MetaKey, PayloadBase, REG_1};
use sp_nft::{
    build, diff::compare, hook, BaseChain, Batch, Chain, Difference, Expr, Family, Rule, Ruleset,
    Set, Socket, Table, Verdict,
};

/// Both tables' name.
pub const TABLE: &str = "neutron-linuxbri";
/// The bridge family's `filter` priority (`NF_BR_PRI_FILTER_BRIDGED`): before
/// br_netfilter (0) hands the packet to the inet hooks.
pub const BRIDGE_PRIORITY: i32 = -200;
/// The high 16 bits of the mark: the port a bridged packet came from.
pub const FROM_PORT: u32 = 0xffff_0000;
/// The low 16 bits: the port it goes to.
pub const TO_PORT: u32 = 0x0000_ffff;
/// The most ports one node's tables number.
pub const MAX_PORTS: usize = 0xffff;
/// The sysctls br_netfilter needs in the node's namespace (under `/proc/sys/net`).
pub const BRIDGE_NF: [&str; 2] = [
    "bridge/bridge-nf-call-iptables",
    "bridge/bridge-nf-call-ip6tables",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error("nf_tables: {0}")]
    Nft(#[from] sp_nft::Error),
    #[error("{0} ports with port security on one node: at most {MAX_PORTS} are numbered in the packet mark")]
    TooManyPorts(usize),
    #[error("/proc/sys/net/bridge is missing: br_netfilter is not loaded (modprobe br_netfilter); security groups need it")]
    NoBrNetfilter,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const ETH_IP: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IP6: u16 = 0x86dd;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// The nf_tables objects of a node's firewall: both tables' chains, rules and sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRules {
    bridge: Ruleset,
    inet: Ruleset,
}

fn table(family: Family) -> Table {
    Table {
        family,
        name: TABLE.into(),
        flags: 0,
    }
}

fn base(family: Family, name: &str, hook: u32, priority: i32) -> Chain {
    Chain {
        family,
        table: TABLE.into(),
        name: name.into(),
        base: Some(BaseChain {
            chain_type: "filter".into(),
            hook,
            priority,
            policy: Verdict::Accept,
            device: None,
        }),
    }
}

fn regular(family: Family, name: &str) -> Chain {
    Chain {
        family,
        table: TABLE.into(),
        name: name.into(),
        base: None,
    }
}

fn verdict(v: Verdict) -> Vec<Expr> {
    vec![build::verdict(v)]
}

fn jump(to: &str) -> Vec<Expr> {
    verdict(Verdict::Jump(to.into()))
}

/// `meta nfproto ipv4|ipv6` (the inet family's dependency for a header field).
fn nfproto(e: EtherType) -> Vec<Expr> {
    build::meta(
        MetaKey::Nfproto,
        CmpOp::Eq,
        vec![match e {
            EtherType::Ipv4 => NFPROTO_IPV4,
            EtherType::Ipv6 => NFPROTO_IPV6,
        }],
    )
}

/// `ether type T` (bridge family).
fn ether_type(t: u16) -> Vec<Expr> {
    build::payload(PayloadBase::Link, 12, CmpOp::Eq, t.to_be_bytes().to_vec())
}

/// `ether saddr MAC` (bridge family).
fn ether_saddr(mac: Mac) -> Vec<Expr> {
    build::payload(PayloadBase::Link, 6, CmpOp::Eq, mac.octets().to_vec())
}

/// `len` bytes at `offset` of the network header within `net` (a host: compared; a
/// prefix: masked, then compared).
fn addr_at(offset: u32, net: &IpNet) -> Vec<Expr> {
    let (addr, mask): (Vec<u8>, Vec<u8>) = match net {
        IpNet::V4(n) => (n.network().octets().to_vec(), n.netmask().octets().to_vec()),
        IpNet::V6(n) => (n.network().octets().to_vec(), n.netmask().octets().to_vec()),
    };
    if mask.iter().all(|b| *b == 0xff) {
        return build::payload(PayloadBase::Network, offset, CmpOp::Eq, addr);
    }
    let len = addr.len() as u32;
    vec![
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: REG_1,
        },
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            len,
            mask,
            xor: vec![0; len as usize],
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: addr,
        },
    ]
}

/// The offset of the source (or destination) address in the IPv4/IPv6 header.
fn addr_offset(e: EtherType, source: bool) -> u32 {
    match (e, source) {
        (EtherType::Ipv4, true) => 12,
        (EtherType::Ipv4, false) => 16,
        (EtherType::Ipv6, true) => 8,
        (EtherType::Ipv6, false) => 24,
    }
}

/// `ip saddr NET` / `ip6 daddr NET`…
fn ip(source: bool, net: &IpNet) -> Vec<Expr> {
    addr_at(addr_offset(EtherType::of(&net.addr()), source), net)
}

/// `udp sport S udp dport D`.
fn udp_ports(sport: u16, dport: u16) -> Vec<Expr> {
    let mut v = build::port(UDP, true, sport);
    v.extend(build::payload(
        PayloadBase::Transport,
        2,
        CmpOp::Eq,
        dport.to_be_bytes().to_vec(),
    ));
    v
}

/// `icmpv6 type T` (with its `meta l4proto`).
fn icmpv6_type(t: u8) -> Vec<Expr> {
    let mut v = build::l4proto(ICMPV6);
    v.extend(build::payload(
        PayloadBase::Transport,
        0,
        CmpOp::Eq,
        vec![t],
    ));
    v
}

fn ct(states: u32) -> Vec<Expr> {
    build::ct_state(states)
}

/// What a security group rule matches (its direction chooses the chain).
fn rule_match(r: &SgRule) -> Vec<Expr> {
    let mut v = nfproto(r.ethertype);
    let source = r.direction == Direction::Ingress;
    match &r.remote {
        Remote::Any => {}
        Remote::Prefix(p) => v.extend(ip(source, p)),
        Remote::Group(g) => {
            let len = match r.ethertype {
                EtherType::Ipv4 => 4,
                EtherType::Ipv6 => 16,
            };
            v.push(Expr::Payload {
                base: PayloadBase::Network,
                offset: addr_offset(r.ethertype, source),
                len,
                dreg: REG_1,
            });
            v.push(build::lookup(
                &sp_neutron::sg::set_name(g, r.ethertype),
                false,
            ));
        }
    }
    if let Some(proto) = r.protocol.number(r.ethertype) {
        v.extend(build::l4proto(proto));
        match r.protocol {
            Protocol::Tcp | Protocol::Udp => {
                if let Some((a, b)) = r.ports {
                    v.push(Expr::Payload {
                        base: PayloadBase::Transport,
                        offset: 2,
                        len: 2,
                        dreg: REG_1,
                    });
                    let cmp = |op, p: u16| Expr::Cmp {
                        sreg: REG_1,
                        op,
                        data: p.to_be_bytes().to_vec(),
                    };
                    match a == b {
                        true => v.push(cmp(CmpOp::Eq, a)),
                        false => v.extend([cmp(CmpOp::Gte, a), cmp(CmpOp::Lte, b)]),
                    }
                }
            }
            Protocol::Icmp => {
                if let Some(t) = r.icmp_type {
                    v.extend(build::payload(
                        PayloadBase::Transport,
                        0,
                        CmpOp::Eq,
                        vec![t],
                    ));
                }
                if let Some(c) = r.icmp_code {
                    v.extend(build::payload(
                        PayloadBase::Transport,
                        1,
                        CmpOp::Eq,
                        vec![c],
                    ));
                }
            }
            Protocol::Any => {}
        }
    }
    v
}

const RELATED: &str = "Direct packets associated with a known session to the RETURN chain.";
const INVALID: &str = "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack.";
const FALLBACK: &str = "Send unmatched traffic to the fallback chain.";

impl SgRules {
    /// The objects for `fw`'s ports (numbered 1… in their order) and member sets.
    pub fn of(fw: &Firewall) -> Result<SgRules> {
        if fw.ports.len() > MAX_PORTS {
            return Err(Error::TooManyPorts(fw.ports.len()));
        }
        let (b, i) = (Family::Bridge, Family::Inet);
        let mut bridge = Ruleset {
            tables: vec![table(b)],
            chains: vec![
                base(b, "PREROUTING", hook::PREROUTING, BRIDGE_PRIORITY),
                base(b, "FORWARD", hook::FORWARD, BRIDGE_PRIORITY),
            ],
            rules: Vec::new(),
            sets: Vec::new(),
        };
        let mut inet = Ruleset {
            tables: vec![table(i)],
            chains: vec![
                base(i, "FORWARD", hook::FORWARD, sp_nft::priority::FILTER),
                base(i, "INPUT", hook::INPUT, sp_nft::priority::FILTER),
                regular(i, "sg-fallback"),
            ],
            rules: Vec::new(),
            sets: fw
                .sets
                .iter()
                .map(|s| {
                    let hosts = s.members.iter().map(|m| m.addr());
                    match s.ethertype {
                        EtherType::Ipv4 => Set::ipv4(
                            i,
                            TABLE,
                            &s.name(),
                            &hosts
                                .filter_map(|a| match a {
                                    IpAddr::V4(a) => Some(a),
                                    IpAddr::V6(_) => None,
                                })
                                .collect::<Vec<_>>(),
                        ),
                        EtherType::Ipv6 => Set::ipv6(
                            i,
                            TABLE,
                            &s.name(),
                            &hosts
                                .filter_map(|a| match a {
                                    IpAddr::V6(a) => Some(a),
                                    IpAddr::V4(_) => None,
                                })
                                .collect::<Vec<_>>(),
                        ),
                    }
                })
                .collect(),
        };
        let brule = |chain: &str, parts: Vec<Vec<Expr>>| {
            Rule::new(b, TABLE, chain, parts.into_iter().flatten().collect())
        };
        let irule = |chain: &str, parts: Vec<Vec<Expr>>| {
            Rule::new(i, TABLE, chain, parts.into_iter().flatten().collect())
        };
        // Marks from outside are not ours to trust: cleared as a frame enters.
        bridge
            .rules
            .push(brule("PREROUTING", vec![build::set_mark(0, 0)]));
        inet.rules.push(
            irule("sg-fallback", vec![verdict(Verdict::Drop)])
                .with_comment("Default drop rule for unmatched traffic."),
        );
        // Ports with the same rules and DHCP servers share their ingress chain, those
        // with the same egress rules their egress chain (numbered in order of first
        // use): what a port's traffic meets is Liberty's `i`/`o` chain of that port.
        let mut ins: Vec<(&[IpAddr], Vec<&SgRule>)> = Vec::new();
        let mut outs: Vec<Vec<&SgRule>> = Vec::new();
        for (n, p) in fw.ports.iter().enumerate() {
            let n = n as u32 + 1;
            let of = |d| {
                p.rules
                    .iter()
                    .filter(|r| r.direction == d)
                    .collect::<Vec<_>>()
            };
            let key = (p.dhcp_servers.as_slice(), of(Direction::Ingress));
            let ic = match ins.iter().position(|k| *k == key) {
                Some(k) => format!("ingress-{}", k + 1),
                None => {
                    ins.push(key);
                    let c = format!("ingress-{}", ins.len());
                    inet.chains.push(regular(i, &c));
                    inet.rules.extend(ingress(p, &c));
                    c
                }
            };
            let key = of(Direction::Egress);
            let oc = match outs.iter().position(|k| *k == key) {
                Some(k) => format!("egress-{}", k + 1),
                None => {
                    outs.push(key);
                    let c = format!("egress-{}", outs.len());
                    inet.chains.push(regular(i, &c));
                    inet.rules.extend(egress(p, &c));
                    c
                }
            };
            let sc = format!("s{}", p.chain_id());
            let tap = p.device.as_str();
            bridge.chains.push(regular(b, &sc));
            bridge.rules.push(brule(
                "PREROUTING",
                vec![
                    build::iifname(CmpOp::Eq, tap),
                    build::set_mark(TO_PORT, n << 16),
                    jump(&sc),
                ],
            ));
            bridge.rules.push(brule(
                "FORWARD",
                vec![
                    build::oifname(CmpOp::Eq, tap),
                    build::set_mark(FROM_PORT, n),
                ],
            ));
            bridge.rules.extend(spoofing(p, &sc));
            let to = build::mark(TO_PORT, CmpOp::Eq, n);
            let from = || build::mark(FROM_PORT, CmpOp::Eq, n << 16);
            inet.rules.push(irule("FORWARD", vec![to, jump(&ic)]));
            inet.rules.push(irule("FORWARD", vec![from(), jump(&oc)]));
            inet.rules.push(irule("INPUT", vec![from(), jump(&oc)]));
        }
        Ok(SgRules { bridge, inet })
    }

    /// Both tables as `nft list table` prints them, the bridge table first.
    pub fn lines(&self) -> Vec<String> {
        let mut v = sp_nft::render::table_lines(Family::Bridge, TABLE, &self.bridge);
        v.extend(sp_nft::render::table_lines(Family::Inet, TABLE, &self.inet));
        v
    }

    fn fill(&self, b: &mut Batch) {
        for r in [&self.bridge, &self.inet] {
            r.sets.iter().for_each(|s| b.add_set(s));
            r.chains.iter().for_each(|c| b.add_chain(c));
            r.rules.iter().for_each(|x| b.add_rule(x));
        }
    }
}

/// A rule of `chain` in our table of `family`, its expressions the parts in order.
fn chain_rule(family: Family, chain: &str, parts: Vec<Vec<Expr>>) -> Rule {
    Rule::new(family, TABLE, chain, parts.into_iter().flatten().collect())
}

/// `s<port>` (bridge family): ARP only with the port's sender addresses (IP and MAC),
/// IP and IPv6 only from its addresses with their MAC (and the DHCP client's
/// `0.0.0.0`, the link-local address, `::` for duplicate address detection), other
/// frames only from its MACs.
fn spoofing(p: &PortFirewall, chain: &str) -> Vec<Rule> {
    let rule = |parts| chain_rule(Family::Bridge, chain, parts);
    let ret = || verdict(Verdict::Return);
    let mut out = Vec::new();
    let sources = p.sources();
    for (net, mac) in sources.iter().filter(|(n, _)| n.addr().is_ipv4()) {
        out.push(rule(vec![
            ether_saddr(*mac),
            ether_type(ETH_ARP),
            build::payload(PayloadBase::Network, 8, CmpOp::Eq, mac.octets().to_vec()),
            addr_at(14, net),
            ret(),
        ]));
    }
    for (net, mac) in &sources {
        let t = match net {
            IpNet::V4(_) => ETH_IP,
            IpNet::V6(_) => ETH_IP6,
        };
        out.push(rule(vec![
            ether_saddr(*mac),
            ether_type(t),
            ip(true, net),
            ret(),
        ]));
    }
    let own = |t: u16, more: Vec<Vec<Expr>>| {
        let mut v = vec![ether_saddr(p.mac), ether_type(t)];
        v.extend(more);
        v.push(ret());
        rule(v)
    };
    out.push(
        own(
            ETH_IP,
            vec![
                ip(true, &"0.0.0.0/32".parse().expect("literal")),
                udp_ports(68, 67),
            ],
        )
        .with_comment("Allow DHCP client traffic."),
    );
    out.push(own(
        ETH_IP6,
        vec![ip(true, &IpNet::from(IpAddr::V6(p.link_local())))],
    ));
    out.push(own(
        ETH_IP6,
        vec![
            ip(true, &"::/128".parse().expect("literal")),
            build::l4proto(ICMPV6),
        ],
    ));
    // Other ethertypes only from the port's MACs; everything else dropped.
    let mut macs: Vec<Mac> = sources.iter().map(|(_, m)| *m).collect();
    macs.sort_by_key(|m| m.octets());
    macs.dedup();
    for m in macs {
        let mut v = ether_saddr(m);
        v.push(Expr::Payload {
            base: PayloadBase::Link,
            offset: 12,
            len: 2,
            dreg: REG_1,
        });
        for t in [ETH_ARP, ETH_IP, ETH_IP6] {
            v.push(Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Neq,
                data: t.to_be_bytes().to_vec(),
            });
        }
        out.push(rule(vec![v, ret()]));
    }
    out.push(
        rule(vec![verdict(Verdict::Drop)])
            .with_comment("Drop traffic without an IP/MAC allow rule."),
    );
    out
}

/// `i<port>` (inet): established and related back, the DHCP servers' replies (and for
/// IPv6 the neighbour discovery and MLD Liberty lets in), the ingress rules, invalid
/// dropped, the rest to the fallback.
fn ingress(p: &PortFirewall, chain: &str) -> Vec<Rule> {
    let rule = |parts| chain_rule(Family::Inet, chain, parts);
    let ret = || verdict(Verdict::Return);
    let mut out = vec![
        rule(vec![ct(ct_state::ESTABLISHED | ct_state::RELATED), ret()]).with_comment(RELATED),
    ];
    for s in &p.dhcp_servers {
        out.push(rule(vec![
            nfproto(EtherType::of(s)),
            ip(true, &IpNet::from(*s)),
            udp_ports(67, 68),
            ret(),
        ]));
    }
    for t in ICMPV6_IN {
        out.push(rule(vec![nfproto(EtherType::Ipv6), icmpv6_type(t), ret()]));
    }
    for r in p.rules.iter().filter(|r| r.direction == Direction::Ingress) {
        out.push(rule(vec![rule_match(r), ret()]));
    }
    out.push(rule(vec![ct(ct_state::INVALID), verdict(Verdict::Drop)]).with_comment(INVALID));
    out.push(rule(vec![jump("sg-fallback")]).with_comment(FALLBACK));
    out
}

/// `o<port>` (inet): the DHCP client's discovery, DHCP replies and router
/// advertisements from the port dropped, established and related back, the egress
/// rules, invalid dropped, the rest to the fallback.
fn egress(p: &PortFirewall, chain: &str) -> Vec<Rule> {
    let rule = |parts| chain_rule(Family::Inet, chain, parts);
    let ret = || verdict(Verdict::Return);
    let v4 = || nfproto(EtherType::Ipv4);
    let mut out = vec![rule(vec![
        v4(),
        ip(true, &"0.0.0.0/32".parse().expect("literal")),
        ip(false, &"255.255.255.255/32".parse().expect("literal")),
        udp_ports(68, 67),
        ret(),
    ])
    .with_comment("Allow DHCP client traffic.")];
    for t in ICMPV6_OUT_DAD {
        out.push(rule(vec![
            nfproto(EtherType::Ipv6),
            ip(true, &"::/128".parse().expect("literal")),
            ip(false, &"ff02::/16".parse().expect("literal")),
            icmpv6_type(t),
            ret(),
        ]));
    }
    out.push(rule(vec![v4(), udp_ports(68, 67), ret()]).with_comment("Allow DHCP client traffic."));
    out.push(
        rule(vec![v4(), udp_ports(67, 68), verdict(Verdict::Drop)])
            .with_comment("Prevent DHCP Spoofing by VM."),
    );
    out.push(
        rule(vec![
            nfproto(EtherType::Ipv6),
            icmpv6_type(134),
            verdict(Verdict::Drop),
        ])
        .with_comment("Drop IPv6 Router Advts from VM Instance."),
    );
    out.push(rule(vec![
        nfproto(EtherType::Ipv6),
        build::l4proto(ICMPV6),
        ret(),
    ]));
    out.push(
        rule(vec![ct(ct_state::ESTABLISHED | ct_state::RELATED), ret()]).with_comment(RELATED),
    );
    for r in p.rules.iter().filter(|r| r.direction == Direction::Egress) {
        out.push(rule(vec![rule_match(r), ret()]));
    }
    out.push(rule(vec![ct(ct_state::INVALID), verdict(Verdict::Drop)]).with_comment(INVALID));
    out.push(rule(vec![jump("sg-fallback")]).with_comment(FALLBACK));
    out
}

/// What the node's namespace holds: our two tables (either may be missing) and the
/// br_netfilter sysctls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    bridge: Ruleset,
    inet: Ruleset,
    /// `net.bridge.bridge-nf-call-iptables` and `-ip6tables`, in [`BRIDGE_NF`]'s order.
    pub bridge_nf: [bool; 2],
}

impl Current {
    /// Neither table is there.
    pub fn is_absent(&self) -> bool {
        self.bridge.tables.is_empty() && self.inet.tables.is_empty()
    }

    pub fn matches(&self, want: &SgRules) -> bool {
        self.differences(want).is_empty()
    }

    /// What differs from `want`: the br_netfilter sysctls, then each table as
    /// [`sp_nft::diff::compare`] compares it — tables, chains, rules by what they do
    /// and their order, sets and their elements.
    pub fn differences(&self, want: &SgRules) -> Vec<Difference> {
        let mut out = Vec::new();
        for (key, on) in BRIDGE_NF.iter().zip(self.bridge_nf) {
            if !on {
                out.push(Difference::SysctlOff {
                    key: format!("net.{}", key.replace('/', ".")),
                });
            }
        }
        out.extend(compare(Family::Bridge, TABLE, &self.bridge, &want.bridge));
        out.extend(compare(Family::Inet, TABLE, &self.inet, &want.inet));
        out
    }

    /// Both tables as the kernel holds them, printed as `nft list table` prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut v = sp_nft::render::table_lines(Family::Bridge, TABLE, &self.bridge);
        v.extend(sp_nft::render::table_lines(Family::Inet, TABLE, &self.inet));
        v
    }
}

/// Whether `/proc/sys/net/<key>` of the calling thread's namespace is 1.
fn sysctl_on(key: &str) -> Result<bool> {
    match std::fs::symlink_metadata("/proc/sys/net/bridge") {
        Err(_) => Err(Error::NoBrNetfilter),
        Ok(_) => Ok(netns::read_net_sysctl(key)? == "1"),
    }
}

/// Reads our tables and the br_netfilter sysctls in the calling thread's namespace
/// (the node's); `None` when neither table is there.
pub fn read() -> Result<Option<Current>> {
    let s = Socket::open()?;
    let cur = Current {
        bridge: s.ruleset(Family::Bridge, Some(TABLE))?,
        inet: s.ruleset(Family::Inet, Some(TABLE))?,
        bridge_nf: [sysctl_on(BRIDGE_NF[0])?, sysctl_on(BRIDGE_NF[1])?],
    };
    Ok((!cur.is_absent()).then_some(cur))
}

/// What adding to `found` makes it `want`, when nothing needs taking away: every
/// chain found is wanted as it is (hook, priority, policy) and its rules are the
/// first of the wanted ones, every set found is wanted and holds none but wanted
/// elements. Then the missing sets, elements, chains and rules (appended) are added
/// to `b` — no deletion, so the commit waits for no RCU grace period.
fn additions(found: &Ruleset, want: &Ruleset, b: &mut Batch) -> bool {
    let Some(t) = found.tables.first() else {
        return false;
    };
    if t.flags != 0 {
        return false;
    }
    for h in &found.sets {
        let Some(s) = want.sets.iter().find(|s| s.name == h.name) else {
            return false;
        };
        let same_kind = (h.flags, h.key_type, h.key_len) == (s.flags, s.key_type, s.key_len);
        if !same_kind
            || !h
                .elements
                .iter()
                .all(|e| s.elements.binary_search(e).is_ok())
        {
            return false;
        }
    }
    let (found_rules, want_rules) = (found.rules_by_chain(), want.rules_by_chain());
    let none = Vec::new();
    let mut kept = HashMap::new();
    for h in &found.chains {
        let Some(c) = want.chains.iter().find(|c| c.name == h.name) else {
            return false;
        };
        if c.base != h.base {
            return false;
        }
        let have = found_rules.get(h.name.as_str()).unwrap_or(&none);
        let wanted = want_rules.get(h.name.as_str()).unwrap_or(&none);
        if have.len() > wanted.len() || !have.iter().zip(wanted).all(|(h, w)| h.same(w)) {
            return false;
        }
        kept.insert(h.name.as_str(), have.len());
    }
    for s in &want.sets {
        match found.sets.iter().find(|h| h.name == s.name) {
            None => b.add_set(s),
            Some(h) => {
                let new: Vec<Vec<u8>> = s
                    .elements
                    .iter()
                    .filter(|e| h.elements.binary_search(e).is_err())
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    b.add_elements(s.family, TABLE, &s.name, &new);
                }
            }
        }
    }
    for c in want
        .chains
        .iter()
        .filter(|c| !kept.contains_key(c.name.as_str()))
    {
        b.add_chain(c);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &want.rules {
        let at = seen.entry(r.chain.as_str()).or_insert(0);
        if *at >= kept.get(r.chain.as_str()).copied().unwrap_or(0) {
            b.add_rule(r);
        }
        *at += 1;
    }
    true
}

/// Loads `fw` in the calling thread's namespace: br_netfilter's sysctls set to 1 where
/// they are not, then both tables in one atomic batch. What is there is read first:
/// when the tables only lack things (ports added, members joined) the batch adds
/// those; otherwise a missing table is made and an existing one replaced (deleted and
/// made again inside the batch: no moment without a firewall).
pub fn load(fw: &Firewall, changes: &mut Vec<Change>) -> Result<()> {
    let rules = SgRules::of(fw)?;
    for key in BRIDGE_NF {
        if !sysctl_on(key)? {
            netns::write_net_sysctl(key, "1")?;
            changes.push(Change::set(
                Object::Sysctl {
                    name: format!("net.{}", key.replace('/', ".")),
                },
                Setting::Value { value: 1 },
            ));
        }
    }
    let s = Socket::open()?;
    let found = [
        (
            Family::Bridge,
            &rules.bridge,
            s.ruleset(Family::Bridge, Some(TABLE))?,
        ),
        (
            Family::Inet,
            &rules.inet,
            s.ruleset(Family::Inet, Some(TABLE))?,
        ),
    ];
    let mut b = Batch::new();
    let added = found
        .iter()
        .all(|(_, want, have)| additions(have, want, &mut b));
    if !added {
        b = Batch::new();
        for (family, _, have) in &found {
            match have.tables.is_empty() {
                true => b.create_table(&table(*family)),
                false => {
                    b.add_table(&table(*family));
                    b.delete_table(*family, TABLE);
                    b.add_table(&table(*family));
                }
            }
        }
        rules.fill(&mut b);
    }
    if b.is_empty() {
        return Ok(());
    }
    s.apply(&b)?;
    let object = Object::Firewall {
        ports: fw.ports.len(),
    };
    changes.push(match added {
        true => Change::saying(object, "added", Default::default(), "added to"),
        false => Change::new(object, "loaded"),
    });
    Ok(())
}

/// Deletes both tables from the calling thread's namespace (those there) in one batch;
/// whether anything was there. The sysctls stay as they are.
pub fn remove() -> Result<bool> {
    let s = Socket::open()?;
    let mut b = Batch::new();
    for family in [Family::Bridge, Family::Inet] {
        if s.table(family, TABLE)?.is_some() {
            b.delete_table(family, TABLE);
        }
    }
    if b.is_empty() {
        return Ok(false);
    }
    s.apply(&b)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_neutron::sg::MemberSet;

    fn port(id: &str, tap: &str, ip: &str) -> PortFirewall {
        PortFirewall {
            port_id: id.parse().unwrap(),
            device: tap.into(),
            mac: "fa:16:3e:5d:2c:01".parse().unwrap(),
            fixed_ips: vec![ip.parse().unwrap()],
            pairs: vec![],
            dhcp_servers: vec!["192.168.0.2".parse().unwrap()],
            rules: vec![
                SgRule {
                    direction: Direction::Ingress,
                    ethertype: EtherType::Ipv4,
                    protocol: Protocol::Tcp,
                    ports: Some((22, 22)),
                    icmp_type: None,
                    icmp_code: None,
                    remote: Remote::Any,
                },
                SgRule {
                    direction: Direction::Ingress,
                    ethertype: EtherType::Ipv4,
                    protocol: Protocol::Any,
                    ports: None,
                    icmp_type: None,
                    icmp_code: None,
                    remote: Remote::Group("3b4f5e2a-8c1d-4f6e-9a7b-0c1d2e3f4a5b".parse().unwrap()),
                },
            ],
        }
    }

    fn fw() -> Firewall {
        Firewall {
            ports: vec![
                port(
                    "a7b1762b-3b4c-4d5e-8f90-123456789abc",
                    "tapa7b1762b-3b",
                    "192.168.0.3",
                ),
                port(
                    "b7b1762b-3b4c-4d5e-8f90-123456789abc",
                    "tapb7b1762b-3b",
                    "192.168.0.4",
                ),
            ],
            sets: vec![MemberSet {
                group_id: "3b4f5e2a-8c1d-4f6e-9a7b-0c1d2e3f4a5b".parse().unwrap(),
                ethertype: EtherType::Ipv4,
                members: vec![
                    "192.168.0.3/32".parse().unwrap(),
                    "192.168.0.4/32".parse().unwrap(),
                ],
            }],
        }
    }

    fn current_of(r: &SgRules) -> Current {
        Current {
            bridge: r.bridge.clone(),
            inet: r.inet.clone(),
            bridge_nf: [true, true],
        }
    }

    #[test]
    fn ports_are_numbered_in_the_mark_and_dispatched_by_it() {
        let r = SgRules::of(&fw()).unwrap();
        let text = r.lines().join("\n");
        for want in [
            "iifname \"tapb7b1762b-3b\" meta mark set meta mark & 0x0002ffff | 0x00020000 jump sb7b1762b-3",
            "oifname \"tapa7b1762b-3b\" meta mark set meta mark & 0xffff0001 | 0x00000001",
            "meta mark & 0x0000ffff == 0x00000002 jump ingress-1",
            "meta mark & 0xffff0000 == 0x00010000 jump egress-1",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        // Both ports have the same rules: one ingress and one egress chain serve them.
        assert!(
            !text.contains("ingress-2") && !text.contains("egress-2"),
            "{text}"
        );
        let mut other = fw();
        other.ports[1].rules.pop();
        let text = SgRules::of(&other).unwrap().lines().join("\n");
        assert!(
            text.contains("jump ingress-2") && !text.contains("egress-2"),
            "{text}"
        );
    }

    type Change = Box<dyn Fn(&mut Current)>;

    #[test]
    fn what_is_wanted_matches_and_each_difference_is_named() {
        let want = SgRules::of(&fw()).unwrap();
        let cur = current_of(&want);
        assert!(cur.matches(&want), "{:?}", cur.differences(&want));
        let cases: Vec<(&str, Change)> = vec![
            ("is 0", Box::new(|c| c.bridge_nf[0] = false)),
            (
                "table bridge neutron-linuxbri missing",
                Box::new(|c| c.bridge = Ruleset::default()),
            ),
            (
                "rule missing in inet ingress-1",
                Box::new(|c| {
                    let at = c
                        .inet
                        .rules
                        .iter()
                        .position(|r| r.chain == "ingress-1")
                        .unwrap();
                    c.inet.rules.remove(at);
                }),
            ),
            (
                "out of order",
                Box::new(|c| {
                    let idx: Vec<usize> = c
                        .inet
                        .rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.chain == "FORWARD")
                        .map(|(i, _)| i)
                        .collect();
                    c.inet.rules.swap(idx[0], idx[1]);
                }),
            ),
            (
                "set NIPv43b4f5e2a-8c1d-4f6e-9a7b-: other type or elements",
                Box::new(|c| {
                    c.inet.sets[0].elements.pop();
                }),
            ),
            (
                "unexpected bridge chain x",
                Box::new(|c| c.bridge.chains.push(regular(Family::Bridge, "x"))),
            ),
        ];
        for (what, change) in cases {
            let mut c = cur.clone();
            change(&mut c);
            let d = c.differences(&want);
            assert!(
                d.iter().any(|l| l.to_string().contains(what)),
                "{what}: {d:?}"
            );
        }
    }

    #[test]
    fn a_port_without_rules_still_gets_anti_spoofing_and_the_fallback() {
        let mut f = fw();
        f.ports.truncate(1);
        f.ports[0].rules.clear();
        f.sets.clear();
        let r = SgRules::of(&f).unwrap();
        let i: Vec<String> = r
            .inet
            .rules_of(TABLE, "ingress-1")
            .map(sp_nft::render::rule)
            .collect();
        assert!(i.last().unwrap().contains("jump sg-fallback"), "{i:?}");
        let s: Vec<&Rule> = r.bridge.rules_of(TABLE, "sa7b1762b-3").collect();
        assert_eq!(s.last().unwrap().exprs, verdict(Verdict::Drop));
    }
}
