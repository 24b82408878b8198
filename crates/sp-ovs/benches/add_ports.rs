//! Benchmark (not a test): 100 internal ports added to a fresh netdev bridge
//!
//! 1. through sp-ovs in one process (one OVSDB connection),
//! 2. by 100 `ovs-vsctl add-port` processes,
//! 3. by 100 `ovs-attach add-port` processes (when `OVS_ATTACH_BIN` names the binary),
//!
//! first each add waiting for ovs-vswitchd (the default of both tools), then with
//! `--no-wait` (the OVSDB round trips alone), all against the same private ovsdb-server +
//! ovs-vswitchd. Each phase runs ROUNDS times, interleaved, and the median is compared
//! (the machine is shared, so single runs are noisy). Run with `testenv/bench-ovs.sh`
//! (root; its own sandbox).

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use sp_ovs::{BridgeSpec, Ovs, PortSpec};
use sp_testenv::ovs::Ovs as Daemons;
use sp_testenv::{require, sandbox};

const PORTS: usize = 100;
const ROUNDS: usize = 3;

fn main() {
    sandbox::enter();
    let d = Daemons::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let db = d.db();
    let cli: Option<OsString> = std::env::var_os("OVS_ATTACH_BIN");
    let netdev = BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    };

    for wait in [true, false] {
        let ovs = rt
            .block_on(Ovs::connect(
                &db.parse().unwrap(),
                Duration::from_secs(30),
                wait,
            ))
            .expect("connect");
        let no_wait: &[&str] = if wait { &[] } else { &["--no-wait"] };
        // Times `add` over PORTS fresh port names on a fresh bridge, checks the result
        // with ovs-vsctl, and removes the bridge again.
        let phase = |what: &str, add: &dyn Fn(&str, &str)| {
            let bridge = "br-bench";
            rt.block_on(ovs.add_br(bridge, &netdev)).expect("add-br");
            let t = Instant::now();
            for i in 0..PORTS {
                add(bridge, &format!("p{i}"));
            }
            let took = t.elapsed();
            let listed = d.vsctl(&["list-ports", bridge]).lines().count();
            assert_eq!(listed, PORTS, "{what}");
            rt.block_on(ovs.del_br(bridge, false)).expect("del-br");
            (what.to_owned(), took)
        };
        // rows[phase] = (label, one duration per round)
        let mut rows: Vec<(String, Vec<Duration>)> = vec![];
        for _ in 0..ROUNDS {
            let mut round = vec![
                phase("sp-ovs library, one connection", &|br, p| {
                    let spec = PortSpec::new(p, "internal");
                    rt.block_on(ovs.add_port(br, &spec)).expect("add-port");
                }),
                phase("ovs-vsctl add-port, one process each", &|br, p| {
                    let mut args = no_wait.to_vec();
                    args.extend([
                        "add-port",
                        br,
                        p,
                        "--",
                        "set",
                        "Interface",
                        p,
                        "type=internal",
                    ]);
                    d.vsctl(&args);
                }),
            ];
            if let Some(bin) = &cli {
                round.push(phase("ovs-attach add-port, one process each", &|br, p| {
                    let db_arg = format!("--db={db}");
                    let mut args = vec![db_arg.as_str()];
                    args.extend(no_wait);
                    args.extend(["add-port", br, p, "--type=internal"]);
                    require::run(Command::new(bin).args(&args));
                }));
            }
            rows.resize_with(round.len(), Default::default);
            for (row, (what, took)) in rows.iter_mut().zip(round) {
                row.0 = what;
                row.1.push(took);
            }
        }
        let rows: Vec<(String, Duration, Duration, Duration)> = rows
            .into_iter()
            .map(|(what, mut runs)| {
                runs.sort();
                (what, runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
            })
            .collect();

        let baseline = rows[1].1.as_secs_f64();
        let mode = if wait {
            "each add waiting for ovs-vswitchd"
        } else {
            "--no-wait (database only)"
        };
        println!(
            "{PORTS} internal ports on a netdev bridge, {mode}; median of {ROUNDS} (min–max):"
        );
        let ms = |t: &Duration| t.as_secs_f64() * 1e3;
        for (what, took, min, max) in &rows {
            println!(
                "  {what:<38} {:>7.1} ms ({:>6.1}–{:>6.1}) {:>6.2} ms/port {:>5.1}x vs ovs-vsctl",
                ms(took),
                ms(min),
                ms(max),
                ms(took) / PORTS as f64,
                baseline / took.as_secs_f64()
            );
        }
    }
}
