//! Expressions for the matches and statements rules are made of, built the way the
//! kernel reports them back (a NAT expression's `flags` and `addr_max`, a redirect's
//! `flags`), so that what is written reads back equal.

use std::net::{IpAddr, Ipv4Addr};

use crate::expr::*;

/// `iifname`/`oifname` data: `name` NUL-padded to 16 bytes; a name ending in `+`
/// (iptables' wildcard) matches every name starting with what comes before.
pub fn ifname(name: &str) -> Vec<u8> {
    match name.strip_suffix('+') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut v = name.as_bytes().to_vec();
            v.resize(16, 0);
            v
        }
    }
}

/// `meta KEY OP data`.
pub fn meta(key: MetaKey, op: CmpOp, data: Vec<u8>) -> Vec<Expr> {
    vec![
        Expr::Meta { key, dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data,
        },
    ]
}

/// `iifname NAME` (`op` Neq: `!=`).
pub fn iifname(op: CmpOp, name: &str) -> Vec<Expr> {
    meta(MetaKey::Iifname, op, ifname(name))
}

/// `oifname NAME`.
pub fn oifname(op: CmpOp, name: &str) -> Vec<Expr> {
    meta(MetaKey::Oifname, op, ifname(name))
}

/// `meta l4proto PROTO` (6 tcp, 17 udp, 1 icmp).
pub fn l4proto(proto: u8) -> Vec<Expr> {
    meta(MetaKey::L4proto, CmpOp::Eq, vec![proto])
}

/// `len` bytes at `offset` from `base`, compared with `data`.
pub fn payload(base: PayloadBase, offset: u32, op: CmpOp, data: Vec<u8>) -> Vec<Expr> {
    vec![
        Expr::Payload {
            base,
            offset,
            len: data.len() as u32,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data,
        },
    ]
}

/// `ip saddr ADDR` / `ip daddr ADDR`.
pub fn ip_addr(source: bool, op: CmpOp, addr: Ipv4Addr) -> Vec<Expr> {
    payload(
        PayloadBase::Network,
        if source { 12 } else { 16 },
        op,
        addr.octets().to_vec(),
    )
}

/// `ip saddr ADDR/PREFIX` (`daddr` unless `source`): masked, then compared.
pub fn ip_prefix(source: bool, addr: Ipv4Addr, prefix: u8) -> Vec<Expr> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    let net = u32::from(addr) & mask;
    vec![
        Expr::Payload {
            base: PayloadBase::Network,
            offset: if source { 12 } else { 16 },
            len: 4,
            dreg: REG_1,
        },
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            len: 4,
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: net.to_be_bytes().to_vec(),
        },
    ]
}

/// `PROTO dport PORT` (`sport` when `source`): the protocol, then the port.
pub fn port(proto: u8, source: bool, port: u16) -> Vec<Expr> {
    let mut v = l4proto(proto);
    v.extend(payload(
        PayloadBase::Transport,
        if source { 0 } else { 2 },
        CmpOp::Eq,
        port.to_be_bytes().to_vec(),
    ));
    v
}

/// `KEY & mask OP value` on a host-order 32-bit value: `meta mark`, `ct status`…
fn masked(load: Expr, mask: u32, op: CmpOp, value: u32) -> Vec<Expr> {
    vec![
        load,
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            len: 4,
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data: value.to_ne_bytes().to_vec(),
        },
    ]
}

/// `meta mark & mask OP value` (iptables' `-m mark [!] --mark value/mask`).
pub fn mark(mask: u32, op: CmpOp, value: u32) -> Vec<Expr> {
    masked(
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: REG_1,
        },
        mask,
        op,
        value,
    )
}

/// `ct status & bits OP value`: with bits [`ct_status::DNAT`], iptables'
/// `-m conntrack [!] --ctstate DNAT` (`Neq` 0: has it; `Eq` 0: has not).
pub fn ct_status(bits: u32, op: CmpOp, value: u32) -> Vec<Expr> {
    masked(
        Expr::Ct {
            key: CtKey::Status,
            dreg: REG_1,
            direction: None,
        },
        bits,
        op,
        value,
    )
}

/// `ct state` in `states` (bits of [`ct_state`]).
pub fn ct_state(states: u32) -> Vec<Expr> {
    masked(
        Expr::Ct {
            key: CtKey::State,
            dreg: REG_1,
            direction: None,
        },
        states,
        CmpOp::Neq,
        0,
    )
}

/// `meta mark set mark & keep ^ value` (iptables' `--set-xmark value/mask` has
/// keep = !mask).
pub fn set_mark(keep: u32, value: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: REG_1,
        },
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            len: 4,
            mask: keep.to_ne_bytes().to_vec(),
            xor: value.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: REG_1,
        },
    ]
}

/// The field loaded into the first register, looked up in a named set.
pub fn lookup(set: &str, invert: bool) -> Expr {
    Expr::Lookup {
        set: set.into(),
        sreg: REG_1,
        dreg: None,
        invert,
    }
}

/// A verdict.
pub fn verdict(v: Verdict) -> Expr {
    Expr::Immediate {
        dreg: VERDICT,
        data: Data::Verdict(v),
    }
}

/// `snat to ADDR` / `dnat to ADDR`.
pub fn nat(kind: NatKind, addr: IpAddr) -> Vec<Expr> {
    let (family, bytes) = match addr {
        IpAddr::V4(a) => (2, a.octets().to_vec()),
        IpAddr::V6(a) => (10, a.octets().to_vec()),
    };
    vec![
        Expr::Immediate {
            dreg: REG_1,
            data: Data::Value(bytes),
        },
        Expr::Nat {
            kind,
            family,
            addr_min: Some(REG_1),
            addr_max: Some(REG_1),
            proto_min: None,
            proto_max: None,
            flags: Some(NAT_MAP_IPS),
        },
    ]
}

/// `redirect to :PORT`.
pub fn redirect(port: u16) -> Vec<Expr> {
    vec![
        Expr::Immediate {
            dreg: REG_1,
            data: Data::Value(port.to_be_bytes().to_vec()),
        },
        Expr::Redirect {
            proto_min: Some(REG_1),
            proto_max: Some(REG_1),
            flags: Some(NAT_PROTO_SPECIFIED),
        },
    ]
}

/// `counter`.
pub fn counter() -> Expr {
    Expr::Counter(Counts::default())
}
