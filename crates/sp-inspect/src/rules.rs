//! NAT and filtering of a namespace, read from its nf_tables ruleset (`sp-nft`): what
//! each rule matches and does, judged from its expressions — the same reading for the
//! rules stackplumb writes (`docs/nat.md`, `docs/security-groups.md`) and for any other
//! native nf_tables rule set, and iptables-nft's: its `-s`/`-d`/`-i`/`-o`/`-p --dport`
//! are native expressions, its `-j SNAT/DNAT/REDIRECT/MARK`, `-m physdev` and `-m mark`
//! xtables extensions whose info structs are read here.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use sp_nft::expr::{CmpOp, MetaKey, NatKind, PayloadBase};
use sp_nft::{Data, Expr, Rule, Ruleset, Verdict};

use crate::model::*;

/// What a register holds while a rule's expressions are read.
#[derive(Debug, Clone, PartialEq)]
enum Reg {
    Iif,
    Oif,
    Mark,
    /// The IPv4 source (`true`) or destination, under a prefix mask.
    Addr(bool, u8),
    Dport,
    /// `meta mark & MASK`, to be compared.
    MaskedMark(u32),
    /// A mark computed `(mark & keep) | value`.
    NewMark(u32),
    Const(Vec<u8>),
    Unknown,
}

/// A device match: a name, a `name*` wildcard, negated or not.
#[derive(Debug, Clone, PartialEq)]
struct DevMatch {
    name: String,
    wildcard: bool,
    negated: bool,
}

impl DevMatch {
    fn names(&self, dev: &str) -> bool {
        let hit = if self.wildcard {
            dev.starts_with(&self.name)
        } else {
            dev == self.name
        };
        hit != self.negated
    }

    fn text(&self) -> String {
        format!(
            "{}{}{}",
            if self.negated { "!" } else { "" },
            self.name,
            if self.wildcard { "*" } else { "" }
        )
    }
}

/// One rule as read.
#[derive(Debug, Default)]
struct Reading {
    iif: Option<DevMatch>,
    oif: Option<DevMatch>,
    saddr: Option<(Ipv4Addr, u8, bool)>,
    daddr: Option<(Ipv4Addr, u8, bool)>,
    dport: Option<u16>,
    /// `meta mark & mask == value` matched.
    mark: Option<(u32, u32)>,
    /// The mark set.
    set_mark: Option<u32>,
    nat: Option<(NatKind, Ipv4Addr)>,
    redirect: Option<u16>,
    jump: Option<String>,
}

fn ifname(data: &[u8]) -> (String, bool) {
    match data.iter().position(|b| *b == 0) {
        Some(end) => (String::from_utf8_lossy(&data[..end]).into_owned(), false),
        None => (String::from_utf8_lossy(data).into_owned(), true),
    }
}

fn ipv4(data: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(data.get(..4)?).ok()?))
}

