//! The guide's router NAT, end to end: vm1 (floating IP 10.0.0.201) and vm2 (none) on
//! demo-net behind demo-router; an "external PC" 10.0.0.1 on ext-net that has no route
//! to the tenant subnet. vm2 reaches it through SNAT to the gateway IP, vm1 as its
//! floating IP, and the external PC reaches vm1 on the floating IP — through our own
//! nf_tables table, written over netlink (`nft`, the oracle, reads it back).

use std::process::Command;

use sp_bridge::network;
use sp_bridge::port::{self, HostEnd, PortSpec};
use sp_kernel::netlink::Netlink;
use sp_l3::{load_each, read_each, NatRules};
use sp_neutron::l3::{FloatingIp, RouterNat};
use sp_neutron::{bridge_name, PortKind};
use sp_testenv::{oracle, require, sandbox, scene};

const EXT: &str = "78983ca2-77e3-4cdf-9747-ae1b34addeb7";
const DEMO: &str = "5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const QROUTER: &str = "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165";

fn port(
    net: &str,
    id: &str,
    kind: PortKind,
    ns: &str,
    addrs: &[&str],
    gw: Option<&str>,
) -> PortSpec {
    PortSpec {
        port_id: id.into(),
        kind,
        namespace: ns.into(),
        host: HostEnd::Bridge(bridge_name(net)),
        mac: None,
        mtu: None,
        addresses: Some(addrs.iter().map(|a| a.parse().unwrap()).collect()),
        gateway: gw.map(|g| g.parse().unwrap()),
        ip_forward: kind != PortKind::Instance,
    }
}

/// `nft list table ip neutron-l3-agent` in `ns`: the rules' lines, trimmed.
fn nft_lines(ns: &str) -> Vec<String> {
    require::run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "table",
        "ip",
        sp_l3::TABLE,
    ]))
    .lines()
    .map(|l| l.trim().to_owned())
    .collect()
}

/// Our table as read back, in `ns`; `None` when there is none.
fn current(ns: &str) -> Option<sp_l3::Current> {
    read_each(&[ns]).unwrap().pop().unwrap().unwrap()
}

#[test]
fn snat_and_floating_ip_work_as_the_l3_agent_sets_them() {
    sandbox::enter();
    require::program("nft", "nftables");
    require::program("ping", "iputils-ping");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nl = Netlink::current().unwrap();
        let mut ch = vec![];
        network::ensure_network(&nl, EXT, None, &mut ch)
            .await
            .unwrap();
        network::ensure_network(&nl, DEMO, None, &mut ch)
            .await
            .unwrap();
        let ports = [
            port(
                DEMO,
                "7337070d-45e1-4a2b-9c3d-1234567890ab",
                PortKind::RouterInternal,
                QROUTER,
                &["192.168.0.1/24"],
                None,
            ),
            port(
                EXT,
                "9477c16b-e5f1-4b52-9a3c-6d1e2f3a4b5c",
                PortKind::RouterGateway,
                QROUTER,
                &["10.0.0.200/24", "10.0.0.201/32"],
                Some("10.0.0.1"),
            ),
            port(
                DEMO,
                "a7b1762b-3b4c-4d5e-8f90-123456789abc",
                PortKind::Instance,
                "vm1",
                &["192.168.0.3/24"],
                Some("192.168.0.1"),
            ),
            port(
                DEMO,
                "b8c2873c-4c5d-4e6f-9a01-23456789abcd",
                PortKind::Instance,
                "vm2",
                &["192.168.0.4/24"],
                Some("192.168.0.1"),
            ),
            port(
                EXT,
                "c9d3984d-5d6e-4f70-8b12-3456789abcde",
                PortKind::Instance,
                "extpc",
                &["10.0.0.1/24"],
                None,
            ),
        ];
        port::plug(&nl, &ports, &mut ch).await.unwrap();
    });
    let nat = RouterNat {
        gateway_device: "qg-9477c16b-e5".into(),
        gateway_ip: Some("10.0.0.200".parse().unwrap()),
        enable_snat: true,
        floating_ips: vec![FloatingIp {
            floating: "10.0.0.201".parse().unwrap(),
            fixed: "192.168.0.3".parse().unwrap(),
        }],
    };
    assert!(current(QROUTER).is_none(), "no table before the load");
    let mut changes = vec![];
    load_each(&[(QROUTER, &nat)], &mut changes).unwrap();
    assert_eq!(changes.len(), 1);

    // The rules as nft reads them back in the router namespace.
    let lines = nft_lines(QROUTER);
    for rule in [
        "ip daddr 10.0.0.201 dnat to 192.168.0.3",
        "ip saddr 192.168.0.3 snat to 10.0.0.201",
        "oifname \"qg-9477c16b-e5\" snat to 10.0.0.200",
        "ip daddr 169.254.169.254 iifname \"qr-*\" tcp dport 80 redirect to :9697",
    ] {
        assert!(
            lines.iter().any(|l| l == rule),
            "{rule:?} not in\n{}",
            lines.join("\n")
        );
    }
    // ... and as we print them: the same lines.
    let want = NatRules::of(&nat);
    for l in want.lines() {
        let l = l.trim();
        assert!(
            lines.iter().any(|n| n == l),
            "{l:?} not in\n{}",
            lines.join("\n")
        );
    }
    assert!(current(QROUTER).unwrap().matches(&want));
    // The external PC knows no route to 192.168.0.0/24: every answer needs the NAT.
    assert!(
        oracle::pings("vm2", "10.0.0.1"),
        "vm2 out through SNAT to 10.0.0.200"
    );
    assert!(
        oracle::pings("vm1", "10.0.0.1"),
        "vm1 out as its floating IP"
    );
    assert!(
        oracle::pings("extpc", "10.0.0.201"),
        "the external PC reaches vm1 on its floating IP"
    );
    // Which source each got: refuse the gateway address at the external PC.
    require::run(Command::new("ip").args([
        "netns",
        "exec",
        "extpc",
        "nft",
        "add table ip t; add chain ip t in { type filter hook input priority 0; }; add rule ip t in ip saddr 10.0.0.200 drop",
    ]));
    assert!(
        !oracle::pings("vm2", "10.0.0.1"),
        "vm2's packets came from 10.0.0.200"
    );
    assert!(
        oracle::pings("vm1", "10.0.0.1"),
        "vm1's came from 10.0.0.201"
    );

    // A second load is not needed: what the kernel holds matches.
    assert!(current(QROUTER).unwrap().differences(&want).is_empty());
    assert!(sp_l3::remove(QROUTER).unwrap());
    assert!(!sp_l3::remove(QROUTER).unwrap());
    assert!(current(QROUTER).is_none());
    let tables =
        require::run(Command::new("ip").args(["netns", "exec", QROUTER, "nft", "list", "tables"]));
    assert!(!tables.contains(sp_l3::TABLE), "{tables}");
}

