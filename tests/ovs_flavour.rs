//! The packstack notes' flavour of the external side: with `external_network_bridge =
//! br-ex` in l3_agent.ini, the controller's uplink eth0 is a port of the Open vSwitch
//! bridge br-ex with its address moved onto br-ex, and the router's gateway `qg-` is
//! an OVS internal port on br-ex moved into the router's namespace. A private
//! ovsdb-server + ovs-vswitchd (userspace datapath) runs on the controller node. The
//! guide's checks hold across it, a second apply changes nothing, destroy gives eth0
//! its address back and removes the bridge it made.

use serde_json::{json, Value};
use sp_testenv::nodes::{link_names, two_nodes, Cleanup, Cli};
use sp_testenv::ovs::Ovs;
use sp_testenv::{oracle, require, scene};

const QROUTER: &str = "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165";
const QG: &str = "qg-9477c16b-e5";

/// The objects a plan's actions name: Open vSwitch objects by their typed object
/// (`ovs_bridge br-ex`, `uplink eth0 on br-ex`, `ovs_port qg-… on br-ex`), the others
/// as `TYPE NAME`.
fn objects(actions: &Value) -> Vec<String> {
    let named = |o: &Value| {
        format!(
            "{} {}",
            o["type"].as_str().unwrap(),
            o["name"].as_str().or(o["nic"].as_str()).unwrap_or("?")
        )
    };
    actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let o = &a["object"];
            match o["type"].as_str() {
                Some("ovs") => {
                    let inner = &o["object"];
                    match inner["bridge"].as_str() {
                        Some(b) => format!("{} on {b}", named(inner)),
                        None => named(inner),
                    }
                }
                _ => named(o),
            }
        })
        .collect()
}

/// `inet` addresses of `dev` in `netns`, as `ip -j addr` shows them.
fn inet(netns: &str, dev: &str) -> Vec<String> {
    oracle::inet_addrs(Some(netns), dev)
}

/// The IPv4 default route of `netns`: (gateway, device).
fn default_route(netns: &str) -> Option<(String, String)> {
    oracle::routes(Some(netns), false)
        .iter()
        .find(|r| r["dst"] == "default")
        .map(|r| {
            (
                r["gateway"].as_str().unwrap().into(),
                r["dev"].as_str().unwrap().into(),
            )
        })
}

fn via(gw: &str, dev: &str) -> Option<(String, String)> {
    Some((gw.into(), dev.into()))
}

/// The guide's two nodes with `external_network_bridge = br-ex` in the controller's
/// files and a private Open vSwitch on the controller node.
fn ovs_nodes() -> (Cli, Cleanup, Ovs) {
    let (cli, cleanup) = two_nodes();
    let ovs = Ovs::start_in(Some("controller"));
    let conf = cli.state.join("etc");
    sp_config::guide::write_guide_files(&conf).unwrap();
    let l3 = conf.join(sp_config::guide::L3_AGENT);
    let text = std::fs::read_to_string(&l3).unwrap();
    assert!(text.contains("external_network_bridge =\n"));
    std::fs::write(
        &l3,
        text.replace(
            "external_network_bridge =\n",
            "external_network_bridge = br-ex\n",
        ),
    )
    .unwrap();
    let cli = cli.with_config("controller", conf);
    // A NIC hands ovs-vswitchd's raw socket frames with complete checksums; the
    // sandbox's veth segment would hand it the other nodes' UDP (VXLAN, DHCP) with the
    // checksum left to an offload that never comes. The other hosts compute theirs.
    require::program("ethtool", "ethtool");
    for host in ["compute", "extpc"] {
        scene::ip(&["netns", "exec", host, "ethtool", "-K", "eth0", "tx", "off"]);
    }
    (cli, cleanup, ovs)
}

