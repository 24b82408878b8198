//! A router namespace's NAT, as Neutron Liberty's L3 agent sets it — the rules of
//! [`sp_neutron::l3::RouterNat`] (its `iptables_restore()` is the reference) — written
//! natively as nf_tables objects over netlink ([`sp_nft`]) in a table of our own,
//! `ip neutron-l3-agent` ([`TABLE`]), in the `qrouter-` namespace. No process runs.
//!
//! * [`NatRules::of`] — the desired rule set of one router; [`NatRules::lines`] prints
//!   it as `nft list table` does.
//! * [`read_each`] — what our table holds in each namespace right now ([`Current`]),
//!   read from the kernel in one thread hop over all of them; the kernel is the truth,
//!   nothing is recorded.
//! * [`Current::matches`] / [`Current::differences`] — compared by what the rules do:
//!   chains by name, type, hook, priority and policy; each chain's rules in order, by
//!   their expressions and comment. Handles, counters' values and use counts (what the
//!   kernel numbers and counts) play no part.
//! * [`load_each`] — replaces our table in each namespace in one atomic batch (our
//!   table added if missing, deleted, made again with every chain and rule), several
//!   namespaces at a time; a re-apply loads only the routers whose [`Current`] does not
//!   match, so with nothing to do nothing is written.
//! * [`remove`] — our table out of a namespace.
//!
//! Chains are named after Liberty's so a rule reads where an operator expects it
//! (`docs/nat.md` shows both side by side): iptables' built-in chains, which here are
//! base chains of our table, are `<iptables table>-<chain>` (`nat-POSTROUTING`,
//! `mangle-PREROUTING`, `filter-INPUT`), hooked where iptables hooks them (nat at
//! `dstnat`/`srcnat`, mangle at `mangle`, filter at `filter`); Liberty's own chains
//! keep their names (`neutron-l3-agent-snat`, `neutron-l3-agent-float-snat`,
//! `neutron-postrouting-bottom`, …), and the two names Liberty uses in two iptables
//! tables are prefixed by theirs: `nat-neutron-l3-agent-PREROUTING` and
//! `mangle-neutron-l3-agent-PREROUTING`, `nat-neutron-l3-agent-OUTPUT` and
//! `filter-neutron-l3-agent-OUTPUT`. Not iptables' own table names, so iptables-nft
//! in the namespace sees nothing of ours and we nothing of its.

use std::net::{IpAddr, Ipv4Addr};

use sp_kernel::{netns, Change, Object};
use sp_neutron::l3::{RouterNat, METADATA_PORT, WRAP};
use sp_nft::build;
use sp_nft::expr::{ct_status, CmpOp, NatKind};
use sp_nft::{
    hook, priority, BaseChain, Batch, Chain, Difference, Family, Rule, Ruleset, Socket, Table,
    Verdict,
};

/// Our table in every router namespace (family `ip`).
pub const TABLE: &str = "neutron-l3-agent";
const FAMILY: Family = Family::Ip;
const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Liberty's marks: metadata traffic, and traffic in from the gateway (mask 0xffff).
const MARK_MASK: u32 = 0xffff;
const MARK_METADATA: u32 = 0x1;
const MARK_EXTERNAL: u32 = 0x2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error("nf_tables in {namespace}: {source}")]
    Nft {
        namespace: String,
        #[source]
        source: sp_nft::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The desired rule set of one router: our table, its chains (in the order they are
/// made and printed) and their rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRules(Ruleset);

fn base(name: &str, chain_type: &str, hook: u32, priority: i32) -> Chain {
    Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        base: Some(BaseChain {
            chain_type: chain_type.into(),
            hook,
            priority,
            policy: Verdict::Accept,
            device: None,
        }),
    }
}

fn regular(name: &str) -> Chain {
    Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        base: None,
    }
}