fn u32_ne(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

fn read(rule: &Rule) -> Reading {
    let mut regs: Vec<(u32, Reg)> = Vec::new();
    let get = |regs: &[(u32, Reg)], r: u32| {
        regs.iter()
            .rev()
            .find(|(n, _)| *n == r)
            .map_or(Reg::Unknown, |(_, v)| v.clone())
    };
    let mut out = Reading::default();
    for e in &rule.exprs {
        match e {
            Expr::Meta { key, dreg } => regs.push((
                *dreg,
                match key {
                    MetaKey::Iifname => Reg::Iif,
                    MetaKey::Oifname => Reg::Oif,
                    MetaKey::Mark => Reg::Mark,
                    _ => Reg::Unknown,
                },
            )),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => regs.push((
                *dreg,
                match (base, offset, len) {
                    (PayloadBase::Network, 12, 4) => Reg::Addr(true, 32),
                    (PayloadBase::Network, 16, 4) => Reg::Addr(false, 32),
                    (PayloadBase::Transport, 2, 2) => Reg::Dport,
                    _ => Reg::Unknown,
                },
            )),
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
                ..
            } => {
                let v = match get(&regs, *sreg) {
                    Reg::Addr(src, _) => {
                        Reg::Addr(src, mask.iter().map(|b| b.count_ones() as u8).sum())
                    }
                    Reg::Mark if xor.iter().any(|b| *b != 0) => {
                        Reg::NewMark(u32_ne(xor).unwrap_or(0))
                    }
                    Reg::Mark => u32_ne(mask).map_or(Reg::Unknown, Reg::MaskedMark),
                    _ => Reg::Unknown,
                };
                regs.push((*dreg, v));
            }
            Expr::Cmp { sreg, op, data } => {
                let negated = *op == CmpOp::Neq;
                match get(&regs, *sreg) {
                    Reg::Iif | Reg::Oif => {
                        let (name, wildcard) = ifname(data);
                        let m = Some(DevMatch {
                            name,
                            wildcard,
                            negated,
                        });
                        if get(&regs, *sreg) == Reg::Iif {
                            out.iif = m;
                        } else {
                            out.oif = m;
                        }
                    }
                    Reg::Addr(src, len) => {
                        if let Some(ip) = ipv4(data) {
                            let a = Some((ip, len, negated));
                            if src {
                                out.saddr = a;
                            } else {
                                out.daddr = a;
                            }
                        }
                    }
                    Reg::Dport if data.len() == 2 => {
                        out.dport = Some(u16::from_be_bytes([data[0], data[1]]))
                    }
                    Reg::MaskedMark(mask) if !negated => {
                        out.mark = u32_ne(data).map(|v| (mask, v));
                    }
                    _ => {}
                }
            }
            Expr::Immediate { dreg, data } => match data {
                Data::Verdict(Verdict::Jump(c) | Verdict::Goto(c)) => out.jump = Some(c.clone()),
                Data::Verdict(_) => {}
                Data::Value(v) => regs.push((*dreg, Reg::Const(v.clone()))),
            },
            Expr::MetaSet {
                key: MetaKey::Mark,
                sreg,
            } => {
                if let Reg::NewMark(v) = get(&regs, *sreg) {
                    out.set_mark = Some(v);
                }
            }
            Expr::Nat {
                kind,
                addr_min: Some(r),
                ..
            } => {
                if let Reg::Const(v) = get(&regs, *r) {
                    if let Some(ip) = ipv4(&v) {
                        out.nat = Some((*kind, ip));
                    }
                }
            }
            Expr::Redirect {
                proto_min: Some(r), ..
            } => {
                if let Reg::Const(v) = get(&regs, *r) {
                    if v.len() >= 2 {
                        out.redirect = Some(u16::from_be_bytes([v[0], v[1]]));
                    }
                }
            }
            other => {
                if let Some(xt) = other.xt() {
                    read_xt(&xt, &mut out);
                }
            }
        }
    }
    out
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).and_then(u32_ne)
}

/// A device name of `xt_physdev_info` with its mask: iptables' `tap+` masks the prefix
/// only.
fn xt_dev(name: &[u8], mask: &[u8], negated: bool) -> DevMatch {
    let (n, _) = ifname(name);
    let masked = mask.iter().take_while(|b| **b == 0xff).count();
    DevMatch {
        wildcard: masked <= n.len(),
        name: n,
        negated,
    }
}

