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