impl NatRules {
    /// The rules of `iptables_restore()` as nf_tables objects: the same matches, marks,
    /// NAT and verdicts, chain for chain.
    pub fn of(nat: &RouterNat) -> NatRules {
        let w = WRAP;
        let qg = nat.gateway_device.as_str();
        let (input, fwd, local) = (
            format!("{w}-INPUT"),
            format!("{w}-FORWARD"),
            format!("{w}-local"),
        );
        let filter_out = format!("filter-{w}-OUTPUT");
        let (mangle_pre, mark) = (format!("mangle-{w}-PREROUTING"), format!("{w}-mark"));
        let (nat_pre, nat_out) = (format!("nat-{w}-PREROUTING"), format!("nat-{w}-OUTPUT"));
        let (post, snat, float) = (
            format!("{w}-POSTROUTING"),
            format!("{w}-snat"),
            format!("{w}-float-snat"),
        );
        let (top, bottom) = ("neutron-filter-top", "neutron-postrouting-bottom");
        let chains = vec![
            base("filter-INPUT", "filter", hook::INPUT, priority::FILTER),
            base("filter-FORWARD", "filter", hook::FORWARD, priority::FILTER),
            base("filter-OUTPUT", "filter", hook::OUTPUT, priority::FILTER),
            regular(top),
            regular(&fwd),
            regular(&input),
            regular(&filter_out),
            regular(&local),
            base(
                "mangle-PREROUTING",
                "filter",
                hook::PREROUTING,
                priority::MANGLE,
            ),
            regular(&mangle_pre),
            regular(&mark),
            base("nat-PREROUTING", "nat", hook::PREROUTING, priority::DSTNAT),
            base("nat-OUTPUT", "nat", hook::OUTPUT, priority::DSTNAT),
            base(
                "nat-POSTROUTING",
                "nat",
                hook::POSTROUTING,
                priority::SRCNAT,
            ),
            regular(&nat_out),
            regular(&post),
            regular(&nat_pre),
            regular(&float),
            regular(&snat),
            regular(bottom),
        ];
        let mut rules = Vec::new();
        let mut rule = |chain: &str, parts: Vec<Vec<sp_nft::Expr>>| {
            rules.push(Rule::new(
                FAMILY,
                TABLE,
                chain,
                parts.into_iter().flatten().collect(),
            ));
        };
        let jump = |to: &str| vec![build::verdict(Verdict::Jump(to.into()))];
        let accept = || vec![build::verdict(Verdict::Accept)];
        let metadata = || {
            vec![
                build::ip_addr(false, CmpOp::Eq, METADATA_IP),
                build::iifname(CmpOp::Eq, "qr-+"),
                build::port(6, false, 80),
            ]
        };
        // filter
        rule("filter-INPUT", vec![jump(&input)]);
        rule("filter-FORWARD", vec![jump(top)]);
        rule("filter-FORWARD", vec![jump(&fwd)]);
        rule("filter-OUTPUT", vec![jump(top)]);
        rule("filter-OUTPUT", vec![jump(&filter_out)]);
        rule(top, vec![jump(&local)]);
        rule(
            &input,
            vec![build::mark(MARK_MASK, CmpOp::Eq, MARK_METADATA), accept()],
        );
        rule(
            &input,
            vec![
                build::port(6, false, METADATA_PORT),
                vec![build::verdict(Verdict::Drop)],
            ],
        );
        // mangle: `--set-xmark V/0xffff` keeps the mark's other bits
        rule("mangle-PREROUTING", vec![jump(&mangle_pre)]);
        rule(&mangle_pre, vec![jump(&mark)]);
        let mut m = metadata();
        m.push(build::set_mark(!MARK_MASK, MARK_METADATA));
        rule(&mangle_pre, m);
        rule(
            &mark,
            vec![
                build::iifname(CmpOp::Eq, qg),
                build::set_mark(!MARK_MASK, MARK_EXTERNAL),
            ],
        );
        // nat
        rule("nat-PREROUTING", vec![jump(&nat_pre)]);
        rule("nat-OUTPUT", vec![jump(&nat_out)]);
        rule("nat-POSTROUTING", vec![jump(&post)]);
        rule("nat-POSTROUTING", vec![jump(bottom)]);
        let dnat = |f: &sp_neutron::l3::FloatingIp| {
            vec![
                build::ip_addr(false, CmpOp::Eq, f.floating),
                build::nat(NatKind::Dnat, IpAddr::V4(f.fixed)),
            ]
        };
        for f in &nat.floating_ips {
            rule(&nat_out, dnat(f));
        }
        rule(
            &post,
            vec![
                build::iifname(CmpOp::Neq, qg),
                build::oifname(CmpOp::Neq, qg),
                build::ct_status(ct_status::DNAT, CmpOp::Eq, 0),
                accept(),
            ],
        );
        // The floating IPs' DNAT first, then the metadata redirect: Liberty's order
        // (the two match different destinations, so the order changes nothing but the
        // listing).
        for f in &nat.floating_ips {
            rule(&nat_pre, dnat(f));
        }
        let mut m = metadata();
        m.push(build::redirect(METADATA_PORT));
        rule(&nat_pre, m);
        for f in &nat.floating_ips {
            rule(
                &float,
                vec![
                    build::ip_addr(true, CmpOp::Eq, f.fixed),
                    build::nat(NatKind::Snat, IpAddr::V4(f.floating)),
                ],
            );
        }
        rule(&snat, vec![jump(&float)]);
        if let (Some(gw), true) = (nat.gateway_ip, nat.enable_snat) {
            let to_gw = || build::nat(NatKind::Snat, IpAddr::V4(gw));
            rule(&snat, vec![build::oifname(CmpOp::Eq, qg), to_gw()]);
            rule(
                &snat,
                vec![
                    build::mark(MARK_MASK, CmpOp::Neq, MARK_EXTERNAL),
                    build::ct_status(ct_status::DNAT, CmpOp::Neq, 0),
                    to_gw(),
                ],
            );
        }
        rules.push(
            Rule::new(FAMILY, TABLE, bottom, jump(&snat))
                .with_comment("Perform source NAT on outgoing traffic."),
        );
        NatRules(Ruleset {
            tables: vec![table()],
            chains,
            rules,
            sets: Vec::new(),
        })
    }

