//! sp-nft against the kernel, in a sandbox namespace: what we write is what `nft`
//! (the oracle) sees, reads back equal, applies all or nothing; and the reader takes
//! what iptables-nft writes.

use std::net::Ipv6Addr;
use std::process::Command;

use serde_json::Value;
use sp_nft::build;
use sp_nft::expr::{ct_state, CmpOp, MetaKey, NatKind, PayloadBase};
use sp_nft::{
    hook, priority, BaseChain, Batch, Chain, Expr, Family, Rule, Set, Socket, Table, Verdict,
};
use sp_testenv::{require, sandbox};

fn table(family: Family, name: &str) -> Table {
    Table {
        family,
        name: name.into(),
        flags: 0,
    }
}

fn chain(
    family: Family,
    table: &str,
    name: &str,
    base: Option<(&str, u32, i32, Verdict)>,
) -> Chain {
    Chain {
        family,
        table: table.into(),
        name: name.into(),
        base: base.map(|(t, hook, priority, policy)| BaseChain {
            chain_type: t.into(),
            hook,
            priority,
            policy,
            device: None,
        }),
    }
}

fn cat(parts: Vec<Vec<Expr>>) -> Vec<Expr> {
    parts.into_iter().flatten().collect()
}

/// A bit of everything: an inet filter table (ip, ip6, tcp, udp, icmp, ether fields,
/// ct state, marks, sets, every verdict), an ip nat table, an arp table.
fn everything() -> (Vec<Table>, Vec<Chain>, Vec<Set>, Vec<Rule>) {
    let (inet, ip, arp) = (Family::Inet, Family::Ip, Family::Arp);
    let tables = vec![table(inet, "t"), table(ip, "n"), table(arp, "a")];
    let chains = vec![
        chain(
            inet,
            "t",
            "in",
            Some(("filter", hook::INPUT, priority::FILTER, Verdict::Drop)),
        ),
        chain(inet, "t", "sub", None),
        chain(inet, "t", "other", None),
        chain(
            ip,
            "n",
            "pre",
            Some(("nat", hook::PREROUTING, priority::DSTNAT, Verdict::Accept)),
        ),
        chain(
            ip,
            "n",
            "post",
            Some(("nat", hook::POSTROUTING, priority::SRCNAT, Verdict::Accept)),
        ),
        chain(
            arp,
            "a",
            "in",
            Some(("filter", hook::ARP_IN, 0, Verdict::Accept)),
        ),
    ];
    let sets = vec![
        Set::ipv4(
            inet,
            "t",
            "v4",
            &["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        ),
        Set::ipv6(
            inet,
            "t",
            "v6",
            &["2001:db8::1".parse::<Ipv6Addr>().unwrap()],
        ),
    ];
    let r = |f, t: &str, c: &str, e| Rule::new(f, t, c, e);
    let rules = vec![
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::ct_state(ct_state::ESTABLISHED | ct_state::RELATED),
                vec![build::verdict(Verdict::Accept)],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::iifname(CmpOp::Eq, "lo"),
                vec![build::counter(), build::verdict(Verdict::Accept)],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::iifname(CmpOp::Eq, "qr-+"),
                build::port(6, false, 22),
                vec![build::verdict(Verdict::Jump("sub".into()))],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::oifname(CmpOp::Neq, "eth0"),
                build::port(17, true, 53),
                vec![build::verdict(Verdict::Goto("other".into()))],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::meta(MetaKey::Nfproto, CmpOp::Eq, vec![2]),
                build::ip_prefix(true, "192.168.0.0".parse().unwrap(), 24),
                vec![build::verdict(Verdict::Drop)],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::meta(MetaKey::Nfproto, CmpOp::Eq, vec![2]),
                vec![
                    Expr::Payload {
                        base: PayloadBase::Network,
                        offset: 12,
                        len: 4,
                        dreg: 1,
                    },
                    build::lookup("v4", false),
                    build::verdict(Verdict::Accept),
                ],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::meta(MetaKey::Nfproto, CmpOp::Eq, vec![10]),
                vec![
                    Expr::Payload {
                        base: PayloadBase::Network,
                        offset: 8,
                        len: 16,
                        dreg: 1,
                    },
                    build::lookup("v6", true),
                    build::verdict(Verdict::Drop),
                ],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::l4proto(1),
                build::payload(PayloadBase::Transport, 0, CmpOp::Eq, vec![8]),
                vec![build::verdict(Verdict::Accept)],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::meta(MetaKey::Iiftype, CmpOp::Eq, 1u16.to_ne_bytes().to_vec()),
                build::payload(PayloadBase::Link, 6, CmpOp::Eq, vec![2, 0, 0, 0, 0, 1]),
                vec![build::verdict(Verdict::Drop)],
            ]),
        ),
        r(
            inet,
            "t",
            "in",
            cat(vec![
                build::mark(0xffff, CmpOp::Eq, 1),
                vec![build::verdict(Verdict::Accept)],
            ]),
        )
        .with_comment("metadata"),
        r(
            inet,
            "t",
            "sub",
            cat(vec![
                build::set_mark(0xffff_0000, 2),
                vec![build::verdict(Verdict::Return)],
            ]),
        ),
        r(
            ip,
            "n",
            "pre",
            cat(vec![
                build::ip_addr(false, CmpOp::Eq, "10.0.0.201".parse().unwrap()),
                build::nat(NatKind::Dnat, "192.168.0.3".parse().unwrap()),
            ]),
        ),
        r(
            ip,
            "n",
            "pre",
            cat(vec![
                build::ip_addr(false, CmpOp::Eq, "169.254.169.254".parse().unwrap()),
                build::port(6, false, 80),
                build::redirect(9697),
            ]),
        ),
        r(
            ip,
            "n",
            "post",
            cat(vec![
                build::oifname(CmpOp::Eq, "qg-1"),
                build::nat(NatKind::Snat, "10.0.0.200".parse().unwrap()),
            ]),
        ),
        // arp operation request
        r(
            arp,
            "a",
            "in",
            cat(vec![
                build::payload(PayloadBase::Network, 6, CmpOp::Eq, vec![0, 1]),
                vec![build::verdict(Verdict::Accept)],
            ]),
        ),
    ];
    (tables, chains, sets, rules)
}

