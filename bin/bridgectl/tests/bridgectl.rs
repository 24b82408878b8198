//! bridgectl against iproute2's view: devices, options, FDB and neighbour entries,
//! namespaces, idempotency, packets across VXLAN, teardown, bad input.

use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::scene::{self, ip};
use sp_testenv::{oracle, require, sandbox};

const NET: &str = "5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const BR: &str = "brq5b6a8b87-fd";
const QROUTER: &str = "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165";
const QDHCP: &str = "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const QR_PORT: &str = "7337070d-45e1-4a2b-9c3d-1234567890ab";
const DHCP_PORT: &str = "b5cfa271-71aa-4bbb-8ccc-1234567890ab";

fn bridgectl_in(netns: Option<&str>, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_bridgectl");
    // nsenter switches the network namespace only: namespaces bridgectl creates stay
    // visible here (`ip netns exec` would run it in a slave mount namespace).
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args).output().expect("run bridgectl")
}

/// Runs bridgectl --json and returns the changes it reports.
fn changes_in(netns: Option<&str>, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = bridgectl_in(netns, &all);
    assert!(
        out.status.success(),
        "bridgectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], 2, "{v}");
    let changes = v["changes"].as_array().unwrap().clone();
    changes.iter().for_each(sp_testenv::assert_typed_change);
    changes
}

fn changes(args: &[&str]) -> Vec<Value> {
    changes_in(None, args)
}

/// Fails: 1, or 2 for input refused before any change (docs/exit-codes.md).
fn fails(args: &[&str]) -> String {
    let out = bridgectl_in(None, args);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "bridgectl {args:?} should fail: {out:?}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A veth playing the host NIC `eth0` with `addr`, its other end up.
fn fake_nic(name: &str, addr: &str) {
    ip(&[
        "link",
        "add",
        name,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{name}p"),
    ]);
    ip(&["link", "set", &format!("{name}p"), "up"]);
    ip(&["addr", "add", addr, "dev", name]);
    ip(&["link", "set", name, "up"]);
}

/// A sandbox with `eth0` (10.0.0.101/24) and `nicnoaddr`, a NIC without an address (an
/// uplink that cannot be moved).
fn nics() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    ip(&[
        "link",
        "add",
        "nicnoaddr",
        "type",
        "veth",
        "peer",
        "name",
        "nicnoaddrp",
    ]);
}

fn tenant_network() -> Vec<Value> {
    changes(&[
        "ensure-network",
        NET,
        "--vni",
        "1",
        "--local-ip",
        "10.0.0.101",
        "--l2-population",
    ])
}

/// `plug` of NET's `port` of `kind` into `namespace`, then `more`.
fn plug<'a>(port: &'a str, kind: &'a str, namespace: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let plug = ["plug", NET, port, "--kind", kind, "--namespace", namespace];
    [&plug[..], more].concat()
}

/// `plug` of the router's port into QROUTER, then `more`.
fn plug_router<'a>(more: &[&'a str]) -> Vec<&'a str> {
    plug(QR_PORT, "router-internal", QROUTER, more)
}

/// `plug` of the DHCP port with 192.168.0.2/24, then `more`.
fn plug_dhcp<'a>(more: &[&'a str]) -> Vec<&'a str> {
    plug(
        DHCP_PORT,
        "dhcp",
        QDHCP,
        &[&["--address", "192.168.0.2/24"][..], more].concat(),
    )
}

