//! Tables, chains, rules and sets: what a batch writes and a dump reads back.

use crate::expr::{Expr, Verdict};
use crate::sys::*;
use crate::wire::{attrs, Writer};
use crate::Error;

/// A table's family (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
    Ip,
    Arp,
    Netdev,
    Bridge,
    Ip6,
    Other(u8),
}

impl Family {
    pub fn number(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
            Family::Other(n) => n,
        }
    }

    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Family::Inet,
            2 => Family::Ip,
            3 => Family::Arp,
            5 => Family::Netdev,
            7 => Family::Bridge,
            10 => Family::Ip6,
            n => Family::Other(n),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Family::Inet => f.write_str("inet"),
            Family::Ip => f.write_str("ip"),
            Family::Arp => f.write_str("arp"),
            Family::Netdev => f.write_str("netdev"),
            Family::Bridge => f.write_str("bridge"),
            Family::Ip6 => f.write_str("ip6"),
            Family::Other(n) => write!(f, "family{n}"),
        }
    }
}

/// The netfilter hooks of the ip, ip6, inet and bridge families (`NF_INET_*`).
pub mod hook {
    pub const PREROUTING: u32 = 0;
    pub const INPUT: u32 = 1;
    pub const FORWARD: u32 = 2;
    pub const OUTPUT: u32 = 3;
    pub const POSTROUTING: u32 = 4;
    /// The arp family's hooks (`NF_ARP_*`).
    pub const ARP_IN: u32 = 0;
    pub const ARP_OUT: u32 = 1;
    /// The netdev family's (`NF_NETDEV_*`).
    pub const INGRESS: u32 = 0;

    /// The name `nft` gives hook `n` of a `family` chain.
    pub fn name(family: super::Family, n: u32) -> String {
        use super::Family;
        match (family, n) {
            (Family::Arp, ARP_IN) => "input".into(),
            (Family::Arp, ARP_OUT) => "output".into(),
            (Family::Netdev, INGRESS) => "ingress".into(),
            (Family::Arp | Family::Netdev, n) => format!("hook{n}"),
            (_, PREROUTING) => "prerouting".into(),
            (_, INPUT) => "input".into(),
            (_, FORWARD) => "forward".into(),
            (_, OUTPUT) => "output".into(),
            (_, POSTROUTING) => "postrouting".into(),
            (_, n) => format!("hook{n}"),
        }
    }
}

/// Well-known chain priorities (`nft`'s names for them).
pub mod priority {
    pub const MANGLE: i32 = -150;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SRCNAT: i32 = 100;
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub flags: u32,
}

/// What makes a chain a base chain: hooked into the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub chain_type: String,
    pub hook: u32,
    pub priority: i32,
    /// [`Verdict::Accept`] or [`Verdict::Drop`].
    pub policy: Verdict,
    /// The device of a netdev-family chain.
    pub device: Option<String>,
}

/// A chain: a base chain, or a regular one reached by jumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub base: Option<BaseChain>,
}

/// A rule. Its `handle` is the kernel's number for it (none when writing) and plays
/// no part in [`Rule::same`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub exprs: Vec<Expr>,
    /// User data (`nft`'s comment lives here, [`Rule::comment`]).
    pub userdata: Option<Vec<u8>>,
    pub handle: Option<u64>,
}

impl Rule {
    pub fn new(family: Family, table: &str, chain: &str, exprs: Vec<Expr>) -> Rule {
        Rule {
            family,
            table: table.into(),
            chain: chain.into(),
            exprs,
            userdata: None,
            handle: None,
        }
    }

    /// With a comment, as `nft` stores it (libnftnl's user data TLV).
    pub fn with_comment(mut self, comment: &str) -> Rule {
        let bytes = comment.as_bytes();
        let len = bytes.len().min(127) + 1; // nft's limit: 128 with the NUL
        let mut u = vec![UDATA_RULE_COMMENT, len as u8];
        u.extend_from_slice(&bytes[..len - 1]);
        u.push(0);
        self.userdata = Some(u);
        self
    }

