//! `stackplumb`: argument parsing and output only; the work is in `sp-config` (what
//! should be) and `sp-orchestrate` (making it so).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sp_cli::error::Kind;
use sp_cli::exit;
use sp_config::desired::{node_with_tunnel_ip, plan_node, NodePlan, DEFAULT_STATE_PATH};
use sp_config::guide::LinuxBridgeAgent;
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;
use sp_orchestrate::planner::Action;

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
  stackplumb plan                       exactly what apply would do on this node
  stackplumb plan --detailed-exitcode   exit 4 when there is something to do
  stackplumb apply                      converge this node (found by its tunnel_ip)
  stackplumb --node compute apply
  stackplumb status --json              converged? every difference, every problem
  stackplumb destroy [--purge]          remove all this node made (--purge: Cinder's files too)
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
    #[arg(long, global = true, default_value = "/etc")]
    config_dir: PathBuf,
    /// Topology file (TOML, docs/topology.md); default: the guide's cloud.
    #[arg(long, global = true)]
    topology: Option<PathBuf>,
    /// The agents' state_path (dnsmasq files, NAT records).
    #[arg(long, global = true, default_value = DEFAULT_STATE_PATH)]
    state_dir: PathBuf,
    /// Where Cinder's loop-backed files are kept.
    #[arg(long, global = true, default_value = "/var/lib/cinder")]
    cinder_dir: PathBuf,
    /// ovsdb-server of this host's Open vSwitch (used with external_network_bridge):
    /// unix:PATH or tcp:HOST:PORT; default unix:$OVS_RUNDIR/db.sock, as ovs-vsctl's
    /// (OVS_RUNDIR unset: /var/run/openvswitch).
    #[arg(long, global = true, value_name = "ADDRESS")]
    ovsdb: Option<sp_ovs::Endpoint>,
    /// This host's node in the topology; default: the node whose tunnel_ip is
    /// linuxbridge_agent.ini's local_ip, else the one whose tunnel_ip this host holds.
    #[arg(long, global = true)]
    node: Option<String>,
    /// How long to wait for another stackplumb run to finish, in seconds (0–86400).
    #[arg(long, global = true, default_value = "60", value_parser = seconds(0.0))]
    lock_timeout: Duration,
    #[command(flatten)]
    common: sp_cli::Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
enum Cmd {
    /// Exactly what apply would do on this node: `+` create, `~` change (old -> new),
    /// `-` delete (what this node made and no longer wants).
    Plan {
        /// Exit 4 when there are actions (0 when there are none), as terraform's
        /// -detailed-exitcode (whose 2 is clap's usage code here).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Converge this node to the topology; prints what changed.
    Apply,
    /// Whether this node is converged: every difference a reading finds (what apply
    /// would do), and the problems netns-inspect finds in its namespaces. Exit 0
    /// converged, 4 differences, 3 error-level problems.
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
    /// The metadata proxy, as apply starts it (and supervise restarts it): listens on
    /// 9697 in each router's namespace and on 169.254.169.254:80 in each isolated
    /// network's DHCP namespace, and relays every request to the metadata agent's unix
    /// socket with X-Forwarded-For and X-Neutron-Router-ID / X-Neutron-Network-ID
    /// (docs/metadata.md). Daemonises once every socket listens.
    #[command(name = "metadata-proxy")]
    MetadataProxy {
        /// Where the daemon writes its pid.
        #[arg(long)]
        pid_file: PathBuf,
        /// A router served: ID=SOCKET (the metadata agent's socket).
        #[arg(long = "router", value_parser = served(sp_neutron::metadata::Kind::Router))]
        routers: Vec<sp_neutron::metadata::Served>,
        /// An isolated network served: ID=SOCKET.
        #[arg(long = "network", value_parser = served(sp_neutron::metadata::Kind::Network))]
        networks: Vec<sp_neutron::metadata::Served>,
    },
}

/// A clap parser of `ID=SOCKET` for `--router` / `--network`.
fn served(
    kind: sp_neutron::metadata::Kind,
) -> impl Fn(&str) -> Result<sp_neutron::metadata::Served, String> + Clone {
    move |s| sp_neutron::metadata::Served::parse(kind, s)
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
    let args: Args = sp_cli::command::parse();
    sp_cli::log::init(&args.common);
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            let detail = e.downcast_ref::<ApplyFailed>().map(|ApplyFailed(f)| {
                let mut d = serde_json::Map::new();
                d.insert("done".into(), serde_json::json!(f.done));
                d.insert("failed".into(), serde_json::json!(f.failed));
                d.insert("not_done".into(), serde_json::json!(f.not_done));
                d
            });
            let message = e.to_string();
            sp_cli::error::fail_with(
                "stackplumb",
                args.common.json,
                classify(e.as_ref()),
                &message,
                detail,
            )
        }
    }
}

