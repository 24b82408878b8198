//! Rule expressions: what a rule is made of, written to and read from the kernel.
//!
//! Registers are the kernel's numbers: [`VERDICT`] (0) and the 16-byte registers
//! [`REG_1`]…`4`. Values compared or loaded are the bytes the kernel compares — network
//! order for packet fields, host order for `meta mark` and `ct status`, interface names
//! NUL-padded to 16 bytes (a shorter value without NUL matches a prefix: `"qr-"` is
//! iptables' `qr-+`).

use crate::sys::*;
use crate::wire::{attrs, Attr, Writer};
use crate::Error;

/// The verdict register.
pub const VERDICT: u32 = 0;
/// The first data register.
pub const REG_1: u32 = 1;

/// What `meta` reads or sets (`enum nft_meta_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Mark,
    Iifname,
    Oifname,
    L4proto,
    Nfproto,
    /// The input device's type (`ARPHRD_*`, 2 bytes host order; 1 is ethernet).
    Iiftype,
    Other(u32),
}

impl MetaKey {
    fn number(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::Iifname => 6,
            MetaKey::Oifname => 7,
            MetaKey::Iiftype => 8,
            MetaKey::Nfproto => 15,
            MetaKey::L4proto => 16,
            MetaKey::Other(n) => n,
        }
    }

    fn from_number(n: u32) -> Self {
        match n {
            3 => MetaKey::Mark,
            6 => MetaKey::Iifname,
            7 => MetaKey::Oifname,
            8 => MetaKey::Iiftype,
            15 => MetaKey::Nfproto,
            16 => MetaKey::L4proto,
            n => MetaKey::Other(n),
        }
    }
}

/// Where a payload offset counts from (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The link layer header (ether, and arp in the arp family's terms).
    Link,
    /// The network header (ip, ip6, arp).
    Network,
    /// The transport header (tcp, udp, icmp).
    Transport,
    Other(u32),
}

impl PayloadBase {
    fn number(self) -> u32 {
        match self {
            PayloadBase::Link => 0,
            PayloadBase::Network => 1,
            PayloadBase::Transport => 2,
            PayloadBase::Other(n) => n,
        }
    }

    fn from_number(n: u32) -> Self {
        match n {
            0 => PayloadBase::Link,
            1 => PayloadBase::Network,
            2 => PayloadBase::Transport,
            n => PayloadBase::Other(n),
        }
    }
}

/// `enum nft_cmp_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Other(u32),
}

impl CmpOp {
    fn number(self) -> u32 {
        match self {
            CmpOp::Eq => 0,
            CmpOp::Neq => 1,
            CmpOp::Lt => 2,
            CmpOp::Lte => 3,
            CmpOp::Gt => 4,
            CmpOp::Gte => 5,
            CmpOp::Other(n) => n,
        }
    }

    fn from_number(n: u32) -> Self {
        match n {
            0 => CmpOp::Eq,
            1 => CmpOp::Neq,
            2 => CmpOp::Lt,
            3 => CmpOp::Lte,
            4 => CmpOp::Gt,
            5 => CmpOp::Gte,
            n => CmpOp::Other(n),
        }
    }

    pub(crate) fn symbol(self) -> String {
        match self {
            CmpOp::Eq => "==".into(),
            CmpOp::Neq => "!=".into(),
            CmpOp::Lt => "<".into(),
            CmpOp::Lte => "<=".into(),
            CmpOp::Gt => ">".into(),
            CmpOp::Gte => ">=".into(),
            CmpOp::Other(n) => format!("op{n}"),
        }
    }
}

/// What `ct` reads (`enum nft_ct_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state`: the bits of [`ct_state`].
    State,
    /// `ct status`: the `IPS_*` bits (`IPS_DST_NAT` = [`ct_status::DNAT`]).
    Status,
    Mark,
    Other(u32),
}

impl CtKey {
    fn number(self) -> u32 {
        match self {
            CtKey::State => 0,
            CtKey::Status => 2,
            CtKey::Mark => 3,
            CtKey::Other(n) => n,
        }
    }

    fn from_number(n: u32) -> Self {
        match n {
            0 => CtKey::State,
            2 => CtKey::Status,
            3 => CtKey::Mark,
            n => CtKey::Other(n),
        }
    }
}

