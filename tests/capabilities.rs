//! The tools in a container with fewer capabilities than root's: each missing one is
//! named, and nothing healthy is reported missing or restarted for it.

use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::nodes::{two_nodes, Cli};
use sp_testenv::require;

/// `cmd` run with `caps` dropped from the bounding set (root then lacks them).
fn without(caps: &str, cmd: &Command) -> Output {
    require::program("setpriv", "util-linux");
    Command::new("setpriv")
        .args(["--bounding-set", caps, "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .unwrap()
}

/// The last JSON line of a run that must succeed (apply prints one per action first).
fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().expect("a JSON line")).unwrap()
    })
}

/// Without CAP_SYS_PTRACE the namespace of dnsmasq (running as nobody) cannot be read:
/// `status` still finds it (by its pid file and command line), `apply` does not restart
/// it, and netns-inspect places it in its qdhcp namespace, names the missing capability
/// and reports no qdhcp-without-dnsmasq.
#[test]
fn without_cap_sys_ptrace_dnsmasq_is_found_by_its_pid_file() {
    let (cli, _cleanup) = two_nodes();
    let apply = cli.on("controller", &["apply"]);
    assert!(apply.status.success(), "{apply:?}");
    let dnsmasq = |cli: &Cli| -> Vec<u32> {
        let dhcp = cli.state.join("dhcp");
        std::fs::read_dir(dhcp)
            .unwrap()
            .flatten()
            .map(|d| {
                std::fs::read_to_string(d.path().join("pid"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    let pids = dnsmasq(&cli);
    assert_eq!(pids.len(), 1);
    // The test relies on dnsmasq running as another user than root.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && !l.contains("\t0\t")),
        "dnsmasq runs as root here: {status}"
    );

    let status_cmd = cli.cmd("controller", &["--json", "status"]);
    let v = json(&without("-sys_ptrace", &status_cmd));
    assert_eq!(
        v["differences"],
        serde_json::json!([]),
        "status without CAP_SYS_PTRACE: {v}"
    );

    let again = cli.cmd("controller", &["--json", "apply"]);
    let v = json(&without("-sys_ptrace", &again));
    assert_eq!(v["done"], 0, "a healthy dnsmasq was restarted: {v}");
    assert_eq!(dnsmasq(&cli), pids);

    let mut inspect = Command::new("nsenter");
    inspect
        .arg("--net=/run/netns/controller")
        .arg(sp_testenv::workspace_bin("netns-inspect"))
        .arg("--json");
    let v = json(&without("-sys_ptrace", &inspect));
    let qdhcp = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "qdhcp")
        .expect("the qdhcp namespace");
    assert!(
        qdhcp["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"].as_u64() == Some(pids[0].into())),
        "{qdhcp}"
    );
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"qdhcp-without-dnsmasq"), "{kinds:?}");
    let hidden = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "hidden-processes")
        .expect("the hidden processes are reported");
    assert!(
        hidden["message"]
            .as_str()
            .unwrap()
            .contains("CAP_SYS_PTRACE"),
        "{hidden}"
    );
    let out = cli.on("controller", &["destroy"]);
    assert!(out.status.success(), "{out:?}");
}

/// A container without NET_ADMIN, or with `/proc/sys` read-only: apply says which
/// setting is missing, in the container tools' words, before any change.
#[test]
fn missing_capabilities_and_a_read_only_proc_sys_are_named_before_any_change() {
    let (cli, _cleanup) = two_nodes();
    let links = || sp_testenv::oracle::links(Some("controller")).len();
    let before = (links(), sp_testenv::oracle::netns_list());
    let out = without("-net_admin", &cli.cmd("controller", &["apply"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "needs a capability: {err}");
    assert!(
        err.contains("needs CAP_NET_ADMIN") && err.contains("--cap-add NET_ADMIN"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!((links(), sp_testenv::oracle::netns_list()), before);

    // /proc/sys read-only, as podman mounts it by default (in this test's own mount
    // namespace only).
    let run = |args: &[&str]| require::run(Command::new(args[0]).args(&args[1..]));
    run(&["mount", "--bind", "/proc/sys", "/proc/sys"]);
    run(&["mount", "-o", "remount,bind,ro", "/proc/sys"]);
    let out = cli.on("controller", &["apply"]);
    run(&["umount", "/proc/sys"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/proc/sys is read-only") && err.contains("unmask=/proc/sys"),
        "{err}"
    );
    assert_eq!((links(), sp_testenv::oracle::netns_list()), before);
    let out = cli.on("controller", &["apply"]);
    assert!(out.status.success(), "{out:?}");
    let out = cli.on("controller", &["destroy"]);
    assert!(out.status.success(), "{out:?}");
}

/// loopvg without CAP_SYS_ADMIN (a container that did not add it): named, nothing made.
#[test]
fn loopvg_without_cap_sys_admin_says_so_and_makes_nothing() {
    require::root();
    let dir = std::env::temp_dir().join(format!("sp-caps-loopvg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut create = Command::new(sp_testenv::workspace_bin("loopvg"));
    create.arg("--dir").arg(&dir).args([
        "create",
        &format!("sp-caps-{}", std::process::id()),
        "64M",
    ]);
    let out = without("-sys_admin", &create);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "needs a capability: {out:?}");
    assert!(
        err.contains("needs CAP_SYS_ADMIN") && err.contains("--cap-add SYS_ADMIN"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a file was made"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