fn load_everything() -> (Vec<Table>, Vec<Chain>, Vec<Set>, Vec<Rule>) {
    let all = everything();
    let mut b = Batch::new();
    all.0.iter().for_each(|t| b.add_table(t));
    all.1.iter().for_each(|c| b.add_chain(c));
    all.2.iter().for_each(|s| b.add_set(s));
    all.3.iter().for_each(|r| b.add_rule(r));
    Socket::open().unwrap().apply(&b).unwrap();
    all
}

fn nft_json() -> Vec<Value> {
    let out = require::run(Command::new("nft").args(["-j", "list", "ruleset"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

fn nft_text() -> String {
    require::run(Command::new("nft").args(["list", "ruleset"]))
}

#[test]
fn what_we_write_is_what_nft_sees() {
    sandbox::enter();
    require::program("nft", "nftables");
    load_everything();
    let all = nft_json();
    let of = |k: &str| {
        all.iter()
            .filter_map(|o| o.get(k))
            .cloned()
            .collect::<Vec<_>>()
    };
    let tables: Vec<String> = of("table")
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["family"].as_str().unwrap(),
                t["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(tables, ["inet t", "ip n", "arp a"]);
    let chains = of("chain");
    let input = chains
        .iter()
        .find(|c| c["family"] == "inet" && c["name"] == "in")
        .unwrap();
    assert_eq!(
        (
            input["type"].as_str(),
            input["hook"].as_str(),
            input["prio"].as_i64(),
            input["policy"].as_str()
        ),
        (Some("filter"), Some("input"), Some(0), Some("drop"))
    );
    let pre = chains
        .iter()
        .find(|c| c["family"] == "ip" && c["name"] == "pre")
        .unwrap();
    assert_eq!(
        (
            pre["type"].as_str(),
            pre["hook"].as_str(),
            pre["prio"].as_i64()
        ),
        (Some("nat"), Some("prerouting"), Some(-100))
    );
    assert!(chains
        .iter()
        .any(|c| c["name"] == "sub" && c.get("hook").is_none()));
    let sets = of("set");
    let v4 = sets.iter().find(|s| s["name"] == "v4").unwrap();
    assert_eq!(v4["type"], "ipv4_addr");
    assert_eq!(v4["elem"], serde_json::json!(["10.0.0.1", "10.0.0.2"]));
    let v6 = sets.iter().find(|s| s["name"] == "v6").unwrap();
    assert_eq!(v6["elem"], serde_json::json!(["2001:db8::1"]));
    assert_eq!(of("rule").len(), everything().3.len());
    // The rules in nft's words.
    let text = nft_text();
    for line in [
        "ct state established,related accept",
        "iifname \"lo\" counter packets 0 bytes 0 accept",
        "iifname \"qr-*\" tcp dport 22 jump sub",
        "oifname != \"eth0\" udp sport 53 goto other",
        "ip saddr 192.168.0.0/24 drop",
        "ip saddr @v4 accept",
        "ip6 saddr != @v6 drop",
        "icmp type echo-request accept",
        "ether saddr 02:00:00:00:00:01 drop",
        "meta mark & 0x0000ffff == 0x00000001 accept comment \"metadata\"",
        "ip daddr 10.0.0.201 dnat to 192.168.0.3",
        "ip daddr 169.254.169.254 tcp dport 80 redirect to :9697",
        "oifname \"qg-1\" snat to 10.0.0.200",
        "arp operation request accept",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "{line:?} not in\n{text}"
        );
    }
    assert!(
        text.contains("meta mark set meta mark & 0xffff0002 | 0x00000002 return"),
        "{text}"
    );
}

#[test]
fn what_we_write_reads_back_equal() {
    sandbox::enter();
    let (tables, chains, sets, rules) = load_everything();
    let got = Socket::open()
        .unwrap()
        .ruleset(Family::Other(0), None)
        .unwrap();
    assert_eq!(got.tables, tables);
    assert_eq!(got.chains, chains);
    assert_eq!(got.sets, sets);
    assert_eq!(got.rules.len(), rules.len());
    for (g, w) in got.rules.iter().zip(&rules) {
        assert!(g.same(w), "read back\n{g:?}\nwritten\n{w:?}");
        assert!(g.handle.is_some());
    }
    // One table alone.
    let n = Socket::open()
        .unwrap()
        .ruleset(Family::Ip, Some("n"))
        .unwrap();
    assert_eq!(n.tables, [tables[1].clone()]);
    assert_eq!(n.rules.len(), 3);
    assert!(n.sets.is_empty());
    // The renderer agrees with nft on our rules.
    let text = nft_text();
    for r in &got.rules {
        let line = sp_nft::render::rule(r);
        assert!(
            text.lines().any(|l| l.trim() == line),
            "{line:?} not in\n{text}"
        );
    }
}

#[test]
fn a_batch_whose_last_message_is_refused_leaves_nothing() {
    sandbox::enter();
    require::program("nft", "nftables");
    let (tables, chains, sets, rules) = everything();
    let mut b = Batch::new();
    tables.iter().for_each(|t| b.add_table(t));
    chains.iter().for_each(|c| b.add_chain(c));
    sets.iter().for_each(|s| b.add_set(s));
    rules.iter().for_each(|r| b.add_rule(r));
    // A jump to a chain that does not exist.
    b.add_rule(&Rule::new(
        Family::Inet,
        "t",
        "in",
        vec![build::verdict(Verdict::Jump("nowhere".into()))],
    ));
    let last = b.len() - 1;
    let err = Socket::open().unwrap().apply(&b).unwrap_err();
    match &err {
        sp_nft::Error::Refused {
            index, errno, what, ..
        } => {
            assert_eq!(*index, last, "{err}");
            assert_eq!(*errno, 2, "ENOENT: {err}");
            assert_eq!(what, "add rule inet t in");
        }
        e => panic!("{e}"),
    }
    assert!(
        nft_json().iter().all(|o| o.get("table").is_none()),
        "{}",
        nft_text()
    );
    assert!(Socket::open()
        .unwrap()
        .table(Family::Inet, "t")
        .unwrap()
        .is_none());
    // Creating a table that exists is refused; adding it is not.
    let sock = Socket::open().unwrap();
    let mut b = Batch::new();
    b.add_table(&tables[0]);
    sock.apply(&b).unwrap();
    sock.apply(&b).unwrap();
    let mut b = Batch::new();
    b.create_table(&tables[0]);
    let err = sock.apply(&b).unwrap_err();
    assert_eq!(err.errno(), Some(17), "EEXIST: {err}");
    assert_eq!(
        sock.table(Family::Inet, "t").unwrap(),
        Some(tables[0].clone())
    );
}

#[test]
fn the_reader_takes_what_iptables_nft_wrote() {
    sandbox::enter();
    require::program("iptables-nft-restore", "iptables");
    let mut child = Command::new("iptables-nft-restore")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(
        b"*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:neutron-l3-agent-snat - [0:0]\n\
          -A POSTROUTING -j neutron-l3-agent-snat\n\
          -A neutron-l3-agent-snat -o qg-1 -j SNAT --to-source 10.0.0.200\n\
          -A neutron-l3-agent-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source 10.0.0.200\n\
          -A PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697\n\
          -A neutron-l3-agent-snat -m comment --comment \"Perform source NAT\" -j ACCEPT\nCOMMIT\n",
    ).unwrap();
    assert!(child.wait().unwrap().success());
    let got = Socket::open()
        .unwrap()
        .ruleset(Family::Other(0), None)
        .unwrap();
    assert_eq!(
        got.tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["nat"]
    );
    assert!(got.chains.iter().any(|c| c.name == "neutron-l3-agent-snat"));
    assert_eq!(got.rules.len(), 5);
    let others: Vec<&str> = got
        .rules
        .iter()
        .flat_map(|r| &r.exprs)
        .filter_map(|e| match e {
            Expr::Other { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        others.contains(&"match") || others.contains(&"target"),
        "{others:?}"
    );
    // The typed parts are typed: the interface match before the xt SNAT target.
    let snat = got
        .rules
        .iter()
        .find(|r| {
            r.exprs
                .iter()
                .any(|e| matches!(e, Expr::Cmp { data, .. } if data.as_slice() == b"qg-1\0"))
        })
        .unwrap();
    assert!(
        matches!(snat.exprs.last(), Some(Expr::Other { name, .. }) if name == "target"),
        "{snat:?}"
    );
    assert_eq!(
        sp_nft::render::rule(snat),
        "oifname \"qg-1\" counter packets 0 bytes 0 target(48 bytes)"
    );
}

#[test]
fn thousands_of_rules_and_elements_go_in_one_batch_and_read_back_over_many_reads() {
    sandbox::enter();
    let t = table(Family::Ip, "big");
    let c = chain(Family::Ip, "big", "c", None);
    let addrs: Vec<std::net::Ipv4Addr> = (0..5000u32).map(|i| (0x0a00_0000 + i).into()).collect();
    let set = Set::ipv4(Family::Ip, "big", "s", &addrs);
    let rules: Vec<Rule> = addrs[..2000]
        .iter()
        .map(|a| {
            let mut e = build::ip_addr(true, CmpOp::Eq, *a);
            e.extend(build::nat(NatKind::Snat, (*a).into()));
            Rule::new(Family::Ip, "big", "c", e)
        })
        .collect();
    let mut b = Batch::new();
    b.add_table(&t);
    b.add_chain(&c);
    b.add_set(&set);
    rules.iter().for_each(|r| b.add_rule(r));
    assert_eq!(b.len(), 3 + 5 + 2000, "5000 elements in 5 messages");
    let sock = Socket::open().unwrap();
    sock.apply(&b).unwrap();
    let got = sock.ruleset(Family::Ip, Some("big")).unwrap();
    assert_eq!(got.sets, [set]);
    assert_eq!(got.rules.len(), rules.len());
    assert!(got.rules.iter().zip(&rules).all(|(g, w)| g.same(w)));
}

/// The set dump is left out only when the tables' use counts say there is none: a set
/// added by `nft` to a table of chains alone is read with its elements, and tables of
/// chains (and a stateful object) alone read with no set.
#[test]
fn a_set_is_read_whatever_made_it_and_none_is_invented() {
    sandbox::enter();
    require::program("nft", "nftables");
    let file = std::env::temp_dir().join(format!("sp-nft-sets-{}", std::process::id()));
    let nft = |script: &str| {
        std::fs::write(&file, script).unwrap();
        let ok = Command::new("nft")
            .arg("-f")
            .arg(&file)
            .status()
            .expect("nft runs");
        assert!(ok.success(), "nft -f: {script}");
    };
    nft("table ip t {\n chain a { type filter hook input priority 0; }\n chain b {\n }\n}\n");
    // Every family, or one table of `ip`.
    let read = |table: Option<&str>| {
        let family = table.map_or(Family::Other(0), |_| Family::Ip);
        Socket::open().unwrap().ruleset(family, table).unwrap()
    };
    for table in [None, Some("t")] {
        let r = read(table);
        assert_eq!(r.chains.len(), 2);
        assert!(r.sets.is_empty(), "{:?}", r.sets);
    }
    nft("add set ip t s { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }");
    for table in [None, Some("t")] {
        let r = read(table);
        assert_eq!(r.sets.len(), 1, "{:?}", r.sets);
        assert_eq!(r.sets[0].name, "s");
        assert_eq!(r.sets[0].elements, [vec![10, 0, 0, 1], vec![10, 0, 0, 2]]);
        let listed = nft_json();
        let elems = listed
            .iter()
            .find_map(|o| o["set"]["elem"].as_array().cloned())
            .expect("nft lists the set's elements");
        assert_eq!(elems.len(), r.sets[0].elements.len());
    }
    // A second table, of a chain and a stateful object but no set, beside: still read
    // whole.
    nft("table ip u {\n chain x {\n }\n}\n");
    nft("add counter ip u c");
    let all = read(None);
    assert_eq!(all.sets.len(), 1);
    assert_eq!(all.chains.len(), 3);
    assert!(read(Some("u")).sets.is_empty());
    std::fs::remove_file(&file).unwrap();
}
