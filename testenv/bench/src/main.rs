//! `sp-bench`: each benchmark builds its scene in a private sandbox, runs our command
//! and the baseline the guides use, side by side in the same run, and prints times
//! and ratios. Not a test: nothing is asserted; the figures are for reading.
//! Run through `testenv/bench.sh` (release build).

mod bridgectl;
mod nat;
mod netns_inspect;
mod stackplumb;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks against the iproute2/lvm2 baselines (run as root)")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// netns-inspect over N Neutron-like namespaces vs the `ip -n NS addr; ip -n NS
    /// route; ip netns pids NS` loop.
    NetnsInspect {
        /// Namespace counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        counts: Vec<usize>,
        /// Repetitions per measurement (the best is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// N Neutron-style networks (bridge + vxlan + qdhcp namespace + veth + address):
    /// apply and teardown by sp-bridge vs iproute2 one process per command, `ip -batch`
    /// moving the veth end, and `ip -batch` creating it in place.
    Bridgectl {
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        counts: Vec<usize>,
        /// Repetitions per measurement (the best is reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// N routers' NAT loaded natively (one nf_tables batch per namespace) vs one
    /// `iptables-restore` per router, four at a time; the reader and a no-op re-apply.
    Nat {
        #[arg(long, value_delimiter = ',', default_value = "100")]
        counts: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The guide's topology scaled to N tenant networks with a router each: stackplumb
    /// apply / re-apply / destroy on the controller vs the same kernel objects by iproute2.
    Stackplumb {
        #[arg(long, value_delimiter = ',', default_value = "100")]
        counts: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
}

fn main() {
    let args = Args::parse();
    match args.bench {
        Bench::NetnsInspect { counts, runs } => {
            for n in counts {
                netns_inspect::run(n, runs);
            }
        }
        Bench::Bridgectl { counts, runs } => {
            for n in counts {
                bridgectl::run(n, runs);
            }
        }
        Bench::Nat { counts, runs } => {
            for n in counts {
                nat::run(n, runs);
            }
        }
        Bench::Stackplumb { counts, runs } => {
            for n in counts {
                stackplumb::run(n, runs);
            }
        }
    }
}

/// Each measurement runs in a child process of its own that enters a fresh sandbox
/// (sandboxes are per process and die with it). In the parent: spawns the child for
/// `bench` with count `n` and returns false; in the child: enters the sandbox and
/// returns true.
pub fn in_sandbox_child(bench: &str, n: usize, runs: usize) -> bool {
    if std::env::var_os("SP_BENCH_CHILD").is_some() {
        sp_testenv::sandbox::enter();
        return true;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            bench,
            "--counts",
            &n.to_string(),
            "--runs",
            &runs.to_string(),
        ])
        .env("SP_BENCH_CHILD", "1")
        .status()
        .expect("re-run bench in a child");
    assert!(status.success(), "bench child failed");
    false
}

/// Best wall time of `runs` calls of `f`.
pub fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// A binary of this workspace next to the bench binary (same profile).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe.with_file_name(name);
    assert!(
        bin.is_file(),
        "{} not built: run through testenv/bench.sh",
        bin.display()
    );
    bin
}

/// Prints one comparison line.
pub fn report(what: &str, ours: Duration, baselines: &[(&str, Duration)]) {
    println!("{what}");
    println!("  ours      {:>10.1} ms", ours.as_secs_f64() * 1e3);
    for (name, t) in baselines {
        println!(
            "  {name:<9} {:>10.1} ms   ratio {:.1}x",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