    /// The comment in the user data, when it holds one.
    pub fn comment(&self) -> Option<String> {
        let u = self.userdata.as_deref()?;
        let mut at = 0;
        while let (Some(&t), Some(&l)) = (u.get(at), u.get(at + 1)) {
            let v = u.get(at + 2..at + 2 + usize::from(l))?;
            if t == UDATA_RULE_COMMENT {
                let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                return std::str::from_utf8(&v[..end]).ok().map(str::to_owned);
            }
            at += 2 + usize::from(l);
        }
        None
    }

    /// The same rule, whatever the kernel numbered it: place, expressions (counters'
    /// values aside) and user data.
    pub fn same(&self, other: &Rule) -> bool {
        self.family == other.family
            && self.table == other.table
            && self.chain == other.chain
            && self.exprs == other.exprs
            && self.userdata == other.userdata
    }
}

/// `NFT_SET_*` flags.
pub mod set_flags {
    pub const CONSTANT: u32 = 0x2;
    pub const INTERVAL: u32 = 0x4;
    pub const TIMEOUT: u32 = 0x10;
}

/// `nft`'s data types of set keys (`ipv4_addr`, `ipv6_addr`).
pub mod key_type {
    pub const IPV4_ADDR: u32 = 7;
    pub const IPV6_ADDR: u32 = 8;
}

/// A named set and its elements (keys, as bytes: 4 for an IPv4 address, 16 for IPv6),
/// kept sorted and without duplicates: a set has no order, and the kernel lists a
/// hash set's elements in its hash order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub family: Family,
    pub table: String,
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub elements: Vec<Vec<u8>>,
}

impl Set {
    /// A set of IPv4 addresses.
    pub fn ipv4(family: Family, table: &str, name: &str, addrs: &[std::net::Ipv4Addr]) -> Set {
        Set {
            family,
            table: table.into(),
            name: name.into(),
            flags: 0,
            key_type: key_type::IPV4_ADDR,
            key_len: 4,
            elements: Vec::new(),
        }
        .with_elements(addrs.iter().map(|a| a.octets().to_vec()))
    }

    /// With `keys` added to the elements.
    pub fn with_elements(mut self, keys: impl IntoIterator<Item = Vec<u8>>) -> Set {
        self.elements.extend(keys);
        self.elements.sort();
        self.elements.dedup();
        self
    }

    /// A set of IPv6 addresses.
    pub fn ipv6(family: Family, table: &str, name: &str, addrs: &[std::net::Ipv6Addr]) -> Set {
        Set {
            key_type: key_type::IPV6_ADDR,
            key_len: 16,
            ..Set::ipv4(family, table, name, &[])
        }
        .with_elements(addrs.iter().map(|a| a.octets().to_vec()))
    }
}

/// One object of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A table, and its use count as the kernel gives it (`NFTA_TABLE_USE`: its chains,
    /// sets, stateful objects and flowtables).
    Table(Table, u32),
    Chain(Chain),
    Rule(Rule),
    Set(Set),
    /// Elements of a set (`NFT_MSG_NEWSETELEM`): table, set, keys.
    Elements {
        family: Family,
        table: String,
        set: String,
        keys: Vec<Vec<u8>>,
    },
}

// Writing.

pub(crate) fn encode_table(w: &mut Writer, t: &Table) {
    w.str(NFTA_TABLE_NAME, &t.name);
    w.be32(NFTA_TABLE_FLAGS, t.flags);
}

pub(crate) fn encode_chain(w: &mut Writer, c: &Chain) {
    w.str(NFTA_CHAIN_TABLE, &c.table);
    w.str(NFTA_CHAIN_NAME, &c.name);
    if let Some(b) = &c.base {
        w.nest(NFTA_CHAIN_HOOK, |w| {
            w.be32(NFTA_HOOK_HOOKNUM, b.hook);
            w.be32(NFTA_HOOK_PRIORITY, b.priority as u32);
            if let Some(d) = &b.device {
                w.str(NFTA_HOOK_DEV, d);
            }
        });
        w.be32(
            NFTA_CHAIN_POLICY,
            match b.policy {
                Verdict::Drop => 0,
                Verdict::Other(n) => n as u32,
                _ => 1,
            },
        );
        w.str(NFTA_CHAIN_TYPE, &b.chain_type);
    }
}