#[test]
fn a_namespace_that_does_not_exist_is_named() {
    sandbox::enter();
    let nat = RouterNat {
        gateway_device: "qg-x".into(),
        gateway_ip: None,
        enable_snat: true,
        floating_ips: vec![],
    };
    let err = load_each(&[("qrouter-missing", &nat)], &mut vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("/run/netns/qrouter-missing"), "{err}");
    let err = read_each(&["qrouter-missing"])
        .unwrap()
        .pop()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/run/netns/qrouter-missing"), "{err}");
    assert!(
        !sp_l3::remove("qrouter-missing").unwrap(),
        "nothing to remove"
    );
    assert!(
        read_each(&["../etc"]).is_err(),
        "a name that escapes /run/netns"
    );
}

#[test]
fn a_rule_deleted_by_hand_is_seen_named_and_put_back() {
    sandbox::enter();
    require::program("nft", "nftables");
    let ns = "qrouter-drift";
    scene::netns_add(ns);
    let nat = RouterNat {
        gateway_device: "qg-1".into(),
        gateway_ip: Some("10.0.1.1".parse().unwrap()),
        enable_snat: true,
        floating_ips: vec![FloatingIp {
            floating: "10.0.1.5".parse().unwrap(),
            fixed: "192.168.1.5".parse().unwrap(),
        }],
    };
    let want = NatRules::of(&nat);
    load_each(&[(ns, &nat)], &mut vec![]).unwrap();
    assert!(current(ns).unwrap().matches(&want));
    // Delete the floating IP's SNAT by its handle, as an operator would.
    let listed = require::run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "-a",
        "list",
        "chain",
        "ip",
        sp_l3::TABLE,
        "neutron-l3-agent-float-snat",
    ]));
    let handle = listed
        .lines()
        .find(|l| l.contains("snat to 10.0.1.5"))
        .and_then(|l| l.rsplit("# handle ").next())
        .unwrap_or_else(|| panic!("no rule in\n{listed}"))
        .trim()
        .to_owned();
    require::run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "delete",
        "rule",
        "ip",
        sp_l3::TABLE,
        "neutron-l3-agent-float-snat",
        "handle",
        &handle,
    ]));
    let drifted = current(ns).unwrap();
    assert!(!drifted.matches(&want));
    assert_eq!(
        drifted.differences(&want),
        [sp_nft::Difference::RuleMissing {
            family: "ip".into(),
            table: sp_l3::TABLE.into(),
            chain: "neutron-l3-agent-float-snat".into(),
            rule: "ip saddr 192.168.1.5 snat to 10.0.1.5".into(),
        }]
    );
    // A chain added by hand is seen too.
    require::run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "nft",
        "add",
        "chain",
        "ip",
        sp_l3::TABLE,
        "stray",
    ]));
    assert!(current(ns).unwrap().differences(&want).contains(
        &sp_nft::Difference::UnexpectedChain {
            family: "ip".into(),
            table: sp_l3::TABLE.into(),
            chain: "stray".into(),
        }
    ));
    // Loading again puts it right, and then nothing is left to do.
    let mut changes = vec![];
    load_each(&[(ns, &nat)], &mut changes).unwrap();
    assert_eq!(changes.len(), 1);
    let fixed = current(ns).unwrap();
    assert!(fixed.matches(&want), "{:?}", fixed.differences(&want));
    assert!(nft_lines(ns)
        .iter()
        .any(|l| l == "ip saddr 192.168.1.5 snat to 10.0.1.5"));
    assert!(!nft_lines(ns).iter().any(|l| l.contains("stray")));
}

