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
//! * a second apply does nothing.
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
        for (p, pkg) in [("nft", "nftables"), ("bridge", "iproute2"), ("ip", "iproute2")] {
            require::program(p, pkg);
        }
        let topology_path = std::env::temp_dir().join(format!(
            "stackplumb-topology-{}-{}.toml",
            std::process::id(),
            thread_id()
        ));
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
        assert!(out.status.success(), "plan on {node}: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan --json on {node}: {e}: {}", text(&out.stdout)));
        assert_eq!(v["schema"], 1, "{v}");
        assert_eq!(v["node"], node, "{v}");
        v["actions"].as_array().expect("actions").clone()
    }

    /// `plan --detailed-exitcode`'s exit code.
    fn plan_exit(&self, node: &str) -> Option<i32> {
        self.run(node, &["plan", "--detailed-exitcode"]).status.code()
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

fn thread_id() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish()
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
                for line in out.lines().map_while(Result::ok) {
                    events
                        .lock()
                        .unwrap()
                        .push((Instant::now(), format!("{ns}: {line}")));
                }
            });
            children.push(child);
        }
        // The monitors need a moment to subscribe.
        std::thread::sleep(Duration::from_millis(200));
        let m = Monitor { children, events };
        m.quiet();
        m
    }

    /// Waits until no event came for 1.5 s (the kernel's delayed work: DAD, link watch).
    fn quiet(&self) {
        let started = Instant::now();
        loop {
            let last = self.events.lock().unwrap().last().map_or(started, |e| e.0);
            if last.elapsed() > Duration::from_millis(1500) && started.elapsed() > Duration::from_millis(300) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the namespaces never went quiet: {:?}",
                self.events.lock().unwrap().iter().rev().take(10).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn since(&self, t0: Instant) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 >= t0)
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
                    if f["dst"].is_string() {
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
                ip(&["-n", QROUTER, "link", "set", QR, "address", "fa:16:3e:00:00:99"]);
            }),
            expect: link_change(Some(QROUTER), QR, "mac", "fa:16:3e:00:00:99", "fa:16:3e:a7:24:00"),
            loose: false,
            // The bridge learns the MAC through the tap: fdb events name the tap.
            watch: vec!["controller", QROUTER],
            allowed: vec![QR, QR_TAP, "fa:16:3e:00:00:99", "fa:16:3e:a7:24:00"],
            after: Box::new(|_| {
                assert_eq!(oracle::link(Some(QROUTER), QR)["address"], "fa:16:3e:a7:24:00");
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
                assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{l}");
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
            allowed: vec![QR_TAP],
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
                    r.iter().any(|r| r["dst"] == "default" && r["gateway"] == "10.0.0.1" && r["dev"] == QG),
                    "{r:?}"
                );
            }),
        },
        Drift {
            name: "ip_forward 0 in qrouter",
            drift: Box::new(|_| {
                sh(&["ip", "netns", "exec", QROUTER, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
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
                sh(&["bridge", "-n", "controller", "fdb", "del", VM1_MAC, "dev", "vxlan-1", "dst", "10.0.0.102"]);
            }),
            expect: json!({"op": "create", "object": {"type": "fdb", "device": "vxlan-1",
                           "mac": VM1_MAC, "dst": "10.0.0.102"}}),
            loose: false,
            watch: vec!["controller"],
            allowed: vec![VM1_MAC],
            after: Box::new(|_| {
                let f = oracle::fdb(Some("controller"), "vxlan-1");
                assert!(
                    f.iter().any(|e| e["mac"] == VM1_MAC && e["dst"] == "10.0.0.102"),
                    "{f:?}"
                );
            }),
        },
        Drift {
            name: "permanent neighbour deleted",
            drift: Box::new(|_| {
                ip(&["-n", "controller", "neigh", "del", "192.168.0.3", "dev", "vxlan-1"]);
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
                        && e["state"].as_array().is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))),
                    "{n:?}"
                );
            }),
        },
        Drift {
            name: "router NAT flushed (nft flush ruleset in qrouter)",
            drift: Box::new(|_| {
                sh(&["ip", "netns", "exec", QROUTER, "nft", "flush", "ruleset"]);
            }),
            expect: json!({"object": {"type": "nat", "namespace": QROUTER}}),
            loose: true,
            watch: vec!["controller", QROUTER],
            allowed: vec![],
            after: Box::new(|_| {
                let r = nft_ruleset(QROUTER);
                for needle in ["snat", "dnat", "10.0.0.200", "10.0.0.201", "192.168.0.3"] {
                    assert!(r.contains(needle), "{needle} missing from the router's ruleset: {r}");
                }
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

#[test]
fn drift_by_hand_is_planned_reported_and_undone_exactly() {
    let s = Scene::new(&guide_without_cinder());
    let state = s.cli.state.clone();
    let mut report = Report::default();
    for node in ["controller", "compute"] {
        let a = s.apply(node);
        assert!(!a.done.is_empty(), "first apply on {node} did nothing: {a:?}");
    }
    // The baseline: nothing left to do. Should it not be empty, that is a failure, and
    // each row checks what its drift adds to it.
    let baseline = s.plan("controller");
    report.row("baseline: plan after the first apply", || {
        assert!(
            baseline.is_empty(),
            "plan after apply is not empty on controller: {baseline:#?}"
        );
        assert_eq!(s.plan("compute"), Vec::<Value>::new(), "compute");
    });

    for row in drift_rows() {
        report.row(row.name, || {
            (row.drift)(&state);
            // plan names the drifted object.
            let planned = s.plan("controller");
            let added = minus(&planned, &baseline);
            let hits: Vec<&Value> = added
                .iter()
                .filter(|a| matches_expected(a, &row.expect, row.loose))
                .collect();
            assert!(
                hits.len() == 1 && added.len() == 1,
                "plan after the drift: expected exactly {} (besides the baseline), got {added:#?}",
                row.expect
            );
            // Text plan: the same action with its sign.
            let out = s.run("controller", &["plan"]);
            let sign = match added[0]["op"].as_str() {
                Some("create") => "+ ",
                Some("delete") => "- ",
                _ => "~ ",
            };
            let lines: Vec<String> = text(&out.stdout)
                .lines()
                .filter(|l| l.starts_with(['+', '-', '~']))
                .map(str::to_owned)
                .collect();
            assert_eq!(lines.len(), planned.len(), "text plan lines vs JSON actions: {lines:?}");
            assert!(lines.iter().any(|l| l.starts_with(sign)), "no {sign:?} line: {lines:?}");
            assert_eq!(s.status_exit("controller"), Some(4), "status exits 4 with a difference");
            assert_eq!(s.plan_exit("controller"), Some(4), "plan --detailed-exitcode");

            let mon = Monitor::start(&row.watch);
            let again = s.plan("controller");
            assert_eq!(keyed(&again), keyed(&planned), "the plan is stable");
            let t0 = Instant::now();
            let applied = s.apply("controller");
            std::thread::sleep(Duration::from_millis(400));
            let events = mon.since(t0);
            drop(mon);
            assert_eq!(
                keyed(&applied.done),
                keyed(&planned),
                "apply did other than planned (stderr {})",
                applied.stderr
            );
            assert_eq!(applied.result["event"], "result", "{applied:?}");
            assert_eq!(applied.result["done"], planned.len(), "{applied:?}");
            // The kernel saw changes only on the drifted object.
            let foreign: Vec<&String> = events
                .iter()
                .filter(|e| !row.allowed.iter().any(|w| e.contains(w)))
                .collect();
            assert!(
                foreign.is_empty(),
                "events beyond the drifted object ({:?}):\n{}",
                row.allowed,
                foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            );
            (row.after)(&state);
            assert_eq!(
                s.plan_exit("controller"),
                Some(0),
                "plan after the fix: {:#?}",
                s.plan("controller")
            );
            assert_eq!(applied.code, Some(0), "apply's exit: {applied:?}");
        });
        // Whatever happened, repair before the next row.
        let _ = s.apply("controller");
    }
    report.finish();
}
