//! The guide's router NAT, end to end: vm1 (floating IP 10.0.0.201) and vm2 (none) on
//! demo-net behind demo-router; an "external PC" 10.0.0.1 on ext-net that has no route
//! to the tenant subnet. vm2 reaches it through SNAT to the gateway IP, vm1 as its
//! floating IP, and the external PC reaches vm1 on the floating IP.

use std::process::Command;

use sp_bridge::network;
use sp_bridge::port::{self, HostEnd, PortSpec};
use sp_kernel::netlink::Netlink;
use sp_l3::ensure_nat;
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

#[test]
fn snat_and_floating_ip_work_as_the_l3_agent_sets_them() {
    sandbox::enter();
    require::program("iptables-restore", "iptables");
    require::program("ping", "iputils-ping");
    let state = std::env::temp_dir().join(format!("sp-l3-{}", std::process::id()));
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
    let mut changes = vec![];
    ensure_nat(&state, QROUTER, &nat, &mut changes).unwrap();
    assert_eq!(changes.len(), 1);

    // The rules as iptables reads them back in the router namespace.
    let saved = require::run(Command::new("ip").args([
        "netns",
        "exec",
        QROUTER,
        "iptables-save",
        "-t",
        "nat",
    ]));
    for rule in [
        "-A neutron-l3-agent-PREROUTING -d 10.0.0.201/32 -j DNAT --to-destination 192.168.0.3",
        "-A neutron-l3-agent-float-snat -s 192.168.0.3/32 -j SNAT --to-source 10.0.0.201",
        "-A neutron-l3-agent-snat -o qg-9477c16b-e5 -j SNAT --to-source 10.0.0.200",
    ] {
        assert!(saved.lines().any(|l| l == rule), "{rule:?} not in\n{saved}");
    }
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
        "iptables",
        "-A",
        "INPUT",
        "-s",
        "10.0.0.200",
        "-j",
        "DROP",
    ]));
    assert!(
        !oracle::pings("vm2", "10.0.0.1"),
        "vm2's packets came from 10.0.0.200"
    );
    assert!(
        oracle::pings("vm1", "10.0.0.1"),
        "vm1's came from 10.0.0.201"
    );

    let mut again = vec![];
    ensure_nat(&state, QROUTER, &nat, &mut again).unwrap();
    assert!(again.is_empty(), "{again:?}");
    sp_l3::forget(&state, QROUTER).unwrap();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_namespace_that_does_not_exist_is_named() {
    sandbox::enter();
    let state = std::env::temp_dir().join(format!("sp-l3-missing-{}", std::process::id()));
    let nat = RouterNat {
        gateway_device: "qg-x".into(),
        gateway_ip: None,
        enable_snat: true,
        floating_ips: vec![],
    };
    let err = ensure_nat(&state, "qrouter-missing", &nat, &mut vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("/run/netns/qrouter-missing"), "{err}");
    assert!(!sp_l3::record(&state, "qrouter-missing").exists());
}

#[test]
fn many_routers_load_side_by_side_and_a_failure_keeps_the_others() {
    sandbox::enter();
    require::program("iptables-restore", "iptables");
    let state = std::env::temp_dir().join(format!("sp-l3-many-{}", std::process::id()));
    let names: Vec<String> = (0..12).map(|i| format!("qrouter-{i}")).collect();
    for n in &names {
        scene::netns_add(n);
    }
    let nats: Vec<RouterNat> = (0..12)
        .map(|i| RouterNat {
            gateway_device: format!("qg-{i}"),
            gateway_ip: Some(format!("10.0.1.{}", i + 1).parse().unwrap()),
            enable_snat: true,
            floating_ips: vec![],
        })
        .collect();
    let mut routers: Vec<(&str, &RouterNat)> =
        names.iter().map(String::as_str).zip(&nats).collect();
    routers.insert(5, ("qrouter-missing", &nats[0]));
    let mut changes = vec![];
    let err = sp_l3::ensure_nat_each(&state, &routers, &mut changes).unwrap_err();
    assert!(err.to_string().contains("qrouter-missing"), "{err}");
    assert_eq!(changes.len(), 12, "every other router loaded: {changes:?}");
    for (i, n) in names.iter().enumerate() {
        let saved = require::run(Command::new("ip").args([
            "netns",
            "exec",
            n,
            "iptables-save",
            "-t",
            "nat",
        ]));
        let rule = format!(
            "-A neutron-l3-agent-snat -o qg-{i} -j SNAT --to-source 10.0.1.{}",
            i + 1
        );
        assert!(
            saved.lines().any(|l| l == rule),
            "{n}: {rule:?} not in\n{saved}"
        );
    }
    // Only the missing one is tried again.
    routers.remove(5);
    let mut again = vec![];
    sp_l3::ensure_nat_each(&state, &routers, &mut again).unwrap();
    assert!(again.is_empty(), "{again:?}");
    let _ = std::fs::remove_dir_all(&state);
}
