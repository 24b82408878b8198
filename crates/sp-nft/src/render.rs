//! Rules in words, the way `nft list table` prints them (`ip daddr 10.0.0.201 dnat
//! to 192.168.0.3`), for plans, differences and docs. Expressions are followed through
//! their registers: a load names what a register holds, a compare prints it against
//! the value, formatted for what it is (an address, a port, an interface name, a mark).

use std::fmt::Write;

use crate::expr::{ct_state, ct_status, CmpOp, CtKey, Data, Expr, MetaKey, NatKind, PayloadBase};
use crate::{Chain, Family, Rule, Ruleset};

/// How a register's bytes read.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ipv4,
    Ipv6,
    Ifname,
    Port,
    L4proto,
    /// A host-order number printed in hex, 8 digits (marks).
    Hex32,
    CtState,
    CtStatus,
    Mac,
    IcmpType,
    Icmp6Type,
    ArpOp,
    Raw,
}

#[derive(Clone)]
struct Reg {
    text: String,
    kind: Kind,
    /// The bytes an `immediate` loaded (for nat and redirect).
    value: Option<Vec<u8>>,
    /// What a masked value was loaded from, and the mask (`ct state` sets).
    masked: Option<(String, Vec<u8>)>,
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn u32_host(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_ne_bytes)
}

