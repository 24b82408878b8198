//! Floor 1: nf_tables over netlink (`NETLINK_NETFILTER`), our own.
//!
//! * [`Batch`] — tables, chains, rules, named sets and their elements, written to one
//!   namespace in one atomic batch (`NFNL_MSG_BATCH_BEGIN` … `END`, every message
//!   acknowledged; a refusal names the message it was for, and leaves nothing applied).
//! * [`Socket`] — a `NETLINK_NETFILTER` socket. It acts in the network namespace of
//!   the thread that opened it ([`Socket::open`]): the caller opens it on a thread
//!   that has entered the namespace (`sp_kernel::netns::run_in_each`).
//! * [`Socket::ruleset`] — the reader: tables, chains, rules with their expressions
//!   typed ([`Expr`]), sets and their elements, one dump per kind of object. Total:
//!   any bytes give a value or an error ([`parse_messages`] is what the fuzzer feeds),
//!   never a panic or an unbounded loop; an expression this crate does not type is
//!   kept as [`Expr::Other`] with its name and bytes (iptables-nft's `match`/`target`).
//! * [`render`] — rules printed the way `nft list table` prints them.
//! * [`diff`] — how a table read back differs from the one wanted, each difference typed.
//!
//! Answers are checked like `sp_kernel::netlink`'s: sequence numbers (unique per
//! request in the process), a dump's `NLMSG_DONE` error code, `MSG_TRUNC` against a
//! bounded buffer. See `docs/nat.md` for why no crate does this job for us.

pub mod build;
pub mod diff;
pub mod expr;
mod objects;
pub mod render;
mod socket;
mod sys;
mod wire;

pub use diff::Difference;
pub use expr::{Data, Expr, Verdict};
pub use objects::{
    hook, key_type, priority, set_flags, BaseChain, Chain, Family, Object, Rule, Set, Table,
};
pub use socket::{Batch, Socket, ELEMENTS_PER_MESSAGE, MAX_BATCH_MESSAGES};

/// What went wrong talking to nf_tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a request: message `index` of a batch (`what` it did), or
    /// a get or dump. Nothing of a refused batch was applied.
    #[error("{what}: {}{}", std::io::Error::from_raw_os_error(*errno), message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Refused {
        what: String,
        index: usize,
        errno: i32,
        message: Option<String>,
    },
    /// An answer (or fuzzer's input) that is not what nf_tables sends.
    #[error("malformed nf_tables message: {0}")]
    Malformed(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>) -> Error {
        Error::Malformed(what.into())
    }

    /// The errno behind the error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Refused { errno, .. } => Some(*errno),
            Error::Malformed(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a dump found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub chains: Vec<Chain>,
    /// In the kernel's order: by table, chain, then place in the chain.
    pub rules: Vec<Rule>,
    pub sets: Vec<Set>,
}

impl Ruleset {
    fn add(&mut self, o: Object) {
        match o {
            Object::Table(t, _) => self.tables.push(t),
            Object::Chain(c) => self.chains.push(c),
            Object::Rule(r) => self.rules.push(r),
            Object::Set(s) => self.sets.push(s),
            Object::Elements {
                family,
                table,
                set,
                keys,
            } => {
                if let Some(s) = self
                    .sets
                    .iter_mut()
                    .find(|s| s.family == family && s.table == table && s.name == set)
                {
                    *s = std::mem::replace(s, Set::ipv4(family, "", "", &[])).with_elements(keys);
                }
            }
        }
    }

    /// The rules by chain, each chain's in order (one pass: [`Ruleset::rules_of`] per
    /// chain would walk every rule once per chain). Ordered by name, not hashed: a
    /// table's few dozen chains are found faster than their names are hashed.
    pub fn rules_by_chain(&self) -> std::collections::BTreeMap<&str, Vec<&Rule>> {
        let mut m: std::collections::BTreeMap<&str, Vec<&Rule>> = Default::default();
        for rule in &self.rules {
            m.entry(rule.chain.as_str()).or_default().push(rule);
        }
        m
    }

    /// The rules of one chain, in order.
    pub fn rules_of<'a>(
        &'a self,
        table: &'a str,
        chain: &'a str,
    ) -> impl Iterator<Item = &'a Rule> {
        self.rules
            .iter()
            .filter(move |r| r.table == table && r.chain == chain)
    }
}

/// Parses netlink messages as a dump answers them (one or more datagrams' bytes back
/// to back) into the objects they hold — the reader's parser, for the fuzzer and for
/// tests. Messages other than nf_tables objects (`NLMSG_DONE` ending each dump, the
/// generation) are skipped.
pub fn parse_messages(buf: &[u8]) -> Result<Ruleset> {
    let mut r = Ruleset::default();
    for m in socket::messages(buf) {
        let m = m?;
        if let Some(o) = socket::decode_message(m.kind, m.payload)? {
            r.add(o);
        }
    }
    Ok(r)
}

/// The bytes of the messages a [`Batch`] would add for `ruleset`'s objects, framed as
/// a dump answers them — to build inputs for [`parse_messages`] (tests, fuzz seeds).
pub fn encode_as_dump(ruleset: &Ruleset) -> Vec<u8> {
    socket::encode_as_dump(ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{CmpOp, NatKind};

    fn sample() -> Ruleset {
        let chain = Chain {
            family: Family::Ip,
            table: "t".into(),
            name: "post".into(),
            base: Some(BaseChain {
                chain_type: "nat".into(),
                hook: hook::POSTROUTING,
                priority: priority::SRCNAT,
                policy: Verdict::Accept,
                device: None,
            }),
        };
        let mut exprs = build::oifname(CmpOp::Eq, "qg-1");
        exprs.extend(build::nat(NatKind::Snat, "10.0.0.200".parse().unwrap()));
        exprs.push(build::counter());
        exprs.push(Expr::Other {
            name: "xt".into(),
            data: vec![4, 0, 1, 0],
        });
        Ruleset {
            tables: vec![Table {
                family: Family::Ip,
                name: "t".into(),
                flags: 0,
            }],
            chains: vec![chain],
            rules: vec![Rule::new(Family::Ip, "t", "post", exprs).with_comment("snat")],
            sets: vec![Set::ipv4(
                Family::Ip,
                "t",
                "s",
                &["10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            )],
        }
    }

    #[test]
    fn a_dump_parses_back_to_what_was_encoded() {
        let r = sample();
        assert_eq!(parse_messages(&encode_as_dump(&r)).unwrap(), r);
        assert_eq!(r.rules[0].comment().as_deref(), Some("snat"));
        assert_eq!(
            render::rule(&r.rules[0]),
            "oifname \"qg-1\" snat to 10.0.0.200 counter packets 0 bytes 0 xt(4 bytes) comment \"snat\""
        );
    }

    #[test]
    fn every_cut_and_every_flipped_byte_gives_a_value_or_an_error() {
        let bytes = encode_as_dump(&sample());
        for n in 0..bytes.len() {
            let _ = parse_messages(&bytes[..n]);
        }
        for i in 0..bytes.len() {
            for x in [0x00, 0xff, 0x80, 0x01] {
                let mut b = bytes.clone();
                b[i] ^= x;
                if let Ok(r) = parse_messages(&b) {
                    for rule in &r.rules {
                        let _ = render::rule(rule);
                    }
                }
            }
        }
    }
}