    /// The rule set as `nft list table ip neutron-l3-agent` prints it.
    pub fn lines(&self) -> Vec<String> {
        sp_nft::render::table_lines(FAMILY, TABLE, &self.0)
    }

    /// The batch that makes our table where there is none: created (refused if it
    /// appeared meanwhile), every chain and rule added. Nothing is deleted, so the
    /// kernel does not wait out an RCU grace period at its commit (see [`load_each`]).
    fn create(&self) -> Batch {
        let mut b = Batch::new();
        b.create_table(&table());
        self.fill(&mut b);
        b
    }

    /// The batch that replaces our table: added (so that the delete finds it), deleted
    /// with everything in it, and made again.
    fn replace(&self) -> Batch {
        let mut b = Batch::new();
        b.add_table(&table());
        b.delete_table(FAMILY, TABLE);
        b.add_table(&table());
        self.fill(&mut b);
        b
    }

    fn fill(&self, b: &mut Batch) {
        self.0.chains.iter().for_each(|c| b.add_chain(c));
        self.0.rules.iter().for_each(|r| b.add_rule(r));
    }
}

impl std::fmt::Display for NatRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in self.lines() {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

fn table() -> Table {
    Table {
        family: FAMILY,
        name: TABLE.into(),
        flags: 0,
    }
}

/// What our table holds in one namespace, as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    found: Ruleset,
}

impl Current {
    /// Whether the table does what `want` says: the same chains, each with the same
    /// rules in the same order (see the crate docs for what counts).
    pub fn matches(&self, want: &NatRules) -> bool {
        self.differences(want).is_empty()
    }

