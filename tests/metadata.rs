//! The metadata path (docs/metadata.md) on the guide's two nodes (Cinder's volume group
//! left out: no loop device), with one more network
//! that has no router (isolated metadata through its DHCP namespace): an HTTP GET of
//! `http://169.254.169.254/latest/meta-data/` from vm1 (through its router's REDIRECT to
//! 9697) and from vm2 (through the DHCP port's 169.254.169.254) reaches the metadata
//! agent — a unix-socket HTTP server run by this test at `$state_path/metadata_proxy` —
//! with `X-Forwarded-For` and `X-Neutron-Router-ID` / `X-Neutron-Network-ID`, and brings
//! its body back. A second apply changes nothing; a killed proxy is seen by `plan` and
//! `status`, started again by `apply` and by `supervise`; a router added is served after
//! the next apply; `destroy` leaves no proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::Value;
use sp_testenv::nodes::{two_nodes, Cli};
use sp_testenv::{oracle, require};

const ROUTER: &str = "006df4cc-6fb2-40e7-af58-dc68b6755165";
const ISO_NET: &str = "c0ffee00-1111-4222-8333-444455556666";
const ISO_ROUTER: &str = "7e57a11d-0000-4000-8000-000000000001";
const BODY: &str = "ami-id\nhostname\ninstance-id\nlocal-ipv4\n";

/// The guide's topology and an isolated network with vm2 on the compute node.
const ISOLATED: &str = r#"
[[networks]]
name = "iso-net"
id = "c0ffee00-1111-4222-8333-444455556666"
type = "vxlan"
segmentation_id = 2
[networks.subnet]
cidr = "192.168.1.0/24"
gateway = "192.168.1.1"

[[instances]]
name = "vm2"
node = "compute"
network = "iso-net"
port_id = "b7c1762b-3b4c-4d5e-8f90-123456789abd"
mac = "fa:16:3e:5d:2c:02"
ip = "192.168.1.3"
"#;

/// Then a router on the isolated network.
const ROUTER_ON_ISO_NET: &str = r#"
[[routers]]
name = "iso-router"
id = "7e57a11d-0000-4000-8000-000000000001"
gateway = { network = "ext-net", ip = "10.0.0.210", port_id = "8e57a11d-0000-4000-8000-000000000002", mac = "fa:16:3e:00:00:02" }
interfaces = [{ network = "iso-net", ip = "192.168.1.1", port_id = "9e57a11d-0000-4000-8000-000000000003", mac = "fa:16:3e:00:00:03" }]
"#;

/// The metadata agent as far as the proxy sees it: every request's head handed to the
/// test, every request answered with [`BODY`].
fn agent(socket: &Path) -> Receiver<String> {
    let listener = UnixListener::bind(socket).expect("bind the agent's socket");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                BODY.len()
            );
        }
    });
    rx
}

/// The values of header `name` in a request head.
fn header(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// `curl` of the metadata URL inside `ns`, with extra arguments: the body.
fn get(ns: &str, extra: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "10"])
        .args(extra)
        .arg("http://169.254.169.254/latest/meta-data/")
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "GET from {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 body")
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}");
}

fn actions(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            let (op, ty) = (a["op"].as_str(), a["object"]["type"].as_str());
            format!("{} {}", op.unwrap(), ty.unwrap())
        })
        .collect()
}

/// Whether `pid` runs (a zombie waiting for init to reap it runs no more).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn proxy_pid(cli: &Cli) -> String {
    std::fs::read_to_string(cli.state.join("stackplumb/metadata-proxy-controller.pid"))
        .expect("the proxy's pid file")
        .trim()
        .to_owned()
}

