//! netns-inspect vs the iproute2 loop the guides' operators run.

use std::io::Write;
use std::process::{Command, Stdio};

use sp_testenv::require;

/// Builds `n` Neutron-like namespaces in a fresh sandbox — `qdhcp-<uuid>` each with a
/// veth (`tap…` on a bridge in the sandbox, `ns-…` inside, with an address) — then times
/// both ways of looking at them. The sandbox is a child process so every run starts
/// clean and leaves nothing behind.
pub fn run(n: usize, runs: usize) {
    if !crate::in_sandbox_child("netns-inspect", n, runs) {
        return;
    }
    build(n);
    settle("brq-bench");
    let ours = crate::best_of(runs, || {
        let out = Command::new(crate::sibling_bin("netns-inspect"))
            .arg("--json")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    });
    let loop_script = "for ns in $(ip netns list | cut -d' ' -f1); do ip -n $ns addr; ip -n $ns route; ip netns pids $ns; done";
    let baseline = crate::best_of(runs, || {
        let out = Command::new("bash")
            .args(["-c", loop_script])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    });
    crate::report(
        &format!("netns-inspect --json over {n} namespaces (best of {runs})"),
        ours,
        &[("ip loop", baseline)],
    );
}

fn build(n: usize) {
    require::program("ip", "iproute2");
    let ns = |i: usize| format!("qdhcp-{i:08x}-0000-4000-8000-000000000000");
    let port = |i: usize| format!("{i:08x}-00");
    let mut host = String::from("link add brq-bench type bridge\nlink set brq-bench up\n");
    for i in 0..n {
        host.push_str(&format!("netns add {}\n", ns(i)));
    }
    for i in 0..n {
        host.push_str(&format!(
            "link add tap{p} master brq-bench up type veth peer name ns-{p} netns {ns}\n",
            p = port(i),
            ns = ns(i)
        ));
    }
    ip_batch(None, &host);
    for i in 0..n {
        let inside = format!(
            "link set lo up\nlink set ns-{p} up\naddr add 192.168.{}.{}/16 dev ns-{p}\n",
            i / 250,
            i % 250 + 2,
            p = port(i)
        );
        ip_batch(Some(&ns(i)), &inside);
    }
}

/// Waits (at most 30 s) until the bridge has seen no frame for 2 s. Every new port
/// starts IPv6 — duplicate address detection, router and MLD solicitations — and the
/// bridge floods each of those frames to every other port (through br_netfilter's
/// hooks when it is loaded): with 1000 ports that is a million deliveries in softirq,
/// on the CPUs the timed runs use, for some ten seconds after the build. It is the
/// scene settling, not what is measured: timing through it made 1000 namespaces cost
/// up to twice what they do on a settled host.
fn settle(bridge: &str) {
    let path = format!("/sys/class/net/{bridge}/statistics/rx_packets");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = read();
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = read();
        if now != last {
            last = now;
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= std::time::Duration::from_secs(2) {
            return;
        }
    }
}

pub(crate) fn ip_batch(netns: Option<&str>, batch: &str) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "building the scene failed");
}