    /// What differs from `want` ([`sp_nft::diff::compare`]): chains, their rules by
    /// what they do and their order, and any set or flag our table does not have.
    pub fn differences(&self, want: &NatRules) -> Vec<Difference> {
        sp_nft::diff::compare(FAMILY, TABLE, &self.found, &want.0)
    }

    /// The table as `nft list table` prints it.
    pub fn lines(&self) -> Vec<String> {
        sp_nft::render::table_lines(FAMILY, TABLE, &self.found)
    }
}

/// Our table in the namespace of the calling thread (`namespace` names it in errors),
/// for a caller that is inside already — reading a namespace's links and its NAT in
/// one hop; `None` when there is none.
pub fn read_in_this_thread(namespace: &str) -> Result<Option<Current>> {
    Socket::open()
        .and_then(|s| read_here(&s))
        .map_err(|source| Error::Nft {
            namespace: namespace.to_owned(),
            source,
        })
}

/// Our table in the namespace of the calling thread; `None` when there is none.
fn read_here(sock: &Socket) -> sp_nft::Result<Option<Current>> {
    let found = sock.ruleset(FAMILY, Some(TABLE))?;
    Ok((!found.tables.is_empty()).then_some(Current { found }))
}

/// How many namespaces are loaded at once: threads that mostly wait on the kernel.
pub const LOADS_AT_ONCE: usize = 16;

/// Opens the named namespaces; an invalid name fails the whole call before anything
/// is read, a namespace that cannot be opened fails its own entry.
fn open_all(namespaces: &[&str]) -> Result<Vec<Result<std::os::fd::OwnedFd>>> {
    let paths = namespaces
        .iter()
        .map(|n| netns::named_path(n))
        .collect::<sp_kernel::Result<Vec<_>>>()?;
    Ok(paths
        .iter()
        .map(|p| netns::open(p).map_err(Error::from))
        .collect())
}

/// Runs `f(i)` inside each namespace that opened (one thread hop for all), with a
/// socket opened there; the results in order, a namespace that did not open given
/// its error.
fn in_each<T: Send>(
    namespaces: &[&str],
    f: impl Fn(usize, &Socket) -> sp_nft::Result<T> + Send + Sync,
) -> Result<Vec<Result<T>>> {
    let opened = open_all(namespaces)?;
    let (fds, at): (Vec<_>, Vec<usize>) = opened
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.as_ref().ok().map(|fd| (fd, i)))
        .unzip();
    let nft = |i: usize, e| Error::Nft {
        namespace: namespaces[i].to_owned(),
        source: e,
    };
    let mut ran = netns::run_in_each(&fds, |k| {
        let i = at[k];
        Ok(Socket::open().and_then(|s| f(i, &s)).map_err(|e| nft(i, e)))
    })
    .into_iter();
    Ok(opened
        .into_iter()
        .map(|o| match o {
            Err(e) => Err(e),
            Ok(_) => ran.next().expect("one result per namespace opened")?,
        })
        .collect())
}

/// What our table holds in each named namespace (under `/run/netns`), in one thread
/// hop over all of them; one entry per namespace, in order (`None`: no table).
pub fn read_each(namespaces: &[&str]) -> Result<Vec<Result<Option<Current>>>> {
    in_each(namespaces, |_, s| read_here(s))
}