/// What iptables-nft's xtables extensions say (their info structs, linux/netfilter/):
/// `-j SNAT/DNAT` (`nf_nat_ipv4_multi_range_compat` in revision 0, `nf_nat_range(2)`
/// after), `-j REDIRECT`, `-m physdev` (`xt_physdev_info`), `-m mark`, `-j MARK`.
fn read_xt(xt: &sp_nft::expr::Xt, out: &mut Reading) {
    let i = &xt.info;
    match (xt.target, xt.name.as_str(), xt.rev) {
        (true, "SNAT" | "DNAT", rev) => {
            let kind = if xt.name == "SNAT" {
                NatKind::Snat
            } else {
                NatKind::Dnat
            };
            // rev 0: rangesize, flags, min_ip; later: flags, min_addr.
            let at = if rev == 0 { 8 } else { 4 };
            out.nat = i.get(at..at + 4).and_then(ipv4).map(|ip| (kind, ip));
        }
        (true, "REDIRECT", 0) => out.redirect = be16(i, 16),
        (true, "MARK", 2) => out.set_mark = ne32(i, 0),
        (false, "mark", 1) if i.get(8) == Some(&0) => {
            out.mark = ne32(i, 4).zip(ne32(i, 0));
        }
        (false, "physdev", 0) if i.len() >= 66 => {
            let (invert, bitmask) = (i[64], i[65]);
            if bitmask & 0x01 != 0 {
                out.iif = Some(xt_dev(&i[0..16], &i[16..32], invert & 0x01 != 0));
            }
            if bitmask & 0x02 != 0 {
                out.oif = Some(xt_dev(&i[32..48], &i[48..64], invert & 0x02 != 0));
            }
        }
        _ => {}
    }
}

/// The tables of a namespace, as `FAMILY NAME`.
fn tables(rs: &Ruleset) -> Vec<String> {
    rs.tables
        .iter()
        .map(|t| format!("{} {}", t.family, t.name))
        .collect()
}

/// Security groups are on in a namespace with stackplumb's table of the Linux bridge
/// agent's firewall (`neutron-linuxbri`), or with the chain Neutron's iptables firewall
/// sends every port through (`neutron-linuxbri-sg-chain`, or the OVS hybrid driver's
/// `neutron-openvswi-sg-chain`) — iptables-nft's rules.
fn security_groups_on(rs: &Ruleset) -> bool {
    rs.tables.iter().any(|t| t.name == "neutron-linuxbri")
        || rs
            .chains
            .iter()
            .any(|c| c.name == "neutron-linuxbri-sg-chain" || c.name == "neutron-openvswi-sg-chain")
}

/// Whether `l` is an instance's port: a `tap…` that is not the host end of a router's
/// or DHCP port's veth.
pub fn is_instance_port(l: &Link) -> bool {
    // A veth whose peer is not seen (an orphan, reported as such) is not judged.
    if l.kind == "veth" && l.peer.is_none() {
        return false;
    }
    let infra_peer = l.peer.as_ref().is_some_and(|p| {
        matches!(
            sp_neutron::classify_device(&p.name),
            Some(
                sp_neutron::DeviceRole::DhcpPort { .. }
                    | sp_neutron::DeviceRole::RouterInternal { .. }
                    | sp_neutron::DeviceRole::RouterGateway { .. }
            )
        )
    });
    matches!(l.neutron, Some(sp_neutron::DeviceRole::Tap { .. })) && !infra_peer && l.ovs.is_none()
}

/// Fills in what the namespace's rules do: its tables, its NAT, its instance ports'
/// filtering.
pub fn attach(ns: &mut Namespace, rs: &Ruleset) {
    ns.nft_tables = tables(rs);
    ns.security_groups = security_groups_on(rs);
    ns.nat = nat(rs, &ns.links);
    if rs.tables.is_empty() {
        return;
    }
    let filters: Vec<(usize, Vec<FilterRule>)> = ns
        .links
        .iter()
        .enumerate()
        .filter(|(_, l)| is_instance_port(l))
        .map(|(i, l)| (i, filter_of(rs, &l.name)))
        .collect();
    for (i, f) in filters {
        ns.links[i].filter = Some(f);
    }
}

