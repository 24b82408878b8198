//! The `ovs-attach` binary against a private ovsdb-server + ovs-vswitchd, read back with
//! `ovs-vsctl`.

use std::process::{Command, Output};

use serde_json::{json, Value};
use sp_testenv::ovs::Ovs;
use sp_testenv::scene::nic_with_gateway;
use sp_testenv::{oracle, require, sandbox};

fn ovs_attach(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovs-attach"))
        .arg(format!("--db={db}"))
        .args(args)
        .output()
        .expect("run ovs-attach")
}

/// Runs ovs-attach and returns stdout, failing the test with stderr on a non-zero exit.
fn ok(db: &str, args: &[&str]) -> String {
    let out = ovs_attach(db, args);
    assert!(
        out.status.success(),
        "ovs-attach {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs ovs-attach expecting failure (1, or 2 for input refused); returns stderr.
fn fails(db: &str, args: &[&str]) -> String {
    let out = ovs_attach(db, args);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "ovs-attach {args:?} should fail: {out:?}"
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn the_notes_layout_built_with_the_cli_shows_like_ovs_vsctl() {
    sandbox::enter();
    let d = Ovs::start();
    let db = d.db();
    let out = ok(
        &db,
        &["--json", "add-br", "br-ex", "--datapath-type", "netdev"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"schema": 1, "result": "created", "bridge": "br-ex"})
    );
    assert_eq!(
        ok(
            &db,
            &[
                "add-br",
                "br-ex",
                "--datapath-type",
                "netdev",
                "--may-exist"
            ]
        ),
        "bridge br-ex: already as asked, nothing changed\n"
    );
    for br in ["br-int", "br-tun"] {
        ok(
            &db,
            &["add-br", br, "--datapath-type=netdev", "--fail-mode=secure"],
        );
    }
    ok(
        &db,
        &["add-patch", "br-int", "patch-tun", "br-tun", "patch-int"],
    );
    ok(
        &db,
        &["add-port", "br-ex", "qg-48cdaf68-67", "--type", "internal"],
    );
    ok(
        &db,
        &[
            "add-port",
            "br-int",
            "qr-709be681-e9",
            "--type=internal",
            "--tag=1",
            "--iface-id=709be681-e961-4396-a762-435dc0c5b40f",
            "--attached-mac=fa:16:3e:71:8a:c6",
        ],
    );
    assert_eq!(
        d.vsctl(&[
            "get",
            "Interface",
            "qr-709be681-e9",
            "external_ids:iface-id"
        ]),
        "\"709be681-e961-4396-a762-435dc0c5b40f\"\n"
    );
    assert_eq!(d.vsctl(&["get", "Port", "qr-709be681-e9", "tag"]), "1\n");
    assert_eq!(
        d.vsctl(&["get", "Interface", "patch-tun", "options:peer"]),
        "patch-int\n"
    );

    assert_eq!(ok(&db, &["show"]), d.vsctl(&["show"]));
    let show: Value = serde_json::from_str(&ok(&db, &["show", "--json"])).unwrap();
    assert_eq!(show["bridges"].as_array().unwrap().len(), 3);
    assert_eq!(ok(&db, &["list"]), "br-ex\nbr-int\nbr-tun\n");
    assert_eq!(
        serde_json::from_str::<Value>(&ok(&db, &["--json", "list", "br-int"])).unwrap(),
        json!({"schema": 1, "bridge": "br-int", "ports": ["patch-tun", "qr-709be681-e9"]})
    );

    ok(&db, &["del-port", "br-ex", "qg-48cdaf68-67"]);
    assert_eq!(d.vsctl(&["list-ports", "br-ex"]), "");
    assert_eq!(
        ok(&db, &["del-port", "--if-exists", "qg-48cdaf68-67"]),
        "port qg-48cdaf68-67: already as asked, nothing changed\n"
    );
    ok(&db, &["del-br", "br-tun"]);
    assert_eq!(d.vsctl(&["list-br"]), "br-ex\nbr-int\n");
}

/// `--json` on a failure: one object on stdout, its kind, the table's exit code.
fn json_error(db: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--json"];
    all.extend(args);
    sp_testenv::json_error(&ovs_attach(db, &all))
}

#[test]
fn exit_codes_and_json_errors_per_case() {
    sandbox::enter();
    let mut d = Ovs::start();
    let db = d.db();
    let missing = format!("unix:{}/nothing-here.sock", d.dir().display());
    assert_eq!(json_error(&missing, &["show"]), (1, "failure".into()));
    assert_eq!(
        json_error("ssl:1.2.3.4:6640", &["show"]),
        (2, "invalid-input".into())
    );
    assert_eq!(
        json_error(&db, &["del-br", "br-nope"]),
        (1, "not-found".into())
    );
    assert_eq!(
        json_error(&db, &["add-br", "br-ex-external-01"]),
        (2, "invalid-input".into())
    );
    assert_eq!(json_error(&db, &["add-br", "--bogus"]), (2, "usage".into()));
    d.stop_vswitchd();
    assert_eq!(
        json_error(&db, &["--timeout=0.5", "add-br", "br-late"]),
        (1, "timeout".into())
    );
}

/// -v says what is being done on stderr (tracing), -q and the default stay quiet.
#[test]
fn verbose_says_what_is_waited_for() {
    sandbox::enter();
    let d = Ovs::start();
    let db = d.db();
    let err = |args: &[&str]| {
        let out = ovs_attach(&db, args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(err(&["add-br", "br-a", "--datapath-type=netdev"]), "");
    assert_eq!(err(&["-q", "add-br", "br-b", "--datapath-type=netdev"]), "");
    let said = err(&["add-br", "br-c", "--datapath-type=netdev", "-v"]);
    assert!(
        said.contains("INFO sp_ovs: in the database; waiting for ovs-vswitchd to apply it")
            && said.contains("INFO sp_ovs: applied by ovs-vswitchd"),
        "{said}"
    );
    assert!(!said.contains("DEBUG"), "{said}");
    let debug = err(&["-vv", "add-br", "br-d", "--datapath-type=netdev"]);
    assert!(debug.contains("DEBUG sp_ovs: transaction sent"), "{debug}");
}

/// Without --db, ovs-attach talks to `$OVS_RUNDIR/db.sock`, as ovs-vsctl does.
#[test]
fn the_default_database_is_in_ovs_rundir() {
    sandbox::enter();
    let d = Ovs::start();
    let run = |rundir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_ovs-attach"))
            .args(["--json", "list"])
            .env("OVS_RUNDIR", rundir)
            .output()
            .unwrap()
    };
    let out = run(d.dir());
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"schema": 1, "bridges": []}));
    // Another run directory: its socket is the one tried.
    let out = run(std::path::Path::new("/nonexistent-ovs-rundir"));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/nonexistent-ovs-rundir/db.sock"), "{e}");
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    sandbox::enter();
    let mut d = Ovs::start();
    let db = d.db();
    let missing = format!("unix:{}/nothing-here.sock", d.dir().display());
    let e = fails(&missing, &["show"]);
    assert!(
        e.contains(&format!(
            "OVSDB socket {}/nothing-here.sock does not exist",
            d.dir().display()
        )),
        "{e}"
    );

    ok(&db, &["add-br", "br-ex", "--datapath-type=netdev"]);
    ok(&db, &["add-br", "br-int", "--datapath-type=netdev"]);
    let e = fails(
        &db,
        &["add-port", "br-ex", "qg-48cdaf68-67xyz", "--type=internal"],
    );
    assert_eq!(
        e,
        "ovs-attach: invalid name \"qg-48cdaf68-67xyz\": longer than 15 bytes (the kernel's IFNAMSIZ limit)\n"
    );
    ok(
        &db,
        &["add-port", "br-ex", "qg-48cdaf68-67", "--type=internal"],
    );
    let e = fails(
        &db,
        &[
            "add-port",
            "br-int",
            "qg-48cdaf68-67",
            "--type=internal",
            "--may-exist",
        ],
    );
    assert!(e.contains("already on bridge br-ex"), "{e}");
    assert_eq!(
        ok(&db, &["add-port", "br-int", "qg-48cdaf68-67", "--move"]),
        "port qg-48cdaf68-67 on bridge br-int: moved here from bridge br-ex\n"
    );
    let e = fails(&db, &["del-br", "br-nope"]);
    assert_eq!(e, "ovs-attach: no bridge named br-nope\n");
    let e = fails("ssl:1.2.3.4:6640", &["show"]);
    assert!(e.contains("expected unix:PATH or tcp:HOST:PORT"), "{e}");

    let out = ovs_attach(&db, &["add-port", "br-ex", "x", "--tag=5000"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects a bad tag");

    // ovs-vswitchd gone: the change lands in the database, the wait says why it failed.
    d.stop_vswitchd();
    let e = fails(
        &db,
        &[
            "--timeout=0.5",
            "add-br",
            "br-late",
            "--datapath-type=netdev",
        ],
    );
    assert!(
        e.starts_with("ovs-attach: ovs-vswitchd did not apply the change within 500ms"),
        "{e}"
    );
    assert!(e.contains("is ovs-vswitchd running?"), "{e}");
    assert_eq!(
        ok(&db, &["add-br", "br-later", "--no-wait"]),
        "bridge br-later: created\n"
    );
}

#[test]
fn help_teaches_with_the_notes_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_ovs-attach"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "ovs-attach add-br br-ex --datapath-type netdev",
        "ovs-attach br-ex eno1 --emit-config ifcfg",
        "ovs-attach --detach br-ex eno1",
        "10.50.14.50/24, gateway 10.50.14.1",
        "ovs-attach add-patch br-int patch-tun br-tun patch-int",
        "--no-wait",
        "unix:$OVS_RUNDIR/db.sock",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// The notes' host: eno1 with 10.50.14.50/24, default via 10.50.14.1 (namespace gw).
fn notes_host() -> Ovs {
    sandbox::enter();
    require::program("ping", "iputils-ping");
    let d = Ovs::start();
    nic_with_gateway("eno1", "10.50.14.50/24", "10.50.14.1");
    d
}

const IFCFG: &str = "\
# /etc/sysconfig/network-scripts/ifcfg-eno1
TYPE=OVSPort
DEVICETYPE=ovs
OVS_BRIDGE=br-ex
NM_CONTROLLED=no
BOOTPROTO=none
ONBOOT=yes
DEVICE=eno1
PEERDNS=no

# /etc/sysconfig/network-scripts/ifcfg-br-ex
DEVICE=br-ex
DEVICETYPE=ovs
TYPE=OVSBridge
BOOTPROTO=static
IPADDR=10.50.14.50
NETMASK=255.255.255.0
GATEWAY=10.50.14.1
";

#[test]
fn attach_in_the_short_form_then_detach_with_persistent_config() {
    let d = notes_host();
    let db = d.db();
    // Before the attach: the notes' two files, from the live address and gateway.
    assert_eq!(
        ok(&db, &["br-ex", "eno1", "--emit-config", "ifcfg"]),
        format!("{IFCFG}ONBOOT=yes\n")
    );
    assert!(
        d.row("Bridge", "br-ex").is_none(),
        "emit-config changes nothing"
    );

    let out = ok(
        &db,
        &["--json", "br-ex", "eno1", "--datapath-type", "netdev"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "changed");
    assert_eq!(v["op"], "attach");
    assert_eq!(v["schema"], 2);
    let changes = v["changes"].as_array().unwrap();
    changes.iter().for_each(sp_testenv::assert_typed_change);
    assert_eq!(
        v["changes"][0],
        json!({"object": {"type": "bridge", "name": "br-ex"}, "action": "created"})
    );
    for want in [
        json!({"object": {"type": "uplink", "nic": "eno1", "bridge": "br-ex"}, "action": "added", "to": "br-ex"}),
        json!({"object": {"type": "address", "address": "10.50.14.50/24"}, "action": "moved", "from": "eno1", "to": "br-ex"}),
        json!({"object": {"type": "gateway", "ip": "10.50.14.1"}, "action": "answers", "device": "br-ex"}),
    ] {
        assert!(changes.contains(&want), "{want} not in {v}");
    }
    assert!(d.row("Port", "eno1").is_some());
    let show = ok(&db, &["show"]);
    assert_eq!(show, d.vsctl(&["show"]));
    assert!(
        show.contains("        Port eno1\n            Interface eno1\n"),
        "{show}"
    );
    let addrs = oracle::addrs(None);
    let br = addrs.iter().find(|l| l["ifname"] == "br-ex").unwrap();
    assert_eq!(br["addr_info"][0]["local"], "10.50.14.50");
    let routes = oracle::routes(None, false);
    let default = routes.iter().find(|r| r["dst"] == "default").unwrap();
    assert_eq!(default["dev"], "br-ex");
    assert!(oracle::pings("gw", "10.50.14.50"));

    // After the attach the same files come from br-ex; the bridge's datapath is kept.
    assert_eq!(
        ok(&db, &["br-ex", "eno1", "--emit-config", "ifcfg"]),
        format!("{IFCFG}OVS_EXTRA=\"set bridge br-ex datapath_type=netdev\"\nONBOOT=yes\n")
    );
    assert_eq!(
        ok(
            &db,
            &["attach", "br-ex", "eno1", "--emit-config", "interfaces"]
        ),
        "# /etc/network/interfaces
allow-ovs br-ex
iface br-ex inet static
    address 10.50.14.50
    netmask 255.255.255.0
    gateway 10.50.14.1
    ovs_type OVSBridge
    ovs_ports eno1
    ovs_extra set bridge br-ex datapath_type=netdev

allow-br-ex eno1
iface eno1 inet manual
    ovs_bridge br-ex
    ovs_type OVSPort
"
    );
    assert_eq!(
        ok(&db, &["br-ex", "eno1"]),
        "eno1: already attached to br-ex, nothing changed\n"
    );

    assert_eq!(
        ok(&db, &["--detach", "br-ex", "eno1"]),
        "port eno1: deleted from bridge br-ex
address 10.50.14.50/24: moved br-ex → eno1
default via 10.50.14.1: moved br-ex → eno1
gateway 10.50.14.1: answers through eno1
address 10.50.14.50: announced on eno1 (gratuitous ARP)
"
    );
    assert!(d.row("Port", "eno1").is_none());
    let routes = oracle::routes(None, false);
    let default = routes.iter().find(|r| r["dst"] == "default").unwrap();
    assert_eq!(default["dev"], "eno1");
    let out = ok(&db, &["--json", "detach", "br-ex", "eno1"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"schema": 2, "result": "unchanged", "op": "detach", "bridge": "br-ex", "nic": "eno1", "changes": []})
    );
}

#[test]
fn attach_bad_input_is_named_and_exits_non_zero() {
    let d = notes_host();
    let db = d.db();
    let missing = format!("unix:{}/nothing-here.sock", d.dir().display());
    let e = fails(&missing, &["br-ex", "eno1"]);
    assert!(
        e.contains(&format!(
            "OVSDB socket {}/nothing-here.sock does not exist",
            d.dir().display()
        )),
        "{e}"
    );
    assert_eq!(
        fails(&db, &["br-ex-external-01", "eno1"]),
        "ovs-attach: invalid name \"br-ex-external-01\": longer than 15 bytes (the kernel's IFNAMSIZ limit)\n"
    );
    assert_eq!(
        fails(&db, &["br-ex", "eno9"]),
        "ovs-attach: no network device named eno9\n"
    );
    sp_testenv::scene::ip(&[
        "link", "add", "eno2", "type", "veth", "peer", "name", "eno2p",
    ]);
    assert_eq!(
        fails(&db, &["attach", "br-ex", "eno2", "--datapath-type=netdev"]),
        "ovs-attach: eno2 has no global address to move onto br-ex (nothing to attach: \
         `ovs-attach add-port br-ex eno2` adds the port alone)\n"
    );
    assert!(d.row("Bridge", "br-ex").is_none(), "nothing was created");
    ok(&db, &["add-br", "br-other", "--datapath-type=netdev"]);
    ok(&db, &["add-port", "br-other", "eno1"]);
    assert_eq!(
        fails(&db, &["br-ex", "eno1", "--datapath-type=netdev"]),
        "ovs-attach: cannot add port eno1 to bridge br-ex: it is already on bridge br-other \
         (--move moves it, in one transaction)\n"
    );
    let out = ok(&db, &["br-ex", "eno1", "--datapath-type=netdev", "--move"]);
    assert!(
        out.contains("port eno1: moved to bridge br-ex from bridge br-other\n"),
        "{out}"
    );
    // The short form cannot be mixed with another command (clap's usage error).
    let out = ovs_attach(&db, &["br-ex", "eno1", "show"]);
    assert_eq!(out.status.code(), Some(2));
    // --no-wait is only for the verbs that change the database: attach waits for
    // ovs-vswitchd before it moves the addresses.
    let out = ovs_attach(&db, &["--no-wait", "br-ex", "eno1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--no-wait'"),
        "{out:?}"
    );
    for read_only in [&["show", "--no-wait"][..], &["list", "--no-wait"]] {
        assert_eq!(
            ovs_attach(&db, read_only).status.code(),
            Some(2),
            "{read_only:?}"
        );
    }
}