/// `ct state` bits (host order, 4 bytes).
pub mod ct_state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 1 << 1;
    pub const RELATED: u32 = 1 << 2;
    pub const NEW: u32 = 1 << 3;
    pub const UNTRACKED: u32 = 1 << 6;
}

/// `ct status` bits (host order, 4 bytes).
pub mod ct_status {
    /// `IPS_SRC_NAT`.
    pub const SNAT: u32 = 1 << 4;
    /// `IPS_DST_NAT`: what iptables' `--ctstate DNAT` tests.
    pub const DNAT: u32 = 1 << 5;
}

/// A verdict (`immediate` into the verdict register, a chain's policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    Other(i32),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
            Verdict::Other(n) => *n,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Other(n) => write!(f, "verdict {n}"),
        }
    }
}

/// What an `immediate` loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// `snat` or `dnat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
}

/// `NF_NAT_RANGE_MAP_IPS`: the kernel sets it when a NAT expression has an address
/// register, and reports it back.
pub const NAT_MAP_IPS: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`: set by the kernel when a port register is given.
pub const NAT_PROTO_SPECIFIED: u32 = 2;

/// A counter's values. They change with every packet, so two counters are always
/// equal: rules compare by what they do, not by what they counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl PartialEq for Counts {
    fn eq(&self, _: &Counts) -> bool {
        true
    }
}
impl Eq for Counts {}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta KEY` loaded into `dreg`.
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    /// `meta KEY set` from `sreg`.
    MetaSet {
        key: MetaKey,
        sreg: u32,
    },
    /// `len` bytes at `offset` from `base` loaded into `dreg`.
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Compares `sreg` with `data`; a mismatch ends the rule.
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor` over `len` bytes.
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `ct KEY` loaded into `dreg`.
    Ct {
        key: CtKey,
        dreg: u32,
        direction: Option<u8>,
    },
    /// `sreg` looked up in the named set; no match (a match when `invert`) ends the rule.
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    /// `data` loaded into `dreg` ([`VERDICT`] for a verdict).
    Immediate {
        dreg: u32,
        data: Data,
    },
    /// `snat`/`dnat` to the address in `addr_min`..`addr_max` (registers), for `family`.
    Nat {
        kind: NatKind,
        family: u32,
        addr_min: Option<u32>,
        addr_max: Option<u32>,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
        flags: Option<u32>,
    },
    /// `redirect` to the port in `proto_min` (a register holding it, network order).
    Redirect {
        proto_min: Option<u32>,
        proto_max: Option<u32>,
        flags: Option<u32>,
    },
    Counter(Counts),
    /// An expression this crate does not type (iptables-nft's `match`/`target`, …):
    /// its name and its attributes as the kernel sent them.
    Other {
        name: String,
        data: Vec<u8>,
    },
}

/// An xtables extension inside nf_tables — iptables-nft's `match` or `target`
/// (`nft_compat`): the extension's name and revision and its `xt_*` info blob, which
/// only the extension's own C struct describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xt {
    /// A target (`-j DNAT`), or a match (`-m physdev`).
    pub target: bool,
    pub name: String,
    pub rev: u32,
    pub info: Vec<u8>,
}

impl Expr {
    /// The xtables extension this expression is (`NFTA_MATCH_*`/`NFTA_TARGET_*`: name 1,
    /// revision 2, info 3), if it is one.
    pub fn xt(&self) -> Option<Xt> {
        let Expr::Other { name, data } = self else {
            return None;
        };
        let target = match name.as_str() {
            "target" => true,
            "match" => false,
            _ => return None,
        };
        let mut xt = Xt {
            target,
            name: String::new(),
            rev: 0,
            info: vec![],
        };
        for a in attrs(data) {
            let a = a.ok()?;
            match a.kind {
                1 => xt.name = a.str().ok()?,
                2 => xt.rev = a.be32().ok()?,
                3 => xt.info = a.value.to_vec(),
                _ => {}
            }
        }
        Some(xt)
    }

    /// The kernel's name of the expression.
    pub fn name(&self) -> &str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } => "ct",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Redirect { .. } => "redir",
            Expr::Counter(_) => "counter",
            Expr::Other { name, .. } => name,
        }
    }

    /// Appends the expression as an `NFTA_LIST_ELEM`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.str(NFTA_EXPR_NAME, self.name());
            if let Expr::Other { data, .. } = self {
                w.bytes(NFTA_EXPR_DATA, data);
            } else {
                w.nest(NFTA_EXPR_DATA, |w| self.encode_data(w));
            }
        });
    }

    fn encode_data(&self, w: &mut Writer) {
        let opt = |w: &mut Writer, kind, v: &Option<u32>| {
            if let Some(v) = v {
                w.be32(kind, *v)
            }
        };
        match self {
            Expr::Meta { key, dreg } => {
                w.be32(NFTA_META_KEY, key.number());
                w.be32(NFTA_META_DREG, *dreg);
            }
            Expr::MetaSet { key, sreg } => {
                w.be32(NFTA_META_KEY, key.number());
                w.be32(NFTA_META_SREG, *sreg);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.be32(NFTA_PAYLOAD_DREG, *dreg);
                w.be32(NFTA_PAYLOAD_BASE, base.number());
                w.be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                w.be32(NFTA_CMP_SREG, *sreg);
                w.be32(NFTA_CMP_OP, op.number());
                w.nest(NFTA_CMP_DATA, |w| w.bytes(NFTA_DATA_VALUE, data));
            }
            Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask,
                xor,
            } => {
                w.be32(NFTA_BITWISE_SREG, *sreg);
                w.be32(NFTA_BITWISE_DREG, *dreg);
                w.be32(NFTA_BITWISE_LEN, *len);
                w.be32(NFTA_BITWISE_OP, NFT_BITWISE_BOOL);
                w.nest(NFTA_BITWISE_MASK, |w| w.bytes(NFTA_DATA_VALUE, mask));
                w.nest(NFTA_BITWISE_XOR, |w| w.bytes(NFTA_DATA_VALUE, xor));
            }
            Expr::Ct {
                key,
                dreg,
                direction,
            } => {
                w.be32(NFTA_CT_KEY, key.number());
                w.be32(NFTA_CT_DREG, *dreg);
                if let Some(d) = direction {
                    w.bytes(NFTA_CT_DIRECTION, &[*d]);
                }
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                w.str(NFTA_LOOKUP_SET, set);
                w.be32(NFTA_LOOKUP_SREG, *sreg);
                opt(w, NFTA_LOOKUP_DREG, dreg);
                w.be32(
                    NFTA_LOOKUP_FLAGS,
                    if *invert { NFT_LOOKUP_F_INV } else { 0 },
                );
            }
            Expr::Immediate { dreg, data } => {
                w.be32(NFTA_IMMEDIATE_DREG, *dreg);
                w.nest(NFTA_IMMEDIATE_DATA, |w| match data {
                    Data::Value(v) => w.bytes(NFTA_DATA_VALUE, v),
                    Data::Verdict(v) => w.nest(NFTA_DATA_VERDICT, |w| {
                        w.be32(NFTA_VERDICT_CODE, v.code() as u32);
                        if let Verdict::Jump(c) | Verdict::Goto(c) = v {
                            w.str(NFTA_VERDICT_CHAIN, c);
                        }
                    }),
                });
            }
            Expr::Nat {
                kind,
                family,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
                flags,
            } => {
                w.be32(
                    NFTA_NAT_TYPE,
                    match kind {
                        NatKind::Snat => 0,
                        NatKind::Dnat => 1,
                    },
                );
                w.be32(NFTA_NAT_FAMILY, *family);
                opt(w, NFTA_NAT_REG_ADDR_MIN, addr_min);
                opt(w, NFTA_NAT_REG_ADDR_MAX, addr_max);
                opt(w, NFTA_NAT_REG_PROTO_MIN, proto_min);
                opt(w, NFTA_NAT_REG_PROTO_MAX, proto_max);
                opt(w, NFTA_NAT_FLAGS, flags);
            }
            Expr::Redirect {
                proto_min,
                proto_max,
                flags,
            } => {
                opt(w, NFTA_REDIR_REG_PROTO_MIN, proto_min);
                opt(w, NFTA_REDIR_REG_PROTO_MAX, proto_max);
                opt(w, NFTA_REDIR_FLAGS, flags);
            }
            Expr::Counter(c) => {
                w.be64(NFTA_COUNTER_BYTES, c.bytes);
                w.be64(NFTA_COUNTER_PACKETS, c.packets);
            }
            Expr::Other { .. } => unreachable!("written as raw data"),
        }
    }

    /// Reads one `NFTA_LIST_ELEM`'s contents. An expression of a name this crate does
    /// not type, or whose attributes it does not understand, is kept as
    /// [`Expr::Other`].
    pub(crate) fn decode(elem: &[u8]) -> Result<Expr, Error> {
        let mut name = None;
        let mut data: &[u8] = &[];
        for a in attrs(elem) {
            let a = a?;
            match a.kind {
                // Borrowed: a ruleset's dump names thousands of expressions.
                NFTA_EXPR_NAME => name = Some(a.text()?),
                NFTA_EXPR_DATA => data = a.value,
                _ => {}
            }
        }
        let name = name.ok_or_else(|| Error::malformed("expression without a name"))?;
        Ok(match Self::decode_data(name, data)? {
            Some(e) => e,
            None => Expr::Other {
                name: name.to_owned(),
                data: data.to_vec(),
            },
        })
    }

    /// `None`: not an expression this crate types (kept as `Other`).
    fn decode_data(name: &str, data: &[u8]) -> Result<Option<Expr>, Error> {
        let mut f = Fields::default();
        for a in attrs(data) {
            f.set(a?);
        }
        let u = |k: u16| f.u32(k);
        Ok(match name {
            "meta" => match (u(NFTA_META_KEY), u(NFTA_META_DREG), u(NFTA_META_SREG)) {
                (Some(k), Some(dreg), None) => Some(Expr::Meta {
                    key: MetaKey::from_number(k),
                    dreg,
                }),
                (Some(k), None, Some(sreg)) => Some(Expr::MetaSet {
                    key: MetaKey::from_number(k),
                    sreg,
                }),
                _ => None,
            },
            "payload" => match (
                u(NFTA_PAYLOAD_DREG),
                u(NFTA_PAYLOAD_BASE),
                u(NFTA_PAYLOAD_OFFSET),
                u(NFTA_PAYLOAD_LEN),
                f.count,
            ) {
                // Four attributes exactly: a load (a payload write has more).
                (Some(dreg), Some(base), Some(offset), Some(len), 4) => Some(Expr::Payload {
                    base: PayloadBase::from_number(base),
                    offset,
                    len,
                    dreg,
                }),
                _ => None,
            },
            "cmp" => match (u(NFTA_CMP_SREG), u(NFTA_CMP_OP), f.value(NFTA_CMP_DATA)?) {
                (Some(sreg), Some(op), Some(data)) => Some(Expr::Cmp {
                    sreg,
                    op: CmpOp::from_number(op),
                    data,
                }),
                _ => None,
            },
            "bitwise" => match (
                u(NFTA_BITWISE_SREG),
                u(NFTA_BITWISE_DREG),
                u(NFTA_BITWISE_LEN),
                u(NFTA_BITWISE_OP).unwrap_or(NFT_BITWISE_BOOL),
                f.value(NFTA_BITWISE_MASK)?,
                f.value(NFTA_BITWISE_XOR)?,
            ) {
                (Some(sreg), Some(dreg), Some(len), NFT_BITWISE_BOOL, Some(mask), Some(xor)) => {
                    Some(Expr::Bitwise {
                        sreg,
                        dreg,
                        len,
                        mask,
                        xor,
                    })
                }
                _ => None,
            },
            "ct" => match (u(NFTA_CT_KEY), u(NFTA_CT_DREG), f.get(NFTA_CT_DIRECTION)) {
                (Some(k), Some(dreg), dir) => {
                    let direction = match dir {
                        None => None,
                        Some([d]) => Some(*d),
                        Some(_) => return Ok(None),
                    };
                    Some(Expr::Ct {
                        key: CtKey::from_number(k),
                        dreg,
                        direction,
                    })
                }
                _ => None,
            },
            "lookup" => match (f.str(NFTA_LOOKUP_SET)?, u(NFTA_LOOKUP_SREG)) {
                (Some(set), Some(sreg)) => Some(Expr::Lookup {
                    set,
                    sreg,
                    dreg: u(NFTA_LOOKUP_DREG),
                    invert: u(NFTA_LOOKUP_FLAGS).unwrap_or(0) & NFT_LOOKUP_F_INV != 0,
                }),
                _ => None,
            },
            "immediate" => match (u(NFTA_IMMEDIATE_DREG), f.get(NFTA_IMMEDIATE_DATA)) {
                (Some(dreg), Some(d)) => {
                    decode_data_attr(d)?.map(|data| Expr::Immediate { dreg, data })
                }
                _ => None,
            },
            "nat" => match (u(NFTA_NAT_TYPE), u(NFTA_NAT_FAMILY)) {
                (Some(t @ (0 | 1)), Some(family)) => Some(Expr::Nat {
                    kind: if t == 0 { NatKind::Snat } else { NatKind::Dnat },
                    family,
                    addr_min: u(NFTA_NAT_REG_ADDR_MIN),
                    addr_max: u(NFTA_NAT_REG_ADDR_MAX),
                    proto_min: u(NFTA_NAT_REG_PROTO_MIN),
                    proto_max: u(NFTA_NAT_REG_PROTO_MAX),
                    flags: u(NFTA_NAT_FLAGS),
                }),
                _ => None,
            },
            "redir" => Some(Expr::Redirect {
                proto_min: u(NFTA_REDIR_REG_PROTO_MIN),
                proto_max: u(NFTA_REDIR_REG_PROTO_MAX),
                flags: u(NFTA_REDIR_FLAGS),
            }),
            "counter" => Some(Expr::Counter(Counts {
                bytes: f.u64(NFTA_COUNTER_BYTES).unwrap_or(0),
                packets: f.u64(NFTA_COUNTER_PACKETS).unwrap_or(0),
            })),
            _ => None,
        }
        .filter(|_| !f.bad.get()))
    }
}

/// An `NFTA_DATA_*` nest: a value or a verdict. `None` when it is neither.
fn decode_data_attr(nest: &[u8]) -> Result<Option<Data>, Error> {
    for a in attrs(nest) {
        let a = a?;
        match a.kind {
            NFTA_DATA_VALUE => return Ok(Some(Data::Value(a.value.to_vec()))),
            NFTA_DATA_VERDICT => {
                let (mut code, mut chain) = (None, None);
                for v in a.nested() {
                    let v = v?;
                    match v.kind {
                        NFTA_VERDICT_CODE => code = Some(v.be32()? as i32),
                        NFTA_VERDICT_CHAIN => chain = Some(v.str()?),
                        _ => {}
                    }
                }
                let Some(code) = code else { return Ok(None) };
                return Ok(Some(Data::Verdict(match (code, chain) {
                    (0, _) => Verdict::Drop,
                    (1, _) => Verdict::Accept,
                    (-1, _) => Verdict::Continue,
                    (-5, _) => Verdict::Return,
                    (-3, Some(c)) => Verdict::Jump(c),
                    (-4, Some(c)) => Verdict::Goto(c),
                    (n, _) => Verdict::Other(n),
                })));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The attributes of one expression by type (the last of a type wins; no expression
/// has types past 15), with a note of any that had the wrong size for what it is read as.
#[derive(Default)]
struct Fields<'a> {
    by_kind: [Option<&'a [u8]>; 16],
    count: usize,
    bad: std::cell::Cell<bool>,
}

impl<'a> Fields<'a> {
    fn set(&mut self, a: Attr<'a>) {
        self.count += 1;
        if let Some(slot) = self.by_kind.get_mut(usize::from(a.kind)) {
            *slot = Some(a.value);
        }
    }

    fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.by_kind.get(usize::from(kind)).copied().flatten()
    }

    /// A 4-byte number; one of another size marks the expression untyped.
    fn u32(&self, kind: u16) -> Option<u32> {
        let n = self.get(kind)?.try_into().ok().map(u32::from_be_bytes);
        self.bad.set(self.bad.get() || n.is_none());
        n
    }

    fn u64(&self, kind: u16) -> Option<u64> {
        let n = self.get(kind)?.try_into().ok().map(u64::from_be_bytes);
        self.bad.set(self.bad.get() || n.is_none());
        n
    }

    fn str(&self, kind: u16) -> Result<Option<String>, Error> {
        self.get(kind)
            .map(|v| Attr { kind, value: v }.str())
            .transpose()
    }

    /// An `NFTA_DATA_VALUE` inside the nest `kind`.
    fn value(&self, kind: u16) -> Result<Option<Vec<u8>>, Error> {
        match self.get(kind) {
            None => Ok(None),
            Some(nest) => Ok(match decode_data_attr(nest)? {
                Some(Data::Value(v)) => Some(v),
                _ => None,
            }),
        }
    }
}
