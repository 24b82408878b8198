//! Test support for stackplumb — never linked into the product.
//!
//! * [`sandbox::enter`] puts the calling test into a throwaway network namespace and a
//!   private mount namespace with its own `/run/netns`, so tests run in parallel, never
//!   collide on names and never touch the host's interfaces.
//! * [`scene`] builds scenes with the real tools (`ip`, processes parked in namespaces).
//! * [`oracle`] runs the real tools (`ip -j …`, `ip netns pids`) and parses what they say,
//!   so assertions compare our view with iproute2's.
//! * [`nodes`] runs the `stackplumb` binary inside the guide's nodes.
//! * [`lvm`] keeps loop-device tests in their own directory and runs real lvm2
//!   restricted to the test's devices.
//! * [`require`] turns a missing privilege, kernel feature or package into a test
//!   **failure** with a message saying what is missing — never a silent skip.

pub mod guide;
pub mod lvm;
pub mod nodes;
pub mod oracle;
pub mod ovs;
pub mod podman;
pub mod require;
pub mod sandbox;
pub mod scene;

use std::path::{Path, PathBuf};

/// The Liberty guide's configuration files on the controller
/// (`crates/sp-config/tests/guide`: every file stackplumb reads, as the guide writes them).
pub fn guide_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/sp-config/tests/guide")
}

/// The compute node's (`crates/sp-config/tests/guide-compute`): `linuxbridge_agent.ini`
/// alone, with its own `local_ip`, as the guide leaves it there.
pub fn guide_compute_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/sp-config/tests/guide-compute")
}

/// The five tools of the workspace.
pub const TOOLS: [&str; 5] = [
    "netns-inspect",
    "loopvg",
    "bridgectl",
    "ovs-attach",
    "stackplumb",
];

/// A tool's failure under `--json` (docs/json.md): exactly one line on stdout, the error
/// object with its schema and a message, which stderr says too. Gives the exit code and
/// the error's kind.
pub fn json_error(out: &std::process::Output) -> (i32, String) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one line on stdout: {out:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 1, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "a message: {v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "the same message on stderr: {err}");
    let kind = v["error"]["kind"].as_str().expect("a kind");
    (out.status.code().expect("an exit code"), kind.to_owned())
}

/// A change's actions, object types and set attributes, as docs/json.md lists them.
const VERBS: &[&str] = &[
    "created",
    "recreated",
    "deleted",
    "set",
    "moved",
    "released",
    "added",
    "written",
    "loaded",
    "appended",
    "replaced",
    "started",
    "reloaded",
    "restarted",
    "stopped",
    "answers",
    "announced",
    "not announced",
];
const TYPES: &[&str] = &[
    "bridge",
    "ovs_bridge",
    "vxlan",
    "link",
    "veth",
    "namespace",
    "address",
    "route",
    "default_route",
    "fdb",
    "neighbour",
    "nat",
    "dnsmasq",
    "dhcp_file",
    "metadata_proxy",
    "firewall",
    "sysctl",
    "gateway",
    "uplink",
    "ovs_port",
];
const ATTRIBUTES: &[&str] = &[
    "state",
    "mtu",
    "master",
    "mac",
    "tx-checksum",
    "ip_forward",
    "ipv6_forwarding",
    "value",
    "gateway",
    "stp/forward_delay",
];

/// A change in JSON (docs/json.md, schema 2) is typed: its object an object of a documented type whose fields
/// are strings or numbers, its action a documented verb, an attribute exactly when it
/// `set` one.
pub fn assert_typed_change(c: &serde_json::Value) {
    let object = c["object"].as_object().unwrap_or_else(|| panic!("{c}"));
    let ty = object["type"].as_str().unwrap_or_else(|| panic!("{c}"));
    assert!(TYPES.contains(&ty), "type {ty}: {c}");
    assert!(
        object.values().all(|v| v.is_string() || v.is_number()),
        "{c}"
    );
    let action = c["action"].as_str().unwrap_or_else(|| panic!("{c}"));
    assert!(VERBS.contains(&action), "action {action}: {c}");
    match c.get("attribute") {
        Some(a) => {
            assert_eq!(action, "set", "{c}");
            assert!(ATTRIBUTES.contains(&a.as_str().unwrap()), "{c}");
        }
        None => assert_ne!(action, "set", "{c}"),
    }
}

/// Path of a binary of this workspace, built next to the test executable
/// (`target/<profile>/<name>`). Panics with a clear message when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "workspace binary {} not built — run the suite with `testenv/test.sh` \
         (cargo nextest run --workspace builds every binary)",
        bin.display()
    );
    bin
}
