//! sp-ovs against a real ovsdb-server + ovs-vswitchd (userspace datapath), each test in
//! its own sandbox; `ovs-vsctl` reads back what we wrote.

use std::time::Duration;

use serde_json::{json, Value};
use sp_ovs::{BridgeSpec, Change, Error, Ovs, PatchSpec, PortSpec};
use sp_testenv::ovs::Ovs as Daemons;
use sp_testenv::{require, sandbox, scene};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A sandbox with a private OVS pair, a runtime and a connected client.
fn setup() -> (Daemons, tokio::runtime::Runtime, Ovs) {
    sandbox::enter();
    let daemons = Daemons::start();
    let rt = runtime();
    let ovs = rt
        .block_on(Ovs::connect(
            &daemons.db().parse().unwrap(),
            Duration::from_secs(10),
            true,
        ))
        .expect("connect");
    (daemons, rt, ovs)
}

fn netdev() -> BridgeSpec {
    BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    }
}

/// The message of an operation that must fail.
fn err<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    r.unwrap_err().to_string()
}

/// `["map", [[k, v], …]]` as a JSON object.
fn map(v: &Value) -> Value {
    let pairs = v[1].as_array().expect("map");
    Value::Object(
        pairs
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].clone()))
            .collect(),
    )
}

#[test]
fn add_br_netdev_is_applied_and_may_exist_is_idempotent() {
    let (d, rt, ovs) = setup();
    assert_eq!(
        rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap(),
        Change::Created
    );

    let br = d.row("Bridge", "br-ex").expect("Bridge br-ex");
    assert_eq!(br["datapath_type"], "netdev");
    let iface = d.row("Interface", "br-ex").expect("Interface br-ex");
    assert_eq!(iface["type"], "internal");
    // Waited for ovs-vswitchd: the local port has its OpenFlow number and no error.
    assert_eq!(iface["ofport"], 65534);
    assert_eq!(iface["error"], json!(["set", []]));
    // The userspace datapath made the device in this sandbox.
    scene::ip(&["link", "show", "br-ex"]);

    let again = BridgeSpec {
        may_exist: true,
        ..netdev()
    };
    assert_eq!(
        rt.block_on(ovs.add_br("br-ex", &again)).unwrap(),
        Change::Unchanged
    );
    let e = rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap_err();
    assert!(matches!(e, Error::BridgeExists(_)), "{e}");
    assert_eq!(d.vsctl(&["list-br"]), "br-ex\n");

    assert_eq!(
        rt.block_on(ovs.del_br("br-ex", false)).unwrap(),
        Change::Deleted
    );
    assert_eq!(d.vsctl(&["list-br"]), "");
    assert!(d.list("Port").is_empty() && d.list("Interface").is_empty());
    assert_eq!(
        rt.block_on(ovs.del_br("br-ex", true)).unwrap(),
        Change::Unchanged
    );
    let e = rt.block_on(ovs.del_br("br-ex", false)).unwrap_err();
    assert_eq!(e.to_string(), "no bridge named br-ex");
}