/// Replaces our table in each router's namespace with its [`NatRules`], one atomic
/// batch per namespace, several namespaces at a time; pushes a change per namespace
/// loaded. Every load that works is kept (and reported) when another fails; the first
/// failure is returned.
///
/// Where our table is missing, it is created with everything in it (nothing deleted);
/// where it is there, it is replaced. A batch that deletes anything waits out an RCU
/// grace period at its commit on this kernel (a create-only batch of the whole table
/// ~1 ms, the same with a delete 13–18 ms; docs/nat.md), so replacements run
/// [`LOADS_AT_ONCE`] at a time: their waits overlap. Creations wait for nothing: they
/// run first, in one hop over all the namespaces (a thread per CPU), where more threads
/// would only take turns (100 new routers in the held bench scene: 31 ms median of 24
/// applies, against 45.5 ms of 16 with the creations 16 at once too).
pub fn load_each(routers: &[(&str, &RouterNat)], changes: &mut Vec<Change>) -> Result<()> {
    let rules: Vec<NatRules> = routers.iter().map(|(_, n)| NatRules::of(n)).collect();
    let names: Vec<&str> = routers.iter().map(|(n, _)| *n).collect();
    // Made where missing: `false` where there is a table to replace.
    let created = in_each(&names, |i, s| {
        if s.table(FAMILY, TABLE)?.is_some() {
            return Ok(false);
        }
        match s.apply(&rules[i].create()) {
            // made meanwhile by someone else: replaced below
            Err(sp_nft::Error::Refused { errno, .. }) if errno == libc::EEXIST => Ok(false),
            done => done.map(|()| true),
        }
    })?;
    let replace: Vec<usize> = (0..names.len())
        .filter(|i| matches!(created[*i], Ok(false)))
        .collect();
    let replace_names: Vec<&str> = replace.iter().map(|i| names[*i]).collect();
    let per_group = replace.len().div_ceil(LOADS_AT_ONCE).max(1);
    let replaced: Vec<Result<()>> = std::thread::scope(|scope| {
        let groups: Vec<_> = replace_names
            .chunks(per_group)
            .enumerate()
            .map(|(g, part)| {
                let (rules, replace) = (&rules, &replace);
                scope.spawn(move || {
                    in_each(part, |k, s| {
                        s.apply(&rules[replace[g * per_group + k]].replace())
                    })
                })
            })
            .collect();
        groups
            .into_iter()
            .map(|g| g.join().expect("a load thread panicked"))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    let mut replaced = replaced.into_iter();
    let done = created.into_iter().map(|c| match c {
        Ok(true) => Ok(()),
        Ok(false) => replaced.next().expect("one result per replacement"),
        Err(e) => Err(e),
    });
    let mut first_error = None;
    for (ns, done) in names.iter().zip(done) {
        match done {
            Ok(()) => changes.push(Change::new(
                Object::Nat {
                    namespace: ns.to_string(),
                },
                "loaded",
            )),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes our table from the namespace; `true` when there was one. A namespace that
/// does not exist has none.
pub fn remove(namespace: &str) -> Result<bool> {
    let mut b = Batch::new();
    b.delete_table(FAMILY, TABLE);
    match in_each(&[namespace], |_, s| match s.apply(&b) {
        Ok(()) => Ok(true),
        Err(sp_nft::Error::Refused { errno, .. }) if errno == libc::ENOENT => Ok(false),
        Err(e) => Err(e),
    })?
    .pop()
    .expect("one namespace")
    {
        Err(Error::Kernel(e)) if e.is_not_found() => Ok(false),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_neutron::l3::FloatingIp;

    fn guide() -> RouterNat {
        RouterNat {
            gateway_device: "qg-9477c16b-e5".into(),
            gateway_ip: Some("10.0.0.200".parse().unwrap()),
            enable_snat: true,
            floating_ips: vec![FloatingIp {
                floating: "10.0.0.201".parse().unwrap(),
                fixed: "192.168.0.3".parse().unwrap(),
            }],
        }
    }

    #[test]
    fn the_guides_router_reads_like_libertys_rules() {
        let lines = NatRules::of(&guide()).lines();
        let text = lines.join("\n");
        for (chain, rule) in [
            ("nat-neutron-l3-agent-PREROUTING", "ip daddr 10.0.0.201 dnat to 192.168.0.3"),
            ("nat-neutron-l3-agent-PREROUTING", "ip daddr 169.254.169.254 iifname \"qr-*\" tcp dport 80 redirect to :9697"),
            ("nat-neutron-l3-agent-OUTPUT", "ip daddr 10.0.0.201 dnat to 192.168.0.3"),
            ("neutron-l3-agent-float-snat", "ip saddr 192.168.0.3 snat to 10.0.0.201"),
            ("neutron-l3-agent-snat", "oifname \"qg-9477c16b-e5\" snat to 10.0.0.200"),
            ("neutron-l3-agent-snat", "meta mark & 0x0000ffff != 0x00000002 ct status dnat snat to 10.0.0.200"),
            ("neutron-l3-agent-POSTROUTING", "iifname != \"qg-9477c16b-e5\" oifname != \"qg-9477c16b-e5\" ct status ! dnat accept"),
            ("neutron-l3-agent-mark", "iifname \"qg-9477c16b-e5\" meta mark set meta mark & 0xffff0002 | 0x00000002"),
            ("neutron-l3-agent-INPUT", "meta mark & 0x0000ffff == 0x00000001 accept"),
            ("neutron-l3-agent-INPUT", "tcp dport 9697 drop"),
            ("neutron-postrouting-bottom", "jump neutron-l3-agent-snat comment \"Perform source NAT on outgoing traffic.\""),
        ] {
            let at = lines.iter().position(|l| l.trim() == format!("chain {chain} {{")).unwrap_or_else(|| panic!("no chain {chain} in\n{text}"));
            let end = at + lines[at..].iter().position(|l| l.trim() == "}").unwrap();
            assert!(lines[at..end].iter().any(|l| l.trim() == rule), "{rule:?} not in {chain}:\n{text}");
        }
        assert!(text.contains("chain nat-POSTROUTING {\n\t\ttype nat hook postrouting priority srcnat; policy accept;"), "{text}");
        let no_snat = RouterNat {
            enable_snat: false,
            ..guide()
        };
        assert!(!NatRules::of(&no_snat)
            .lines()
            .join("\n")
            .contains("snat to 10.0.0.200"));
        assert_ne!(NatRules::of(&no_snat), NatRules::of(&guide()));
    }

    #[test]
    fn differences_name_what_is_missing_and_what_is_extra() {
        let want = NatRules::of(&guide());
        let exact = Current {
            found: want.0.clone(),
        };
        assert!(exact.matches(&want));
        assert!(exact.differences(&want).is_empty());
        let mut found = want.0.clone();
        found
            .rules
            .retain(|r| r.chain != "neutron-l3-agent-float-snat");
        found
            .chains
            .retain(|c| c.name != "neutron-l3-agent-FORWARD");
        found.chains.push(regular("stray"));
        let mut counted = found.rules[0].clone();
        counted.handle = Some(42);
        found.rules[0] = counted;
        let d = Current { found }.differences(&want);
        let said: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                "ip chain neutron-l3-agent-FORWARD missing",
                "unexpected ip chain stray",
                "rule missing in ip neutron-l3-agent-float-snat: ip saddr 192.168.0.3 snat to 10.0.0.201",
            ],
            "{d:#?}"
        );
        assert_eq!(
            d[2],
            Difference::RuleMissing {
                family: "ip".into(),
                table: TABLE.into(),
                chain: "neutron-l3-agent-float-snat".into(),
                rule: "ip saddr 192.168.0.3 snat to 10.0.0.201".into(),
            }
        );
        let mut found = want.0.clone();
        let i = found
            .rules
            .iter()
            .position(|r| r.chain == "filter-FORWARD")
            .unwrap();
        found.rules.swap(i, i + 1);
        assert_eq!(
            Current { found }.differences(&want),
            [Difference::OutOfOrder {
                family: "ip".into(),
                table: TABLE.into(),
                chain: "filter-FORWARD".into(),
            }]
        );
    }
}
