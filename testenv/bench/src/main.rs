//! `sp-bench`: each benchmark builds its scene in a private sandbox, runs our command
//! and the baseline the guides use, side by side in the same run, and prints times
//! and ratios. Not a test: nothing is asserted; the figures are for reading.
//! Run through `testenv/bench.sh` (release build).

mod bridgectl;
mod nat;
mod netns_inspect;
mod sg;
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
    /// Security groups for N instance ports (the guide's default group + 12-4) loaded
    /// natively (one nf_tables batch) vs Liberty's `ipset restore` + `iptables-restore`
    /// per port change; the first load, ports added one by one, a no-op re-apply.
    Sg {
        #[arg(long, value_delimiter = ',', default_value = "100")]
        counts: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The guide's topology scaled to N tenant networks with a router each: stackplumb
    /// apply / re-apply / destroy on the controller vs the same kernel objects by iproute2.
    /// `--counts 100,1000,100` measures 100 again after 1000: the scale ratios then take
    /// the mean of both.
    Stackplumb {
        #[arg(long, value_delimiter = ',', default_value = "100")]
        counts: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
}

// Linked for its global allocator alone: our code is measured with the one the binaries
// run it with.
use sp_cli as _;

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
        Bench::Sg { counts, runs } => {
            for n in counts {
                sg::run(n, runs);
            }
        }
        Bench::Stackplumb { counts, runs } => {
            // The parent names the file its children append to; a child (which runs this
            // arm again, for its one count) keeps the name it inherited.
            let parent = std::env::var_os("SP_BENCH_CHILD").is_none();
            let out = std::env::temp_dir().join(format!("sp-bench-scale-{}", std::process::id()));
            if parent {
                // SAFETY: one thread here; the children read it.
                unsafe { std::env::set_var(SCALE_OUT, &out) };
            }
            for &n in &counts {
                stackplumb::run(n, runs);
            }
            if parent {
                print_scale(&out);
                let _ = std::fs::remove_file(&out);
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

/// Where children of one bench run append their timings per count, for the ratios.
const SCALE_OUT: &str = "SP_BENCH_SCALE_OUT";

/// In a child: appends `n name ms` lines for the parent's [`print_scale`].
pub fn record_scale(n: usize, timings: &[(&str, Duration)]) {
    use std::io::Write;
    let Some(path) = std::env::var_os(SCALE_OUT) else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("the scale file");
    for (name, d) in timings {
        writeln!(f, "{n} {name} {}", d.as_secs_f64() * 1e3).expect("write the scale file");
    }
}

/// How each timing grew from the smallest count to every larger one (the children's).
/// The smallest count may be measured more than once — `--counts 100,1000,100` brackets
/// the larger run — and its mean is the base: the machine's speed drifts by a tenth
/// within a run here, so one measurement taken minutes before the other moves the ratio
/// by as much. Each base measurement is printed.
fn print_scale(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let rows: Vec<(usize, &str, f64)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?, w.next()?.parse().ok()?))
        })
        .collect();
    let Some(min) = rows.iter().map(|r| r.0).min() else {
        return;
    };
    for &(n, name, ms) in rows.iter().filter(|r| r.0 > min) {
        let bases: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == min && r.1 == name)
            .map(|r| r.2)
            .collect();
        if bases.is_empty() {
            continue;
        }
        let base = bases.iter().sum::<f64>() / bases.len() as f64;
        let each = match bases.len() {
            1 => String::new(),
            _ => format!(
                ", the mean of {}",
                bases
                    .iter()
                    .map(|b| format!("{b:.1}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        };
        println!(
            "scale: {name} at {n} = {:.1}x at {min} ({ms:.1} ms vs {base:.1} ms{each}; target for 1000 vs 100: <= 11x)",
            ms / base
        );
    }
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
