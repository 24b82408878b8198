//! The `loopvg` binary end to end, as root, with real lvm2 as the oracle; every bad input
//! must fail with a clear message, a non-zero exit and nothing left behind.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::lvm::{num, Lvm, Scratch};
use sp_testenv::require;

fn loopvg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopvg"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run loopvg")
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = loopvg(dir, &all);
    assert!(
        out.status.success(),
        "loopvg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Fails with exit status 1 (2 for input refused) and `expect` in the message
/// (`exit_codes_and_json_errors_per_case` checks which).
fn fails(dir: &Path, args: &[&str], expect: &str) {
    let out = loopvg(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "loopvg {args:?}: {err}"
    );
    assert!(
        err.contains(expect),
        "loopvg {args:?}: {err:?} does not say {expect:?}"
    );
}

fn seqno(dir: &Path, vg: &str) -> u64 {
    ok_json(dir, &["list", vg])[0]["seqno"].as_u64().unwrap()
}

#[test]
fn help_teaches_with_the_guides_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_loopvg"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "loopvg create cinder-volumes 20G",
        "loopvg extend cinder-volumes +5G",
        "--grow",
        "pvcreate",
        "activate --all",
        "install-unit",
        "/run/lock/lvm",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}");
    }
    for sub in [
        "create",
        "extend",
        "list",
        "activate",
        "deactivate",
        "remove",
        "install-unit",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loopvg"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub} --help");
    }
}