#[test]
fn external_network_bridge_puts_the_uplink_and_the_gateways_on_br_ex() {
    let (mut cli, _cleanup, ovs) = ovs_nodes();

    // Without Open vSwitch reachable: refused before anything is made.
    cli.extra = vec!["--ovsdb".into(), "unix:/nonexistent/db.sock".into()];
    let out = cli.on("controller", &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "needs Open vSwitch, but ovsdb-server at unix:/nonexistent/db.sock does not answer"
        ) && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(link_names("controller"), ["lo", "eth0"]);

    cli.extra = vec!["--ovsdb".into(), ovs.db()];
    let plan = objects(&cli.json("controller", &["plan"])["actions"]);
    for o in [
        "ovs_bridge br-ex",
        "uplink eth0 on br-ex",
        &format!("ovs_port {QG} on br-ex"),
        "bridge brq5b6a8b87-fd",
    ] {
        assert!(plan.iter().any(|p| p == o), "{o}: {plan:?}");
    }
    assert!(
        !plan.iter().any(|o| o.contains("brq78983ca2-77")),
        "no Linux bridge for ext-net on the controller: {plan:?}"
    );

    for node in ["controller", "compute"] {
        cli.json(node, &["apply"]);
    }

    // What Open vSwitch holds, by ovs-vsctl.
    assert_eq!(ovs.vsctl(&["list-br"]).trim(), "br-ex");
    let mut ports: Vec<String> = ovs
        .vsctl(&["list-ports", "br-ex"])
        .lines()
        .map(str::to_owned)
        .collect();
    ports.sort();
    assert_eq!(ports, ["eth0", QG]);
    let qg = ovs.row("Interface", QG).expect("qg- interface row");
    assert_eq!(qg["type"], "internal");
    assert_eq!(
        qg["external_ids"],
        json!([
            "map",
            [
                ["attached-mac", "fa:16:3e:b2:d8:f0"],
                ["iface-id", "9477c16b-e5f1-4b52-9a3c-6d1e2f3a4b5c"],
                ["iface-status", "active"]
            ]
        ]),
        "as the OVS interface driver marks it"
    );
    // What the kernel holds, by ip: the host address on br-ex, qg- in the router.
    assert_eq!(inet("controller", "br-ex"), ["10.0.0.101/24"]);
    assert!(inet("controller", "eth0").is_empty());
    assert_eq!(default_route("controller"), via("10.0.0.1", "br-ex"));
    assert!(!link_names("controller").contains(&"brq78983ca2-77".to_owned()));
    assert_eq!(inet(QROUTER, QG), ["10.0.0.200/24", "10.0.0.201/32"]);
    assert_eq!(
        oracle::link(Some(QROUTER), QG)["address"],
        "fa:16:3e:b2:d8:f0"
    );
    assert_eq!(default_route(QROUTER), via("10.0.0.1", QG));

    // The guide's checks, the external side through br-ex.
    let lease = scene::dhcp_lease(&cli.state, "vm1", "eth0");
    assert_eq!(
        (lease.ip.as_str(), lease.mtu.as_str()),
        ("192.168.0.3", "1450"),
        "vm1's lease across VXLAN, whose underlay on the controller is br-ex"
    );
    scene::ip(&["-n", "vm1", "addr", "add", "192.168.0.3/24", "dev", "eth0"]);
    scene::ip(&["-n", "vm1", "link", "set", "eth0", "mtu", "1450"]);
    scene::ip(&["-n", "vm1", "route", "add", "default", "via", "192.168.0.1"]);
    assert!(
        oracle::pings("vm1", "192.168.0.1"),
        "vm1 reaches its router"
    );
    assert!(
        oracle::pings("vm1", "10.0.0.1"),
        "vm1 reaches the external PC through SNAT on qg- on br-ex"
    );
    assert!(
        oracle::pings("extpc", "10.0.0.201"),
        "the external PC reaches vm1 on its floating IP"
    );
    assert!(
        oracle::pings("extpc", "10.0.0.101"),
        "the controller answers on br-ex"
    );

    // Converged: nothing to do, nothing changed, everything present.
    for node in ["controller", "compute"] {
        assert_eq!(cli.json(node, &["plan"])["actions"], json!([]), "{node}");
        assert_eq!(cli.json(node, &["apply"])["done"], 0, "{node}");
    }
    let status_json = cli.json("controller", &["status"]);
    assert_eq!(
        status_json["problems"],
        json!([]),
        "netns-inspect finds nothing wrong"
    );
    assert_eq!(status_json["converged"], true, "{status_json}");
    assert_eq!(status_json["differences"], json!([]));

    for node in ["compute", "controller"] {
        cli.json(node, &["destroy", "--purge"]);
    }
    assert_eq!(
        ovs.vsctl(&["list-br"]).trim(),
        "",
        "the br-ex it made is gone"
    );
    assert_eq!(
        inet("controller", "eth0"),
        ["10.0.0.101/24"],
        "address back"
    );
    assert_eq!(default_route("controller"), via("10.0.0.1", "eth0"));
    let mut left = oracle::netns_list();
    left.sort();
    assert_eq!(left, ["compute", "controller", "extpc"]);
    assert_eq!(link_names("compute"), ["lo", "eth0"]);
    let mut links = link_names("controller");
    // ovs-vswitchd's own datapath device lives as long as it runs.
    links.retain(|l| l != "ovs-netdev");
    assert_eq!(links, ["lo", "eth0"]);
}