#[test]
fn metadata_reaches_the_agent_through_the_router_and_the_dhcp_namespace() {
    require::program("curl", "curl");
    let (mut cli, _cleanup) = two_nodes();
    std::fs::create_dir_all(&cli.state).unwrap();
    let topology = cli.state.join("topology.toml");
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/topology.toml"),
    )
    .unwrap();
    // Without Cinder's volume group: no loop device, no 20 GiB asked of the disk.
    let guide = &guide[..guide.find("[cinder]").expect("the guide's [cinder]")];
    std::fs::write(&topology, format!("{guide}{ISOLATED}")).unwrap();
    cli.extra = vec!["--topology".into(), topology.display().to_string()];
    // Neutron's default metadata_proxy_socket: $state_path/metadata_proxy.
    let heads = agent(&cli.state.join("metadata_proxy"));
    let next_head = || {
        heads
            .recv_timeout(Duration::from_secs(5))
            .expect("a request")
    };

    let plan = actions(&cli.json("controller", &["plan"])["actions"]);
    assert!(
        plan.contains(&"create metadata_proxy".to_owned()),
        "{plan:#?}"
    );
    for node in ["controller", "compute"] {
        let done = cli.json(node, &["apply"]);
        assert_eq!(done["left"], Value::Array(vec![]), "{node}: {done}");
    }
    // The guests configure themselves (DHCP is tests/lease.rs's): vm1 behind the
    // router, vm2 on the isolated network with option 121's route to the DHCP port.
    ip(&["-n", "vm1", "addr", "add", "192.168.0.3/24", "dev", "eth0"]);
    ip(&["-n", "vm1", "route", "add", "default", "via", "192.168.0.1"]);
    let qdhcp = format!("qdhcp-{ISO_NET}");
    let dhcp_ip = oracle::addrs(Some(&qdhcp))
        .iter()
        .filter(|l| l["ifname"].as_str().unwrap().starts_with("ns-"))
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .filter(|a| a["family"] == "inet")
        .map(|a| a["local"].as_str().unwrap().to_owned())
        .find(|a| !a.starts_with("169.254."))
        .expect("the DHCP port's address");
    ip(&["-n", "vm2", "addr", "add", "192.168.1.3/24", "dev", "eth0"]);
    ip(&[
        "-n",
        "vm2",
        "route",
        "add",
        "169.254.169.254/32",
        "via",
        &dhcp_ip,
    ]);

    // Through the router: REDIRECT to 9697, the router's id.
    assert_eq!(get("vm1", &[]), BODY);
    let head = next_head();
    assert!(
        head.starts_with("GET /latest/meta-data/ HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "X-Forwarded-For"), ["192.168.0.3"], "{head}");
    assert_eq!(header(&head, "X-Neutron-Router-ID"), [ROUTER], "{head}");
    assert!(header(&head, "X-Neutron-Network-ID").is_empty(), "{head}");
    // A guest cannot pose as another.
    assert_eq!(
        get(
            "vm1",
            &[
                "-H",
                "X-Forwarded-For: 192.168.0.99",
                "-H",
                "X-Neutron-Router-ID: 11111111-2222-4333-8444-555555555555",
                "-H",
                "X-Instance-ID: i-other",
            ]
        ),
        BODY
    );
    let head = next_head();
    assert_eq!(header(&head, "X-Forwarded-For"), ["192.168.0.3"], "{head}");
    assert_eq!(header(&head, "X-Neutron-Router-ID"), [ROUTER], "{head}");
    assert!(header(&head, "X-Instance-ID").is_empty(), "{head}");
    // Through the isolated network's DHCP namespace: the network's id.
    assert_eq!(get("vm2", &[]), BODY);
    let head = next_head();
    assert_eq!(header(&head, "X-Forwarded-For"), ["192.168.1.3"], "{head}");
    assert_eq!(header(&head, "X-Neutron-Network-ID"), [ISO_NET], "{head}");
    assert!(header(&head, "X-Neutron-Router-ID").is_empty(), "{head}");

    // 200 requests one after the other, each on its own connection (one curl): all
    // answered; the time per request is printed (`--nocapture`), not judged.
    let url = "http://169.254.169.254/latest/meta-data/";
    let out = Command::new("ip")
        .args(["netns", "exec", "vm1", "curl", "-sS", "--max-time", "30"])
        .args(["-w", "\n%{time_total}\n"])
        .args(std::iter::repeat_n(url, 200))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut times: Vec<f64> = text.lines().filter_map(|l| l.parse::<f64>().ok()).collect();
    assert_eq!(times.len(), 200, "{text}");
    assert_eq!(text.matches(BODY).count(), 200);
    for _ in 0..200 {
        next_head();
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "200 GETs through the router: median {:.2} ms, max {:.2} ms",
        times[100] * 1e3,
        times[199] * 1e3
    );

    // Converged: a second apply does nothing.
    for node in ["controller", "compute"] {
        assert_eq!(cli.json(node, &["apply"])["done"], 0, "{node}");
    }

    // The router's namespace deleted by hand and made again by apply: the proxy still
    // listens in the old one (its socket holds it), none of its sockets listens in the
    // new one — seen, and the proxy restarted.
    ip(&["netns", "del", &format!("qrouter-{ROUTER}")]);
    let plan = cli.json("controller", &["plan"]);
    let proxy = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["object"]["type"] == "metadata_proxy")
        .unwrap_or_else(|| panic!("the proxy in {plan}"))
        .clone();
    assert_eq!(proxy["attribute"], "listening", "{plan}");
    // Listening: the namespaces it listens in, then all it serves.
    let router = Value::String(format!("qrouter-{ROUTER}"));
    let (old, new) = (proxy["old"].as_array(), proxy["new"].as_array());
    assert!(
        old.is_some_and(|o| !o.contains(&router)) && new.is_some_and(|n| n.contains(&router)),
        "{proxy}"
    );
    let done = cli.json("controller", &["apply"]);
    assert_eq!(done["left"], Value::Array(vec![]), "{done}");
    assert_eq!(get("vm1", &[]), BODY);
    assert_eq!(header(&next_head(), "X-Neutron-Router-ID"), [ROUTER]);

    // Killed: plan and status see it, apply starts it again.
    let first = proxy_pid(&cli);
    Command::new("kill").args(["-9", &first]).status().unwrap();
    for _ in 0..100 {
        if !alive(&first) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let plan = cli.json("controller", &["plan"]);
    assert_eq!(
        plan["actions"],
        serde_json::json!([{"op": "change", "attribute": "process", "old": "dead", "new": "running", "object": {"type": "metadata_proxy"}}]),
        "{plan}"
    );
    let out = cli.on("controller", &["status"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("~ metadata proxy process dead -> running"),
        "{out:?}"
    );
    let t0 = std::time::Instant::now();
    assert_eq!(cli.json("controller", &["apply"])["done"], 1);
    eprintln!(
        "apply starting the killed proxy: {:.1} ms (printed, not judged)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let second = proxy_pid(&cli);
    assert_ne!(first, second);
    assert_eq!(get("vm1", &[]), BODY);
    next_head();

    // supervise starts it again at once when it dies.
    let mut sup = cli
        .cmd("controller", &["--json", "supervise", "--interval", "600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, events) = channel();
    let out = sup.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(sp_testenv::nodes::supervise_event(&line));
        }
    });
    let proxy_event = || loop {
        let e: Value = events
            .recv_timeout(Duration::from_secs(5))
            .expect("an event");
        if e["event"] != "watching" {
            return e;
        }
    };
    assert_eq!(
        proxy_event(),
        serde_json::json!({"event": "watching-proxy", "pid": second.parse::<u32>().unwrap()})
    );
    Command::new("kill").args(["-9", &second]).status().unwrap();
    let restarted = proxy_event();
    assert_eq!(restarted["event"], "changed", "{restarted}");
    assert_eq!(
        restarted["object"],
        serde_json::json!({"type": "metadata_proxy"}),
        "{restarted}"
    );
    assert_eq!(restarted["action"], "started", "{restarted}");
    assert!(restarted["pid"].is_u64(), "{restarted}");
    assert_eq!(proxy_event()["event"], "watching-proxy");
    let third = proxy_pid(&cli);
    assert_ne!(third, second);
    assert_eq!(get("vm2", &[]), BODY);
    next_head();
    Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap();
    assert!(sup.wait().unwrap().success());
    assert_eq!(cli.json("controller", &["apply"])["done"], 0);

    // A router added on the isolated network: the proxy serves it (and the network's
    // DHCP namespace no more — the network is no longer isolated), restarted by apply.
    std::fs::write(&topology, format!("{guide}{ISOLATED}{ROUTER_ON_ISO_NET}")).unwrap();
    let plan = cli.json("controller", &["plan"]);
    let change = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["object"]["type"] == "metadata_proxy")
        .unwrap_or_else(|| panic!("the proxy in {plan}"))
        .clone();
    assert_eq!(
        change,
        serde_json::json!({"op": "change", "attribute": "namespaces",
            "old": [format!("qrouter-{ROUTER}"), format!("qdhcp-{ISO_NET}")],
            "new": [format!("qrouter-{ROUTER}"), format!("qrouter-{ISO_ROUTER}")],
            "object": {"type": "metadata_proxy"}})
    );
    for node in ["controller", "compute"] {
        let done = cli.json(node, &["apply"]);
        assert_eq!(done["left"], Value::Array(vec![]), "{node}: {done}");
    }
    let fourth = proxy_pid(&cli);
    assert!(!alive(&third) && alive(&fourth), "{third} -> {fourth}");
    ip(&["-n", "vm2", "route", "del", "169.254.169.254/32"]);
    ip(&["-n", "vm2", "route", "add", "default", "via", "192.168.1.1"]);
    assert_eq!(get("vm2", &[]), BODY);
    let head = next_head();
    assert_eq!(header(&head, "X-Forwarded-For"), ["192.168.1.3"], "{head}");
    assert_eq!(header(&head, "X-Neutron-Router-ID"), [ISO_ROUTER], "{head}");
    assert!(header(&head, "X-Neutron-Network-ID").is_empty(), "{head}");
    assert_eq!(get("vm1", &[]), BODY);
    assert_eq!(header(&next_head(), "X-Neutron-Router-ID"), [ROUTER]);

    // destroy: no proxy left, no pid file.
    for node in ["compute", "controller"] {
        cli.json(node, &["destroy"]);
    }
    assert!(!alive(&fourth), "the proxy {fourth} is gone");
    assert!(!cli
        .state
        .join("stackplumb/metadata-proxy-controller.pid")
        .exists());
    let mut left = oracle::netns_list();
    left.sort();
    assert_eq!(left, ["compute", "controller", "extpc"]);
}

/// A proxy that cannot listen says where and why, and leaves no process or pid file; one
/// that listens is stopped by its pid file and only it.
#[test]
fn a_proxy_that_cannot_listen_says_why_and_stop_ends_only_ours() {
    sp_testenv::sandbox::enter();
    let ns = format!("qrouter-{ROUTER}");
    ip(&["netns", "add", &ns]);
    let dir = std::env::temp_dir().join(format!("sp-metadata-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy = |pid_file: &str| sp_metadata::Proxy {
        program: sp_testenv::workspace_bin("stackplumb"),
        pid_file: dir.join(pid_file),
        served: vec![sp_neutron::metadata::Served {
            kind: sp_neutron::metadata::Kind::Router,
            id: ROUTER.into(),
            socket: dir.join("metadata_proxy"),
        }],
    };
    let first = sp_metadata::start(&proxy("a.pid")).expect("the first listens");
    assert_eq!(
        sp_metadata::status(&proxy("a.pid")),
        sp_metadata::State::Running(first)
    );
    let err = sp_metadata::start(&proxy("b.pid"))
        .expect_err("9697 is taken")
        .to_string();
    assert!(
        err.contains(&format!("listen on 0.0.0.0:9697 in {ns}")) && err.contains("in use"),
        "{err}"
    );
    assert_eq!(
        sp_metadata::status(&proxy("b.pid")),
        sp_metadata::State::Stopped
    );
    // Stopping by another pid file ends nothing; by its own, it.
    let mut changes = Vec::new();
    sp_metadata::stop(&dir.join("b.pid"), &mut changes).unwrap();
    assert!(changes.is_empty() && alive(&first.to_string()));
    sp_metadata::stop(&dir.join("a.pid"), &mut changes).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(!alive(&first.to_string()));
    assert!(!dir.join("a.pid").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