#[test]
fn internal_neutron_port_add_and_delete() {
    let (d, rt, ovs) = setup();
    rt.block_on(ovs.add_br("br-int", &netdev())).unwrap();
    let spec = PortSpec {
        tag: Some(1),
        ..PortSpec::new("qr-610bdae7-c1", "internal")
            .neutron("610bdae7-c1aa-4a7e-9d0e-1d2f3a4b5c6d", "fa:16:3e:a7:24:00")
    };
    assert_eq!(
        rt.block_on(ovs.add_port("br-int", &spec)).unwrap(),
        Change::Created
    );

    let port = d.row("Port", "qr-610bdae7-c1").expect("Port");
    assert_eq!(port["tag"], 1);
    let iface = d.row("Interface", "qr-610bdae7-c1").expect("Interface");
    assert_eq!(iface["type"], "internal");
    assert_eq!(
        map(&iface["external_ids"]),
        json!({"attached-mac": "fa:16:3e:a7:24:00", "iface-id": "610bdae7-c1aa-4a7e-9d0e-1d2f3a4b5c6d", "iface-status": "active"})
    );
    assert!(iface["ofport"].as_i64().unwrap() > 0, "{iface:?}");
    assert_eq!(d.vsctl(&["list-ports", "br-int"]), "qr-610bdae7-c1\n");
    assert_eq!(
        rt.block_on(ovs.list_ports("br-int")).unwrap(),
        vec!["qr-610bdae7-c1"]
    );

    // --may-exist twice: nothing changes.
    let again = PortSpec {
        may_exist: true,
        ..spec.clone()
    };
    assert_eq!(
        rt.block_on(ovs.add_port("br-int", &again)).unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        rt.block_on(ovs.add_port("br-int", &again)).unwrap(),
        Change::Unchanged
    );
    let e = rt.block_on(ovs.add_port("br-int", &spec)).unwrap_err();
    assert!(
        e.to_string().contains("already exists on bridge br-int"),
        "{e}"
    );
    assert_eq!(d.list("Port").len(), 2);

    assert_eq!(
        rt.block_on(ovs.del_port(Some("br-int"), "qr-610bdae7-c1", false))
            .unwrap(),
        Change::Deleted
    );
    assert_eq!(d.vsctl(&["list-ports", "br-int"]), "");
    assert!(d.row("Interface", "qr-610bdae7-c1").is_none());
    assert_eq!(
        rt.block_on(ovs.del_port(None, "qr-610bdae7-c1", true))
            .unwrap(),
        Change::Unchanged
    );
    let e = rt
        .block_on(ovs.del_port(Some("br-int"), "qr-610bdae7-c1", false))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no port named qr-610bdae7-c1 on bridge br-int"
    );
    let e = rt
        .block_on(ovs.del_port(None, "br-int", false))
        .unwrap_err();
    assert!(matches!(e, Error::LocalPort(_)), "{e}");
}

#[test]
fn port_on_another_bridge_is_refused_unless_moved() {
    let (d, rt, ovs) = setup();
    for br in ["br-ex", "br-int"] {
        rt.block_on(ovs.add_br(br, &netdev())).unwrap();
    }
    let spec = PortSpec::new("qg-48cdaf68-67", "internal");
    rt.block_on(ovs.add_port("br-ex", &spec)).unwrap();
    for may_exist in [false, true] {
        let s = PortSpec {
            may_exist,
            ..spec.clone()
        };
        let e = rt.block_on(ovs.add_port("br-int", &s)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot add port qg-48cdaf68-67 to bridge br-int: it is already on bridge br-ex \
             (--move moves it, in one transaction)"
        );
    }
    let e = rt
        .block_on(ovs.del_port(Some("br-int"), "qg-48cdaf68-67", false))
        .unwrap_err();
    assert!(matches!(e, Error::PortNotOnBridge { .. }), "{e}");
    assert_eq!(d.vsctl(&["port-to-br", "qg-48cdaf68-67"]), "br-ex\n");

    let moving = PortSpec {
        move_from_other_bridge: true,
        ..spec
    };
    assert_eq!(
        rt.block_on(ovs.add_port("br-int", &moving)).unwrap(),
        Change::Moved {
            from: "br-ex".into()
        }
    );
    assert_eq!(d.vsctl(&["port-to-br", "qg-48cdaf68-67"]), "br-int\n");
    assert_eq!(d.vsctl(&["list-ports", "br-ex"]), "");
}