fn in_prefix(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn ipv4_net(a: &Address) -> Option<(Ipv4Addr, u8)> {
    (a.family == "inet").then_some(())?;
    Some((a.address.parse().ok()?, a.prefix_len))
}

/// The router's NAT: SNAT per internal subnet, floating IPs, the metadata redirect.
/// `None` when no rule translates or redirects and no gateway (`qg-`) is there to need it.
fn nat(rs: &Ruleset, links: &[Link]) -> Option<Nat> {
    let readings: Vec<(&Rule, Reading)> = rs.rules.iter().map(|r| (r, read(r))).collect();
    let gateway = links.iter().any(|l| {
        matches!(
            l.neutron,
            Some(sp_neutron::DeviceRole::RouterGateway { .. })
        )
    });
    if !gateway
        && !readings
            .iter()
            .any(|(_, r)| r.nat.is_some() || r.redirect.is_some())
    {
        return None;
    }
    let mut nat = Nat::default();
    // Floating IPs: `ip daddr F dnat to X` and `ip saddr X snat to F`.
    let mut pairs: BTreeSet<(Ipv4Addr, Ipv4Addr)> = BTreeSet::new();
    for (_, r) in &readings {
        match (r.nat, r.daddr, r.saddr) {
            (Some((NatKind::Dnat, fixed)), Some((fip, 32, false)), _) => {
                pairs.insert((fip, fixed));
            }
            (Some((NatKind::Snat, fip)), _, Some((fixed, 32, false))) => {
                pairs.insert((fip, fixed));
            }
            _ => {}
        }
    }
    for (fip, fixed) in pairs {
        let dnat = readings.iter().any(|(_, r)| {
            r.nat == Some((NatKind::Dnat, fixed)) && r.daddr == Some((fip, 32, false))
        });
        let snat = readings.iter().any(|(_, r)| {
            r.nat == Some((NatKind::Snat, fip)) && r.saddr == Some((fixed, 32, false))
        });
        if nat
            .floating
            .iter()
            .any(|f| f.floating == fip.to_string() && f.fixed == fixed.to_string())
        {
            continue;
        }
        nat.floating.push(FloatingIp {
            floating: fip.to_string(),
            fixed: fixed.to_string(),
            dnat,
            snat,
        });
    }
    // The router's SNAT: a rule translating the source to an address without naming
    // one source host (Liberty: `oifname qg-X snat to GATEWAY`).
    let snats: Vec<&Reading> = readings
        .iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(r.nat, Some((NatKind::Snat, _))))
        .filter(|r| !matches!(r.saddr, Some((_, 32, false))))
        .filter(|r| r.mark.is_none())
        .collect();
    for l in links.iter().filter(|l| {
        matches!(
            l.neutron,
            Some(sp_neutron::DeviceRole::RouterInternal { .. })
        )
    }) {
        for (net, len) in l.addresses.iter().filter_map(ipv4_net) {
            let by = snats.iter().find(|r| match r.saddr {
                Some((s, slen, false)) => slen <= len && in_prefix(net, s, slen),
                Some((_, _, true)) => false,
                None => true,
            });
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            nat.subnets.push(RouterSubnet {
                subnet: format!("{}/{len}", Ipv4Addr::from(u32::from(net) & mask)),
                dev: l.name.clone(),
                snat_to: by.and_then(|r| r.nat.map(|(_, ip)| ip.to_string())),
                out_dev: by.and_then(|r| r.oif.as_ref().map(DevMatch::text)),
            });
        }
    }
    nat.metadata = readings.iter().find_map(|(_, r)| {
        let port = r.redirect?;
        (r.daddr.map(|d| d.0) == Some(Ipv4Addr::new(169, 254, 169, 254))).then(|| {
            MetadataRedirect {
                dport: r.dport,
                to_port: port,
                from: r.iif.as_ref().map(DevMatch::text),
            }
        })
    });
    Some(nat)
}

