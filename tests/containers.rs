//! The tools in real privileged CI containers — podman (runc) with a Debian 12 rootfs,
//! `--network none` — several on one host: each container's loop-backed volume group is
//! its own, known by the kernel's identity of its files, and lvm2 inside and on the host
//! agrees with loopvg. Slow the first time (debootstrap, ~35 s); docs/testing.md.

use std::process::Output;

use serde_json::Value;
use sp_testenv::podman::{self, Container, HostDir};

/// lvm2's options inside a container: loop devices only, no waiting for udev.
const LVM_CONFIG: &str = "--config 'devices { use_devicesfile=0 hints=\"none\" \
    filter=[\"a|^/dev/loop[0-9]+$|\",\"r|.*|\"] } activation { udev_sync=0 udev_rules=0 } \
    backup { backup=0 archive=0 }'";

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(what: &str, out: &Output) -> Value {
    let text = ok(what, out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// A VG name unique to this test run (never a name the host may use).
fn vg(tag: &str) -> String {
    format!("sp-ctr-{tag}-{}", std::process::id())
}

/// `vgs` of `name` inside a container: (PV count, size in bytes).
fn lvm2_vg(c: &Container, name: &str) -> (u64, u64) {
    let v = json(
        "vgs inside",
        &c.sh(&format!(
            "lvm vgs {LVM_CONFIG} --reportformat json --units b --nosuffix \
             -o vg_name,pv_count,vg_size {name}"
        )),
    );
    let r = &v["report"][0]["vg"][0];
    let n = |k: &str| r[k].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    (n("pv_count"), n("vg_size"))
}

fn list(c: &Container, dir: &str) -> Vec<Value> {
    let v = json(
        "loopvg list",
        &c.sh(&format!("/opt/sp/loopvg --json --dir {dir} list")),
    );
    v.as_array()
        .cloned()
        .unwrap_or_else(|| v["vgs"].as_array().cloned().unwrap_or_default())
}

#[test]
fn loopvg_runs_its_whole_cycle_in_a_privileged_container() {
    let rootfs = podman::debian_rootfs();
    let files = HostDir::new("cycle");
    let c = Container::privileged(&rootfs).volume(&files.0, "/var/lib/cinder");
    let name = vg("cycle");
    ok(
        "create",
        &c.sh(&format!("/opt/sp/loopvg create {name} 64M")),
    );
    assert_eq!(lvm2_vg(&c, &name).0, 1, "lvm2 inside sees one PV");
    ok(
        "extend",
        &c.sh(&format!("/opt/sp/loopvg extend {name} +32M")),
    );
    ok(
        "grow",
        &c.sh(&format!("/opt/sp/loopvg extend {name} +16M --grow")),
    );
    let (pvs, size) = lvm2_vg(&c, &name);
    assert_eq!(pvs, 2, "a new PV, then the last one grown");
    assert!(size >= 100 << 20, "{size}");
    let listed = list(&c, "/var/lib/cinder");
    assert!(
        listed.iter().any(|v| v["name"] == name.as_str()),
        "{listed:?}"
    );
    // On the host: the devices are known by the identity of the host's files, and
    // lvm2 here reads the same VG.
    let devs = podman::bound_by_identity(&files.0);
    assert_eq!(devs.len(), 2, "{devs:?}");
    let host = sp_testenv::lvm::Lvm::new(devs.clone());
    let out = host.run(&[
        "vgs",
        "--reportformat",
        "json",
        "-o",
        "vg_name,pv_count",
        &name,
    ]);
    assert!(out.contains(&name), "{out}");
    ok(
        "deactivate",
        &c.sh(&format!("/opt/sp/loopvg deactivate {name}")),
    );
    assert!(
        podman::bound_by_identity(&files.0).is_empty(),
        "deactivate unbinds"
    );
    // activate in a new container: /dev holds only the nodes that existed at its start.
    ok("activate", &c.sh("/opt/sp/loopvg activate --all"));
    assert_eq!(
        podman::bound_by_identity(&files.0).len(),
        2,
        "activate binds both"
    );
    assert_eq!(
        lvm2_vg(&c, &name).0,
        2,
        "lvm2 inside sees every PV after activate"
    );
    ok("remove", &c.sh(&format!("/opt/sp/loopvg remove {name}")));
    assert!(podman::bound_by_identity(&files.0).is_empty());
    assert_eq!(
        std::fs::read_dir(&files.0).unwrap().count(),
        0,
        "files removed"
    );
}

/// Two jobs, each with its own /var/lib/cinder, the same VG name: the second create is
/// refused; whatever B does, A's VG survives; each sees the other's VG as active (its
/// devices), none takes it for its own.
#[test]
fn two_containers_never_touch_each_others_volume_group() {
    let rootfs = podman::debian_rootfs();
    let (fa, fb) = (HostDir::new("a"), HostDir::new("b"));
    let a = Container::privileged(&rootfs).volume(&fa.0, "/var/lib/cinder");
    let b = Container::privileged(&rootfs).volume(&fb.0, "/var/lib/cinder");
    let name = vg("shared");
    ok(
        "A create",
        &a.sh(&format!("/opt/sp/loopvg create {name} 64M")),
    );
    let a_devs = podman::bound_by_identity(&fa.0);
    assert_eq!(a_devs.len(), 1);
    let out = b.sh(&format!("/opt/sp/loopvg create {name} 64M"));
    assert!(
        !out.status.success(),
        "B's create of a name the host has: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_dir(&fb.0).unwrap().count(),
        0,
        "B made no file"
    );
    // B's remove, deactivate, extend of that name touch nothing of A's.
    for cmd in ["remove", "deactivate", "extend"] {
        let args = if cmd == "extend" {
            format!("{cmd} {name} +16M")
        } else {
            format!("{cmd} {name}")
        };
        let _ = b.sh(&format!("/opt/sp/loopvg {args}"));
        assert_eq!(podman::bound_by_identity(&fa.0), a_devs, "after B's {cmd}");
        assert_eq!(lvm2_vg(&a, &name).0, 1, "A's VG after B's {cmd}");
        assert_eq!(
            std::fs::read_dir(&fb.0).unwrap().count(),
            0,
            "B's {cmd} made a file"
        );
    }
    // A VG of B's own, beside A's.
    let other = vg("b-own");
    ok(
        "B create",
        &b.sh(&format!("/opt/sp/loopvg create {other} 64M")),
    );
    let in_a = list(&a, "/var/lib/cinder");
    let seen = in_a
        .iter()
        .find(|v| v["name"] == other.as_str())
        .expect("B's VG seen from A");
    assert_eq!(
        seen["active"], true,
        "B's VG reads as active from A: {seen}"
    );
    // The host's own loopvg sees both (on their devices).
    let host = std::process::Command::new(sp_testenv::workspace_bin("loopvg"))
        .args(["--json", "--dir", "/nonexistent-sp-dir", "list"])
        .output()
        .unwrap();
    let host_list = ok("host list", &host);
    assert!(
        host_list.contains(&name) && host_list.contains(&other),
        "{host_list}"
    );
    ok("B remove", &b.sh(&format!("/opt/sp/loopvg remove {other}")));
    assert_eq!(
        podman::bound_by_identity(&fa.0),
        a_devs,
        "A's after B's remove"
    );
    assert_eq!(lvm2_vg(&a, &name).0, 1);
    ok("A remove", &a.sh(&format!("/opt/sp/loopvg remove {name}")));
    assert!(podman::bound_by_identity(&fa.0).is_empty());
}

#[test]
fn the_demo_holds_in_a_privileged_container_and_leaves_nothing() {
    let rootfs = podman::debian_rootfs();
    let before = sp_testenv::lvm::bound_under(std::path::Path::new("/"));
    let c = Container::privileged(&rootfs);
    let text = ok("demo", &c.sh("/opt/sp/stackplumb demo"));
    assert!(text.contains("every check held"), "{text}");
    assert!(!text.contains('✗'), "{text}");
    assert_eq!(
        sp_testenv::lvm::bound_under(std::path::Path::new("/")),
        before,
        "loop devices left by the demo in a container"
    );
}

/// A job that did not ask for `--privileged` is told which setting it lacks, and nothing
/// is left of the attempt.
#[test]
fn a_container_without_loop_devices_is_told_what_to_add() {
    let rootfs = podman::debian_rootfs();
    let files = HostDir::new("unpriv");
    let name = vg("unpriv");
    // With CAP_MKNOD (not among podman's defaults) the device cgroup still refuses the
    // node.
    let c = Container::with_flags(&rootfs, &["--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD"])
        .volume(&files.0, "/var/lib/cinder");
    let out = c.sh(&format!("/opt/sp/loopvg create {name} 64M"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("device cgroup") && err.contains("--device /dev/loop-control"),
        "{err}"
    );
    // podman's default capabilities lack CAP_MKNOD: that is what is named.
    let c = Container::with_flags(&rootfs, &["--cap-add", "SYS_ADMIN"])
        .volume(&files.0, "/var/lib/cinder");
    let out = c.sh(&format!("/opt/sp/loopvg create {name} 64M"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("CAP_MKNOD") && err.contains("--cap-add MKNOD"),
        "{err}"
    );
    assert!(podman::bound_by_identity(&files.0).is_empty());
    assert_eq!(
        std::fs::read_dir(&files.0).unwrap().count(),
        0,
        "a file was left"
    );
}
