//! The `ovs-attach` binary against a private ovsdb-server + ovs-vswitchd, read back with
//! `ovs-vsctl`.

use std::process::{Command, Output};

use serde_json::{json, Value};
use sp_testenv::ovs::Ovs;
use sp_testenv::sandbox;

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

/// Runs ovs-attach expecting failure; returns stderr.
fn fails(db: &str, args: &[&str]) -> String {
    let out = ovs_attach(db, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ovs-attach {args:?} should fail"
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
        json!({"result": "created", "bridge": "br-ex"})
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
        json!(["patch-tun", "qr-709be681-e9"])
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
        ok(&db, &["--no-wait", "add-br", "br-later"]),
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
        "ovs-attach add-patch br-int patch-tun br-tun patch-int",
        "--no-wait",
        "unix:/var/run/openvswitch/db.sock",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