/// A rule's attributes; its handle only as a dump carries it (in a batch a handle
/// means "replace that rule").
pub(crate) fn encode_rule(w: &mut Writer, r: &Rule, as_dumped: bool) {
    w.str(NFTA_RULE_TABLE, &r.table);
    w.str(NFTA_RULE_CHAIN, &r.chain);
    if let (true, Some(h)) = (as_dumped, r.handle) {
        w.be64(NFTA_RULE_HANDLE, h);
    }
    w.nest(NFTA_RULE_EXPRESSIONS, |w| {
        for e in &r.exprs {
            e.encode(w);
        }
    });
    if let Some(u) = &r.userdata {
        w.bytes(NFTA_RULE_USERDATA, u);
    }
}

pub(crate) fn encode_set(w: &mut Writer, s: &Set, id: u32) {
    w.str(NFTA_SET_TABLE, &s.table);
    w.str(NFTA_SET_NAME, &s.name);
    w.be32(NFTA_SET_FLAGS, s.flags);
    w.be32(NFTA_SET_KEY_TYPE, s.key_type);
    w.be32(NFTA_SET_KEY_LEN, s.key_len);
    w.be32(NFTA_SET_ID, id);
}

pub(crate) fn encode_elements(w: &mut Writer, table: &str, set: &str, keys: &[Vec<u8>]) {
    w.str(NFTA_SET_ELEM_LIST_TABLE, table);
    w.str(NFTA_SET_ELEM_LIST_SET, set);
    w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
        for k in keys {
            w.nest(NFTA_LIST_ELEM, |w| {
                w.nest(NFTA_SET_ELEM_KEY, |w| w.bytes(NFTA_DATA_VALUE, k))
            });
        }
    });
}

// Reading.

fn required<T>(v: Option<T>, what: &str) -> Result<T, Error> {
    v.ok_or_else(|| Error::malformed(format!("{what} missing")))
}

pub(crate) fn decode_table(family: Family, body: &[u8]) -> Result<(Table, u32), Error> {
    let (mut name, mut flags, mut uses) = (None, 0, 0);
    for a in attrs(body) {
        let a = a?;
        match a.kind {
            NFTA_TABLE_NAME => name = Some(a.str()?),
            NFTA_TABLE_FLAGS => flags = a.be32()?,
            NFTA_TABLE_USE => uses = a.be32()?,
            NFTA_TABLE_HANDLE => {
                a.be64()?;
            }
            _ => {}
        }
    }
    let table = Table {
        family,
        name: required(name, "table name")?,
        flags,
    };
    Ok((table, uses))
}

pub(crate) fn decode_chain(family: Family, body: &[u8]) -> Result<Chain, Error> {
    let (mut table, mut name, mut hook, mut policy, mut kind) = (None, None, None, None, None);
    for a in attrs(body) {
        let a = a?;
        match a.kind {
            NFTA_CHAIN_TABLE => table = Some(a.str()?),
            NFTA_CHAIN_NAME => name = Some(a.str()?),
            NFTA_CHAIN_HANDLE => {
                a.be64()?;
            }
            NFTA_CHAIN_HOOK => {
                let (mut num, mut prio, mut dev) = (None, None, None);
                for h in a.nested() {
                    let h = h?;
                    match h.kind {
                        NFTA_HOOK_HOOKNUM => num = Some(h.be32()?),
                        NFTA_HOOK_PRIORITY => prio = Some(h.be32()? as i32),
                        NFTA_HOOK_DEV => dev = Some(h.str()?),
                        _ => {}
                    }
                }
                hook = Some((
                    required(num, "hook number")?,
                    required(prio, "hook priority")?,
                    dev,
                ));
            }
            NFTA_CHAIN_POLICY => policy = Some(a.be32()?),
            NFTA_CHAIN_TYPE => kind = Some(a.str()?),
            _ => {}
        }
    }
    let base = match hook {
        None => None,
        Some((hook, priority, device)) => Some(BaseChain {
            chain_type: required(kind, "base chain type")?,
            hook,
            priority,
            policy: match policy {
                Some(0) => Verdict::Drop,
                Some(1) | None => Verdict::Accept,
                Some(n) => Verdict::Other(n as i32),
            },
            device,
        }),
    };
    Ok(Chain {
        family,
        table: required(table, "chain table")?,
        name: required(name, "chain name")?,
        base,
    })
}