/// Input refused before anything was read or changed (the topology, the guide's files).
#[derive(Debug)]
struct Invalid(String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// An error's kind (in JSON) and so its exit code (the table in sp_cli::exit).
fn classify(e: &(dyn std::error::Error + 'static)) -> Kind {
    use sp_orchestrate::Error as E;
    let orchestrate = match e.downcast_ref::<ApplyFailed>() {
        Some(ApplyFailed(f)) => Some(&f.cause),
        None => e.downcast_ref::<E>(),
    };
    match orchestrate {
        Some(E::Locked(_)) => Kind::Locked,
        Some(E::Privilege(_)) => Kind::Privilege,
        Some(E::Kernel(k)) if k.errno() == Some(libc::EPERM) => Kind::Privilege,
        _ if e.downcast_ref::<Invalid>().is_some() => Kind::InvalidInput,
        _ => Kind::Failure,
    }
}

/// This host's node and its desired state, from the node's own files: the topology and
/// `linuxbridge_agent.ini` name the node (`--node`; else the node whose tunnel_ip is the
/// file's `local_ip`; else the one whose tunnel_ip an interface here holds), then the
/// files its roles need are read and everything is checked.
fn load(args: &Args, nl: &Netlink) -> BoxResult<NodePlan> {
    load_input(args, nl).map_err(|e| Box::new(Invalid(e.to_string())) as Box<dyn std::error::Error>)
}

fn load_input(args: &Args, nl: &Netlink) -> BoxResult<NodePlan> {
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
    if let Cmd::MetadataProxy {
        pid_file,
        routers,
        networks,
    } = &args.cmd
    {
        // Still one thread: the proxy forks.
        let proxy = sp_metadata::Proxy {
            program: std::env::current_exe()?,
            pid_file: pid_file.clone(),
            served: routers.iter().chain(networks).cloned().collect(),
        };
        sp_metadata::serve::daemonise(&proxy)?;
        return Ok(ExitCode::SUCCESS);
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
            proxy: match node.metadata.is_empty() {
                true => None,
                false => Some(sp_orchestrate::metadata_proxy(node, &dirs(args))?),
            },
        };
        let json = args.common.json;
        // A SIGTERM that came while this node was looked up ends it before it starts.
        if sp_cli::signalled().is_some() {
            return Ok(ExitCode::SUCCESS);
        }
        sp_orchestrate::supervise::supervise(node, &opts, &mut |e| print_event(&e, json))?;
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async {
        let nl = Netlink::current()?;
        let node = &load(args, &nl)?;
        let dirs = dirs(args);
        match args.cmd.clone() {
            Cmd::Plan { detailed_exitcode } => {
                let (cur, owned) = sp_orchestrate::read(&nl, node, &dirs).await?;
                let actions = sp_orchestrate::plan(node, &cur, &owned)?;
                print_plan(&node.node, &actions, args.common.json);
                Ok(match detailed_exitcode && !actions.is_empty() {
                    true => ExitCode::from(exit::DIFFERS),
                    false => ExitCode::SUCCESS,
                })
            }
            Cmd::Status => {
                let (cur, owned) = sp_orchestrate::read(&nl, node, &dirs).await?;
                let actions = sp_orchestrate::plan(node, &cur, &owned)?;
                let problems = sp_orchestrate::problems(node).await?;
                let errors = problems
                    .iter()
                    .filter(|p| p.severity == sp_inspect::Severity::Error)
                    .count();
                if args.common.json {
                    sp_cli::outln!(
                        "{}",
                        serde_json::json!({
                            "schema": SCHEMA, "node": node.node, "converged": actions.is_empty(),
                            "differences": actions, "problems": problems,
                        })
                    );
                } else {
                    match actions.is_empty() {
                        true => sp_cli::outln!("node {}: converged", node.node),
                        false => sp_cli::outln!(
                            "node {}: {} difference{} (stackplumb apply fixes them)",
                            node.node,
                            actions.len(),
                            if actions.len() == 1 { "" } else { "s" }
                        ),
                    }
                    for a in &actions {
                        sp_cli::outln!("  {a}");
                    }
                    for p in &problems {
                        sp_cli::outln!("  problem  {}", p.message);
                    }
                }
                Ok(ExitCode::from(match (actions.is_empty(), errors) {
                    (false, _) => exit::DIFFERS,
                    (true, 0) => exit::SUCCESS,
                    (true, _) => exit::PROBLEMS,
                }))
            }
            Cmd::Demo | Cmd::Supervise { .. } | Cmd::MetadataProxy { .. } => {
                unreachable!("handled above")
            }
            Cmd::Apply | Cmd::Destroy { .. } => {
                let _lock = sp_orchestrate::supervise::lock(lock_timeout)?;
                let json = args.common.json;
                let mut shown = 0usize;
                let mut report = |a: &Action| {
                    shown += 1;
                    match json {
                        true => {
                            sp_cli::outln!("{}", serde_json::json!({"event": "done", "action": a}))
                        }
                        false => sp_cli::outln!("{a}"),
                    }
                };
                let result = match args.cmd.clone() {
                    Cmd::Destroy { purge } => {
                        sp_orchestrate::take_down(&nl, node, &dirs, purge, &mut report).await
                    }
                    _ => sp_orchestrate::apply(&nl, node, &dirs, &mut report).await,
                };
                match result {
                    Ok(applied) => {
                        if json {
                            sp_cli::outln!(
                                "{}",
                                serde_json::json!({
                                    "event": "result", "schema": SCHEMA, "node": node.node,
                                    "done": applied.done.len(), "left": applied.left,
                                })
                            );
                        } else if applied.done.is_empty() && applied.left.is_empty() {
                            sp_cli::outln!("node {}: no change", node.node);
                        } else if !applied.left.is_empty() {
                            sp_cli::outln!(
                                "node {}: not converged; a new reading still differs:",
                                node.node
                            );
                            for a in &applied.left {
                                sp_cli::outln!("  {a}");
                            }
                        }
                        Ok(ExitCode::from(match applied.left.is_empty() {
                            true => exit::SUCCESS,
                            false => exit::DIFFERS,
                        }))
                    }
                    Err(f) => Err(Box::new(ApplyFailed(f)) as Box<dyn std::error::Error>),
                }
            }
        }
    })
}

/// The plan's format version (plan, status and apply JSON): 3 since a change of rules
/// lists typed `differences`, and a file's content and a proxy's namespaces are
/// arrays (2 typed Open vSwitch objects and `stp/forward_delay` as `on/15`).
const SCHEMA: u32 = 3;

/// The version of supervise's events (docs/json.md): 2 since a change's object is
/// typed.
const EVENT_SCHEMA: u32 = 2;

fn print_plan(node: &str, actions: &[Action], json: bool) {
    if json {
        sp_cli::outln!(
            "{}",
            serde_json::json!({ "schema": SCHEMA, "node": node, "actions": actions })
        );
    } else if actions.is_empty() {
        sp_cli::outln!("node {node}: nothing to do");
    } else {
        sp_cli::outln!(
            "node {node}: {} action{}",
            actions.len(),
            if actions.len() == 1 { "" } else { "s" }
        );
        for a in actions {
            sp_cli::outln!("{a}");
        }
    }
}

/// An apply that stopped part-way, as an error that carries the account.
#[derive(Debug)]
struct ApplyFailed(Box<sp_orchestrate::apply::Failed>);

impl std::fmt::Display for ApplyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.0;
        write!(f, "{}", r.cause)?;
        if !(r.done.is_empty() && r.failed.is_empty() && r.not_done.is_empty()) {
            write!(f, "\n  done: {}", r.done.len())?;
            for a in &r.failed {
                write!(f, "\n  failed: {a}")?;
            }
            for a in &r.not_done {
                write!(f, "\n  not done: {a}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApplyFailed {}

fn dirs(args: &Args) -> sp_orchestrate::Dirs {
    sp_orchestrate::Dirs {
        state: args.state_dir.clone(),
        cinder: args.cinder_dir.clone(),
        ovsdb: args.ovsdb.clone().unwrap_or_else(sp_ovs::default_db),
        program: std::env::current_exe().unwrap_or_default(),
    }
}

/// One supervision event: a line of text after its time (UTC), or a JSON object with
/// `schema` and `time` members (docs/json.md). When the reader of the events has gone,
/// supervision ends as on SIGTERM (the signal is blocked and taken by supervise's
/// signalfd).
fn print_event(e: &sp_orchestrate::supervise::Event, json: bool) {
    let time = sp_cli::time::rfc3339(std::time::SystemTime::now());
    sp_cli::outln!("{}", event_line(e, json, &time));
    if sp_cli::stdout_closed() {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
    }
}

/// The line [`print_event`] prints for `e` at `time`.
fn event_line(e: &sp_orchestrate::supervise::Event, json: bool, time: &str) -> String {
    use sp_orchestrate::supervise::Event;
    if json {
        let mut v = serde_json::json!(e);
        v["schema"] = serde_json::json!(EVENT_SCHEMA);
        v["time"] = serde_json::json!(time);
        return v.to_string();
    }
    let line = match e {
        Event::Watching { network, pid } => format!("watching dnsmasq of {network} (pid {pid})"),
        Event::Changed(c) => c.to_string(),
        Event::Failed { network, error } => {
            format!("dnsmasq of {network}: restart failed, tried again later: {error}")
        }
        Event::WatchingProxy { pid } => format!("watching the metadata proxy (pid {pid})"),
        Event::ProxyFailed { error } => {
            format!("metadata proxy: restart failed, tried again later: {error}")
        }
        Event::Stopped { signal } => format!("stopped by {signal}"),
    };
    format!("{time} {line}")
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

#[cfg(test)]
mod tests {
    use sp_orchestrate::supervise::Event;

    #[test]
    fn every_argument_and_subcommand_is_explained() {
        sp_cli::command::assert_explained::<super::Args>();
    }

    #[test]
    fn supervise_events_carry_their_time_and_typed_facts() {
        let time = "2026-12-01T13:46:44.123Z";
        let restarted = Event::Changed(Box::new(sp_kernel::Change::process(
            sp_kernel::Object::Dnsmasq {
                network_id: "5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
            },
            "restarted",
            4242,
        )));
        assert_eq!(
            super::event_line(&restarted, false, time),
            "2026-12-01T13:46:44.123Z dnsmasq of 5b6a8b87-fd03-46b5-a968-72bac5091b7c: restarted (pid 4242)"
        );
        let v: serde_json::Value =
            serde_json::from_str(&super::event_line(&restarted, true, time)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"schema": 2, "time": time, "event": "changed",
                "object": {"type": "dnsmasq", "network_id": "5b6a8b87-fd03-46b5-a968-72bac5091b7c"},
                "action": "restarted", "pid": 4242})
        );
        let watching = Event::Watching {
            network: "n".into(),
            pid: 7,
        };
        assert_eq!(
            super::event_line(&watching, false, time),
            "2026-12-01T13:46:44.123Z watching dnsmasq of n (pid 7)"
        );
    }
}
