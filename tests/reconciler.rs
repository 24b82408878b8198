//! The reconciler's contract (issue 12), checked through the `stackplumb` binary on the
//! guide's two nodes with the real tools as oracles:
//!
//! * drift made by hand is named by `plan`, counted by `status`, undone by `apply` —
//!   exactly the planned actions, and the kernel (`ip monitor all`) sees changes only on
//!   the drifted object; `plan` is empty afterwards;
//! * what leaves the topology is pruned, and nothing else changes (snapshots diffed);
//! * `destroy` after a topology change removes all the node made, nothing of the other
//!   node;
//! * a symlink planted in the state directory is never written through;
//! * two applies at once on one node move the uplink exactly once;
//! * a second apply does nothing;
//! * an apply that fails part-way (in the ports, at dnsmasq) reports as done what is
//!   there and as not done what is not.
//!
//! The drift matrix and the pruning rows check every row and report every failing one
//! at the end (one cloud built per test; a failing row is repaired by an apply before
//! the next).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sp_testenv::nodes::{two_nodes, Cli};
use sp_testenv::scene::ip;
use sp_testenv::{oracle, require};

// ---------------------------------------------------------------------------------
// The topologies.

const NODES: &str = r#"
[[nodes]]
name = "controller"
roles = ["network", "volume"]
tunnel_ip = "10.0.0.101"

[[nodes]]
name = "compute"
roles = ["compute"]
tunnel_ip = "10.0.0.102"
"#;

const EXT_NET: &str = r#"
[[networks]]
name = "ext-net"
id = "78983ca2-77e3-4cdf-9747-ae1b34addeb7"
type = "flat"
physical_network = "public"
external = true
[networks.subnet]
cidr = "10.0.0.0/24"
gateway = "10.0.0.1"
enable_dhcp = false
allocation_pools = [{ start = "10.0.0.200", end = "10.0.0.250" }]
"#;

const DEMO_NET: &str = r#"
[[networks]]
name = "demo-net"
id = "5b6a8b87-fd03-46b5-a968-72bac5091b7c"
type = "vxlan"
segmentation_id = 1
[networks.subnet]
cidr = "192.168.0.0/24"
gateway = "192.168.0.1"
dns_nameservers = ["8.8.8.8"]
"#;

const NET2: &str = r#"
[[networks]]
name = "net2"
id = "a2000000-0000-4000-8000-000000000002"
type = "vxlan"
segmentation_id = 2
[networks.subnet]
cidr = "192.168.1.0/24"
gateway = "192.168.1.1"
"#;

const NET3: &str = r#"
[[networks]]
name = "net3"
id = "a3000000-0000-4000-8000-000000000003"
type = "vxlan"
segmentation_id = 3
[networks.subnet]
cidr = "192.168.2.0/24"
gateway = "192.168.2.1"
"#;

const DEMO_ROUTER: &str = r#"
[[routers]]
name = "demo-router"
id = "006df4cc-6fb2-40e7-af58-dc68b6755165"
gateway = { network = "ext-net", ip = "10.0.0.200", port_id = "9477c16b-e5f1-4b52-9a3c-6d1e2f3a4b5c", mac = "fa:16:3e:b2:d8:f0" }
interfaces = [{ network = "demo-net", ip = "192.168.0.1", port_id = "7337070d-45e1-4a2b-9c3d-1234567890ab", mac = "fa:16:3e:a7:24:00" }]
"#;

const ROUTER2: &str = r#"
[[routers]]
name = "router2"
id = "b2000000-0000-4000-8000-000000000002"
gateway = { network = "ext-net", ip = "10.0.0.210", port_id = "c2000000-0000-4000-8000-0000000000a1", mac = "fa:16:3e:00:02:a1" }
interfaces = [{ network = "net2", ip = "192.168.1.1", port_id = "d2000000-0000-4000-8000-0000000000b1", mac = "fa:16:3e:00:02:b1" }]
"#;

const VM1: &str = r#"
[[instances]]
name = "vm1"
node = "compute"
network = "demo-net"
port_id = "a7b1762b-3b4c-4d5e-8f90-123456789abc"
mac = "fa:16:3e:5d:2c:01"
ip = "192.168.0.3"
floating_ip = "10.0.0.201"
"#;

const VM2: &str = r#"
[[instances]]
name = "vm2"
node = "compute"
network = "net2"
port_id = "e2000000-0000-4000-8000-000000000002"
mac = "fa:16:3e:00:02:02"
ip = "192.168.1.3"
"#;

const VM3: &str = r#"
[[instances]]
name = "vm3"
node = "compute"
network = "demo-net"
port_id = "e3000000-0000-4000-8000-000000000003"
mac = "fa:16:3e:00:03:03"
ip = "192.168.0.4"
floating_ip = "10.0.0.202"
"#;

/// vm3 without its floating IP.
const VM3_NO_FIP: &str = r#"
[[instances]]
name = "vm3"
node = "compute"
network = "demo-net"
port_id = "e3000000-0000-4000-8000-000000000003"
mac = "fa:16:3e:00:03:03"
ip = "192.168.0.4"
"#;

/// The guide's cloud without Cinder (no loop devices: these tests run in parallel).
fn guide_without_cinder() -> String {
    [NODES, EXT_NET, DEMO_NET, DEMO_ROUTER, VM1].concat()
}

/// The guide's cloud and more: net2 with router2 and vm2, net3 (DHCP only), vm3 with a
/// floating IP.
fn rich() -> String {
    [
        NODES,
        EXT_NET,
        DEMO_NET,
        NET2,
        NET3,
        DEMO_ROUTER,
        ROUTER2,
        VM1,
        VM2,
        VM3,
    ]
    .concat()
}

const EXT_BR: &str = "brq78983ca2-77";
const DEMO_BR: &str = "brq5b6a8b87-fd";
const DEMO_NET_ID: &str = "5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const QROUTER: &str = "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165";
const QR: &str = "qr-7337070d-45";
const QR_TAP: &str = "tap7337070d-45";
const QG: &str = "qg-9477c16b-e5";
const VM1_MAC: &str = "fa:16:3e:5d:2c:01";
const QDHCP: &str = "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const QROUTER2: &str = "qrouter-b2000000-0000-4000-8000-000000000002";
const NET2_ID: &str = "a2000000-0000-4000-8000-000000000002";
const NET3_ID: &str = "a3000000-0000-4000-8000-000000000003";

// ---------------------------------------------------------------------------------
// Running stackplumb.

/// The scene: the two nodes, stackplumb's files, a topology file.
struct Scene {
    cli: Cli,
    _cleanup: sp_testenv::nodes::Cleanup,
    topology: PathBuf,
}

impl Scene {
    fn new(topology: &str) -> Scene {
        let (cli, cleanup) = two_nodes();
        for (p, pkg) in [
            ("nft", "nftables"),
            ("bridge", "iproute2"),
            ("ip", "iproute2"),
        ] {
            require::program(p, pkg);
        }
        // In the scene's state directory: removed with it.
        std::fs::create_dir_all(&cli.state).unwrap();
        let topology_path = cli.state.join("topology.toml");
        let s = Scene {
            cli,
            _cleanup: cleanup,
            topology: topology_path,
        };
        s.set_topology(topology);
        s
    }

    fn set_topology(&self, text: &str) {
        std::fs::write(&self.topology, text).unwrap();
    }

    /// `stackplumb --topology T ARGS` on `node`.
    fn run(&self, node: &str, args: &[&str]) -> Output {
        let topo = self.topology.to_str().unwrap();
        let mut all = vec!["--topology", topo];
        all.extend_from_slice(args);
        self.cli.on(node, &all)
    }