fn link_names(netns: Option<&str>) -> Vec<String> {
    oracle::links(netns)
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn network_is_made_like_the_agent_makes_it() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    let first = tenant_network();
    assert!(!first.is_empty());

    let br = oracle::link(None, BR);
    let info = &br["linkinfo"];
    assert_eq!(info["info_kind"], "bridge");
    assert_eq!(info["info_data"]["forward_delay"], 0);
    assert_eq!(info["info_data"]["stp_state"], 0);
    assert_eq!(br["operstate"], "UP");
    assert_eq!(
        oracle::net_sysctl(None, &format!("ipv6/conf/{BR}/disable_ipv6")),
        "1"
    );

    let vx = oracle::link(None, "vxlan-1");
    let data = &vx["linkinfo"]["info_data"];
    assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(data["id"], 1);
    assert_eq!(
        data["port"], 8472,
        "kernel default port, as the Liberty agent leaves it"
    );
    assert_eq!(data["proxy"], true);
    assert_eq!(data["learning"], true);
    assert_eq!(data["link"], "eth0");
    assert!(data.get("group").is_none() && data.get("local").is_none());
    assert_eq!(vx["master"], BR);
    assert_eq!(vx["mtu"], 1450);
    assert_eq!(
        vx["inet6_addr_gen_mode"], "none",
        "host-side ports get no link-local"
    );
    assert!(vx["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    // Again: nothing to do.
    assert_eq!(tenant_network(), Vec::<Value>::new());
    // Multicast mode: a group, no proxy.
    changes(&[
        "ensure-network",
        "11111111-2222-4333-8444-555555555555",
        "--vni",
        "7",
        "--local-ip",
        "10.0.0.101",
        "--group",
        "239.1.1.7",
    ]);
    let mc = oracle::link(None, "vxlan-7");
    assert_eq!(mc["linkinfo"]["info_data"]["group"], "239.1.1.7");
    assert_eq!(mc["linkinfo"]["info_data"]["proxy"], Value::Null);
    // A changed option recreates the device.
    let again = changes(&[
        "ensure-network",
        "11111111-2222-4333-8444-555555555555",
        "--vni",
        "7",
        "--local-ip",
        "10.0.0.101",
        "--l2-population",
    ]);
    assert!(again
        .iter()
        .any(|c| c["action"].as_str().unwrap().starts_with("recreated")));
    assert_eq!(
        oracle::link(None, "vxlan-7")["linkinfo"]["info_data"]["proxy"],
        true
    );
}

#[test]
fn ports_are_born_in_their_namespaces() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    tenant_network();
    let router = plug_router(&[
        "--mac",
        "fa:16:3e:a7:24:00",
        "--address",
        "192.168.0.1/24",
        "--ip-forward",
    ]);
    let dhcp = plug_dhcp(&[
        "--mac",
        "fa:16:3e:90:58:fa",
        "--address",
        "169.254.169.254/16",
        "--gateway",
        "192.168.0.1",
    ]);
    assert!(!changes(&router).is_empty());
    assert!(!changes(&dhcp).is_empty());

    let mut listed = oracle::netns_list();
    listed.sort();
    assert_eq!(listed, [QDHCP, QROUTER]);

    // Host ends: tap + port id[:11], on the bridge, at the VXLAN MTU, up.
    for tap in ["tap7337070d-45", "tapb5cfa271-71"] {
        let l = oracle::link(None, tap);
        assert_eq!(l["linkinfo"]["info_kind"], "veth");
        assert_eq!(l["master"], BR);
        assert_eq!(l["mtu"], 1450);
        assert_eq!(l["operstate"], "UP");
        assert_eq!(l["inet6_addr_gen_mode"], "none");
        // Made with one queue each way (not a queue per CPU cut down to one).
        assert_eq!(
            (&l["num_tx_queues"], &l["num_rx_queues"]),
            (&1.into(), &1.into())
        );
    }
    // Namespace ends: prefix + port id[:11], MAC, MTU, addresses with broadcast.
    let qr = oracle::link(Some(QROUTER), "qr-7337070d-45");
    assert_eq!(qr["address"], "fa:16:3e:a7:24:00");
    assert_eq!(qr["mtu"], 1450);
    assert_eq!(
        (&qr["num_tx_queues"], &qr["num_rx_queues"]),
        (&1.into(), &1.into())
    );
    let addrs = oracle::addrs(Some(QROUTER));
    let qr_addr = addrs
        .iter()
        .find(|l| l["ifname"] == "qr-7337070d-45")
        .unwrap();
    let v4: Vec<&Value> = qr_addr["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(v4.len(), 1);
    assert_eq!(v4[0]["local"], "192.168.0.1");
    assert_eq!(v4[0]["prefixlen"], 24);
    assert_eq!(v4[0]["broadcast"], "192.168.0.255");
    assert_eq!(v4[0]["scope"], "global");
    assert_eq!(oracle::net_sysctl(Some(QROUTER), "ipv4/ip_forward"), "1");
    assert_eq!(
        oracle::net_sysctl(Some(QROUTER), "ipv4/conf/all/promote_secondaries"),
        "1"
    );
    assert_eq!(oracle::net_sysctl(Some(QDHCP), "ipv4/ip_forward"), "0");
    let lo = oracle::link(Some(QDHCP), "lo");
    assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let routes = oracle::routes(Some(QDHCP), false);
    let default = routes
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("default route");
    assert_eq!(default["gateway"], "192.168.0.1");
    assert_eq!(default["dev"], "ns-b5cfa271-71");
    let dhcp_addrs: Vec<String> = oracle::addrs(Some(QDHCP))
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .filter(|a| a["family"] == "inet" && a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(dhcp_addrs, ["192.168.0.2/24", "169.254.169.254/16"]);
    // The peer was created in place: its index is the namespace's first after lo.
    assert_eq!(qr["ifindex"], 2);

    // Idempotent.
    assert_eq!(changes(&router), Vec::<Value>::new());
    assert_eq!(changes(&dhcp), Vec::<Value>::new());
    // Converges: a changed address list replaces the old address.
    let moved = changes(&plug_router(&[
        "--mac",
        "fa:16:3e:a7:24:00",
        "--address",
        "192.168.0.254/24",
        "--ip-forward",
    ]));
    assert_eq!(moved.len(), 2, "{moved:?}");

    // Unplug deletes both ends; deleting the network takes bridge, vxlan, taps, qdhcp.
    changes(&["unplug", QR_PORT]);
    assert!(!link_names(None).contains(&"tap7337070d-45".to_owned()));
    assert_eq!(link_names(Some(QROUTER)), ["lo"]);
    changes(&["delete-network", NET]);
    let left = link_names(None);
    for gone in [BR, "vxlan-1", "tapb5cfa271-71"] {
        assert!(!left.contains(&gone.to_owned()), "{gone} left: {left:?}");
    }
    assert_eq!(oracle::netns_list(), [QROUTER]);
    changes(&["delete-namespace", QROUTER]);
    assert!(oracle::netns_list().is_empty());
    assert_eq!(changes(&["delete-network", NET]), Vec::<Value>::new());
}

#[test]
fn l2population_entries_read_back() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    tenant_network();
    changes(&["fdb", "add", "--vni", "1", "--vtep", "10.0.0.102"]);
    changes(&["fdb", "add", "--vni", "1", "--vtep", "10.0.0.103"]);
    assert_eq!(
        changes(&["fdb", "add", "--vni", "1", "--vtep", "10.0.0.103"]),
        Vec::<Value>::new()
    );
    changes(&[
        "l2pop",
        "add",
        "--vni",
        "1",
        "--vtep",
        "10.0.0.102",
        "--mac",
        "fa:16:3e:00:00:05",
        "--ip",
        "192.168.0.5",
    ]);
    let fdb = |mac: &str| -> Vec<String> {
        oracle::fdb(None, "vxlan-1")
            .iter()
            .filter(|e| e["mac"] == mac)
            .map(|e| {
                assert_eq!(e["state"], "permanent");
                assert!(e["flags"].as_array().unwrap().iter().any(|f| f == "self"));
                e["dst"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let mut flood = fdb("00:00:00:00:00:00");
    flood.sort();
    assert_eq!(
        flood,
        ["10.0.0.102", "10.0.0.103"],
        "both flood entries appended"
    );
    assert_eq!(fdb("fa:16:3e:00:00:05"), ["10.0.0.102"]);
    let neigh = oracle::neighbours(None, "vxlan-1");
    assert_eq!(neigh.len(), 1);
    assert_eq!(neigh[0]["dst"], "192.168.0.5");
    assert_eq!(neigh[0]["lladdr"], "fa:16:3e:00:00:05");
    assert_eq!(neigh[0]["state"], Value::Array(vec!["PERMANENT".into()]));

    // The port moves to another VTEP: replaced, not added.
    changes(&[
        "l2pop",
        "add",
        "--vni",
        "1",
        "--vtep",
        "10.0.0.103",
        "--mac",
        "fa:16:3e:00:00:05",
        "--ip",
        "192.168.0.5",
    ]);
    assert_eq!(fdb("fa:16:3e:00:00:05"), ["10.0.0.103"]);

    changes(&[
        "l2pop",
        "del",
        "--vni",
        "1",
        "--vtep",
        "10.0.0.103",
        "--mac",
        "fa:16:3e:00:00:05",
        "--ip",
        "192.168.0.5",
    ]);
    changes(&["fdb", "del", "--vni", "1", "--vtep", "10.0.0.102"]);
    assert!(fdb("fa:16:3e:00:00:05").is_empty());
    assert_eq!(fdb("00:00:00:00:00:00"), ["10.0.0.103"]);
    assert!(oracle::neighbours(None, "vxlan-1").is_empty());
    // Separate neighbour entries.
    changes(&[
        "neigh",
        "add",
        "--vni",
        "1",
        "--ip",
        "192.168.0.9",
        "--mac",
        "fa:16:3e:00:00:09",
    ]);
    assert_eq!(oracle::neighbours(None, "vxlan-1")[0]["dst"], "192.168.0.9");
    changes(&["neigh", "del", "--vni", "1", "--ip", "192.168.0.9"]);
    assert!(oracle::neighbours(None, "vxlan-1").is_empty());
}

/// What Neutron's agents write through iproute2 — `bridge fdb append/replace` (NUD 0xc0,
/// `permanent|noarp`) and `ip neigh replace … nud permanent` — `bridgectl show` reads
/// whole: the VXLAN `local`, learning, each FDB entry permanent with its flags, the
/// permanent neighbours; JSON and text agree with `bridge -j fdb` and `ip -j neigh`.
#[test]
fn show_reads_the_agents_entries_whole() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    tenant_network();
    // The device as the 2024.2 agent makes it: with `local` (ours leaves it out).
    ip(&["link", "del", "vxlan-1"]);
    ip(&[
        "link",
        "add",
        "vxlan-1",
        "type",
        "vxlan",
        "id",
        "1",
        "local",
        "10.0.0.101",
        "dev",
        "eth0",
        "dstport",
        "8472",
        "proxy",
    ]);
    ip(&["link", "set", "vxlan-1", "master", BR, "up"]);
    ip(&[
        "neigh",
        "replace",
        "192.168.0.5",
        "lladdr",
        "fa:16:3e:00:00:05",
        "dev",
        "vxlan-1",
        "nud",
        "permanent",
    ]);
    let bridge = |args: &[&str]| {
        let out = Command::new("bridge")
            .args(args)
            .output()
            .expect("run bridge");
        assert!(
            out.status.success(),
            "bridge {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    bridge(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        "vxlan-1",
        "dst",
        "10.0.0.102",
    ]);
    bridge(&[
        "fdb",
        "replace",
        "fa:16:3e:00:00:05",
        "dev",
        "vxlan-1",
        "dst",
        "10.0.0.102",
    ]);
    // The oracle: iproute2's own reading of the agents' entries.
    let fdb = oracle::fdb(None, "vxlan-1");
    let agents: Vec<&Value> = fdb.iter().filter(|e| e["dst"] == "10.0.0.102").collect();
    assert_eq!(agents.len(), 2, "{fdb:?}");
    let out = bridgectl_in(None, &["--json", "show"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = view["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == BR)
        .and_then(|b| {
            b["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "vxlan-1")
        })
        .expect("vxlan-1 on the bridge")
        .clone();
    let v = &port["vxlan"];
    let link = oracle::link(None, "vxlan-1");
    let data = &link["linkinfo"]["info_data"];
    assert_eq!(v["local"], data["local"]);
    assert_eq!(v["local"], "10.0.0.101");
    assert_eq!(v["learning"], data["learning"]);
    assert_eq!(v["proxy"], data["proxy"]);
    for e in &agents {
        let ours = v["fdb"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["mac"] == e["mac"] && o["dst"] == e["dst"])
            .unwrap_or_else(|| panic!("{e} not in {v}"));
        assert_eq!(ours["permanent"], true, "{ours}");
        assert_eq!(
            e["state"], "permanent",
            "iproute2 reads it permanent too: {e}"
        );
        let mut state: Vec<&str> = ours["state"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        state.sort();
        assert_eq!(state, ["noarp", "permanent"], "0xc0 as the kernel keeps it");
        for f in e["flags"].as_array().unwrap() {
            assert!(
                ours["flags"].as_array().unwrap().contains(f),
                "{f} in {ours}"
            );
        }
    }
    let neigh = oracle::neighbours(None, "vxlan-1");
    assert_eq!(neigh.len(), 1);
    let ours = &v["neighbours"][0];
    assert_eq!(ours["ip"], neigh[0]["dst"]);
    assert_eq!(ours["mac"], neigh[0]["lladdr"]);
    assert_eq!(ours["permanent"], true);
    let text = String::from_utf8(bridgectl_in(None, &["show"]).stdout).unwrap();
    assert!(text.contains("local 10.0.0.101"), "{text}");
    assert!(
        text.contains("fdb fa:16:3e:00:00:05 dst 10.0.0.102 self noarp permanent"),
        "{text}"
    );
    assert!(
        text.contains("neigh 192.168.0.5 lladdr fa:16:3e:00:00:05 permanent"),
        "{text}"
    );
}

/// Two "nodes" (namespaces with eth0 10.0.0.101/.102 on one bridge), a VXLAN network with
/// VNI 1 on both, l2population entries only, an instance on each side.
#[test]
fn instances_ping_across_the_tunnel_until_the_fdb_entry_goes() {
    sandbox::enter();
    require::program("ping", "iputils-ping");
    scene::nodes_on_segment(&[("node1", "10.0.0.101/24"), ("node2", "10.0.0.102/24")]);
    let vms = [
        (
            "node1",
            "10.0.0.101",
            "vm-a",
            "aaaaaaaa-0000-4000-8000-000000000001",
            "fa:16:3e:00:00:0a",
            "192.168.0.10",
        ),
        (
            "node2",
            "10.0.0.102",
            "vm-b",
            "bbbbbbbb-0000-4000-8000-000000000002",
            "fa:16:3e:00:00:0b",
            "192.168.0.20",
        ),
    ];
    for (node, local, vm, port, mac, addr) in vms {
        changes_in(
            Some(node),
            &[
                "ensure-network",
                NET,
                "--vni",
                "1",
                "--local-ip",
                local,
                "--l2-population",
            ],
        );
        changes_in(
            Some(node),
            &[
                "plug",
                NET,
                port,
                "--kind",
                "instance",
                "--namespace",
                vm,
                "--mac",
                mac,
                "--address",
                &format!("{addr}/24"),
            ],
        );
    }
    // Each node learns of the other's VTEP and port from l2population only.
    for ((node, _, _, _, _, _), (_, remote, _, _, mac, addr)) in
        [(vms[0], vms[1]), (vms[1], vms[0])]
    {
        changes_in(Some(node), &["fdb", "add", "--vni", "1", "--vtep", remote]);
        changes_in(
            Some(node),
            &[
                "l2pop", "add", "--vni", "1", "--vtep", remote, "--mac", mac, "--ip", addr,
            ],
        );
    }
    assert_eq!(oracle::link(Some("vm-a"), "eth0")["mtu"], 1450);
    assert!(
        oracle::pings("vm-a", "192.168.0.20"),
        "vm-a reaches vm-b across VXLAN"
    );
    assert!(oracle::pings("vm-b", "192.168.0.10"), "and back");

    // node1 forgets where vm-b is: no FDB entry, no flood entry — no path.
    changes_in(
        Some("node1"),
        &[
            "l2pop",
            "del",
            "--vni",
            "1",
            "--vtep",
            "10.0.0.102",
            "--mac",
            "fa:16:3e:00:00:0b",
            "--ip",
            "192.168.0.20",
        ],
    );
    changes_in(
        Some("node1"),
        &["fdb", "del", "--vni", "1", "--vtep", "10.0.0.102"],
    );
    ip(&["-n", "vm-a", "neigh", "flush", "dev", "eth0"]);
    assert!(
        !oracle::pings("vm-a", "192.168.0.20"),
        "no FDB entry, no packets"
    );
}

#[test]
fn bad_input_is_refused_and_nothing_is_left() {
    nics();
    let before = link_names(None);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "ensure-network",
                NET,
                "--vni",
                "0",
                "--local-ip",
                "10.0.0.101",
            ],
            "invalid VNI 0",
        ),
        (
            vec![
                "ensure-network",
                NET,
                "--vni",
                "16777216",
                "--local-ip",
                "10.0.0.101",
            ],
            "invalid VNI 16777216",
        ),
        (
            vec![
                "ensure-network",
                NET,
                "--vni",
                "5",
                "--local-ip",
                "10.9.9.9",
            ],
            "no interface holds local_ip 10.9.9.9",
        ),
        (
            vec![
                "ensure-network",
                NET,
                "--vni",
                "5",
                "--local-ip",
                "10.0.0.300",
            ],
            "invalid IP address",
        ),
        (
            vec!["attach-uplink", "a-very-long-bridge-name", "eth0"],
            "longer than 15 bytes",
        ),
        (vec!["attach-uplink", "br/x", "eth0"], "contains '/'"),
        (
            vec![
                "fdb",
                "add",
                "--vni",
                "1",
                "--vtep",
                "10.0.0.102",
                "--mac",
                "fa:16:3e:zz:00:01",
            ],
            "invalid MAC",
        ),
        (
            vec![
                "plug",
                NET,
                QR_PORT,
                "--kind",
                "dhcp",
                "--namespace",
                QDHCP,
                "--address",
                "192.168.0.2",
            ],
            "invalid address",
        ),
        (
            vec![
                "plug",
                NET,
                QR_PORT,
                "--kind",
                "dhcp",
                "--namespace",
                "../etc",
                "--address",
                "192.168.0.2/24",
            ],
            "invalid namespace name",
        ),
        (
            vec!["plug", NET, QR_PORT, "--kind", "dhcp", "--namespace", QDHCP],
            "no link named brq5b6a8b87-fd",
        ),
    ];
    for (args, want) in &cases {
        let err = fails(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(link_names(None), before, "nothing made by failed commands");
    assert!(oracle::netns_list().is_empty());

    // A bridge name taken by another kind of device.
    ip(&["link", "add", BR, "type", "veth", "peer", "name", "brqpeer"]);
    let err = fails(&["ensure-network", NET]);
    assert!(
        err.contains("brq5b6a8b87-fd exists but is a veth, not a bridge"),
        "{err}"
    );
    ip(&["link", "del", BR]);

    // Uplink problems.
    changes(&["ensure-network", "78983ca2-77e3-4cdf-9747-ae1b34addeb7"]);
    let err = fails(&["attach-uplink", "brq78983ca2-77", "eth9"]);
    assert!(err.contains("no link named eth9"), "{err}");
    let err = fails(&["attach-uplink", "brq78983ca2-77", "nicnoaddr"]);
    assert!(
        err.contains("nicnoaddr has no global address to move"),
        "{err}"
    );

    // An address already used by another port of the namespace: refused, and the
    // namespace this call would have made is not left behind.
    tenant_network();
    changes(&plug_dhcp(&[]));
    let err = fails(&[
        "plug",
        NET,
        QR_PORT,
        "--kind",
        "dhcp",
        "--namespace",
        QDHCP,
        "--address",
        "192.168.0.2/24",
    ]);
    assert!(
        err.contains("address 192.168.0.2/24 is already on ns-b5cfa271-71"),
        "{err}"
    );
    assert!(!link_names(None).contains(&"tap7337070d-45".to_owned()));
    let err = fails(&plug_router(&[
        "--gateway",
        "10.99.0.1",
        "--address",
        "192.168.0.1/24",
    ]));
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        oracle::netns_list(),
        [QDHCP],
        "the new qrouter namespace was removed"
    );
    assert!(!link_names(None).contains(&"tap7337070d-45".to_owned()));
}

#[test]
fn uplink_moves_onto_the_bridge_and_back() {
    sandbox::enter();
    require::program("ping", "iputils-ping");
    // eth0 with 10.0.0.101/24 and a default route via 10.0.0.1, played by namespace gw.
    scene::nic_with_gateway("eth0", "10.0.0.101/24", "10.0.0.1");
    let ext = "78983ca2-77e3-4cdf-9747-ae1b34addeb7";
    let br = "brq78983ca2-77";

    changes(&["ensure-network", ext, "--uplink", "eth0"]);
    let addr_of = |dev: &str| oracle::inet_addrs(None, dev);
    assert_eq!(addr_of(br), ["10.0.0.101/24"]);
    assert!(addr_of("eth0").is_empty());
    let routes = oracle::routes(None, false);
    let default: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1, "{routes:?}");
    assert_eq!(default[0]["dev"], br);
    assert_eq!(default[0]["gateway"], "10.0.0.1");
    assert_eq!(
        default[0]["metric"], 100,
        "no metric before: 100, as the agent sets"
    );
    assert_eq!(oracle::link(None, "eth0")["master"], br);
    assert!(
        oracle::pings("gw", "10.0.0.101"),
        "the gateway still reaches the host"
    );
    assert_eq!(changes(&["attach-uplink", br, "eth0"]), Vec::<Value>::new());

    changes(&["detach-uplink", br, "eth0"]);
    assert_eq!(addr_of("eth0"), ["10.0.0.101/24"]);
    assert!(addr_of(br).is_empty());
    let routes = oracle::routes(None, false);
    let default: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["dev"], "eth0");
    assert!(oracle::link(None, "eth0").get("master").is_none());
    assert!(oracle::pings("gw", "10.0.0.101"));

    // Deleting the network gives an attached uplink back and keeps it — even a veth,
    // as a NIC is in a container.
    changes(&["ensure-network", ext, "--uplink", "eth0"]);
    changes(&["delete-network", ext]);
    assert!(!link_names(None).contains(&br.to_owned()));
    assert_eq!(addr_of("eth0"), ["10.0.0.101/24"]);
    assert!(oracle::pings("gw", "10.0.0.101"));
}

/// A remote port behind an IPv6 VTEP: refused on an IPv4 VXLAN device after its
/// neighbour entry is written.
const V6_L2POP: [&str; 10] = [
    "l2pop",
    "add",
    "--vni",
    "1",
    "--vtep",
    "fd00::102",
    "--mac",
    "fa:16:3e:5d:2c:01",
    "--ip",
    "192.168.0.3",
];

/// Everything a failed command could have left, as iproute2 reads it: links (kind,
/// master, state, MTU), addresses, routes of both families, named namespaces, and the
/// FDB and neighbour entries of `vxlan-1`.
fn snapshot() -> Vec<String> {
    let mut out: Vec<String> = oracle::links(None)
        .iter()
        .map(|l| {
            format!(
                "link {} {} master={} mtu={} flags={}",
                l["ifname"], l["linkinfo"]["info_kind"], l["master"], l["mtu"], l["flags"]
            )
        })
        .collect();
    out.extend(
        oracle::global_addrs(None)
            .into_iter()
            .map(|(d, a)| format!("addr {d} {a}")),
    );
    out.extend(oracle::route_lines(None));
    out.extend(
        oracle::netns_list()
            .into_iter()
            .map(|n| format!("netns {n}")),
    );
    if link_names(None).iter().any(|n| n == "vxlan-1") {
        out.extend(
            oracle::fdb(None, "vxlan-1")
                .iter()
                .map(|e| format!("fdb {e}")),
        );
        out.extend(
            oracle::neighbours(None, "vxlan-1")
                .iter()
                .map(|e| format!("neigh {e}")),
        );
    }
    out.sort();
    out
}

/// Each subcommand that makes more than one change, failing for real after its first
/// change (the kernel refuses a later step), leaves the host exactly as it was; those
/// that make one change fail before it. The message says what failed.
#[test]
fn a_failure_after_the_first_change_leaves_nothing() {
    nics();
    let none = snapshot();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "ensure-network: the uplink NIC is missing (refused before the bridge)",
            vec!["ensure-network", NET, "--uplink", "eth9"],
            "no link named eth9",
        ),
        (
            "ensure-network: the bridge is made, then the NIC has nothing to move",
            vec!["ensure-network", NET, "--uplink", "nicnoaddr"],
            "nicnoaddr has no global address to move; rolled back",
        ),
        (
            "fdb add: no vxlan-1 yet",
            vec!["fdb", "add", "--vni", "1", "--vtep", "10.0.0.102"],
            "no link named vxlan-1",
        ),
        (
            "neigh add: no vxlan-1 yet",
            vec![
                "neigh",
                "add",
                "--vni",
                "1",
                "--ip",
                "192.168.0.3",
                "--mac",
                "fa:16:3e:5d:2c:01",
            ],
            "no link named vxlan-1",
        ),
    ];
    for (what, args, want) in &cases {
        let err = fails(args);
        assert!(err.contains(want), "{what}: {err}");
        assert_eq!(snapshot(), none, "{what}: something was left");
    }

    // VXLAN: the bridge is made, then the kernel refuses vxlan-1 because another device
    // already carries VNI 1 on the same port.
    ip(&[
        "link", "add", "vx-other", "type", "vxlan", "id", "1", "dev", "eth0", "dstport", "8472",
    ]);
    let before = snapshot();
    let err = fails(&[
        "ensure-network",
        NET,
        "--vni",
        "1",
        "--local-ip",
        "10.0.0.101",
    ]);
    assert!(
        err.contains("create vxlan-1") && err.contains("rolled back"),
        "{err}"
    );
    assert_eq!(snapshot(), before, "a bridge left after vxlan-1 failed");
    ip(&["link", "del", "vx-other"]);

    // Plug: the namespace and the veth are made, then the default route cannot be (the
    // gateway is on no subnet of the port).
    tenant_network();
    let before = snapshot();
    let err = fails(&plug_dhcp(&["--gateway", "10.9.9.9"]));
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(snapshot(), before, "plug left something");

    // l2pop add: the neighbour is written, then the FDB entry toward an IPv6 VTEP is
    // refused on an IPv4 VXLAN device: the neighbour goes again.
    let err = fails(&V6_L2POP);
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(snapshot(), before, "l2pop left its neighbour entry");
    // … and an existing neighbour of that IP comes back as it was.
    changes(&[
        "neigh",
        "add",
        "--vni",
        "1",
        "--ip",
        "192.168.0.3",
        "--mac",
        "fa:16:3e:00:00:09",
    ]);
    let with_neigh = snapshot();
    fails(&V6_L2POP);
    assert_eq!(snapshot(), with_neigh, "the old neighbour was not put back");

    // Attach: the uplink is moved step by step; a step the kernel refuses is undone
    // (every step's failure is injected in sp-bridge's uplink_rollback test). Here: the
    // bridge is not a bridge.
    let err = fails(&["attach-uplink", "vx-none", "eth0"]);
    assert!(err.contains("no link named vx-none"), "{err}");
    assert_eq!(snapshot(), with_neigh);
}

/// Every kind of change bridgectl reports is typed in JSON — the object with its
/// fields, the action a verb, a value set as `attribute` and `value` — while the text
/// output says it in the words it always did.
#[test]
fn changes_are_typed_objects_and_verbs() {
    sandbox::enter();
    fake_nic("eth0", "10.0.0.101/24");
    scene::nic_with_gateway("eth1", "10.50.14.50/24", "10.50.14.1");
    let has = |changes: &[Value], want: Value| {
        assert!(changes.contains(&want), "{want} not in {changes:#?}");
    };
    let net = tenant_network();
    has(
        &net,
        serde_json::json!({"object": {"type": "bridge", "name": BR}, "action": "created"}),
    );
    has(
        &net,
        serde_json::json!({"object": {"type": "vxlan", "name": "vxlan-1"}, "action": "created"}),
    );

    let router_with = |mac: &str, address: &str, mtu: &str| {
        changes(&plug_router(&[
            "--mac",
            mac,
            "--address",
            address,
            "--mtu",
            mtu,
            "--ip-forward",
        ]))
    };
    let qr = "qr-7337070d-45";
    let router = router_with("fa:16:3e:a7:24:00", "192.168.0.1/24", "1450");
    has(
        &router,
        serde_json::json!({"object": {"type": "namespace", "name": QROUTER}, "action": "created"}),
    );
    has(
        &router,
        serde_json::json!({"object": {"type": "namespace", "name": QROUTER}, "action": "set",
            "attribute": "ip_forward", "value": 1}),
    );
    has(
        &router,
        serde_json::json!({"object": {"type": "veth", "name": "tap7337070d-45"}, "action": "created",
            "peer": qr, "namespace": QROUTER}),
    );
    has(
        &router,
        serde_json::json!({"object": {"type": "address", "address": "192.168.0.1/24", "device": qr},
            "action": "added"}),
    );
    let again = router_with("fa:16:3e:a7:24:01", "192.168.0.254/24", "1400");
    for want in [
        serde_json::json!({"object": {"type": "link", "name": qr}, "action": "set",
            "attribute": "mac", "value": "fa:16:3e:a7:24:01"}),
        serde_json::json!({"object": {"type": "link", "name": qr}, "action": "set",
            "attribute": "mtu", "value": 1400}),
        serde_json::json!({"object": {"type": "address", "address": "192.168.0.1/24", "device": qr},
            "action": "deleted"}),
        serde_json::json!({"object": {"type": "address", "address": "192.168.0.254/24", "device": qr},
            "action": "added"}),
    ] {
        has(&again, want);
    }

    let dhcp = changes(&plug_dhcp(&["--gateway", "192.168.0.1"]));
    let ns = "ns-b5cfa271-71";
    has(
        &dhcp,
        serde_json::json!({"object": {"type": "default_route", "device": ns}, "action": "set",
            "attribute": "gateway", "value": "192.168.0.1"}),
    );
    has(
        &dhcp,
        serde_json::json!({"object": {"type": "link", "name": ns}, "action": "set",
            "attribute": "tx-checksum", "value": "off"}),
    );

    let flood = changes(&["fdb", "add", "--vni", "1", "--vtep", "10.0.0.102"]);
    assert_eq!(
        flood,
        [
            serde_json::json!({"object": {"type": "fdb", "device": "vxlan-1",
            "mac": "00:00:00:00:00:00", "dst": "10.0.0.102"}, "action": "appended"})
        ]
    );
    let neigh = ["--vni", "1", "--ip", "192.168.0.9"];
    let added = changes(
        &[
            &["neigh", "add"][..],
            &neigh,
            &["--mac", "fa:16:3e:00:00:09"],
        ]
        .concat(),
    );
    assert_eq!(
        added,
        [
            serde_json::json!({"object": {"type": "neighbour", "device": "vxlan-1", "ip": "192.168.0.9"},
            "action": "set", "attribute": "mac", "value": "fa:16:3e:00:00:09"})
        ]
    );
    // The same in words, as they always were.
    let text = |args: &[&str]| {
        let out = bridgectl_in(None, args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        text(
            &[
                &["neigh", "add"][..],
                &neigh,
                &["--mac", "fa:16:3e:00:00:0a"]
            ]
            .concat()
        ),
        "neighbour 192.168.0.9 on vxlan-1: lladdr fa:16:3e:00:00:0a\n"
    );
    assert_eq!(
        text(&[&["neigh", "del"][..], &neigh].concat()),
        "neighbour 192.168.0.9 on vxlan-1: deleted\n"
    );

    // An uplink: its address and default route moved, the NIC enslaved, then released.
    let ext = "78983ca2-77e3-4cdf-9747-ae1b34addeb7";
    let br = "brq78983ca2-77";
    let moved = |from: &str, to: &str| {
        [
            serde_json::json!({"object": {"type": "address", "address": "10.50.14.50/24"},
                "action": "moved", "from": from, "to": to}),
            serde_json::json!({"object": {"type": "route", "dst": "default", "gateway": "10.50.14.1"},
                "action": "moved", "from": from, "to": to}),
        ]
    };
    let attached = changes(&["ensure-network", ext, "--uplink", "eth1"]);
    for want in moved("eth1", br) {
        has(&attached, want);
    }
    has(
        &attached,
        serde_json::json!({"object": {"type": "link", "name": "eth1"}, "action": "set",
            "attribute": "master", "value": br}),
    );
    let detached = changes(&["detach-uplink", br, "eth1"]);
    for want in moved(br, "eth1") {
        has(&detached, want);
    }
    has(
        &detached,
        serde_json::json!({"object": {"type": "link", "name": "eth1"}, "action": "released",
            "from": br}),
    );
}