fn bits(v: u32, names: &[(u32, &str)]) -> String {
    if v == 0 {
        return "0".into();
    }
    let mut out: Vec<String> = Vec::new();
    let mut rest = v;
    for (bit, name) in names {
        if v & bit != 0 {
            out.push((*name).into());
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push(format!("0x{rest:x}"));
    }
    out.join(",")
}

fn format_value(kind: Kind, b: &[u8]) -> String {
    match kind {
        Kind::Ipv4 if b.len() == 4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        Kind::Ipv6 if b.len() == 16 => {
            let a: [u8; 16] = b.try_into().expect("16 bytes");
            std::net::Ipv6Addr::from(a).to_string()
        }
        Kind::Ifname => {
            let end = b.iter().position(|x| *x == 0);
            let name = String::from_utf8_lossy(&b[..end.unwrap_or(b.len())]).into_owned();
            match end {
                Some(_) => format!("\"{name}\""),
                None if b.len() < 16 => format!("\"{name}*\""),
                None => format!("\"{name}\""),
            }
        }
        Kind::Port if b.len() == 2 => u16::from_be_bytes([b[0], b[1]]).to_string(),
        Kind::L4proto if b.len() == 1 => match b[0] {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "ipv6-icmp".into(),
            n => n.to_string(),
        },
        Kind::Mac if b.len() == 6 => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        Kind::IcmpType if b.len() == 1 => match b[0] {
            0 => "echo-reply".into(),
            3 => "destination-unreachable".into(),
            8 => "echo-request".into(),
            11 => "time-exceeded".into(),
            n => n.to_string(),
        },
        Kind::Icmp6Type if b.len() == 1 => match b[0] {
            128 => "echo-request".into(),
            129 => "echo-reply".into(),
            n => n.to_string(),
        },
        Kind::ArpOp if b.len() == 2 => match u16::from_be_bytes([b[0], b[1]]) {
            1 => "request".into(),
            2 => "reply".into(),
            n => n.to_string(),
        },
        Kind::Hex32 => u32_host(b).map_or_else(|| hex(b), |v| format!("0x{v:08x}")),
        Kind::CtState => u32_host(b).map_or_else(
            || hex(b),
            |v| {
                bits(
                    v,
                    &[
                        (ct_state::INVALID, "invalid"),
                        (ct_state::ESTABLISHED, "established"),
                        (ct_state::RELATED, "related"),
                        (ct_state::NEW, "new"),
                        (ct_state::UNTRACKED, "untracked"),
                    ],
                )
            },
        ),
        Kind::CtStatus => u32_host(b).map_or_else(
            || hex(b),
            |v| bits(v, &[(ct_status::SNAT, "snat"), (ct_status::DNAT, "dnat")]),
        ),
        _ => hex(b),
    }
}

/// What a payload load reads, in `nft`'s words, for a table of `family`.
/// `l3`: the `meta nfproto` a rule of an inet table matched before (2 ipv4, 10 ipv6).
fn payload_field(
    family: Family,
    base: PayloadBase,
    offset: u32,
    len: u32,
    l3: Option<u8>,
    l4: Option<u8>,
) -> (String, Kind) {
    let ip6 = family == Family::Ip6 || l3 == Some(10);
    let ip = !ip6
        && matches!(
            family,
            Family::Ip | Family::Inet | Family::Bridge | Family::Netdev
        );
    let named = match (base, offset, len) {
        (PayloadBase::Link, 0, 6) => Some(("ether daddr", Kind::Mac)),
        (PayloadBase::Link, 6, 6) => Some(("ether saddr", Kind::Mac)),
        (PayloadBase::Link, 12, 2) => Some(("ether type", Kind::Raw)),
        (PayloadBase::Network, 9, 1) if ip => Some(("ip protocol", Kind::L4proto)),
        (PayloadBase::Network, 12, 4) if ip => Some(("ip saddr", Kind::Ipv4)),
        (PayloadBase::Network, 16, 4) if ip => Some(("ip daddr", Kind::Ipv4)),
        (PayloadBase::Network, 8, 16) if ip6 => Some(("ip6 saddr", Kind::Ipv6)),
        (PayloadBase::Network, 24, 16) if ip6 => Some(("ip6 daddr", Kind::Ipv6)),
        (PayloadBase::Network, 6, 2) if family == Family::Arp => {
            Some(("arp operation", Kind::ArpOp))
        }
        (PayloadBase::Network, 14, 4) if family == Family::Arp => {
            Some(("arp saddr ip", Kind::Ipv4))
        }
        (PayloadBase::Network, 24, 4) if family == Family::Arp => {
            Some(("arp daddr ip", Kind::Ipv4))
        }
        (PayloadBase::Transport, 0, 1) if l4 == Some(1) => Some(("type", Kind::IcmpType)),
        (PayloadBase::Transport, 0, 1) if l4 == Some(58) => Some(("type", Kind::Icmp6Type)),
        (PayloadBase::Transport, 1, 1) if matches!(l4, Some(1 | 58)) => Some(("code", Kind::Raw)),
        (PayloadBase::Transport, 0, 2) => Some(("sport", Kind::Port)),
        (PayloadBase::Transport, 2, 2) => Some(("dport", Kind::Port)),
        _ => None,
    };
    match (named, base) {
        (Some((field, kind)), PayloadBase::Transport) => {
            let proto = match l4 {
                Some(6) => "tcp",
                Some(17) => "udp",
                Some(1) => "icmp",
                Some(58) => "icmpv6",
                _ => "th",
            };
            (format!("{proto} {field}"), kind)
        }
        (Some((field, kind)), _) => (field.into(), kind),
        (None, _) => {
            let b = match base {
                PayloadBase::Link => "ll".to_owned(),
                PayloadBase::Network => "nh".to_owned(),
                PayloadBase::Transport => "th".to_owned(),
                PayloadBase::Other(n) => format!("base{n}"),
            };
            (
                format!("@{b},{},{}", u64::from(offset) * 8, u64::from(len) * 8),
                Kind::Raw,
            )
        }
    }
}

/// One rule's expressions in `nft`'s words (`family`: its table's).
pub fn exprs(family: Family, exprs: &[Expr]) -> String {
    let mut regs: Vec<(u32, Reg)> = Vec::new();
    let get = |regs: &[(u32, Reg)], r: u32| {
        regs.iter()
            .find(|(n, _)| *n == r)
            .map(|(_, v)| v.clone())
            .unwrap_or(Reg {
                text: format!("reg{r}"),
                kind: Kind::Raw,
                value: None,
                masked: None,
            })
    };
    let set = |regs: &mut Vec<(u32, Reg)>, r: u32, v: Reg| {
        regs.retain(|(n, _)| *n != r);
        regs.push((r, v));
    };
    let mut out: Vec<String> = Vec::new();
    let mut l4: Option<u8> = None;
    let mut l3: Option<u8> = None;
    for (i, e) in exprs.iter().enumerate() {
        match e {
            Expr::Meta { key, dreg } => {
                let (text, kind) = match key {
                    MetaKey::Mark => ("meta mark".to_owned(), Kind::Hex32),
                    MetaKey::Iifname => ("iifname".to_owned(), Kind::Ifname),
                    MetaKey::Oifname => ("oifname".to_owned(), Kind::Ifname),
                    MetaKey::L4proto => ("meta l4proto".to_owned(), Kind::L4proto),
                    MetaKey::Nfproto => ("meta nfproto".to_owned(), Kind::Raw),
                    MetaKey::Iiftype => ("meta iiftype".to_owned(), Kind::Raw),
                    MetaKey::Other(n) => (format!("meta key{n}"), Kind::Raw),
                };
                set(
                    &mut regs,
                    *dreg,
                    Reg {
                        text,
                        kind,
                        value: None,
                        masked: None,
                    },
                );
            }
            Expr::MetaSet { key, sreg } => {
                let v = get(&regs, *sreg);
                let what = match key {
                    MetaKey::Mark => "mark".to_owned(),
                    other => format!("{other:?}").to_lowercase(),
                };
                let value = v
                    .value
                    .as_deref()
                    .map_or(v.text.clone(), |b| format_value(Kind::Hex32, b));
                out.push(format!("meta {what} set {value}"));
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let (text, kind) = payload_field(family, *base, *offset, *len, l3, l4);
                set(
                    &mut regs,
                    *dreg,
                    Reg {
                        text,
                        kind,
                        value: None,
                        masked: None,
                    },
                );
            }
            Expr::Cmp { sreg, op, data } => {
                let r = get(&regs, *sreg);
                // `nft` leaves out the family or device type a header field implies.
                let next_base = match exprs.get(i + 1) {
                    Some(Expr::Payload { base, .. }) => Some(*base),
                    _ => None,
                };
                if r.text == "meta nfproto" && *op == CmpOp::Eq {
                    l3 = data.first().copied();
                }
                if *op == CmpOp::Eq
                    && ((r.text == "meta nfproto" && next_base == Some(PayloadBase::Network))
                        || (r.text == "meta iiftype" && next_base == Some(PayloadBase::Link)))
                {
                    continue;
                }
                // `ip saddr & 255.255.255.0 == 192.168.0.0` is `ip saddr 192.168.0.0/24`.
                if let (Some((base, mask)), CmpOp::Eq, Kind::Ipv4 | Kind::Ipv6) =
                    (&r.masked, op, r.kind)
                {
                    let ones = mask.iter().map(|b| b.leading_ones()).sum::<u32>();
                    let contiguous = mask.iter().map(|b| b.count_ones()).sum::<u32>() == ones
                        && mask.iter().take_while(|b| **b == 0xff).count() * 8
                            + mask
                                .iter()
                                .find(|b| **b != 0xff)
                                .map_or(0, |b| b.leading_ones() as usize)
                            == ones as usize;
                    if contiguous {
                        out.push(format!("{base} {}/{ones}", format_value(r.kind, data)));
                        continue;
                    }
                }
                if r.kind == Kind::L4proto && *op == CmpOp::Eq {
                    l4 = data.first().copied();
                    // `nft` leaves out the protocol a transport match implies.
                    if matches!(
                        exprs.get(i + 1),
                        Some(Expr::Payload {
                            base: PayloadBase::Transport,
                            ..
                        })
                    ) {
                        continue;
                    }
                }
                // `ct state & (a|b) != 0` is nft's `ct state a,b`; `== 0`, `! a,b`.
                if let (
                    Some((base, mask)),
                    CmpOp::Neq | CmpOp::Eq,
                    Kind::CtState | Kind::CtStatus,
                ) = (&r.masked, op, r.kind)
                {
                    if data.iter().all(|b| *b == 0) {
                        let not = if *op == CmpOp::Eq { "! " } else { "" };
                        out.push(format!("{base} {not}{}", format_value(r.kind, mask)));
                        continue;
                    }
                }
                let value = format_value(r.kind, data);
                let op = match op {
                    CmpOp::Eq if !r.text.contains(" & ") => String::new(),
                    op => format!("{} ", op.symbol()),
                };
                out.push(format!("{} {op}{value}", r.text));
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
                ..
            } => {
                let r = get(&regs, *sreg);
                let disjoint =
                    mask.len() == xor.len() && mask.iter().zip(xor).all(|(m, x)| m & x == 0);
                let text = if xor.iter().all(|b| *b == 0) {
                    format!("{} & {}", r.text, format_value(r.kind, mask))
                } else if disjoint {
                    // nft's `(x & m) | v`: the bits set are kept in the mask it shows.
                    let shown: Vec<u8> = mask.iter().zip(xor).map(|(m, x)| m | x).collect();
                    format!(
                        "{} & {} | {}",
                        r.text,
                        format_value(r.kind, &shown),
                        format_value(r.kind, xor)
                    )
                } else {
                    format!(
                        "{} & {} ^ {}",
                        r.text,
                        format_value(r.kind, mask),
                        format_value(r.kind, xor)
                    )
                };
                let masked = Some((r.text.clone(), mask.clone()));
                set(
                    &mut regs,
                    *dreg,
                    Reg {
                        text,
                        kind: r.kind,
                        value: None,
                        masked,
                    },
                );
            }
            Expr::Ct { key, dreg, .. } => {
                let (text, kind) = match key {
                    CtKey::State => ("ct state", Kind::CtState),
                    CtKey::Status => ("ct status", Kind::CtStatus),
                    CtKey::Mark => ("ct mark", Kind::Hex32),
                    CtKey::Other(_) => ("ct", Kind::Raw),
                };
                let text = match key {
                    CtKey::Other(n) => format!("ct key{n}"),
                    _ => text.to_owned(),
                };
                set(
                    &mut regs,
                    *dreg,
                    Reg {
                        text,
                        kind,
                        value: None,
                        masked: None,
                    },
                );
            }
            Expr::Lookup {
                set: name,
                sreg,
                invert,
                ..
            } => {
                let r = get(&regs, *sreg);
                let not = if *invert { "!= " } else { "" };
                out.push(format!("{} {not}@{name}", r.text));
            }
            Expr::Immediate { dreg, data } => match data {
                Data::Verdict(v) => out.push(v.to_string()),
                Data::Value(b) => set(
                    &mut regs,
                    *dreg,
                    Reg {
                        text: hex(b),
                        kind: Kind::Raw,
                        value: Some(b.clone()),
                        masked: None,
                    },
                ),
            },
            Expr::Nat {
                kind,
                addr_min,
                proto_min,
                ..
            } => {
                let word = match kind {
                    NatKind::Snat => "snat",
                    NatKind::Dnat => "dnat",
                };
                let addr = addr_min.map(|r| {
                    let v = get(&regs, r);
                    v.value.as_deref().map_or(v.text, |b| {
                        format_value(
                            if b.len() == 16 {
                                Kind::Ipv6
                            } else {
                                Kind::Ipv4
                            },
                            b,
                        )
                    })
                });
                let port = proto_min.map(|r| {
                    let v = get(&regs, r);
                    v.value
                        .as_deref()
                        .map_or(v.text, |b| format_value(Kind::Port, b))
                });
                out.push(match (addr, port) {
                    (Some(a), Some(p)) => format!("{word} to {a}:{p}"),
                    (Some(a), None) => format!("{word} to {a}"),
                    (None, Some(p)) => format!("{word} to :{p}"),
                    (None, None) => word.to_owned(),
                });
            }
            Expr::Redirect { proto_min, .. } => out.push(match proto_min {
                Some(r) => {
                    let v = get(&regs, *r);
                    let port = v
                        .value
                        .as_deref()
                        .map_or(v.text, |b| format_value(Kind::Port, b));
                    format!("redirect to :{port}")
                }
                None => "redirect".into(),
            }),
            Expr::Counter(c) => {
                out.push(format!("counter packets {} bytes {}", c.packets, c.bytes))
            }
            Expr::Other { name, data } => out.push(format!("{name}({} bytes)", data.len())),
        }
    }
    out.join(" ")
}

/// A rule as `nft` prints it inside its chain, with its comment.
pub fn rule(r: &Rule) -> String {
    let mut s = exprs(r.family, &r.exprs);
    if let Some(c) = r.comment() {
        let _ = write!(s, " comment \"{c}\"");
    }
    s
}

/// A base chain's hook line as `nft list` prints it, `type nat hook prerouting priority
/// dstnat; policy accept;` (`None` for a regular chain).
pub fn base_spec(c: &Chain) -> Option<String> {
    let b = c.base.as_ref()?;
    // nft names dstnat and srcnat only at the hooks they are for.
    let priority = match (b.priority, b.hook) {
        (crate::priority::MANGLE, _) => "mangle".to_owned(),
        (crate::priority::DSTNAT, crate::hook::PREROUTING) => "dstnat".to_owned(),
        (crate::priority::FILTER, _) => "filter".to_owned(),
        (crate::priority::SRCNAT, crate::hook::POSTROUTING) => "srcnat".to_owned(),
        (n, _) => n.to_string(),
    };
    Some(format!(
        "type {} hook {} priority {priority}; policy {};",
        b.chain_type,
        crate::hook::name(c.family, b.hook),
        b.policy
    ))
}

/// A chain's header line: `chain NAME {` and, for a base chain, its hook line.
fn chain_lines(c: &Chain, rules: &[&Rule], out: &mut Vec<String>) {
    out.push(format!("\tchain {} {{", c.name));
    if let Some(spec) = base_spec(c) {
        out.push(format!("\t\t{spec}"));
    }
    for r in rules {
        out.push(format!("\t\t{}", rule(r)));
    }
    out.push("\t}".into());
}

/// A table's contents as `nft list table` prints them, one line each.
pub fn table_lines(family: Family, table: &str, r: &Ruleset) -> Vec<String> {
    let mut out = vec![format!("table {family} {table} {{")];
    for s in r.sets.iter().filter(|s| s.table == table) {
        let kind = match s.key_len {
            4 => Kind::Ipv4,
            16 => Kind::Ipv6,
            _ => Kind::Raw,
        };
        out.push(format!("\tset {} {{", s.name));
        let elements: Vec<String> = s.elements.iter().map(|e| format_value(kind, e)).collect();
        if !elements.is_empty() {
            out.push(format!("\t\telements = {{ {} }}", elements.join(", ")));
        }
        out.push("\t}".into());
    }
    for c in r.chains.iter().filter(|c| c.table == table) {
        let rules: Vec<&Rule> = r.rules_of(table, &c.name).collect();
        chain_lines(c, &rules, &mut out);
    }
    out.push("}".into());
    out
}