/// What the controller holds on both sides, as ovs-vsctl and ip report it.
fn fingerprint(ovs: &Ovs) -> Vec<String> {
    let mut out = vec![format!("bridges {}", ovs.vsctl(&["list-br"]).trim())];
    for i in ovs.list("Interface") {
        out.push(format!(
            "interface {} {} {}",
            i["name"], i["type"], i["external_ids"]
        ));
    }
    for ns in ["controller", QROUTER] {
        for (dev, a) in oracle::global_addrs(Some(ns)) {
            out.push(format!("{ns} addr {dev} {a}"));
        }
        out.push(format!("{ns} default {:?}", default_route(ns)));
    }
    let mut links = link_names("controller");
    links.retain(|l| l != "ovs-netdev");
    out.push(format!("links {links:?}"));
    out.push(format!("router links {:?}", link_names(QROUTER)));
    out.sort();
    out
}

#[test]
fn an_apply_killed_at_any_moment_converges_on_br_ex_too() {
    let (cli, _cleanup, ovs) = ovs_nodes();
    let mut cli = cli;
    cli.extra = vec!["--ovsdb".into(), ovs.db()];
    // The volume group's files are made by the first apply and kept by destroy: the
    // clean run that sets the kill moments is the second.
    cli.json("controller", &["apply"]);
    cli.json("controller", &["destroy"]);
    // The clean apply, counted in completed actions: the kill moments.
    let (code, lines) = cli.json_lines("controller", &["apply"]);
    assert_eq!(code, Some(0), "clean apply: {lines:?}");
    let all = lines.iter().filter(|l| l["event"] == "done").count();
    let reference = fingerprint(&ovs);
    cli.json("controller", &["destroy"]);
    // Rounds whose kill left work for the next apply.
    let mut interrupted = 0;
    for round in 0..8 {
        // After 0, 1/8, … 7/8 of its actions.
        let after = round * all / 8;
        let printed = cli.kill_apply_after("controller", after);
        let moment = format!("action {after} of {all} ({} lines printed)", printed.len());
        let out = cli.on("controller", &["--json", "apply"]);
        assert!(
            out.status.success(),
            "round {round}: apply after a kill at {moment}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let finished: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(finished["left"], json!([]), "round {round}: converged");
        if finished["done"].as_u64().unwrap() > 0 {
            interrupted += 1;
        }
        let now = fingerprint(&ovs);
        let extra: Vec<&String> = now.iter().filter(|l| !reference.contains(l)).collect();
        let missing: Vec<&String> = reference.iter().filter(|l| !now.contains(l)).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "round {round}: killed at {moment}\nextra: {extra:#?}\nmissing: {missing:#?}"
        );
        cli.json("controller", &["destroy"]);
    }
    assert!(
        interrupted >= 6,
        "only {interrupted} of 8 kills interrupted an apply"
    );
    cli.json("controller", &["destroy", "--purge"]);
    assert_eq!(ovs.vsctl(&["list-br"]).trim(), "");
    assert_eq!(inet("controller", "eth0"), ["10.0.0.101/24"]);
    assert_eq!(default_route("controller"), via("10.0.0.1", "eth0"));
}