    /// `plan --json`: the actions.
    fn plan(&self, node: &str) -> Vec<Value> {
        let out = self.run(node, &["--json", "plan"]);
        assert!(
            out.status.success(),
            "plan on {node}: {}",
            text(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan --json on {node}: {e}: {}", text(&out.stdout)));
        assert_eq!(v["schema"], 3, "{v}");
        assert_eq!(v["node"], node, "{v}");
        v["actions"].as_array().expect("actions").clone()
    }

    /// `plan --detailed-exitcode`'s exit code.
    fn plan_exit(&self, node: &str) -> Option<i32> {
        self.run(node, &["plan", "--detailed-exitcode"])
            .status
            .code()
    }

    fn status_exit(&self, node: &str) -> Option<i32> {
        self.run(node, &["status"]).status.code()
    }

    /// `apply --json`: the actions reported done, the result line, the exit code.
    fn apply(&self, node: &str) -> Applied {
        let out = self.run(node, &["--json", "apply"]);
        parse_apply(node, &out)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Debug)]
struct Applied {
    done: Vec<Value>,
    result: Value,
    code: Option<i32>,
    stderr: String,
}

fn parse_apply(node: &str, out: &Output) -> Applied {
    let mut done = vec![];
    let mut result = Value::Null;
    for line in text(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("apply --json on {node}: a line not JSON ({e}): {line}"));
        match v["event"].as_str() {
            Some("done") => done.push(v["action"].clone()),
            Some("result") => result = v,
            _ => result = v, // an error object
        }
    }
    Applied {
        done,
        result,
        code: out.status.code(),
        stderr: text(&out.stderr),
    }
}

/// Actions as comparable strings (their JSON).
fn keyed(actions: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = actions.iter().map(Value::to_string).collect();
    v.sort();
    v
}

/// `actions` less one occurrence of each of `base` (the plan's baseline).
fn minus(actions: &[Value], base: &[Value]) -> Vec<Value> {
    let mut left: Vec<Value> = actions.to_vec();
    for b in base {
        if let Some(i) = left.iter().position(|a| a == b) {
            left.remove(i);
        }
    }
    left
}

// ---------------------------------------------------------------------------------
// ip monitor.

/// `ip -n NS monitor all` in each namespace given, lines collected with their time.
struct Monitor {
    children: Vec<Child>,
    events: Arc<Mutex<Vec<(Instant, String)>>>,
    namespaces: Vec<String>,
}

impl Monitor {
    fn start(namespaces: &[&str]) -> Monitor {
        let events: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let mut children = vec![];
        for ns in namespaces {
            let mut child = Command::new("ip")
                .args(["-n", ns, "monitor", "all"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("ip monitor");
            let out = BufReader::new(child.stdout.take().unwrap());
            let (events, ns) = (events.clone(), ns.to_string());
            std::thread::spawn(move || {
                // An event's continuation lines (indented) belong to it.
                let tag = format!("{ns}: ");
                for line in out.lines().map_while(Result::ok) {
                    let mut all = events.lock().unwrap();
                    let last = all.iter_mut().rev().find(|e| e.1.starts_with(&tag));
                    match (line.starts_with([' ', '\t']), last) {
                        (true, Some(e)) => {
                            e.1.push_str(" | ");
                            e.1.push_str(line.trim());
                        }
                        _ => all.push((Instant::now(), format!("{tag}{line}"))),
                    }
                }
            });
            children.push(child);
        }
        // The monitors need a moment to subscribe.
        std::thread::sleep(Duration::from_millis(200));
        let namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        let m = Monitor {
            children,
            events,
            namespaces,
        };
        m.quiet();
        m
    }

    /// Whether an IPv6 address in the watched namespaces is still in duplicate address
    /// detection (tentative, not failed): its end is an event of the kernel's own, up
    /// to seconds after the link came up, under load later still.
    fn dad_pending(&self) -> bool {
        self.namespaces.iter().any(|ns| {
            let out = Command::new("ip")
                .args(["-n", ns, "-j", "-6", "addr", "show"])
                .output()
                .expect("ip addr");
            let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
            links.as_array().into_iter().flatten().any(|l| {
                l["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["tentative"] == json!(true) && a["dadfailed"] != json!(true))
            })
        })
    }

    /// Waits until no event came for 1.5 s and no address is in DAD (the kernel's
    /// delayed work: DAD, link watch).
    fn quiet(&self) {
        let started = Instant::now();
        loop {
            let last = self.events.lock().unwrap().last().map_or(started, |e| e.0);
            if last.elapsed() > Duration::from_millis(1500)
                && started.elapsed() > Duration::from_millis(300)
                && !self.dad_pending()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the namespaces never went quiet: {:?}",
                self.events
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The events from `t0` on, less the kernel's neighbour work: entries learned from
    /// traffic going STALE, PROBE…, and the NOARP entries of multicast groups (`ff02::2`,
    /// `224.0.0.x`) the kernel makes and collects on its own. Only written (PERMANENT,
    /// NOARP) neighbours of unicast addresses are configuration.
    fn since(&self, t0: Instant) -> Vec<String> {
        let multicast = |e: &str| {
            e.split_whitespace()
                .find_map(|w| w.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_multicast())
        };
        let learned = |e: &str| {
            e.contains("[NEIGH]")
                && ((!e.contains("PERMANENT") && !e.contains("NOARP")) || multicast(e))
        };
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 >= t0 && !learned(&e.1))
            .map(|e| e.1.clone())
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------
// Snapshots.

/// What the real tools show in every namespace of the sandbox, keyed by object:
/// `netns N`, `link NS NAME`, `addr NS DEV A/P`, `route NS …`, `fdb NS DEV MAC DST`,
/// `neigh NS DEV IP MAC`.
type Snapshot = BTreeMap<String, String>;

fn snapshot() -> Snapshot {
    let mut s = Snapshot::new();
    for ns in oracle::netns_list() {
        s.insert(format!("netns {ns}"), String::new());
        let links = oracle::links(Some(&ns));
        for l in &links {
            let name = l["ifname"].as_str().unwrap();
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            s.insert(
                format!("link {ns} {name}"),
                format!(
                    "kind={} master={} mtu={} mac={} up={up}",
                    l["linkinfo"]["info_kind"], l["master"], l["mtu"], l["address"]
                ),
            );
            if l["linkinfo"]["info_kind"] == "vxlan" {
                for f in oracle::fdb(Some(&ns), name) {
                    // What was written (permanent), not what the device learned
                    // from traffic (the kernel's own, coming and going).
                    if f["dst"].is_string() && f["state"] == "permanent" {
                        s.insert(
                            format!(
                                "fdb {ns} {name} {} {}",
                                f["mac"].as_str().unwrap_or("-"),
                                f["dst"].as_str().unwrap()
                            ),
                            f["state"].to_string(),
                        );
                    }
                }
                for n in oracle::neighbours(Some(&ns), name) {
                    s.insert(
                        format!(
                            "neigh {ns} {name} {} {}",
                            n["dst"].as_str().unwrap_or("-"),
                            n["lladdr"].as_str().unwrap_or("-")
                        ),
                        n["state"].to_string(),
                    );
                }
            }
        }
        for l in oracle::addrs(Some(&ns)) {
            let dev = l["ifname"].as_str().unwrap();
            for a in l["addr_info"].as_array().unwrap() {
                s.insert(
                    format!(
                        "addr {ns} {dev} {}/{}",
                        a["local"].as_str().unwrap(),
                        a["prefixlen"]
                    ),
                    String::new(),
                );
            }
        }
        for r in oracle::route_lines(Some(&ns)) {
            s.insert(format!("route {ns} {r}"), String::new());
        }
    }
    s
}

/// The keys whose presence or value differ.
fn diff(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", a.get(k), b.get(k)))
        .collect()
}

// ---------------------------------------------------------------------------------
// Soft failures: every row is checked, every failure reported.

#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    /// Runs `row`; a panic in it is recorded under `name`.
    fn row(&mut self, name: &str, row: impl FnOnce()) {
        let r = catch_unwind(AssertUnwindSafe(row));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.0.push(format!("--- {name}:\n{msg}"));
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} row(s) failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn dnsmasq_pid(state: &Path, net: &str) -> Option<u32> {
    std::fs::read_to_string(state.join("dhcp").join(net).join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The metadata proxies' pids in state directory `state`
/// (`stackplumb/metadata-proxy-<node>.pid`).
fn proxy_pids(state: &Path) -> Vec<u32> {
    std::fs::read_dir(state.join("stackplumb"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
        .collect()
}

/// `/proc/PID` is a dnsmasq in named namespace `ns`.
fn is_dnsmasq_in(pid: u32, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat.contains(") Z");
    let same_ns = match (
        std::fs::metadata(format!("/proc/{pid}/ns/net")),
        std::fs::metadata(format!("/run/netns/{ns}")),
    ) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    String::from_utf8_lossy(argv0).ends_with("dnsmasq") && !zombie && same_ns
}

/// The nft ruleset in `ns` as JSON text.
fn nft_ruleset(ns: &str) -> String {
    require::run(Command::new("ip").args(["netns", "exec", ns, "nft", "-j", "list", "ruleset"]))
}

/// `nft list ruleset` in `ns` (text, without handles).
fn nft_text(ns: &str) -> String {
    require::run(Command::new("ip").args(["netns", "exec", ns, "nft", "list", "ruleset"]))
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------
// 1. The drift matrix.

/// One row: drift by hand, the action the plan must name, the namespaces the
/// monitors watch, the words an event line may carry, and a check after the fix.
struct Drift {
    name: &'static str,
    drift: Box<dyn Fn(&Path)>,
    expect: Value,
    /// (op, type) when `expect` is not exact (NAT, dnsmasq: create or change).
    loose: bool,
    watch: Vec<&'static str>,
    allowed: Vec<&'static str>,
    after: Box<dyn Fn(&Path)>,
}

fn link_change(ns: Option<&str>, name: &str, attr: &str, old: &str, new: &str) -> Value {
    json!({"op": "change", "attribute": attr, "old": old, "new": new,
           "object": {"type": "link", "namespace": ns, "name": name}})
}

fn drift_rows() -> Vec<Drift> {
    vec![
        Drift {
            name: "tap MTU",
            drift: Box::new(|_| {
                ip(&["-n", "controller", "link", "set", QR_TAP, "mtu", "1500"]);
            }),
            expect: link_change(None, QR_TAP, "mtu", "1500", "1450"),
            loose: false,
            watch: vec!["controller"],
            allowed: vec![QR_TAP],
            after: Box::new(|_| {
                assert_eq!(oracle::link(Some("controller"), QR_TAP)["mtu"], 1450);
            }),
        },
        Drift {
            name: "qr- MTU in qrouter",
            drift: Box::new(|_| {
                ip(&["-n", QROUTER, "link", "set", QR, "mtu", "1400"]);
            }),
            expect: link_change(Some(QROUTER), QR, "mtu", "1400", "1450"),
            loose: false,
            watch: vec!["controller", QROUTER],
            allowed: vec![QR],
            after: Box::new(|_| {
                assert_eq!(oracle::link(Some(QROUTER), QR)["mtu"], 1450);
            }),
        },
        Drift {
            name: "qr- MAC",
            drift: Box::new(|_| {
                ip(&[
                    "-n",
                    QROUTER,
                    "link",
                    "set",
                    QR,
                    "address",
                    "fa:16:3e:00:00:99",
                ]);
            }),
            expect: link_change(
                Some(QROUTER),
                QR,
                "mac",
                "fa:16:3e:00:00:99",
                "fa:16:3e:a7:24:00",
            ),
            loose: false,
            // The bridge learns the MAC through the tap: fdb events name the tap.
            watch: vec!["controller", QROUTER],
            allowed: vec![QR, QR_TAP, "fa:16:3e:00:00:99", "fa:16:3e:a7:24:00"],
            after: Box::new(|_| {
                assert_eq!(
                    oracle::link(Some(QROUTER), QR)["address"],
                    "fa:16:3e:a7:24:00"
                );
            }),
        },
        Drift {
            name: "tap state down",
            drift: Box::new(|_| {
                ip(&["-n", "controller", "link", "set", QR_TAP, "down"]);
            }),
            expect: link_change(None, QR_TAP, "state", "down", "up"),
            loose: false,
            // Its peer's carrier follows, and the bridge's port state.
            watch: vec!["controller", QROUTER],
            allowed: vec![QR_TAP, QR],
            after: Box::new(|_| {
                let l = oracle::link(Some("controller"), QR_TAP);
                assert!(
                    l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                    "{l}"
                );
            }),
        },
        Drift {
            name: "tap master removed",
            drift: Box::new(|_| {
                ip(&["-n", "controller", "link", "set", QR_TAP, "nomaster"]);
            }),
            expect: link_change(None, QR_TAP, "master", "none", DEMO_BR),
            loose: false,
            watch: vec!["controller"],
            // Enslaving the tap again gives the bridge back the MAC it had with it (a
            // bridge takes its ports' lowest): the kernel's doing, on re-enslaving.
            allowed: vec![QR_TAP, DEMO_BR],
            after: Box::new(|_| {
                assert_eq!(oracle::link(Some("controller"), QR_TAP)["master"], DEMO_BR);
            }),
        },
        Drift {
            name: "qr- gateway address removed",
            drift: Box::new(|_| {
                ip(&["-n", QROUTER, "addr", "del", "192.168.0.1/24", "dev", QR]);
            }),
            expect: json!({"op": "create", "object": {"type": "address", "namespace": QROUTER,
                           "device": QR, "address": "192.168.0.1/24"}}),
            loose: false,
            watch: vec!["controller", QROUTER],
            allowed: vec![QR],
            after: Box::new(|_| {
                assert_eq!(oracle::inet_addrs(Some(QROUTER), QR), ["192.168.0.1/24"]);
            }),
        },
        Drift {
            name: "extra address on qg-",
            drift: Box::new(|_| {
                ip(&["-n", QROUTER, "addr", "add", "198.51.100.7/24", "dev", QG]);
            }),
            expect: json!({"op": "delete", "object": {"type": "address", "namespace": QROUTER,
                           "device": QG, "address": "198.51.100.7/24"}}),
            loose: false,
            watch: vec!["controller", QROUTER],
            allowed: vec![QG],
            after: Box::new(|_| {
                let a = oracle::inet_addrs(Some(QROUTER), QG);
                assert!(!a.iter().any(|a| a.starts_with("198.51.100.7")), "{a:?}");
                assert!(a.contains(&"10.0.0.200/24".to_string()), "{a:?}");
            }),
        },
        Drift {
            name: "qrouter default route deleted",
            drift: Box::new(|_| {
                ip(&["-n", QROUTER, "route", "del", "default"]);
            }),
            expect: json!({"op": "create", "object": {"type": "default_route", "namespace": QROUTER,
                           "device": QG, "gateway": "10.0.0.1"}}),
            loose: false,
            watch: vec!["controller", QROUTER],
            allowed: vec!["default via 10.0.0.1"],
            after: Box::new(|_| {
                let r = oracle::routes(Some(QROUTER), false);
                assert!(
                    r.iter().any(|r| r["dst"] == "default"
                        && r["gateway"] == "10.0.0.1"
                        && r["dev"] == QG),
                    "{r:?}"
                );
            }),
        },
        Drift {
            name: "ip_forward 0 in qrouter",
            drift: Box::new(|_| {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    QROUTER,
                    "sh",
                    "-c",
                    "echo 0 > /proc/sys/net/ipv4/ip_forward",
                ]);
            }),
            expect: json!({"op": "change", "attribute": "value", "old": "0", "new": "1",
                           "object": {"type": "forwarding", "namespace": QROUTER}}),
            loose: false,
            watch: vec!["controller", QROUTER],
            allowed: vec!["forwarding"],
            after: Box::new(|_| {
                assert_eq!(oracle::net_sysctl(Some(QROUTER), "ipv4/ip_forward"), "1");
            }),
        },
        Drift {
            name: "vxlan MTU",
            drift: Box::new(|_| {
                ip(&["-n", "controller", "link", "set", "vxlan-1", "mtu", "1400"]);
            }),
            expect: link_change(None, "vxlan-1", "mtu", "1400", "1450"),
            loose: false,
            // The bridge's MTU follows its smallest port (the kernel's own doing).
            watch: vec!["controller"],
            allowed: vec!["vxlan-1", DEMO_BR],
            after: Box::new(|_| {
                assert_eq!(oracle::link(Some("controller"), "vxlan-1")["mtu"], 1450);
                assert_eq!(oracle::link(Some("controller"), DEMO_BR)["mtu"], 1450);
            }),
        },
        Drift {
            name: "l2population FDB entry deleted",
            drift: Box::new(|_| {
                sh(&[
                    "bridge",
                    "-n",
                    "controller",
                    "fdb",
                    "del",
                    VM1_MAC,
                    "dev",
                    "vxlan-1",
                    "dst",
                    "10.0.0.102",
                ]);
            }),
            expect: json!({"op": "create", "object": {"type": "fdb", "device": "vxlan-1",
                           "mac": VM1_MAC, "dst": "10.0.0.102"}}),
            loose: false,
            watch: vec!["controller"],
            allowed: vec![VM1_MAC],
            after: Box::new(|_| {
                let f = oracle::fdb(Some("controller"), "vxlan-1");
                assert!(
                    f.iter()
                        .any(|e| e["mac"] == VM1_MAC && e["dst"] == "10.0.0.102"),
                    "{f:?}"
                );
            }),
        },
        Drift {
            name: "permanent neighbour deleted",
            drift: Box::new(|_| {
                ip(&[
                    "-n",
                    "controller",
                    "neigh",
                    "del",
                    "192.168.0.3",
                    "dev",
                    "vxlan-1",
                ]);
            }),
            expect: json!({"op": "create", "object": {"type": "neighbour", "device": "vxlan-1",
                           "ip": "192.168.0.3", "mac": VM1_MAC}}),
            loose: false,
            watch: vec!["controller"],
            allowed: vec!["192.168.0.3"],
            after: Box::new(|_| {
                let n = oracle::neighbours(Some("controller"), "vxlan-1");
                assert!(
                    n.iter().any(|e| e["dst"] == "192.168.0.3"
                        && e["lladdr"] == VM1_MAC
                        && e["state"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))),
                    "{n:?}"
                );
            }),
        },
        Drift {
            name: "router NAT flushed (nft flush ruleset in qrouter)",
            drift: Box::new(|state| {
                std::fs::write(state.join("nft.before"), nft_text(QROUTER)).unwrap();
                sh(&["ip", "netns", "exec", QROUTER, "nft", "flush", "ruleset"]);
            }),
            expect: json!({"object": {"type": "nat", "namespace": QROUTER}}),
            loose: true,
            watch: vec!["controller", QROUTER],
            allowed: vec![],
            after: Box::new(|state| {
                let before = std::fs::read_to_string(state.join("nft.before")).unwrap();
                let now = nft_text(QROUTER);
                assert!(
                    before.contains("snat") && before.contains("10.0.0.200"),
                    "{before}"
                );
                assert_eq!(
                    now, before,
                    "the router's ruleset (nft list ruleset) is as it was"
                );
                // And nft's JSON reads it too.
                assert!(nft_ruleset(QROUTER).contains("snat"));
            }),
        },
        Drift {
            name: "dnsmasq killed",
            drift: Box::new(|state| {
                let pid = dnsmasq_pid(state, DEMO_NET_ID).expect("dnsmasq pid");
                sh(&["kill", "-9", &pid.to_string()]);
                std::thread::sleep(Duration::from_millis(200));
            }),
            expect: json!({"object": {"type": "dnsmasq", "network_id": DEMO_NET_ID}}),
            loose: true,
            watch: vec!["controller", QDHCP],
            allowed: vec![],
            after: Box::new(|state| {
                let pid = dnsmasq_pid(state, DEMO_NET_ID).expect("a new pid file");
                assert!(
                    is_dnsmasq_in(pid, &format!("qdhcp-{DEMO_NET_ID}")),
                    "pid {pid} is not a live dnsmasq in the qdhcp namespace"
                );
            }),
        },
        Drift {
            name: "dnsmasq host file edited",
            drift: Box::new(|state| {
                let f = state.join("dhcp").join(DEMO_NET_ID).join("host");
                let mut t = std::fs::read_to_string(&f).expect("host file");
                std::fs::write(state.join("host.orig"), &t).unwrap();
                t.push_str("fa:16:3e:66:66:66,host-192-168-0-66.openstacklocal,192.168.0.66\n");
                std::fs::write(&f, t).unwrap();
            }),
            expect: json!({"object": {"type": "dhcp_file", "network_id": DEMO_NET_ID, "file": "host"}, "op": "change"}),
            loose: true,
            watch: vec!["controller"],
            allowed: vec![],
            after: Box::new(|state| {
                let f = state.join("dhcp").join(DEMO_NET_ID).join("host");
                assert_eq!(
                    std::fs::read_to_string(f).unwrap(),
                    std::fs::read_to_string(state.join("host.orig")).unwrap(),
                    "the host file is as it was"
                );
            }),
        },
    ]
}

/// Whether `action` is what the row expects: exactly, or (loose) the object and op given.
fn matches_expected(action: &Value, expect: &Value, loose: bool) -> bool {
    if !loose {
        return action == expect;
    }
    let obj_ok = expect["object"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &action["object"][k] == v);
    let op_ok = expect.get("op").is_none_or(|op| &action["op"] == op);
    obj_ok && op_ok
}

/// Actions in one line each, for messages.
fn brief(actions: &[Value]) -> String {
    actions
        .iter()
        .map(|a| format!("\n      {a}"))
        .collect::<String>()
}

/// Soft checks inside a row: all are evaluated, the row fails with every message.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    fn done(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n  "));
    }
}

/// Builds `topology` on both nodes, then for each row: drift → plan names it → status 4
/// → apply does exactly the plan, the kernel sees only the drifted object → plan empty.
fn drift_matrix(topology: &str, rows: Vec<Drift>) {
    let s = Scene::new(topology);
    let state = s.cli.state.clone();
    let mut report = Report::default();
    for node in ["controller", "compute"] {
        let a = s.apply(node);
        if node == "controller" {
            assert!(
                !a.done.is_empty(),
                "first apply on {node} did nothing: {a:?}"
            );
        }
        report.row(&format!("first apply on {node}"), || {
            assert_eq!(
                a.code,
                Some(0),
                "the first apply on {node} does not converge; stderr: {}",
                a.stderr
            );
        });
    }
    // The baseline: nothing left to do. Should it not be empty, that is a failure, and
    // each row checks what its drift adds to it.
    let baseline = s.plan("controller");
    report.row("baseline: plan after the first apply", || {
        assert!(
            baseline.is_empty(),
            "plan after apply is not empty on controller:{}",
            brief(&baseline)
        );
        let c = s.plan("compute");
        assert!(
            c.is_empty(),
            "plan after apply is not empty on compute:{}",
            brief(&c)
        );
    });

    for row in rows {
        report.row(row.name, || {
            (row.drift)(&state);
            let mut c = Checks::default();
            // plan names the drifted object, and nothing else.
            let planned = s.plan("controller");
            let added = minus(&planned, &baseline);
            let hit = added
                .iter()
                .find(|a| matches_expected(a, &row.expect, row.loose))
                .cloned();
            assert!(
                hit.is_some() && added.len() == 1,
                "plan after the drift: expected exactly {} (besides the baseline), got:{}",
                row.expect,
                brief(&added)
            );
            let hit = hit.unwrap();
            // The text plan: the same actions, with their signs.
            let out = s.run("controller", &["plan"]);
            let sign = match hit["op"].as_str() {
                Some("create") => "+ ",
                Some("delete") => "- ",
                _ => "~ ",
            };
            let lines: Vec<String> = text(&out.stdout)
                .lines()
                .filter(|l| l.starts_with(['+', '-', '~']))
                .map(str::to_owned)
                .collect();
            c.check(lines.len() == planned.len(), || {
                format!("text plan has {} action lines, JSON {}: {lines:?}", lines.len(), planned.len())
            });
            c.check(lines.iter().any(|l| l.starts_with(sign)), || {
                format!("no {sign:?} line in the text plan: {lines:?}")
            });
            let st = s.status_exit("controller");
            c.check(st == Some(4), || format!("status exits {st:?}, not 4, with a difference"));
            let pe = s.plan_exit("controller");
            c.check(pe == Some(4), || format!("plan --detailed-exitcode exits {pe:?}, not 4"));

            let mon = Monitor::start(&row.watch);
            let again = s.plan("controller");
            c.check(keyed(&again) == keyed(&planned), || {
                format!("the plan changed by itself:{}", brief(&again))
            });
            let t0 = Instant::now();
            let applied = s.apply("controller");
            std::thread::sleep(Duration::from_millis(400));
            let events = mon.since(t0);
            drop(mon);
            c.check(applied.done.contains(&hit), || {
                format!("apply did not report the drifted object's action {hit}; done:{}\nstderr: {}",
                    brief(&applied.done), applied.stderr)
            });
            c.check(keyed(&applied.done) == keyed(&again), || {
                format!(
                    "apply's actions differ from the plan:\n    planned:{}\n    done:{}\n    stderr: {}",
                    brief(&again),
                    brief(&applied.done),
                    applied.stderr.trim()
                )
            });
            c.check(applied.result["event"] == "result" && applied.result["done"] == again.len(), || {
                format!("apply's result line: {}", applied.result)
            });
            c.check(applied.code == Some(0), || format!("apply exits {:?}", applied.code));
            // The kernel saw changes only on the drifted object.
            let foreign: Vec<&String> = events
                .iter()
                .filter(|e| !row.allowed.iter().any(|w| e.contains(w)))
                .collect();
            c.check(foreign.is_empty(), || {
                format!(
                    "ip monitor saw changes beyond the drifted object (allowed: {:?}):\n      {}",
                    row.allowed,
                    foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n      ")
                )
            });
            let fixed = catch_unwind(AssertUnwindSafe(|| (row.after)(&state)));
            c.check(fixed.is_ok(), || "the oracle does not see the drift undone (above)".into());
            let after = s.plan("controller");
            let left = minus(&after, &baseline);
            c.check(left.is_empty(), || format!("plan after the fix still has:{}", brief(&left)));
            let pe = s.plan_exit("controller");
            c.check(pe == Some(0), || format!("plan --detailed-exitcode after the fix exits {pe:?}, not 0"));
            c.done();
        });
        // Whatever happened, repair before the next row.
        let _ = s.apply("controller");
    }
    report.finish();
}

/// The drift matrix on the guide's cloud (Cinder aside).
#[test]
fn drift_by_hand_is_planned_reported_and_undone_exactly() {
    drift_matrix(&guide_without_cinder(), drift_rows());
}

/// The same rows but l2population's on the network node alone (no instance, so no
/// l2population entry at all): these rows do not depend on the l2population unit.
#[test]
fn drift_on_the_network_node_alone() {
    let rows = drift_rows()
        .into_iter()
        .filter(|r| !r.name.contains("l2population") && !r.name.contains("neighbour"))
        .collect();
    drift_matrix(&[NODES, EXT_NET, DEMO_NET, DEMO_ROUTER].concat(), rows);
}

// ---------------------------------------------------------------------------------
// 2. Pruning.

/// A snapshot key that may differ in a row: (namespace, a word of the key).
type Allowed = Vec<(&'static str, String)>;

fn key_allowed(key: &str, allowed: &Allowed) -> bool {
    let mut parts = key.splitn(3, ' ');
    let (kind, ns, rest) = (
        parts.next().unwrap(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    allowed.iter().any(|(a_ns, word)| {
        (kind == "netns" && ns.starts_with(word.as_str()))
            || ((*a_ns == "*" || *a_ns == ns) && (rest.contains(word.as_str()) || ns == word))
    })
}

struct Prune {
    name: &'static str,
    topology: String,
    /// (node, op, object type, a field, its value) the plan must list.
    deletions: Vec<(&'static str, &'static str, &'static str, String)>,
    allowed: Allowed,
    /// Snapshot keys (prefixes) that must be gone afterwards.
    gone: Vec<String>,
}

fn prune_rows() -> Vec<Prune> {
    let r2_taps = ["tapc2000000-00", "tapd2000000-00"];
    vec![
        Prune {
            name: "a router removed",
            topology: [
                NODES,
                EXT_NET,
                DEMO_NET,
                NET2,
                NET3,
                DEMO_ROUTER,
                VM1,
                VM2,
                VM3,
            ]
            .concat(),
            deletions: vec![
                ("controller", "namespace", "name", QROUTER2.into()),
                ("compute", "fdb", "mac", "fa:16:3e:00:02:b1".into()),
                ("compute", "neighbour", "ip", "192.168.1.1".into()),
            ],
            allowed: vec![
                ("*", QROUTER2.into()),
                ("controller", r2_taps[0].into()),
                ("controller", r2_taps[1].into()),
                // compute's l2population entries for router2's port on net2.
                ("compute", "vxlan-2 fa:16:3e:00:02:b1".into()),
                ("compute", "vxlan-2 192.168.1.1".into()),
            ],
            gone: vec![
                format!("netns {QROUTER2}"),
                format!("link controller {}", r2_taps[0]),
                format!("link controller {}", r2_taps[1]),
            ],
        },
        Prune {
            name: "a network removed",
            topology: [
                NODES,
                EXT_NET,
                DEMO_NET,
                NET2,
                DEMO_ROUTER,
                ROUTER2,
                VM1,
                VM2,
                VM3,
            ]
            .concat(),
            deletions: vec![
                ("controller", "bridge", "name", "brqa3000000-00".into()),
                ("controller", "vxlan", "name", "vxlan-3".into()),
                (
                    "controller",
                    "namespace",
                    "name",
                    format!("qdhcp-{NET3_ID}"),
                ),
                ("controller", "dnsmasq", "network_id", NET3_ID.into()),
            ],
            allowed: vec![
                ("*", format!("qdhcp-{NET3_ID}")),
                ("controller", "brqa3000000-00".into()),
                ("controller", "vxlan-3".into()),
                // The DHCP port's tap (its id is derived from the network's).
                ("controller", "DHCP-TAP".into()),
            ],
            gone: vec![
                format!("netns qdhcp-{NET3_ID}"),
                "link controller brqa3000000-00".into(),
                "link controller vxlan-3".into(),
            ],
        },
        Prune {
            name: "an instance removed",
            topology: [
                NODES,
                EXT_NET,
                DEMO_NET,
                NET2,
                NET3,
                DEMO_ROUTER,
                ROUTER2,
                VM1,
                VM3,
            ]
            .concat(),
            deletions: vec![
                ("compute", "namespace", "name", "vm2".into()),
                ("compute", "bridge", "name", "brqa2000000-00".into()),
                ("compute", "vxlan", "name", "vxlan-2".into()),
                ("controller", "fdb", "mac", "fa:16:3e:00:02:02".into()),
                ("controller", "neighbour", "ip", "192.168.1.3".into()),
            ],
            allowed: vec![
                ("*", "vm2".into()),
                ("compute", "tape2000000-00".into()),
                ("compute", "brqa2000000-00".into()),
                ("compute", "vxlan-2".into()),
                ("controller", "vxlan-2 fa:16:3e:00:02:02".into()),
                ("controller", "vxlan-2 192.168.1.3".into()),
                // The flood entry to compute, which no longer has a port on net2.
                ("controller", "vxlan-2 00:00:00:00:00:00 10.0.0.102".into()),
            ],
            gone: vec![
                "netns vm2".into(),
                "link compute tape2000000-00".into(),
                "link compute brqa2000000-00".into(),
                "fdb controller vxlan-2 fa:16:3e:00:02:02".into(),
                "neigh controller vxlan-2 192.168.1.3".into(),
            ],
        },
        Prune {
            name: "a floating IP removed",
            topology: [
                NODES,
                EXT_NET,
                DEMO_NET,
                NET2,
                NET3,
                DEMO_ROUTER,
                ROUTER2,
                VM1,
                VM2,
                VM3_NO_FIP,
            ]
            .concat(),
            deletions: vec![("controller", "address", "address", "10.0.0.202/32".into())],
            allowed: vec![(QROUTER, "10.0.0.202".into())],
            gone: vec![format!("addr {QROUTER} {QG} 10.0.0.202/32")],
        },
    ]
}

#[test]
fn what_leaves_the_topology_is_pruned_and_nothing_else() {
    let s = Scene::new(&rich());
    let mut report = Report::default();
    let converge = |what: &str| {
        for node in ["controller", "compute"] {
            let a = s.apply(node);
            assert!(
                a.code == Some(0),
                "{what}: apply on {node} exits {:?}: {}",
                a.code,
                a.stderr.trim()
            );
        }
    };
    report.row("apply of topology A", || converge("topology A"));
    for row in prune_rows() {
        report.row(row.name, || {
            s.set_topology(&rich());
            let _ = catch_unwind(AssertUnwindSafe(|| converge("back to topology A")));
            let before = snapshot();
            s.set_topology(&row.topology);
            let mut c = Checks::default();
            // The DHCP port's tap of net3, as iproute2 names it.
            let dhcp_tap = before
                .keys()
                .find_map(|k| k.strip_prefix(&format!("link qdhcp-{NET3_ID} ns-")))
                .map(|rest| format!("tap{rest}"))
                .unwrap_or_else(|| "tap-of-net3-not-found".into());
            let allowed: Allowed = row
                .allowed
                .iter()
                .map(|(ns, w)| (*ns, if w == "DHCP-TAP" { dhcp_tap.clone() } else { w.clone() }))
                .collect();
            let mut planned = BTreeMap::new();
            for node in ["controller", "compute"] {
                let p = s.plan(node);
                let out = s.run(node, &["plan"]);
                let minus_lines = text(&out.stdout).lines().filter(|l| l.starts_with("- ")).count();
                let deletes = p.iter().filter(|a| a["op"] == "delete").count();
                c.check(minus_lines == deletes, || {
                    format!("{node}: {minus_lines} '-' lines, {deletes} deletions in the JSON plan")
                });
                planned.insert(node, p);
            }
            for (node, ty, field, value) in &row.deletions {
                let found = planned[node].iter().any(|a| {
                    a["op"] == "delete" && a["object"]["type"] == *ty && a["object"][*field] == value.as_str()
                });
                c.check(found, || {
                    format!("{node}'s plan lacks the deletion of {ty} {field}={value}:{}", brief(&planned[node]))
                });
            }
            for node in ["controller", "compute"] {
                let a = s.apply(node);
                c.check(a.code == Some(0), || format!("apply on {node} exits {:?}: {}", a.code, a.stderr.trim()));
                c.check(keyed(&a.done) == keyed(&planned[node]), || {
                    format!(
                        "{node}: apply's actions differ from the plan:\n    planned:{}\n    done:{}",
                        brief(&planned[node]),
                        brief(&a.done)
                    )
                });
            }
            let after = snapshot();
            let changed = diff(&before, &after);
            let foreign: Vec<&String> = changed.iter().filter(|k| !key_allowed(k, &allowed)).collect();
            c.check(foreign.is_empty(), || {
                format!(
                    "changed beyond what was removed:\n      {}",
                    foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n      ")
                )
            });
            for g in &row.gone {
                c.check(before.keys().any(|k| k.starts_with(g.as_str())), || {
                    format!("{g} was not there before (the scene is not as expected)")
                });
                c.check(!after.keys().any(|k| k.starts_with(g.as_str())), || format!("{g} is still there"));
            }
            for node in ["controller", "compute"] {
                let pe = s.plan_exit(node);
                c.check(pe == Some(0), || format!("{node}: plan after the prune exits {pe:?}: {}", brief(&s.plan(node))));
            }
            c.done();
        });
    }
    report.finish();
}

// ---------------------------------------------------------------------------------
// 3. destroy after a topology change.

#[test]
fn destroy_after_a_topology_change_removes_all_the_node_made_and_nothing_else() {
    let s = Scene::new(&rich());
    let mut c = Checks::default();
    for node in ["controller", "compute"] {
        let a = s.apply(node);
        c.check(a.code == Some(0), || {
            format!("apply A on {node}: {:?} {}", a.code, a.stderr.trim())
        });
    }
    let pids: Vec<u32> = [DEMO_NET_ID, NET2_ID, NET3_ID]
        .iter()
        .filter_map(|n| dnsmasq_pid(&s.cli.state, n))
        .collect();
    let before = snapshot();
    for ns in [QROUTER, QROUTER2] {
        assert!(
            before.contains_key(&format!("netns {ns}")),
            "{ns} after apply A"
        );
    }
    // Topology B: router2 gone.
    s.set_topology(
        &[
            NODES,
            EXT_NET,
            DEMO_NET,
            NET2,
            NET3,
            DEMO_ROUTER,
            VM1,
            VM2,
            VM3,
        ]
        .concat(),
    );

    // compute first: every controller object stays.
    let out = s.run("compute", &["destroy"]);
    c.check(out.status.success(), || {
        format!("destroy on compute: {}", text(&out.stderr))
    });
    let mid = snapshot();
    let foreign: Vec<String> = diff(&before, &mid)
        .into_iter()
        .filter(|k| {
            !k.starts_with("link compute ")
                && !k.starts_with("addr compute ")
                && !k.starts_with("route compute ")
                && !k.starts_with("fdb compute ")
                && !k.starts_with("neigh compute ")
                && !k.starts_with("netns vm")
                && !k.starts_with("link vm")
                && !k.starts_with("addr vm")
                && !k.starts_with("route vm")
        })
        .collect();
    c.check(foreign.is_empty(), || {
        format!(
            "compute's destroy changed other things:\n      {}",
            foreign.join("\n      ")
        )
    });
    let compute_links = sp_testenv::nodes::link_names("compute");
    c.check(compute_links == ["lo", "eth0"], || {
        format!("compute keeps {compute_links:?}")
    });

    let out = s.run("controller", &["destroy", "--purge"]);
    c.check(out.status.success(), || {
        format!("destroy on controller: {}", text(&out.stderr))
    });
    let mut left = oracle::netns_list();
    left.sort();
    c.check(left == ["compute", "controller", "extpc"], || {
        format!("namespaces left: {left:?}")
    });
    let links = sp_testenv::nodes::link_names("controller");
    c.check(links == ["lo", "eth0"], || {
        format!("controller keeps {links:?}")
    });
    let addrs = oracle::inet_addrs(Some("controller"), "eth0");
    c.check(addrs == ["10.0.0.101/24"], || {
        format!("eth0's addresses: {addrs:?}")
    });
    let routes = oracle::routes(Some("controller"), false);
    c.check(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.0.0.1" && r["dev"] == "eth0"),
        || format!("the default route is not back on eth0: {routes:?}"),
    );
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        c.check(stat.is_empty() || stat.contains(") Z"), || {
            format!("dnsmasq {pid} still runs")
        });
    }
    // Nothing left to destroy: the plan of an empty topology on either node is empty
    // and a second destroy does nothing.
    for node in ["controller", "compute"] {
        let again = parse_apply(node, &s.run(node, &["--json", "destroy"]));
        c.check(again.done.is_empty() && again.code == Some(0), || {
            format!("a second destroy on {node}: {again:?}")
        });
    }
    c.done();
}

// ---------------------------------------------------------------------------------
// 4. A symlink planted in the state directory.

#[test]
fn a_symlink_planted_in_the_state_dir_is_never_written_through() {
    let s = Scene::new(&guide_without_cinder());
    let mut c = Checks::default();
    let dir = s.cli.state.join("stackplumb");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let record = dir.join("owned-controller.json");
    // (a) to an existing file of someone else.
    let target = std::env::temp_dir().join(format!("stackplumb-precious-{}", std::process::id()));
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, &record).unwrap();
    let out = s.run("controller", &["apply"]);
    c.check(
        std::fs::read_to_string(&target).unwrap() == "precious\n",
        || "the symlink's target was written through".into(),
    );
    let still_link = std::fs::symlink_metadata(&record)
        .unwrap()
        .file_type()
        .is_symlink();
    c.check(!out.status.success() || !still_link, || {
        format!(
            "apply succeeded ({:?}) and the symlink is still there",
            out.status.code()
        )
    });
    let _ = std::fs::remove_file(&target);
    // Whatever the first apply did, take it down for (b).
    let _ = std::fs::remove_file(&record);
    // (b) to a file that does not exist: it must not be created.
    let missing = std::env::temp_dir().join(format!("stackplumb-nothing-{}", std::process::id()));
    let _ = std::fs::remove_file(&missing);
    std::os::unix::fs::symlink(&missing, &record).unwrap();
    let out = s.run("controller", &["apply"]);
    c.check(!missing.exists(), || {
        let _ = std::fs::remove_file(&missing);
        "apply created the symlink's target".into()
    });
    let still_link = std::fs::symlink_metadata(&record)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    c.check(!out.status.success() || !still_link, || {
        format!(
            "apply succeeded ({:?}) and the symlink is still there",
            out.status.code()
        )
    });
    let _ = std::fs::remove_file(&record);
    // (c) the record's directory a symlink to another directory: nothing lands there.
    let _ = s.run("controller", &["destroy"]);
    let elsewhere =
        std::env::temp_dir().join(format!("stackplumb-elsewhere-{}", std::process::id()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let out = s.run("controller", &["apply"]);
    let landed: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    c.check(landed.is_empty(), || {
        format!("apply wrote through the directory symlink: {landed:?}")
    });
    let _ = out;
    let _ = std::fs::remove_dir_all(&elsewhere);
    c.done();
}

// ---------------------------------------------------------------------------------
// 5. Two applies at once.

#[test]
fn two_applies_at_once_move_the_uplink_exactly_once() {
    let s = Scene::new(&[NODES, EXT_NET, DEMO_NET, DEMO_ROUTER].concat());
    let mut report = Report::default();
    for round in 0..10 {
        report.row(&format!("round {round}"), || {
            // A clean start: the hosts as the guide found them.
            for d in ["a", "b"] {
                for net in [DEMO_NET_ID] {
                    if let Some(pid) = dnsmasq_pid(&s.cli.state.join(d), net) {
                        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    }
                }
                // The metadata proxy too: it lives in the node's namespace.
                for pid in proxy_pids(&s.cli.state.join(d)) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
            for ns in oracle::netns_list() {
                ip(&["netns", "del", &ns]);
            }
            ip(&["link", "del", "segment"]);
            // A namespace's links go with it a moment later (the kernel's cleanup work).
            let deadline = Instant::now() + Duration::from_secs(10);
            while oracle::links(None)
                .iter()
                .any(|l| l["ifname"].as_str().is_some_and(|n| n.ends_with("-seg")))
            {
                assert!(Instant::now() < deadline, "the old nodes' links never went");
                std::thread::sleep(Duration::from_millis(50));
            }
            for d in ["a", "b"] {
                let _ = std::fs::remove_dir_all(s.cli.state.join(d));
            }
            sp_testenv::scene::guide_hosts();
            let mon = Monitor::start(&["controller"]);
            let t0 = Instant::now();
            let topo = s.topology.to_str().unwrap().to_owned();
            let children: Vec<Child> = ["a", "b"]
                .iter()
                .map(|d| {
                    let cli = Cli {
                        state: s.cli.state.join(d),
                        ..s.cli.clone()
                    };
                    let mut cmd = cli.cmd("controller", &["--topology", &topo, "--json", "apply"]);
                    cmd.stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let outs: Vec<Output> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let events = mon.since(t0);
            drop(mon);
            let mut c = Checks::default();
            let runs: Vec<Applied> = outs.iter().map(|o| parse_apply("controller", o)).collect();
            let uplinks: usize = runs
                .iter()
                .map(|r| {
                    r.done
                        .iter()
                        .filter(|a| a["object"]["type"] == "uplink")
                        .count()
                })
                .sum();
            c.check(uplinks == 1, || format!("uplink moves reported: {uplinks}"));
            // One run converges the node; the other either finds it converged or —
            // its own state directory naming another dnsmasq than the one running —
            // refuses before any change (one state directory per node).
            let refused = |r: &Applied| {
                r.code == Some(1)
                    && r.stderr.contains("nothing was changed")
                    && r.stderr.contains("another --state-dir")
                    && r.done.is_empty()
            };
            let ok = runs.iter().filter(|r| r.code == Some(0)).count();
            c.check(ok >= 1, || "neither run converged the node".into());
            for (i, r) in runs.iter().enumerate() {
                c.check(r.code == Some(0) || refused(r), || {
                    format!(
                        "run {i} exits {:?}: {}; left: {}",
                        r.code,
                        r.stderr.trim(),
                        r.result["left"]
                    )
                });
            }
            let moved = events
                .iter()
                .filter(|e| {
                    e.contains("Deleted") && e.contains("eth0") && e.contains("inet 10.0.0.101/24")
                })
                .count();
            c.check(moved == 1, || {
                format!("10.0.0.101 left eth0 {moved} times (ip monitor)")
            });
            let br = oracle::inet_addrs(Some("controller"), EXT_BR);
            c.check(br == ["10.0.0.101/24"], || format!("{EXT_BR} holds {br:?}"));
            let eth0 = oracle::inet_addrs(Some("controller"), "eth0");
            c.check(eth0.is_empty(), || format!("eth0 holds {eth0:?}"));
            let master = oracle::link(Some("controller"), "eth0")["master"].clone();
            c.check(master == EXT_BR, || format!("eth0's master is {master}"));
            let routes = oracle::routes(Some("controller"), false);
            let defaults: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
            c.check(
                defaults.len() == 1
                    && defaults[0]["gateway"] == "10.0.0.1"
                    && defaults[0]["dev"] == EXT_BR,
                || format!("default routes: {defaults:?}"),
            );
            let bridges = oracle::links(Some("controller"))
                .iter()
                .filter(|l| l["linkinfo"]["info_kind"] == "bridge")
                .count();
            c.check(bridges == 2, || {
                format!("{bridges} bridges (ext-net's and demo-net's)")
            });
            c.done();
        });
    }
    report.finish();
}

// ---------------------------------------------------------------------------------
// 6. A second apply does nothing.

#[test]
fn a_second_apply_changes_nothing() {
    // The guide's cloud as built in (Cinder's volume group included: loop devices).
    let (cli, _cleanup) = two_nodes();
    let mut c = Checks::default();
    for node in ["controller", "compute"] {
        let first = parse_apply(node, &cli.on(node, &["--json", "apply"]));
        c.check(first.code == Some(0), || {
            format!(
                "first apply on {node}: {:?} {}",
                first.code,
                first.stderr.trim()
            )
        });
    }
    let mut watched = oracle::netns_list();
    watched.retain(|n| n != "extpc");
    let watched: Vec<&str> = watched.iter().map(String::as_str).collect();
    let mon = Monitor::start(&watched);
    let t0 = Instant::now();
    for node in ["controller", "compute"] {
        let again = parse_apply(node, &cli.on(node, &["--json", "apply"]));
        c.check(again.done.is_empty(), || {
            format!("{node}: the second apply did:{}", brief(&again.done))
        });
        c.check(again.code == Some(0) && again.result["done"] == 0, || {
            format!("{node}: {:?} {}", again.code, again.result)
        });
        let out = cli.on(node, &["apply"]);
        let said = text(&out.stdout);
        c.check(said.trim() == format!("node {node}: no change"), || {
            format!("{node}: a third apply said {said:?}")
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let events = mon.since(t0);
    c.check(events.is_empty(), || {
        format!(
            "kernel changes on a second apply:\n      {}",
            events.join("\n      ")
        )
    });
    drop(mon);
    for node in ["controller", "compute"] {
        let _ = cli.on(node, &["destroy", "--purge"]);
    }
    c.done();
}

// ---------------------------------------------------------------------------------
// An apply that fails part-way: what it reports done is there, what it reports not done
// is not.

/// The NAT actions (by namespace) among `actions`.
fn nat_of(actions: &[Value]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| a["object"]["type"] == "nat")
        .map(|a| a["object"]["namespace"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The object types among `actions`.
fn types_of(actions: &Value) -> BTreeSet<String> {
    actions
        .as_array()
        .expect("a list of actions")
        .iter()
        .filter_map(|a| a["object"]["type"].as_str().map(str::to_owned))
        .collect()
}

/// The error object of a failed `apply --json`, with its account.
fn failure(node: &str, a: &Applied) -> Value {
    assert_ne!(a.code, Some(0), "{node}: the apply did not fail: {a:?}");
    let e = a.result["error"].clone();
    assert!(e.is_object(), "{node}: no error object: {a:?}");
    // The done events and the account's done are one list.
    assert_eq!(e["done"].as_array(), Some(&a.done), "{e}");
    e
}

/// Our NAT table in `ns` (`nft list tables`), when there is one.
fn has_nat(ns: &str) -> bool {
    require::run(Command::new("ip").args(["netns", "exec", ns, "nft", "list", "tables"]))
        .contains("neutron-l3-agent")
}

/// A namespace `ns` made before the first apply, with a process in it listening on TCP
/// `port` of every address (once `ss` shows it); it stops when dropped.
fn listener_in(ns: &str, port: u16) -> sp_testenv::scene::Parked {
    sh(&["ip", "netns", "add", ns]);
    let listen = format!(
        "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0',{port}))\ns.listen()\n\
         time.sleep(3600)"
    );
    let parked = sp_testenv::scene::Parked::start(Some(ns), &["python3", "-c", listen.as_str()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !require::run(Command::new("ip").args(["netns", "exec", ns, "ss", "-Hltn"]))
        .contains(&format!(":{port} "))
    {
        assert!(
            Instant::now() < deadline,
            "the listener on {port} never came"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    parked
}

#[test]
fn an_apply_failing_at_dnsmasq_accounts_for_the_ports_made_and_the_nat_not_loaded() {
    let s = Scene::new(&guide_without_cinder());
    // dnsmasq cannot start: the DHCP namespace is there before the first apply, and a
    // process in it listens on TCP port 53 of every address.
    let blocker = listener_in(QDHCP, 53);
    let a = s.apply("controller");
    let e = failure("controller", &a);
    assert!(types_of(&e["failed"]).contains("dnsmasq"), "failed: {e}");
    // The ports before it were made and are there; the NAT after it is not.
    assert!(types_of(&e["done"]).contains("port"), "{e}");
    assert!(oracle::links(Some(QROUTER))
        .iter()
        .any(|l| l["ifname"] == QR));
    assert_eq!(nat_of(e["not_done"].as_array().unwrap()), [QROUTER], "{e}");
    assert!(!has_nat(QROUTER), "NAT reported not done is there");
    // With the port free, the next apply does the rest, the NAT among it.
    drop(blocker);
    let again = s.apply("controller");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(nat_of(&again.done), [QROUTER], "{again:?}");
    assert!(!types_of(&json!(again.done)).contains("port"), "{again:?}");
    assert!(has_nat(QROUTER));
    assert!(s.plan("controller").is_empty());
    let _ = s.run("controller", &["destroy"]);
}

#[test]
fn an_apply_whose_metadata_proxy_fails_beside_the_nat_accounts_for_both() {
    let s = Scene::new(&guide_without_cinder());
    // The proxy cannot start (it starts while the NAT loads): the router's namespace is
    // there before the first apply, and a process in it listens on TCP port 9697.
    let blocker = listener_in(QROUTER, 9697);
    let a = s.apply("controller");
    let e = failure("controller", &a);
    assert_eq!(
        types_of(&e["failed"]),
        BTreeSet::from(["metadata_proxy".to_owned()]),
        "{e}"
    );
    // The NAT loaded beside it is reported done, and is there.
    assert_eq!(nat_of(e["done"].as_array().unwrap()), [QROUTER], "{e}");
    assert!(has_nat(QROUTER), "NAT reported done is not there");
    // With the port free, the next apply starts the proxy, and only that.
    drop(blocker);
    let again = s.apply("controller");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(
        types_of(&json!(again.done)),
        BTreeSet::from(["metadata_proxy".to_owned()]),
        "{again:?}"
    );
    assert!(s.plan("controller").is_empty());
    let _ = s.run("controller", &["destroy"]);
}

#[test]
fn an_apply_failing_in_the_ports_takes_back_the_namespaces_it_made() {
    let without_router = [NODES, EXT_NET, DEMO_NET, VM1].concat();
    let s = Scene::new(&without_router);
    let first = s.apply("controller");
    assert_eq!(first.code, Some(0), "{first:?}");
    // demo-net's bridge made full (veths; this kernel has no dummy links): a bridge
    // numbers at most 1023 ports, so the router's leg cannot join it (EXFULL) — after
    // the router's namespace was made.
    let ports = |br: &str| {
        oracle::links(Some("controller"))
            .iter()
            .filter(|l| l["master"] == br)
            .count()
    };
    let link_names = || -> BTreeSet<String> {
        oracle::links(Some("controller"))
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect()
    };
    let fills = 1023 - ports(DEMO_BR);
    let fill: String = (0..fills)
        .map(|i| {
            format!(
                "link add spfill{i} group 7 numtxqueues 1 numrxqueues 1 type veth peer name \
                 spfp{i} numtxqueues 1 numrxqueues 1\nlink set spfill{i} master {DEMO_BR}\n"
            )
        })
        .collect();
    let batch = s.cli.state.join("fill.batch");
    std::fs::write(&batch, fill).unwrap();
    sh(&["ip", "-n", "controller", "-batch", batch.to_str().unwrap()]);
    assert_eq!(ports(DEMO_BR), 1023);
    let links_before = link_names();
    s.set_topology(&guide_without_cinder());
    let a = s.apply("controller");
    let e = failure("controller", &a);
    let message = e["message"].as_str().unwrap_or("");
    assert!(message.contains("full"), "not the bridge's port limit: {e}");
    // Named as what failed: the tap's joining the bridge.
    assert!(
        message.contains(&format!("enslave to {DEMO_BR}")),
        "not named as the enslave: {e}"
    );
    assert!(types_of(&e["failed"]).contains("namespace"), "failed: {e}");
    assert!(types_of(&e["failed"]).contains("port"), "failed: {e}");
    assert_eq!(nat_of(e["not_done"].as_array().unwrap()), [QROUTER], "{e}");
    // The router's namespace and its gateway leg, made before the failure, are gone.
    assert!(!oracle::netns_list().iter().any(|n| n == QROUTER));
    let links_after = link_names();
    let lost: Vec<_> = links_before.difference(&links_after).collect();
    assert!(lost.is_empty(), "links lost on the node: {lost:?}");
    // What stayed is what was reported done: ext-net's bridge (the flat network comes
    // first), and no leg of the router.
    let made: Vec<_> = links_after.difference(&links_before).collect();
    assert_eq!(made, [EXT_BR], "links made on the node");
    assert!(
        e["done"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["object"] == json!({"type": "bridge", "name": EXT_BR})),
        "{e}"
    );
    // Room again: the router is made, its NAT loaded.
    sh(&["ip", "-n", "controller", "link", "del", "group", "7"]);
    let again = s.apply("controller");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(nat_of(&again.done), [QROUTER], "{again:?}");
    assert!(has_nat(QROUTER));
    let _ = s.run("controller", &["destroy"]);
}
