//! The real tools as oracles: run them, parse their JSON.

use serde_json::Value;
use std::process::Command;

use crate::require;

/// `ip [-n NS] -j ARGS…` parsed as JSON.
pub fn ip_json(netns: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.arg("-j").args(args);
    let out = require::run(&mut cmd);
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{cmd:?}: bad JSON ({e}): {out}"))
}

/// `ip -d -j link show` in a namespace.
pub fn links(netns: Option<&str>) -> Vec<Value> {
    as_array(ip_json(netns, &["-d", "link", "show"]))
}

/// `ip -j addr show` in a namespace (IPv4 and IPv6).
pub fn addrs(netns: Option<&str>) -> Vec<Value> {
    as_array(ip_json(netns, &["addr", "show"]))
}

/// `ip -j [-6] route show table main` in a namespace.
pub fn routes(netns: Option<&str>, ipv6: bool) -> Vec<Value> {
    let mut args = vec![];
    if ipv6 {
        args.push("-6");
    }
    args.extend(["route", "show", "table", "main"]);
    as_array(ip_json(netns, &args))
}

/// `ip netns list` names (as iproute2 sees the private `/run/netns`).
pub fn netns_list() -> Vec<String> {
    as_array(ip_json(None, &["netns", "list"]))
        .into_iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// `ip netns pids NS`.
pub fn netns_pids(netns: &str) -> Vec<u32> {
    require::run(Command::new("ip").args(["netns", "pids", netns]))
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// `bridge -j fdb show dev DEV` (in a namespace).
pub fn fdb(netns: Option<&str>, dev: &str) -> Vec<Value> {
    let mut cmd = Command::new("bridge");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = require::run(cmd.args(["-j", "fdb", "show", "dev", dev]));
    as_array(
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bridge fdb: bad JSON ({e}): {out}")),
    )
}

/// `ip -j neigh show dev DEV` (in a namespace).
pub fn neighbours(netns: Option<&str>, dev: &str) -> Vec<Value> {
    as_array(ip_json(netns, &["neigh", "show", "dev", dev]))
}

/// A `/proc/sys/net/…` value as `sysctl` reads it inside a named namespace (or here).
pub fn net_sysctl(netns: Option<&str>, key: &str) -> String {
    let path = format!("/proc/sys/net/{key}");
    match netns {
        Some(ns) => require::run(Command::new("ip").args(["netns", "exec", ns, "cat", &path])),
        None => std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    }
    .trim()
    .to_owned()
}

/// The one link `name` from `ip -d -j link show NAME` (in a namespace).
pub fn link(netns: Option<&str>, name: &str) -> Value {
    let mut all = as_array(ip_json(netns, &["-d", "link", "show", name]));
    assert_eq!(all.len(), 1, "link {name}");
    all.remove(0)
}

/// The IPv4 addresses of `dev` as `ADDR/PREFIX`, in kernel order (`ip -4 -j addr`).
pub fn inet_addrs(netns: Option<&str>, dev: &str) -> Vec<String> {
    addrs(netns)
        .iter()
        .filter(|l| l["ifname"] == dev)
        .flat_map(|l| l["addr_info"].as_array().expect("addr_info").clone())
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().expect("local"), a["prefixlen"]))
        .collect()
}

/// Whether `ping -c1 -W1 TARGET` from inside `netns` gets an answer, in one of three
/// tries: a link just set up carries nothing until the kernel's link watch has seen
/// its carrier (up to a second later under load), so a first echo may be dropped.
pub fn pings(netns: &str, target: &str) -> bool {
    (0..3).any(|_| {
        Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-c1", "-W1", "-q", target])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run ping")
            .success()
    })
}

/// Global addresses as (device, `LOCAL/PREFIX brd BROADCAST`), in kernel order —
/// `ip -j addr show` reduced to what an uplink move must keep.
pub fn global_addrs(netns: Option<&str>) -> Vec<(String, String)> {
    addrs(netns)
        .iter()
        .flat_map(|l| {
            let dev = l["ifname"].as_str().expect("ifname").to_owned();
            l["addr_info"]
                .as_array()
                .expect("addr_info")
                .iter()
                .filter(|a| a["scope"] == "global")
                .map(|a| {
                    let local = a["local"].as_str().expect("local");
                    let brd = &a["broadcast"];
                    (dev.clone(), format!("{local}/{} brd {brd}", a["prefixlen"]))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Main-table routes of both families, one line each:
/// `dst gateway dev metric protocol scope prefsrc` (JSON values, empty when absent).
pub fn route_lines(netns: Option<&str>) -> std::collections::BTreeSet<String> {
    [false, true]
        .into_iter()
        .flat_map(|v6| routes(netns, v6))
        .map(|r| {
            let field = |k: &str| r.get(k).map(Value::to_string).unwrap_or_default();
            [
                "dst", "gateway", "dev", "metric", "protocol", "scope", "prefsrc",
            ]
            .map(field)
            .join(" ")
        })
        .collect()
}
