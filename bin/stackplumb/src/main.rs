//! `stackplumb`: argument parsing and output only; the work is in `sp-config` (what
//! should be) and `sp-orchestrate` (making it so).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sp_config::desired::{node_with_tunnel_ip, plan_node, NodePlan, DEFAULT_STATE_PATH};
use sp_config::guide::LinuxBridgeAgent;
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;

/// The Liberty guide's data plane, from the guide's own files.
///
/// Reads this node's own files where the guide writes them — linuxbridge_agent.ini on
/// every node; ml2_conf.ini, l3_agent.ini, dhcp_agent.ini (and its dnsmasq file) on a
/// network node; cinder.conf on the volume node — and a topology (the guide's cloud
/// when none is given: docs/topology.toml), checks them all before any change, and
/// realises this node's part — bridges, VXLAN with l2population, the flat
/// network's uplink, router and DHCP namespaces, dnsmasq, the router's NAT — as the
/// Neutron agents would have. Every run converges: a second apply changes nothing.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  stackplumb plan                       what apply would create on this node
  stackplumb apply                      converge this node (found by its tunnel_ip)
  stackplumb --node compute apply
  stackplumb status --json              every object of this node, present or not
  stackplumb destroy [--purge]          remove what apply made here (--purge: Cinder's files too)
  stackplumb supervise                  restart this node's dnsmasq whenever one ends
  stackplumb demo                       the guide's two-node cloud in a sandbox, checked

With `external_network_bridge = br-ex` in l3_agent.ini (the packstack notes' flavour),
the routers' external network is the Open vSwitch bridge br-ex holding the uplink NIC
(its address moved onto br-ex), and each qg- port an OVS internal port on it: that needs
a running ovsdb-server + ovs-vswitchd (--ovsdb).

Needs root."
)]
struct Args {
    /// Where the guide's files are (neutron/…, cinder/…).
    #[arg(long, default_value = "/etc")]
    config_dir: PathBuf,
    /// Topology file (TOML, docs/topology.md); default: the guide's cloud.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// The agents' state_path (dnsmasq files, NAT records).
    #[arg(long, default_value = DEFAULT_STATE_PATH)]
    state_dir: PathBuf,
    /// Where Cinder's loop-backed files are kept.
    #[arg(long, default_value = "/var/lib/cinder")]
    cinder_dir: PathBuf,
    /// ovsdb-server of this host's Open vSwitch (used with external_network_bridge):
    /// unix:PATH or tcp:HOST:PORT.
    #[arg(long, default_value = sp_ovs::DEFAULT_DB)]
    ovsdb: sp_ovs::Endpoint,
    /// This host's node in the topology; default: the node whose tunnel_ip is
    /// linuxbridge_agent.ini's local_ip, else the one whose tunnel_ip this host holds.
    #[arg(long)]
    node: Option<String>,
    /// How long to wait for another stackplumb run to finish, in seconds (0–86400).
    #[arg(long, default_value = "60", value_parser = seconds(0.0))]
    lock_timeout: Duration,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq)]