#[test]
fn the_guides_sizes_work_and_lvm2_agrees() {
    let s = Scratch::new("cli-sizes");
    let dir = s.dir.as_path();
    ok_json(dir, &["create", "cinder-volumes", "512M"]);
    ok_json(dir, &["extend", "cinder-volumes", "+5G"]);
    ok_json(dir, &["extend", "cinder-volumes", "5GiB", "--grow"]);
    let vg = ok_json(dir, &["extend", "cinder-volumes", "5g"]);
    assert_eq!(vg["schema"], 1);
    let vg = &vg["vgs"][0];
    assert_eq!(
        s.files(),
        ["cinder-volumes", "cinder-volumes02", "cinder-volumes03"]
    );
    let lvm = Lvm::of(&s);
    lvm.check("cinder-volumes").unwrap();
    let theirs = lvm.vgs("cinder-volumes");
    assert_eq!(num(&theirs, "vg_size"), vg["size"].as_u64().unwrap());
    assert_eq!(num(&theirs, "vg_free"), vg["free"].as_u64().unwrap());
    assert_eq!(num(&theirs, "vg_seqno"), 4);
    assert_eq!(num(&theirs, "pv_count"), 3);
    // 512M -> 127 extents, +5G -> 1279, grown to 10G -> 2559, 5g -> 1279
    assert_eq!(num(&theirs, "vg_extent_count"), 127 + 2559 + 1279);
    let listed = ok_json(dir, &["list"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "cinder-volumes" && v["seqno"] == 4));
    let text = loopvg(dir, &["list", "--pvs", "cinder-volumes"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("cinder-volumes02"));
}

#[test]
fn bad_sizes_fail_clearly_and_leave_nothing() {
    let s = Scratch::new("cli-badsize");
    let dir = s.dir.as_path();
    for (size, why) in [
        ("0", "more than zero"),
        ("0G", "more than zero"),
        ("-1G", "negative"),
        ("+", "absolute size"),
        ("5X", "unknown unit"),
        ("+5G", "absolute size"),
        ("1M", "too small"),
        ("4", "too small"),
        ("1000b", "not a whole number of 512-byte sectors"),
        ("1P", "not enough space"),
    ] {
        fails(dir, &["create", "sizevg", size], why);
        assert!(s.files().is_empty(), "{size} left {:?}", s.files());
        assert!(s.bound().is_empty());
    }
    ok_json(dir, &["create", "sizevg", "64M"]);
    for (size, why) in [
        ("0", "more than zero"),
        ("-1G", "negative"),
        ("+", "expected a number"),
        ("5X", "unknown unit"),
        ("1P", "not enough space"),
    ] {
        for grow in [false, true] {
            let mut args = vec!["extend", "sizevg", size];
            if grow {
                args.push("--grow");
            }
            fails(dir, &args, why);
            assert_eq!(s.files(), ["sizevg"], "{args:?}");
            assert_eq!(seqno(dir, "sizevg"), 1);
            assert_eq!(std::fs::metadata(s.path("sizevg")).unwrap().len(), 64 << 20);
        }
    }
    Lvm::of(&s).check("sizevg").unwrap();
}

#[test]
fn bad_names_existing_and_missing_things_fail_clearly() {
    let s = Scratch::new("cli-names");
    let dir = s.dir.as_path();
    let long = "v".repeat(128);
    for (name, why) in [
        ("a/b", "not allowed"),
        ("..", "are not names"),
        ("vg name", "not allowed"),
        ("loop-control", "/dev/loop-control already exists"),
        (long.as_str(), "longer than"),
    ] {
        fails(dir, &["create", name, "64M"], "invalid volume group name");
        fails(dir, &["create", name, "64M"], why);
    }
    fails(
        dir,
        &["create", "--", "-vg", "64M"],
        "may not start with '-'",
    );
    assert!(s.files().is_empty());
    for cmd in [
        vec!["extend", "novg", "+5G"],
        vec!["extend", "novg", "+5G", "--grow"],
        vec!["list", "novg"],
        vec!["activate", "novg"],
        vec!["deactivate", "novg"],
        vec!["remove", "novg"],
    ] {
        fails(dir, &cmd, "volume group \"novg\" not found");
    }
    ok_json(dir, &["create", "dupvg", "64M"]);
    fails(dir, &["create", "dupvg", "64M"], "already exists");
    assert_eq!(seqno(dir, "dupvg"), 1);
    // a plain file in the way is never overwritten
    std::fs::write(s.path("plainvg"), b"precious").unwrap();
    fails(dir, &["create", "plainvg", "64M"], "already exists");
    assert_eq!(std::fs::read(s.path("plainvg")).unwrap(), b"precious");
    // a symlink in the way is never followed
    let target = std::env::temp_dir().join(format!("loopvg-target-{}", std::process::id()));
    std::fs::write(&target, b"not yours").unwrap();
    symlink(&target, s.path("linkvg")).unwrap();
    fails(dir, &["create", "linkvg", "64M"], "symbolic link");
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours");
    std::fs::remove_file(&target).unwrap();
    assert_eq!(s.bound().len(), 1, "only dupvg is bound");
}

#[test]
fn not_root_is_told_so_and_nothing_happens() {
    let s = Scratch::new("cli-nonroot");
    require::program("setpriv", "util-linux");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_loopvg"))
        .arg("--dir")
        .arg(&s.dir)
        .args(["create", "rootvg", "64M"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "needs root: the table's 6");
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
    assert!(s.files().is_empty());
}

#[test]
fn deactivate_activate_remove_round_trip() {
    let s = Scratch::new("cli-cycle");
    let dir = s.dir.as_path();
    ok_json(dir, &["create", "cyclevg", "64M"]);
    ok_json(dir, &["extend", "cyclevg", "+32M"]);
    let vg = ok_json(dir, &["deactivate", "cyclevg"]);
    assert_eq!(vg["vgs"][0]["active"], false);
    assert!(s.bound().is_empty());
    let vg = ok_json(dir, &["activate", "--all"]);
    assert_eq!(vg["vgs"][0]["active"], true);
    Lvm::of(&s).check("cyclevg").unwrap();
    let r = ok_json(dir, &["remove", "cyclevg"]);
    assert_eq!(r["schema"], 1);
    assert_eq!(r["removed"]["files"].as_array().unwrap().len(), 2);
    assert!(s.files().is_empty() && s.bound().is_empty());
}

#[test]
fn install_unit_writes_a_boot_unit_that_activates_all() {
    let s = Scratch::new("cli-unit");
    let units = s.path("units");
    let bin = env!("CARGO_BIN_EXE_loopvg");
    let out = ok_json(
        Path::new("/var/lib/cinder"),
        &[
            "install-unit",
            "--unit-dir",
            units.to_str().unwrap(),
            "--bin",
            bin,
        ],
    );
    assert_eq!(out["unit"], units.join("loopvg.service").to_str().unwrap());
    let unit = std::fs::read_to_string(units.join("loopvg.service")).unwrap();
    let exec = format!("ExecStart={bin} activate --all --dir /var/lib/cinder");
    for want in [
        exec.as_str(),
        "Type=oneshot",
        "RemainAfterExit=yes",
        "Before=lvm2-activation.service openstack-cinder-volume.service cinder-volume.service",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.contains(want), "unit lacks {want:?}:\n{unit}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join("loopvg.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("loopvg.service:"), "systemd-analyze: {err}");
    }
}

/// A privileged container: /dev without loop nodes, no /run/lock. loopvg creates
/// /dev/loop-control, /dev/loopN and /run/lock/lvm itself.
#[test]
fn container_without_device_nodes_or_lock_dir() {
    let s = Scratch::new("cli-container");
    require::program("unshare", "util-linux");
    let script = format!(
        "set -e
         mount -t tmpfs none /dev
         mount -t tmpfs none /run/lock
         mknod /dev/urandom c 1 9; mknod /dev/null c 1 3
         {bin} --dir {dir} create ctvg 64M --json > {dir}/../ct-{pid}.json
         ls /dev > {dir}/../ct-{pid}.dev
         test -d /run/lock/lvm
         {bin} --dir {dir} remove ctvg",
        bin = env!("CARGO_BIN_EXE_loopvg"),
        dir = s.dir.display(),
        pid = std::process::id(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let parent = s.dir.parent().unwrap();
    let pid = std::process::id();
    let json = std::fs::read_to_string(parent.join(format!("ct-{pid}.json"))).unwrap_or_default();
    let devs = std::fs::read_to_string(parent.join(format!("ct-{pid}.dev"))).unwrap_or_default();
    let _ = std::fs::remove_file(parent.join(format!("ct-{pid}.json")));
    let _ = std::fs::remove_file(parent.join(format!("ct-{pid}.dev")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vg: Value = serde_json::from_str(&json).unwrap();
    let dev = vg["vgs"][0]["pvs"][0]["device"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(devs.lines().any(|l| l == "loop-control"), "{devs}");
    assert!(
        devs.lines().any(|l| format!("/dev/{l}") == dev),
        "{dev} not in {devs}"
    );
    assert!(s.files().is_empty() && s.bound().is_empty());
}

/// When the kernel hands out no loop device, the error says so and nothing is left.
#[test]
fn loop_devices_exhausted_fails_cleanly() {
    let s = Scratch::new("cli-exhausted");
    require::program("unshare", "util-linux");
    // /dev/loop-control that is not one: every LOOP_CTL_GET_FREE fails.
    let script = format!(
        "mount -t tmpfs none /dev
         mknod /dev/urandom c 1 9; mknod /dev/loop-control c 1 3
         {bin} --dir {dir} create fullvg 64M",
        bin = env!("CARGO_BIN_EXE_loopvg"),
        dir = s.dir.display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no free loop device"), "{err}");
    assert!(s.files().is_empty(), "{:?}", s.files());
}

/// Two `loopvg extend` processes on one VG at once: both land, one after the other.
#[test]
fn two_extend_processes_at_once_both_land() {
    let s = Scratch::new("cli-race");
    let dir = s.dir.as_path();
    ok_json(dir, &["create", "racevg", "32M"]);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_loopvg"))
            .arg("--dir")
            .arg(dir)
            .args(["extend", "racevg", "+16M"])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert_eq!(s.files(), ["racevg", "racevg02", "racevg03"]);
    assert_eq!(seqno(dir, "racevg"), 3);
    let lvm = Lvm::of(&s);
    lvm.check("racevg").unwrap();
    assert_eq!(num(&lvm.vgs("racevg"), "pv_count"), 3);
}

#[test]
fn a_non_utf8_dir_works() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new("cli-bytes");
    let dir = s.dir.join(OsStr::from_bytes(b"x\xff"));
    let out = loopvg(&dir, &["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no loop-file volume groups"));
    // A binding to a non-UTF-8 file would stop every scan (the loop device list is read
    // as text): refused before anything is made.
    std::fs::create_dir_all(&dir).unwrap();
    fails(&dir, &["create", "bytesvg", "32M"], "is not UTF-8");
    assert!(s.bound().is_empty());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // A VG made elsewhere, its file moved into the non-UTF-8 directory: listed, not
    // bound by activate.
    ok_json(&s.dir, &["create", "bytesvg", "32M"]);
    ok_json(&s.dir, &["deactivate", "bytesvg"]);
    std::fs::rename(s.path("bytesvg"), dir.join("bytesvg")).unwrap();
    let listed = ok_json(&dir, &["list", "bytesvg"]);
    assert_eq!(listed[0]["active"], false);
    fails(&dir, &["activate", "bytesvg"], "is not UTF-8");
    fails(&dir, &["activate", "--all"], "is not UTF-8");
    assert!(s.bound().is_empty());
}

#[test]
fn names_that_climb_out_are_refused_and_nothing_is_touched() {
    let s = Scratch::new("cli-names");
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let climb = format!("x/../../..{}", victim.display());
    for args in [
        vec!["extend", climb.as_str(), "+8M"],
        vec!["extend", climb.as_str(), "+8M", "--grow"],
        vec!["create", climb.as_str(), "32M"],
        vec!["remove", climb.as_str()],
        vec!["deactivate", climb.as_str()],
        vec!["activate", climb.as_str()],
        vec!["list", climb.as_str()],
    ] {
        fails(&s.dir, &args, "invalid volume group name");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(s.files(), ["victim"]);
}

#[test]
fn install_unit_refuses_paths_that_would_inject_lines() {
    let s = Scratch::new("cli-unit-inject");
    let units = s.path("units");
    let bin = env!("CARGO_BIN_EXE_loopvg");
    let cases: [(&str, &str, &str); 5] = [
        ("/x\nExecStartPre=/bin/touch /tmp/pwned", bin, "--dir"),
        (
            "/var/lib/cinder",
            "/bin/loopvg\nExecStartPre=/bin/id",
            "--bin",
        ),
        ("relative/dir", bin, "not absolute"),
        ("/var/lib/cinder", "loopvg", "not absolute"),
        ("/x %h", bin, "may not appear"),
    ];
    for (dir, b, why) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_loopvg"))
            .args(["--dir", dir, "install-unit", "--unit-dir"])
            .arg(&units)
            .args(["--bin", b])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{dir:?} {b:?}: {err}");
        assert!(err.contains(why), "{dir:?} {b:?}: {err}");
        assert!(!units.exists(), "nothing written for {dir:?} {b:?}");
    }
}

#[test]
fn a_corrupt_pv_is_named_by_list_and_by_commands_and_left_as_it_is() {
    let s = Scratch::new("cli-corrupt");
    let dir = s.dir.as_path();
    ok_json(dir, &["create", "badvg", "32M"]);
    ok_json(dir, &["deactivate", "badvg"]);
    // One byte of the committed text flipped: its checksum no longer matches.
    let file = s.path("badvg");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 512 + 3] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let out = loopvg(dir, &["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: {}", file.display()))
            && err.contains("metadata text checksum mismatch"),
        "{err}"
    );
    for args in [
        vec!["list", "badvg"],
        vec!["extend", "badvg", "+8M"],
        vec!["activate", "badvg"],
        vec!["remove", "badvg"],
    ] {
        fails(
            dir,
            &args,
            "corrupt LVM metadata: area at 4096: metadata text checksum mismatch",
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert_eq!(s.files(), ["badvg"]);
    assert!(s.bound().is_empty());
}

/// `--json` on a failure: one object on stdout, its kind, the table's exit code.
fn json_error(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--json"];
    all.extend(args);
    sp_testenv::json_error(&loopvg(dir, &all))
}

#[test]
fn exit_codes_and_json_errors_per_case() {
    let s = Scratch::new("cli-codes");
    let dir = s.dir.as_path();
    let e = |args: &[&str]| json_error(dir, args);
    assert_eq!(e(&["create", "a/b", "64M"]), (2, "invalid-input".into()));
    assert_eq!(e(&["create", "sizevg", "5X"]), (2, "invalid-input".into()));
    assert_eq!(e(&["create", "sizevg", "1M"]), (2, "invalid-input".into()));
    assert_eq!(e(&["extend", "novg", "+5G"]), (1, "not-found".into()));
    assert_eq!(e(&["create", "--bogus"]), (2, "usage".into()));
    assert_eq!(
        e(&[
            "install-unit",
            "--unit-dir",
            "/nonexistent-units",
            "--bin",
            "relative/loopvg"
        ]),
        (2, "invalid-input".into())
    );
    assert!(!Path::new("/nonexistent-units").exists());
    // The global options after the subcommand too.
    let out = loopvg(dir, &["create", "a/b", "64M", "--json", "-q"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "invalid-input", "{v}");
    assert!(s.files().is_empty());
}