#[test]
fn two_clients_racing_for_one_port_name_create_it_once() {
    let (d, rt, ovs) = setup();
    rt.block_on(ovs.add_br("br-int", &netdev())).unwrap();
    let other = rt
        .block_on(Ovs::connect(
            &d.db().parse().unwrap(),
            Duration::from_secs(10),
            true,
        ))
        .unwrap();
    for round in 0..5 {
        let name = format!("tap{round}");
        let spec = PortSpec::new(&name, "internal");
        let (a, b) = rt.block_on(async {
            tokio::join!(
                ovs.add_port("br-int", &spec),
                other.add_port("br-int", &spec)
            )
        });
        let created = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Ok(Change::Created)))
            .count();
        assert_eq!(created, 1, "round {round}: {a:?} {b:?}");
        for r in [a, b] {
            match r {
                Ok(Change::Created) | Err(Error::Raced { .. }) | Err(Error::PortExists { .. }) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(
            d.list("Port")
                .iter()
                .filter(|p| p["name"] == name.as_str())
                .count(),
            1
        );
    }
}

#[test]
fn names_are_checked_before_anything_is_sent() {
    let (d, rt, ovs) = setup();
    rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap();
    let e = err(rt.block_on(ovs.add_port("br-ex", &PortSpec::new("qg-48cdaf68-67ab", "internal"))));
    assert_eq!(
        e,
        "invalid name \"qg-48cdaf68-67ab\": longer than 15 bytes (the kernel's IFNAMSIZ limit)"
    );
    let e = err(rt.block_on(ovs.add_br("br/ex", &netdev())));
    assert!(e.contains("'/'"), "{e}");
    assert_eq!(d.list("Port").len(), 1);
    let e = err(rt.block_on(ovs.add_port("br-nope", &PortSpec::new("tap1", "internal"))));
    assert_eq!(e, "no bridge named br-nope");
}

#[test]
fn a_missing_device_is_reported_from_the_interface_error_column() {
    let (d, rt, ovs) = setup();
    rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap();
    let e = err(rt.block_on(ovs.add_port("br-ex", &PortSpec::new("eno1", ""))));
    assert_eq!(
        e,
        "error detected while setting up eno1: could not open network device eno1 \
         (No such device) (see the ovs-vswitchd log)"
    );
    // Like ovs-vsctl, the row stays: the database holds what was asked.
    assert!(d.row("Interface", "eno1").is_some());
}

