//! Benchmark (not a test): 100 internal ports added to a netdev bridge
//!
//! 1. through sp-ovs in one process (one OVSDB connection),
//! 2. by 100 `ovs-vsctl add-port` processes,
//! 3. by 100 `ovs-attach add-port` processes (when `OVS_ATTACH_BIN` names the binary),
//!
//! against the same private ovsdb-server + ovs-vswitchd, each phase on a fresh bridge,
//! every add waiting for ovs-vswitchd (no --no-wait anywhere). Run with
//! `testenv/bench-ovs.sh` (root; its own sandbox).

use std::process::Command;
use std::time::{Duration, Instant};

use sp_ovs::{BridgeSpec, Ovs, PortSpec};
use sp_testenv::ovs::Ovs as Daemons;
use sp_testenv::{require, sandbox};

const PORTS: usize = 100;

fn main() {
    sandbox::enter();
    let d = Daemons::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let db = d.db();
    let ovs = rt
        .block_on(Ovs::connect(
            &db.parse().unwrap(),
            Duration::from_secs(30),
            true,
        ))
        .expect("connect");
    let netdev = BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    };
    let fresh_bridge = |name: &str| {
        rt.block_on(ovs.add_br(name, &netdev)).expect("add-br");
    };
    let mut rows = vec![];

    fresh_bridge("br-lib");
    let t = Instant::now();
    for i in 0..PORTS {
        let spec = PortSpec::new(&format!("lib{i}"), "internal");
        rt.block_on(ovs.add_port("br-lib", &spec))
            .expect("add-port");
    }
    rows.push(("sp-ovs library, one connection", t.elapsed()));
    assert_eq!(d.vsctl(&["list-ports", "br-lib"]).lines().count(), PORTS);
    rt.block_on(ovs.del_br("br-lib", false)).unwrap();

    fresh_bridge("br-vsctl");
    let t = Instant::now();
    for i in 0..PORTS {
        let p = format!("vsctl{i}");
        d.vsctl(&[
            "add-port",
            "br-vsctl",
            &p,
            "--",
            "set",
            "Interface",
            &p,
            "type=internal",
        ]);
    }
    rows.push(("ovs-vsctl add-port, one process each", t.elapsed()));
    assert_eq!(d.vsctl(&["list-ports", "br-vsctl"]).lines().count(), PORTS);
    rt.block_on(ovs.del_br("br-vsctl", false)).unwrap();

    if let Some(bin) = std::env::var_os("OVS_ATTACH_BIN") {
        fresh_bridge("br-cli");
        let t = Instant::now();
        for i in 0..PORTS {
            require::run(Command::new(&bin).args([
                &format!("--db={db}"),
                "add-port",
                "br-cli",
                &format!("cli{i}"),
                "--type=internal",
            ]));
        }
        rows.push(("ovs-attach add-port, one process each", t.elapsed()));
        assert_eq!(d.vsctl(&["list-ports", "br-cli"]).lines().count(), PORTS);
    }

    let baseline = rows[1].1.as_secs_f64();
    println!("{PORTS} internal ports on a netdev bridge, each add waiting for ovs-vswitchd:");
    for (what, took) in &rows {
        println!(
            "  {what:<40} {:>8.1} ms total {:>6.2} ms/port  {:>5.1}x vs ovs-vsctl",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / PORTS as f64,
            baseline / took.as_secs_f64()
        );
    }
}