/// More expressions than any rule the kernel takes (its limit is 128 per rule in
/// `nft`, and a rule of 64 KiB cannot hold more than this).
const MAX_EXPRS: usize = 4096;

pub(crate) fn decode_rule(family: Family, body: &[u8]) -> Result<Rule, Error> {
    let (mut table, mut chain, mut handle, mut userdata) = (None, None, None, None);
    let mut exprs = Vec::new();
    for a in attrs(body) {
        let a = a?;
        match a.kind {
            NFTA_RULE_TABLE => table = Some(a.str()?),
            NFTA_RULE_CHAIN => chain = Some(a.str()?),
            NFTA_RULE_HANDLE => handle = Some(a.be64()?),
            NFTA_RULE_USERDATA => userdata = Some(a.value.to_vec()),
            NFTA_RULE_EXPRESSIONS => {
                for e in a.nested() {
                    let e = e?;
                    if e.kind != NFTA_LIST_ELEM {
                        return Err(Error::malformed(
                            "a rule's expression list holds a non-element",
                        ));
                    }
                    if exprs.len() == MAX_EXPRS {
                        return Err(Error::malformed("a rule of too many expressions"));
                    }
                    exprs.push(Expr::decode(e.value)?);
                }
            }
            _ => {}
        }
    }
    Ok(Rule {
        family,
        table: required(table, "rule table")?,
        chain: required(chain, "rule chain")?,
        exprs,
        userdata,
        handle,
    })
}

pub(crate) fn decode_set(family: Family, body: &[u8]) -> Result<Set, Error> {
    let (mut table, mut name) = (None, None);
    let (mut flags, mut key_type, mut key_len) = (0, 0, 0);
    for a in attrs(body) {
        let a = a?;
        match a.kind {
            NFTA_SET_TABLE => table = Some(a.str()?),
            NFTA_SET_NAME => name = Some(a.str()?),
            NFTA_SET_FLAGS => flags = a.be32()?,
            NFTA_SET_KEY_TYPE => key_type = a.be32()?,
            NFTA_SET_KEY_LEN => key_len = a.be32()?,
            _ => {}
        }
    }
    Ok(Set {
        family,
        table: required(table, "set table")?,
        name: required(name, "set name")?,
        flags,
        key_type,
        key_len,
        elements: Vec::new(),
    })
}

pub(crate) fn decode_elements(family: Family, body: &[u8]) -> Result<Object, Error> {
    let (mut table, mut set, mut keys) = (None, None, Vec::new());
    for a in attrs(body) {
        let a = a?;
        match a.kind {
            NFTA_SET_ELEM_LIST_TABLE => table = Some(a.str()?),
            NFTA_SET_ELEM_LIST_SET => set = Some(a.str()?),
            NFTA_SET_ELEM_LIST_ELEMENTS => {
                for e in a.nested() {
                    for k in e?.nested() {
                        let k = k?;
                        if k.kind == NFTA_SET_ELEM_KEY {
                            for d in k.nested() {
                                let d = d?;
                                if d.kind == NFTA_DATA_VALUE {
                                    keys.push(d.value.to_vec());
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Object::Elements {
        family,
        table: required(table, "element list table")?,
        set: required(set, "element list set")?,
        keys,
    })
}