#[test]
fn patch_pair_and_show_match_ovs_vsctl() {
    let (d, rt, ovs) = setup();
    let secure = BridgeSpec {
        fail_mode: Some("secure".into()),
        ..netdev()
    };
    for (br, spec) in [
        ("br-tun", &secure),
        ("br-ex", &netdev()),
        ("br-int", &secure),
    ] {
        rt.block_on(ovs.add_br(br, spec)).unwrap();
    }
    let patch = PatchSpec {
        bridge: "br-int".into(),
        port: "patch-tun".into(),
        peer_bridge: "br-tun".into(),
        peer_port: "patch-int".into(),
        may_exist: false,
    };
    assert_eq!(
        rt.block_on(ovs.add_patch(&patch)).unwrap(),
        [Change::Created, Change::Created]
    );
    let again = PatchSpec {
        may_exist: true,
        ..patch
    };
    assert_eq!(
        rt.block_on(ovs.add_patch(&again)).unwrap(),
        [Change::Unchanged, Change::Unchanged]
    );
    for (name, peer) in [("patch-tun", "patch-int"), ("patch-int", "patch-tun")] {
        let i = d.row("Interface", name).expect("patch interface");
        assert_eq!(i["type"], "patch");
        assert_eq!(map(&i["options"]), json!({ "peer": peer }));
    }
    for (br, port, tag) in [
        ("br-ex", "qg-48cdaf68-67", None),
        ("br-int", "qr-610bdae7-c1", Some(1)),
        ("br-int", "tap754104f3-90", Some(3)),
    ] {
        let spec = PortSpec {
            tag,
            ..PortSpec::new(port, "internal")
        };
        rt.block_on(ovs.add_port(br, &spec)).unwrap();
    }
    d.vsctl(&["set", "Open_vSwitch", ".", "ovs_version=3.1.0"]);
    d.vsctl(&["set", "Port", "tap754104f3-90", "trunks=1,2"]);
    // What the Neutron agent sets (ovs-vswitchd only listens/dials inside the sandbox).
    d.vsctl(&["set-manager", "ptcp:6640:127.0.0.1"]);
    d.vsctl(&["set-controller", "br-int", "tcp:127.0.0.1:6633"]);

    let show = rt.block_on(ovs.show()).unwrap();
    assert_eq!(show.to_string(), d.vsctl(&["show"]));
    assert_eq!(show.bridges.len(), 3);
    assert_eq!(
        rt.block_on(ovs.list_br()).unwrap(),
        vec!["br-ex", "br-int", "br-tun"]
    );
    let json = serde_json::to_value(&show).unwrap();
    let br_int = json["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "br-int")
        .unwrap();
    assert_eq!(br_int["fail_mode"], "secure");
    assert_eq!(br_int["controllers"][0]["target"], "tcp:127.0.0.1:6633");
    assert_eq!(json["managers"][0]["target"], "ptcp:6640:127.0.0.1");
    assert_eq!(br_int["datapath_type"], "netdev");
    let tap = br_int["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tap754104f3-90")
        .unwrap();
    assert_eq!(tap["tag"], 3);
    assert_eq!(tap["trunks"], json!([1, 2]));
    assert_eq!(tap["interfaces"][0]["type"], "internal");
}

#[test]
fn without_ovs_vswitchd_the_wait_times_out_clearly() {
    sandbox::enter();
    let d = Daemons::start_db_only();
    let rt = runtime();
    let db = d.db().parse().unwrap();
    let ovs = rt
        .block_on(Ovs::connect(&db, Duration::from_millis(700), true))
        .unwrap();
    let e = rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap_err();
    assert!(matches!(e, Error::WaitTimeout { .. }), "{e}");
    assert!(e.to_string().contains("is ovs-vswitchd running?"), "{e}");
    // The database holds the bridge all the same, as with ovs-vsctl.
    assert!(d.row("Bridge", "br-ex").is_some());

    // --no-wait does not wait.
    let no_wait = rt
        .block_on(Ovs::connect(&db, Duration::from_millis(700), false))
        .unwrap();
    assert_eq!(
        rt.block_on(no_wait.add_br("br-int", &netdev())).unwrap(),
        Change::Created
    );
}

#[test]
fn a_missing_socket_is_named() {
    sandbox::enter();
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("sp-ovs-nosock-{}", std::process::id()));
    let sock = dir.join("db.sock");
    let db = format!("unix:{}", sock.display()).parse().unwrap();
    let connect_error = || {
        rt.block_on(Ovs::connect(&db, Duration::from_secs(1), true))
            .err()
            .expect("no server may answer")
            .to_string()
    };
    let e = connect_error();
    assert!(e.contains(&sock.display().to_string()), "{e}");
    assert!(e.contains("does not exist"), "{e}");

    // A socket file nobody listens on (a crashed ovsdb-server leaves one).
    std::fs::create_dir_all(&dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let e = connect_error();
    assert!(e.contains("connection refused"), "{e}");
    assert!(e.contains(&sock.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn packets_cross_a_netdev_bridge_between_two_veths() {
    let (_d, rt, ovs) = setup();
    require::program("ping", "iputils-ping");
    rt.block_on(ovs.add_br("br-ex", &netdev())).unwrap();
    for (i, ns) in [(1, "left"), (2, "right")] {
        scene::netns_add(ns);
        let host = format!("veth{i}");
        scene::ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        scene::ip(&["link", "set", &host, "up"]);
        scene::ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.50.14.{i}/24"),
            "dev",
            "eth0",
        ]);
        scene::ip(&["-n", ns, "link", "set", "eth0", "up"]);
        rt.block_on(ovs.add_port("br-ex", &PortSpec::new(&host, "")))
            .unwrap();
    }
    scene::ip(&["link", "set", "br-ex", "up"]);
    require::run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        "left",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "10.50.14.2",
    ]));
}