/// The rules that filter `dev`: those naming it as input or output device, the chains
/// they jump to, and the chains reached by the packet mark they set (how stackplumb's
/// bridge-family rules hand a port's number to its inet chains), in the kernel's order.
fn filter_of(rs: &Ruleset, dev: &str) -> Vec<FilterRule> {
    let readings: Vec<(&Rule, Reading)> = rs.rules.iter().map(|r| (r, read(r))).collect();
    let names = |r: &Reading| {
        let named = |m: &Option<DevMatch>| m.as_ref().is_some_and(|m| !m.negated && m.names(dev));
        named(&r.iif) || named(&r.oif)
    };
    let mut chains: Vec<(String, String)> = Vec::new();
    let mut picked: HashSet<usize> = HashSet::new();
    let mut marks: Vec<u32> = Vec::new();
    for (i, (rule, r)) in readings.iter().enumerate() {
        if names(r) {
            picked.insert(i);
            if let Some(c) = &r.jump {
                chains.push((rule.table.clone(), c.clone()));
            }
            marks.extend(r.set_mark);
        }
    }
    for (i, (rule, r)) in readings.iter().enumerate() {
        if let (Some((mask, value)), Some(c)) = (r.mark, &r.jump) {
            if value != 0 && marks.iter().any(|m| m & mask == value) {
                picked.insert(i);
                chains.push((rule.table.clone(), c.clone()));
            }
        }
    }
    // Chains reached, transitively (a chain is followed once).
    let mut seen: HashSet<(String, String)> = HashSet::new();
    while let Some(c) = chains.pop() {
        if !seen.insert(c.clone()) {
            continue;
        }
        for (i, (rule, r)) in readings.iter().enumerate() {
            if rule.table == c.0 && rule.chain == c.1 && picked.insert(i) {
                if let Some(j) = &r.jump {
                    chains.push((rule.table.clone(), j.clone()));
                }
            }
        }
    }
    let mut out: Vec<usize> = picked.into_iter().collect();
    out.sort_unstable();
    out.into_iter()
        .map(|i| {
            let rule = readings[i].0;
            FilterRule {
                table: format!("{} {}", rule.family, rule.table),
                chain: rule.chain.clone(),
                rule: sp_nft::render::rule(rule),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_nft::build;
    use sp_nft::Family;

    fn rule(exprs: Vec<Expr>) -> Rule {
        Rule::new(Family::Ip, "neutron-l3-agent", "c", exprs)
    }

    fn cat(parts: Vec<Vec<Expr>>) -> Vec<Expr> {
        parts.into_iter().flatten().collect()
    }

    #[test]
    fn nat_rules_read_as_the_router_means_them() {
        let fip = Ipv4Addr::new(10, 0, 0, 201);
        let fixed = Ipv4Addr::new(192, 168, 0, 3);
        let rules = vec![
            rule(cat(vec![
                build::ip_addr(false, CmpOp::Eq, fip),
                build::nat(NatKind::Dnat, fixed.into()),
            ])),
            rule(cat(vec![
                build::ip_addr(true, CmpOp::Eq, fixed),
                build::nat(NatKind::Snat, fip.into()),
            ])),
            rule(cat(vec![
                build::oifname(CmpOp::Eq, "qg-9477c16b-e5"),
                build::nat(NatKind::Snat, Ipv4Addr::new(10, 0, 0, 200).into()),
            ])),
            rule(cat(vec![
                build::ip_addr(false, CmpOp::Eq, Ipv4Addr::new(169, 254, 169, 254)),
                build::iifname(CmpOp::Eq, "qr-*"),
                build::port(6, false, 80),
                build::redirect(9697),
            ])),
        ];
        let rs = Ruleset {
            rules,
            ..Ruleset::default()
        };
        let mut qr = Link::new(2, "qr-7337070d-45", "veth");
        qr.neutron = sp_neutron::classify_device(&qr.name);
        qr.addresses.push(Address {
            family: "inet",
            address: "192.168.0.1".into(),
            prefix_len: 24,
            scope: "global".into(),
            broadcast: None,
        });
        let nat = nat(&rs, &[qr]).unwrap();
        assert_eq!(nat.floating.len(), 1);
        assert_eq!(nat.floating[0].floating, "10.0.0.201");
        assert_eq!(nat.floating[0].fixed, "192.168.0.3");
        assert!(nat.floating[0].dnat && nat.floating[0].snat);
        assert_eq!(nat.subnets[0].subnet, "192.168.0.0/24");
        assert_eq!(nat.subnets[0].snat_to.as_deref(), Some("10.0.0.200"));
        assert_eq!(nat.subnets[0].out_dev.as_deref(), Some("qg-9477c16b-e5"));
        let md = nat.metadata.unwrap();
        assert_eq!((md.dport, md.to_port), (Some(80), 9697));
        assert_eq!(md.from.as_deref(), Some("qr-*"));
    }
}