enum Cmd {
    /// What apply would create on this node (objects missing now).
    Plan,
    /// Converge this node to the topology; prints what changed.
    Apply,
    /// Every object of this node's desired state, present or missing, and the problems
    /// netns-inspect finds in its namespaces.
    Status,
    /// Build the guide's two-node cloud in a sandbox on this machine, run the guide's
    /// checks, show netns-inspect's view, tear it all down. The host is not touched.
    Demo,
    /// Remove what apply made on this node (and nothing else); Cinder's files are kept.
    Destroy {
        /// Delete Cinder's backing files too.
        #[arg(long)]
        purge: bool,
    },
    /// Keep this node's dnsmasq processes running, as Neutron's process monitor does:
    /// one that ends is started again at once (pidfd), under the run lock; prints one
    /// line per event (--json: one object per line). Runs until SIGTERM or SIGINT —
    /// e.g. as a systemd service after `stackplumb apply` (docs/stackplumb.md).
    Supervise {
        /// Also look again this often (seconds, 0.1–86400) without being woken by an exit.
        #[arg(long, default_value = "60", value_parser = seconds(0.1))]
        interval: Duration,
    },
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The longest wait or interval taken, in seconds (a day).
const MAX_SECONDS: f64 = 86_400.0;

/// A clap parser of a number of seconds from `min` to [`MAX_SECONDS`].
fn seconds(min: f64) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s| {
        let v: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds"))?;
        if !(min..=MAX_SECONDS).contains(&v) {
            return Err(format!("{s} seconds: must be from {min} to {MAX_SECONDS}"));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

fn main() -> ExitCode {
    // Output that never panics on a closed pipe; SIGINT/SIGTERM/SIGHUP taken at the end
    // of the work, never half-way (sp_cli).
    sp_cli::init();
    sp_cli::finish(exit_code())
}

fn exit_code() -> ExitCode {
    // Before any thread: namespaces are entered by threads.
    sp_kernel::limits::prepare_descriptors();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            sp_cli::errln!("stackplumb: {e}");
            ExitCode::FAILURE
        }
    }
}

/// This host's node and its desired state, from the node's own files: the topology and
/// `linuxbridge_agent.ini` name the node (`--node`; else the node whose tunnel_ip is the
/// file's `local_ip`; else the one whose tunnel_ip an interface here holds), then the
/// files its roles need are read and everything is checked.
fn load(args: &Args, nl: &Netlink) -> BoxResult<NodePlan> {
    let topology = match &args.topology {
        Some(f) => {
            let text = sp_kernel::files::read_config(f)
                .map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
            Topology::parse(&text, &f.display().to_string())?
        }
        None => Topology::guide(),
    };
    let agent = LinuxBridgeAgent::load(&args.config_dir)?;
    let node = match &args.node {
        Some(n) => topology
            .node(n)
            .ok_or_else(|| format!("no node {n:?} in the topology"))?,
        None => match agent
            .local_ip
            .and_then(|ip| node_with_tunnel_ip(&topology, ip))
        {
            Some(n) => n,
            None => {
                let mine: Vec<_> = nl
                    .addresses()?
                    .iter()
                    .filter_map(sp_kernel::attrs::address_ip)
                    .collect();
                topology
                    .nodes
                    .iter()
                    .find(|n| mine.contains(&n.tunnel_ip))
                    .ok_or(
                        "no interface here holds a node's tunnel_ip; name the node with --node",
                    )?
            }
        },
    };
    let cfg = GuideConfig::load_for(&args.config_dir, &node.roles)?;
    plan_node(&topology, &cfg, &args.state_dir, &node.name).map_err(|errs| {
        format!(
            "the topology cannot be realised, nothing was changed:\n  {}",
            errs.join("\n  ")
        )
        .into()
    })
}

fn run(args: &Args) -> BoxResult<ExitCode> {
    if args.cmd == Cmd::Demo {
        return demo();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lock_timeout = args.lock_timeout;
    if let Cmd::Supervise { interval } = args.cmd {
        let node = &rt.block_on(async { load(args, &Netlink::current()?) })?;
        drop(rt);
        let opts = sp_orchestrate::supervise::Options {
            interval,
            lock_timeout,
        };
        let json = args.json;
        // A SIGTERM that came while this node was looked up ends it before it starts.
        if sp_cli::signalled().is_some() {
            return Ok(ExitCode::SUCCESS);
        }
        sp_orchestrate::supervise::supervise(node, &dirs(args), &opts, &mut |e| {
            print_event(&e, json)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async {
        let nl = Netlink::current()?;
        let node = &load(args, &nl)?;
        let state = &args.state_dir;
        let dirs = dirs(args);
        match args.cmd {
            Cmd::Plan | Cmd::Status => {
                let items = sp_orchestrate::survey(&nl, node, &dirs).await?;
                let problems = match args.cmd {
                    Cmd::Status => sp_orchestrate::problems(node).await?,
                    _ => vec![],
                };
                let shown: Vec<_> = match args.cmd {
                    Cmd::Plan => items.iter().filter(|i| !i.present).collect(),
                    _ => items.iter().collect(),
                };
                if args.json {
                    sp_cli::outln!(
                        "{}",
                        serde_json::json!({ "node": node.node, "items": shown, "problems": problems })
                    );
                } else if shown.is_empty() {
                    sp_cli::outln!("node {}: nothing to do", node.node);
                } else {
                    sp_cli::outln!("node {}:", node.node);
                    for i in shown {
                        let mark = match (args.cmd == Cmd::Plan, i.present) {
                            (true, _) => "create",
                            (false, true) => "present",
                            (false, false) => "MISSING",
                        };
                        sp_cli::outln!("  {mark:<8} {}", i.object);
                    }
                }
                if !args.json && args.cmd == Cmd::Status {
                    for p in &problems {
                        sp_cli::outln!("  problem  {}", p.message);
                    }
                }
            }
            Cmd::Demo | Cmd::Supervise { .. } => unreachable!("handled above"),
            Cmd::Apply | Cmd::Destroy { .. } => {
                let _lock = sp_orchestrate::supervise::lock(state, lock_timeout)?;
                let changes = match args.cmd {
                    Cmd::Destroy { purge } => {
                        sp_orchestrate::take_down(&nl, node, &dirs, purge).await?
                    }
                    _ => sp_orchestrate::realise(&nl, node, &dirs).await?,
                };
                if args.json {
                    sp_cli::outln!(
                        "{}",
                        serde_json::json!({ "node": node.node, "changes": changes })
                    );
                } else if changes.is_empty() {
                    sp_cli::outln!("node {}: no change", node.node);
                } else {
                    for c in &changes {
                        sp_cli::outln!("{c}");
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn dirs(args: &Args) -> sp_orchestrate::Dirs {
    sp_orchestrate::Dirs {
        state: args.state_dir.clone(),
        cinder: args.cinder_dir.clone(),
        ovsdb: args.ovsdb.clone(),
    }
}

/// One supervision event: a line of text, or of JSON. When the reader of the events has
/// gone, supervision ends as on SIGTERM (the signal is blocked and taken by supervise's
/// signalfd).
fn print_event(e: &sp_orchestrate::supervise::Event, json: bool) {
    use sp_orchestrate::supervise::Event;
    if json {
        sp_cli::outln!("{}", serde_json::json!(e));
    } else {
        match e {
            Event::Watching { network, pid } => {
                sp_cli::outln!("watching dnsmasq of {network} (pid {pid})")
            }
            Event::Changed(c) => sp_cli::outln!("{c}"),
            Event::Failed { network, error } => {
                sp_cli::outln!("dnsmasq of {network}: restart failed, tried again later: {error}")
            }
            Event::Stopped { signal } => sp_cli::outln!("stopped by {signal}"),
        }
    }
    if sp_cli::stdout_closed() {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    }
}

/// `stackplumb demo`, with a live report.
fn demo() -> BoxResult<ExitCode> {
    use sp_orchestrate::demo::{self, Line};
    // A fresh directory only this run can have written into (mkdtemp); 0755, as dnsmasq
    // (running as nobody) reads its files below it.
    let work = sp_kernel::files::fresh_temp_dir(&std::env::temp_dir(), "stackplumb-demo-", 0o755)?;
    let inspect = std::env::current_exe()?.with_file_name("netns-inspect");
    let inspect = inspect.is_file().then_some(inspect);
    sp_cli::outln!("stackplumb demo: the Liberty guide's cloud, built and checked in a sandbox\n");
    sp_cli::outln!(
        "  · work directory {} (fresh; removed at the end)",
        work.display()
    );
    // The demo moves its thread into the sandbox; this one stays where it is.
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            demo::run(&work, inspect.as_deref(), &mut |line| match line {
                Line::Step(s) => sp_cli::outln!("  · {s}"),
                Line::Check(s, true) => sp_cli::outln!("  ✓ {s}"),
                Line::Check(s, false) => sp_cli::outln!("  ✗ {s}"),
            })
        })
        .join()
        .expect("demo thread panicked")
    });
    let _ = std::fs::remove_dir_all(&work);
    let all = result?;
    sp_cli::outln!(
        "\n{}",
        if all {
            "every check held"
        } else {
            "some checks failed"
        }
    );
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
