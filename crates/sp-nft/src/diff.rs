//! How a table the kernel holds differs from the one wanted: each difference typed
//! (what `stackplumb plan --json` carries) and printed in a short sentence for people.

use std::fmt;

use serde::Serialize;

use crate::{Chain, Family, Rule, Ruleset};

/// One way a table differs from the one wanted. Rules and chain hooks are given as
/// `nft list` prints them; `family` and `table` name the table as nft does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The table is not there.
    TableMissing { family: String, table: String },
    /// The table has flags (`dormant`, `owner`…) where ours has none.
    TableFlags {
        family: String,
        table: String,
        flags: u32,
    },
    SetMissing {
        family: String,
        table: String,
        set: String,
    },
    /// A set of that name with another key type, flags or elements.
    SetDiffers {
        family: String,
        table: String,
        set: String,
    },
    UnexpectedSet {
        family: String,
        table: String,
        set: String,
    },
    ChainMissing {
        family: String,
        table: String,
        chain: String,
    },
    /// A chain of that name on another hook, priority or policy (`null`: a regular chain).
    ChainDiffers {
        family: String,
        table: String,
        chain: String,
        found: Option<String>,
        wanted: Option<String>,
    },
    UnexpectedChain {
        family: String,
        table: String,
        chain: String,
    },
    RuleMissing {
        family: String,
        table: String,
        chain: String,
        rule: String,
    },
    UnexpectedRule {
        family: String,
        table: String,
        chain: String,
        rule: String,
    },
    /// The chain's rules are the wanted ones in another order.
    OutOfOrder {
        family: String,
        table: String,
        chain: String,
    },
    /// A `/proc/sys/net` switch the rules rely on is off (br_netfilter's
    /// `bridge/bridge-nf-call-iptables`, say); `key` as sysctl names it.
    SysctlOff { key: String },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Difference::*;
        match self {
            TableMissing { family, table } => write!(f, "table {family} {table} missing"),
            TableFlags {
                family,
                table,
                flags,
            } => write!(f, "table {family} {table} flags 0x{flags:x}, not 0"),
            SetMissing { family, set, .. } => write!(f, "{family} set {set} missing"),
            SetDiffers { family, set, .. } => {
                write!(f, "{family} set {set}: other type or elements")
            }
            UnexpectedSet { family, set, .. } => write!(f, "unexpected {family} set {set}"),
            ChainMissing { family, chain, .. } => write!(f, "{family} chain {chain} missing"),
            ChainDiffers {
                family,
                chain,
                found,
                wanted,
                ..
            } => {
                let said =
                    |s: &Option<String>| s.clone().unwrap_or_else(|| "a regular chain".into());
                write!(
                    f,
                    "{family} chain {chain}: {} instead of {}",
                    said(found),
                    said(wanted)
                )
            }
            UnexpectedChain { family, chain, .. } => write!(f, "unexpected {family} chain {chain}"),
            RuleMissing {
                family,
                chain,
                rule,
                ..
            } => write!(f, "rule missing in {family} {chain}: {rule}"),
            UnexpectedRule {
                family,
                chain,
                rule,
                ..
            } => write!(f, "unexpected rule in {family} {chain}: {rule}"),
            OutOfOrder { family, chain, .. } => write!(f, "rules of {family} {chain} out of order"),
            SysctlOff { key } => write!(f, "{key} is 0"),
        }
    }
}

/// What differs between `found` — one table as a dump of it read it — and `want`: the
/// table's presence and flags, sets (by name, then type, flags and elements), chains (by
/// name, then hook, priority and policy), and each chain's rules by what they do
/// ([`Rule::same`]: handles play no part) and their order. Empty when they match.
pub fn compare(family: Family, table: &str, found: &Ruleset, want: &Ruleset) -> Vec<Difference> {
    use Difference::*;
    let (fam, tab) = (family.to_string(), table.to_owned());
    let (family, table) = (|| fam.clone(), || tab.clone());
    let mut out = Vec::new();
    match found.tables.first() {
        None => {
            out.push(TableMissing {
                family: family(),
                table: table(),
            });
            return out;
        }
        Some(t) if t.flags != 0 => out.push(TableFlags {
            family: family(),
            table: table(),
            flags: t.flags,
        }),
        Some(_) => {}
    }
    for s in &want.sets {
        let set = || s.name.clone();
        match found.sets.iter().find(|h| h.name == s.name) {
            None => out.push(SetMissing {
                family: family(),
                table: table(),
                set: set(),
            }),
            Some(h) if h != s => out.push(SetDiffers {
                family: family(),
                table: table(),
                set: set(),
            }),
            Some(_) => {}
        }
    }
    for h in &found.sets {
        if !want.sets.iter().any(|s| s.name == h.name) {
            out.push(UnexpectedSet {
                family: family(),
                table: table(),
                set: h.name.clone(),
            });
        }
    }
    for c in &want.chains {
        let chain = || c.name.clone();
        match found.chains.iter().find(|h| h.name == c.name) {
            None => out.push(ChainMissing {
                family: family(),
                table: table(),
                chain: chain(),
            }),
            Some(h) if h.base != c.base => out.push(ChainDiffers {
                family: family(),
                table: table(),
                chain: chain(),
                found: crate::render::base_spec(h),
                wanted: crate::render::base_spec(c),
            }),
            Some(_) => {}
        }
    }
    let unwanted = |h: &&Chain| !want.chains.iter().any(|c| c.name == h.name);
    for h in found.chains.iter().filter(unwanted) {
        out.push(UnexpectedChain {
            family: family(),
            table: table(),
            chain: h.name.clone(),
        });
    }
    let (found_rules, want_rules) = (found.rules_by_chain(), want.rules_by_chain());
    let none = Vec::new();
    let unexpected = |chain: &str, r: &Rule| UnexpectedRule {
        family: family(),
        table: table(),
        chain: chain.to_owned(),
        rule: crate::render::rule(r),
    };
    for c in &want.chains {
        let have = found_rules.get(c.name.as_str()).unwrap_or(&none);
        let wanted = want_rules.get(c.name.as_str()).unwrap_or(&none);
        if have.len() == wanted.len() && have.iter().zip(wanted).all(|(h, w)| h.same(w)) {
            continue;
        }
        let before = out.len();
        let mut unmatched: Vec<&Rule> = have.clone();
        for w in wanted {
            match unmatched.iter().position(|h| h.same(w)) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => out.push(RuleMissing {
                    family: family(),
                    table: table(),
                    chain: c.name.clone(),
                    rule: crate::render::rule(w),
                }),
            }
        }
        out.extend(unmatched.into_iter().map(|h| unexpected(&c.name, h)));
        // The same rules, none missing and none extra: only their order differs.
        if out.len() == before {
            out.push(OutOfOrder {
                family: family(),
                table: table(),
                chain: c.name.clone(),
            });
        }
    }
    for h in found.chains.iter().filter(unwanted) {
        let rules = found_rules.get(h.name.as_str()).unwrap_or(&none);
        out.extend(rules.iter().map(|r| unexpected(&h.name, r)));
    }
    out
}