#[test]
fn many_routers_load_side_by_side_and_a_failure_keeps_the_others() {
    sandbox::enter();
    require::program("nft", "nftables");
    // Router i: namespaces qrouter-i, SNAT out of qg-i to 10.0.<net>.<i+1>.
    let namespaces = |r: std::ops::Range<usize>| -> Vec<String> {
        let names: Vec<String> = r.map(|i| format!("qrouter-{i}")).collect();
        names.iter().for_each(|n| scene::netns_add(n));
        names
    };
    let nat = |i: usize, net: usize| RouterNat {
        gateway_device: format!("qg-{i}"),
        gateway_ip: Some(format!("10.0.{net}.{}", i + 1).parse().unwrap()),
        enable_snat: true,
        floating_ips: vec![],
    };
    let names = namespaces(0..12);
    let nats: Vec<RouterNat> = (0..12).map(|i| nat(i, 1)).collect();
    let mut routers: Vec<(&str, &RouterNat)> =
        names.iter().map(String::as_str).zip(&nats).collect();
    routers.insert(5, ("qrouter-missing", &nats[0]));
    let mut changes = vec![];
    let err = load_each(&routers, &mut changes).unwrap_err();
    assert!(err.to_string().contains("qrouter-missing"), "{err}");
    assert_eq!(changes.len(), 12, "every other router loaded: {changes:?}");
    for (i, n) in names.iter().enumerate() {
        let rule = format!("oifname \"qg-{i}\" snat to 10.0.1.{}", i + 1);
        let lines = nft_lines(n);
        assert!(
            lines.contains(&rule),
            "{n}: {rule:?} not in\n{}",
            lines.join("\n")
        );
    }
    // Read back in one hop: every loaded router matches; the missing one is named.
    let have = read_each(&routers.iter().map(|(n, _)| *n).collect::<Vec<_>>()).unwrap();
    for ((n, nat), h) in routers.iter().zip(&have) {
        match h {
            Ok(c) => assert!(c.as_ref().unwrap().matches(&NatRules::of(nat)), "{n}"),
            Err(e) => assert!(*n == "qrouter-missing" && e.to_string().contains(n), "{e}"),
        }
    }
    // Again, mixed: every other router's rules changed (a replacement of its table), six
    // routers new (a creation), the missing one still missing. Each namespace gets its
    // own rules, whichever way it was loaded.
    let more = namespaces(12..18);
    let nats: Vec<RouterNat> = (0..18).map(|i| nat(i, 1 + (i + 1) % 2)).collect();
    let all: Vec<&str> = names.iter().chain(&more).map(String::as_str).collect();
    let mut routers: Vec<(&str, &RouterNat)> = all.iter().copied().zip(&nats).collect();
    routers.insert(3, ("qrouter-missing", &nats[0]));
    let mut changes = vec![];
    let err = load_each(&routers, &mut changes).unwrap_err();
    assert!(err.to_string().contains("qrouter-missing"), "{err}");
    assert_eq!(changes.len(), 18, "every other router loaded: {changes:?}");
    for (n, nat) in all.iter().zip(&nats) {
        let rule = format!(
            "oifname \"{}\" snat to {}",
            nat.gateway_device,
            nat.gateway_ip.unwrap()
        );
        let lines = nft_lines(n);
        assert!(
            lines.contains(&rule),
            "{n}: {rule:?} not in\n{}",
            lines.join("\n")
        );
        let have = read_each(&[n]).unwrap().remove(0).unwrap().unwrap();
        assert!(
            have.matches(&NatRules::of(nat)),
            "{n}: not exactly its rules"
        );
    }
}
