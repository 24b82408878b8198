//! Shared hosts and privileged containers: many mount namespaces share one kernel and its
//! loop devices. Each "container" here is a mount namespace of its own (a parked process
//! made by `unshare --mount`, commands run in it by `nsenter`), with a tmpfs over the same
//! directory — different files at the same path. loopvg must tell its own loop devices
//! by the kernel's identity of their files, never by the path sysfs names; VG names are
//! host-wide; and nothing one namespace does touches the other's VG.
//!
//! Also: a `/dev` without the loop nodes (or without `/dev/urandom`), as containers have.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use sp_kernel::loopdev::{self, FileId};
use sp_testenv::lvm::{num, Lvm, Scratch};
use sp_testenv::require;

const BIN: &str = env!("CARGO_BIN_EXE_loopvg");

/// A mount namespace with a tmpfs of its own on `dir`, held by a parked process. On drop,
/// every loop device bound to a file of that tmpfs (by identity) is unbound, then the
/// process is killed by its PID.
struct Ns {
    child: Child,
    dir: PathBuf,
}

impl Ns {
    fn new(dir: &Path) -> Ns {
        let script = format!(
            "mount -t tmpfs -o size=512m none '{}' && echo ready && exec sleep 600",
            dir.display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "namespace not made");
        Ns {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["--mount", "--target", &self.child.id().to_string(), program]);
        c
    }

    fn loopvg(&self, args: &[&str]) -> Output {
        self.cmd(BIN)
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run loopvg in the namespace")
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.loopvg(&all);
        assert!(
            out.status.success(),
            "loopvg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    fn fails(&self, args: &[&str], expect: &str) -> String {
        let out = self.loopvg(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "loopvg {args:?}: {err}"
        );
        assert!(
            err.contains(expect),
            "loopvg {args:?}: {err:?} lacks {expect:?}"
        );
        err
    }

    fn sh(&self, script: &str) -> String {
        require::run(self.cmd("sh").args(["-c", script]))
    }

    /// Identities of the files of this namespace's `dir`.
    fn ids(&self) -> Vec<FileId> {
        let out = self.sh(&format!(
            "for f in '{}'/* '{}'/.*; do test -f \"$f\" && stat -c '%d %i' \"$f\"; done; true",
            self.dir.display(),
            self.dir.display()
        ));
        out.lines()
            .filter_map(|l| {
                let (d, i) = l.split_once(' ')?;
                Some(FileId {
                    dev: d.parse().ok()?,
                    ino: i.parse().ok()?,
                })
            })
            .collect()
    }

    /// Loop devices bound to this namespace's files.
    fn bound(&self) -> Vec<String> {
        let ids = self.ids();
        loopdev::bound()
            .unwrap()
            .into_iter()
            .filter(|b| ids.iter().any(|id| b.is(*id)))
            .map(|b| b.dev.path().display().to_string())
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let ids = self.ids();
        for b in loopdev::bound().unwrap_or_default() {
            if ids.iter().any(|id| b.is(*id)) {
                let _ = b.dev.detach();
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

fn devices(vg: &Value) -> Vec<String> {
    vg["pvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["device"].as_str().unwrap().to_string())
        .collect()
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|v| v["name"] == name)
}

/// lvm2 sees `vg` on `devs` with `pvs` PVs and seqno `seqno`.
fn lvm2_sees(devs: &[String], vg: &str, pvs: usize, seqno: u64) {
    let lvm = Lvm::new(devs.to_vec());
    lvm.check(vg).unwrap();
    let row = lvm.vgs(vg);
    assert_eq!(num(&row, "pv_count"), pvs as u64, "{row}");
    assert_eq!(num(&row, "vg_seqno"), seqno, "{row}");
    assert_eq!(lvm.pvs(vg).len(), pvs);
}

fn programs() {
    require::root();
    require::program("unshare", "util-linux");
    require::program("nsenter", "util-linux");
}

/// Two containers, each with its own files at the same path: the second create of a name
/// is refused (VG names are host-wide), and with names of their own each side sees both
/// VGs but changes only its own; A's VG survives everything B does.
#[test]
fn two_mount_namespaces_with_different_files_at_one_path_never_touch_each_other() {
    programs();
    let s = Scratch::new("ns-two");
    let dir = s.path("cinder");
    std::fs::create_dir(&dir).unwrap();
    let a = Ns::new(&dir);
    let b = Ns::new(&dir);
    let pid = std::process::id();
    let (va, vb) = (format!("nsa{pid}"), format!("nsb{pid}"));

    let made = a.ok_json(&["create", &va, "64M"]);
    let dev_a = devices(&made["vgs"][0]);
    assert_eq!(a.bound(), dev_a);
    // The same name from B: refused, whatever B's directory holds; nothing made there.
    let err = b.fails(&["create", &va, "64M"], "already exists");
    assert!(err.contains(&dev_a[0]), "names where: {err}");
    assert!(b.ids().is_empty(), "B's directory stays empty");
    // B holds a file of its own at the very path A's loop device names (sysfs'
    // backing_file): it is not A's file, and A's device is not B's.
    b.sh(&format!("truncate -s 64M '{}/{va}'", dir.display()));
    assert!(b.bound().is_empty());

    let made = b.ok_json(&["create", &vb, "64M"]);
    assert_eq!(devices(&made["vgs"][0]).len(), 1);
    b.ok_json(&["extend", &vb, "+32M"]);
    b.ok_json(&["extend", &vb, "+8M", "--grow"]);
    let dev_b = b.bound();
    assert_eq!(dev_b.len(), 2);

    // Each side lists both VGs (the host's loop devices are shared); only its own with
    // its files here.
    for (ns, mine, theirs) in [(&a, &va, &vb), (&b, &vb, &va)] {
        let list = ns.ok_json(&["list"]);
        let m = named(&list, mine).unwrap_or_else(|| panic!("{mine} not in {list}"));
        let t = named(&list, theirs).unwrap_or_else(|| panic!("{theirs} not in {list}"));
        assert_eq!(m["active"], true);
        assert_eq!(t["active"], true, "bound from the other namespace: active");
        assert!(m["pvs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["file_here"] == true));
        assert!(t["pvs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["file_here"] == false));
    }
    // The host (neither namespace's tmpfs) sees both too, as lvm2 does.
    let host = Command::new(BIN)
        .arg("--dir")
        .arg(&dir)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let host: Value = serde_json::from_slice(&host.stdout).unwrap();
    assert!(
        named(&host, &va).is_some() && named(&host, &vb).is_some(),
        "{host}"
    );

    // B pointed at A's VG: refused, untouched — though B has a file at A's path.
    for args in [
        vec!["remove", va.as_str()],
        vec!["deactivate", va.as_str()],
        vec!["extend", va.as_str(), "+8M"],
        vec!["extend", va.as_str(), "+8M", "--grow"],
        vec!["activate", va.as_str()],
    ] {
        b.fails(&args, "nothing was changed");
    }
    // activate --all in B binds nothing of A's (and nothing twice).
    b.ok_json(&["activate", "--all"]);
    assert_eq!(b.bound(), dev_b);
    assert_eq!(a.bound(), dev_a);
    lvm2_sees(&dev_a, &va, 1, 1);

    // B deactivates and removes its own VG: A's stays bound and whole.
    b.ok_json(&["deactivate", &vb]);
    assert!(b.bound().is_empty());
    b.ok_json(&["activate", &vb]);
    assert_eq!(b.bound().len(), 2);
    let removed = b.ok_json(&["remove", &vb]);
    assert_eq!(removed["removed"]["files"].as_array().unwrap().len(), 2);
    assert!(b.bound().is_empty());
    assert_eq!(a.bound(), dev_a, "A's loop device is still A's");
    lvm2_sees(&dev_a, &va, 1, 1);
    let mine = a.ok_json(&["list", &va]);
    assert_eq!(mine[0]["active"], true);
    assert_eq!(mine[0]["pvs"][0]["device"], dev_a[0].as_str());
    assert_eq!(mine[0]["pvs"][0]["file_here"], true);
    // B's plain file at A's path is still there, A's file too.
    b.sh(&format!("test -f '{}/{va}'", dir.display()));
    a.ok_json(&["remove", &va]);
    assert!(a.bound().is_empty() && a.ids().is_empty());
}

/// The same files seen by two mount namespaces at different paths (a volume shared by
/// jobs): a VG bound from the other namespace is active here, on its devices; activate
/// does not bind its files a second time; and it can be deactivated and removed here.
#[test]
fn a_vg_bound_from_another_mount_namespace_is_active_here_and_never_bound_twice() {
    programs();
    let s = Scratch::new("ns-shared");
    let shared = s.path("shared");
    let elsewhere = s.path("mnt");
    std::fs::create_dir(&shared).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let c = Ns::new(&elsewhere);
    // In C, the shared directory is bound over its tmpfs at another path.
    c.sh(&format!(
        "mount --bind '{}' '{}'",
        shared.display(),
        elsewhere.display()
    ));
    let vg = format!("nsc{}", std::process::id());
    let made = c.ok_json(&["create", &vg, "64M"]);
    c.ok_json(&["extend", &vg, "+32M"]);
    let devs = devices(&c.ok_json(&["list", &vg])[0]);
    assert_eq!(devs.len(), 2);
    assert_eq!(made["vgs"][0]["pvs"][0]["device"], devs[0].as_str());
    // Here, the kernel's names (elsewhere/...) are other files: decoys at those paths.
    std::fs::write(elsewhere.join(&vg), vec![0u8; 1 << 20]).unwrap();
    let here = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = Command::new(BIN)
            .arg("--dir")
            .arg(&shared)
            .args(&all)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listed = here(&["list", &vg]);
    assert_eq!(listed[0]["active"], true, "{listed}");
    assert_eq!(devices(&listed[0]), devs);
    for pv in listed[0]["pvs"].as_array().unwrap() {
        assert_eq!(pv["file_here"], true, "{pv}");
        assert!(
            Path::new(pv["file"].as_str().unwrap()).starts_with(&shared),
            "{pv}"
        );
    }
    let bound_to = |f: &str| {
        let id = FileId::of_path(&shared.join(f)).unwrap();
        loopdev::bound()
            .unwrap()
            .iter()
            .filter(|b| b.is(id))
            .count()
    };
    here(&["activate", "--all"]);
    here(&["activate", &vg]);
    assert_eq!((bound_to(&vg), bound_to(&format!("{vg}02"))), (1, 1));
    assert_eq!(s.bound(), devs);
    lvm2_sees(&devs, &vg, 2, 2);
    // Changed from here through its devices; lvm2 follows.
    here(&["extend", &vg, "+8M", "--grow"]);
    lvm2_sees(&devs, &vg, 2, 3);
    here(&["deactivate", &vg]);
    assert!(s.bound().is_empty());
    here(&["activate", "--all"]);
    assert_eq!((bound_to(&vg), bound_to(&format!("{vg}02"))), (1, 1));
    here(&["remove", &vg]);
    assert!(s.bound().is_empty());
    assert_eq!(
        std::fs::metadata(elsewhere.join(&vg)).unwrap().size(),
        1 << 20,
        "the decoy is untouched"
    );
}

/// Runs `script` in a mount namespace whose `/dev` is a fresh tmpfs holding only
/// `loop-control`, `null` and `zero` — no `/dev/loopN`, no `/dev/urandom`.
fn in_bare_dev(script: &str) -> Output {
    let script = format!(
        "set -e
         mount -t tmpfs none /dev
         mknod /dev/loop-control c 10 237; mknod /dev/null c 1 3; mknod /dev/zero c 1 5
         {script}"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap()
}

/// Every command works with the loop nodes missing and makes the nodes it opens;
/// activate makes them for every PV; create needs no `/dev/urandom`.
#[test]
fn missing_loop_nodes_are_made_by_every_command() {
    programs();
    let s = Scratch::new("ns-nodes");
    let run = |args: &str| -> (Value, Vec<String>) {
        let out = in_bare_dev(&format!(
            "{BIN} --dir '{}' {args} --json; echo '@@'; ls /dev",
            s.dir.display()
        ));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (json, ls) = text.split_once("@@").unwrap();
        (
            serde_json::from_str(json).unwrap(),
            ls.split_whitespace().map(|d| format!("/dev/{d}")).collect(),
        )
    };
    let (v, _) = run("create nodevg 64M");
    assert_eq!(v["vgs"][0]["pvs"].as_array().unwrap().len(), 1);
    let (v, ls) = run("extend nodevg +32M");
    let devs = devices(&v["vgs"][0]);
    assert_eq!(devs.len(), 2);
    assert!(
        devs.iter().all(|d| ls.contains(d)),
        "{devs:?} not in {ls:?}"
    );
    let (v, ls) = run("extend nodevg +8M --grow");
    assert!(devices(&v["vgs"][0]).iter().all(|d| ls.contains(d)));
    let (v, ls) = run("extend nodevg +16M");
    let devs = devices(&v["vgs"][0]);
    assert_eq!(devs.len(), 3);
    assert!(
        devs.iter().all(|d| ls.contains(d)),
        "{devs:?} not in {ls:?}"
    );
    lvm2_sees(&devs, "nodevg", 3, 4);
    run("deactivate nodevg");
    assert!(s.bound().is_empty());
    let (v, ls) = run("activate --all");
    let devs = devices(&v["vgs"][0]);
    assert_eq!(devs.len(), 3);
    assert!(
        devs.iter().all(|d| ls.contains(d)),
        "{devs:?} not in {ls:?}"
    );
    // lvm2, run in such a /dev after activate, sees every PV.
    let lvm = Lvm::new(devs.clone());
    let cmd = lvm.cmd(&["pvs", "--reportformat", "json", "-o", "pv_name,vg_name"]);
    let args: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let out = in_bare_dev(&format!(
        "{BIN} --dir '{}' activate --all >/dev/null; LVM_SUPPRESS_FD_WARNINGS=1 {}",
        s.dir.display(),
        args.join(" ")
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in &devs {
        assert!(
            text.contains(&format!("\"pv_name\":\"{d}\"")),
            "{d} not in {text}"
        );
    }
    lvm2_sees(&devs, "nodevg", 3, 4);
    let (v, _) = run("remove nodevg");
    assert_eq!(v["removed"]["files"].as_array().unwrap().len(), 3);
    assert!(s.bound().is_empty() && s.files().is_empty());
}

/// A devices cgroup (v1) of the test's own refusing every loop device (block major 7),
/// as an unprivileged container's is; removed on drop.
struct DenyLoop(PathBuf);

impl DenyLoop {
    fn new() -> DenyLoop {
        let root = Path::new("/sys/fs/cgroup/devices");
        assert!(
            root.join("devices.deny").exists(),
            "this test needs the cgroup v1 devices controller at {}",
            root.display()
        );
        let cg = root.join(format!("sp-loopvg-deny-{}", std::process::id()));
        let _ = std::fs::remove_dir(&cg);
        std::fs::create_dir(&cg).unwrap();
        let d = DenyLoop(cg);
        std::fs::write(d.0.join("devices.deny"), "b 7:* rwm").unwrap();
        d
    }

    /// `loopvg --dir DIR args` run inside the cgroup.
    fn loopvg(&self, dir: &Path, args: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > '{}/cgroup.procs' && exec {BIN} --dir '{}' {args}",
                self.0.display(),
                dir.display()
            ))
            .output()
            .unwrap()
    }
}

impl Drop for DenyLoop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Where the device cgroup refuses loop devices, they are skipped with a note and never
/// taken for ours: the VG's file reads as unbound, but nothing that relies on it being
/// unbound (activate binding it again, remove deleting it) is done.
#[test]
fn loop_devices_a_device_cgroup_refuses_are_noted_and_never_taken_for_ours() {
    programs();
    let s = Scratch::new("ns-cgroup");
    let vg = format!("cg{}", std::process::id());
    let out = Command::new(BIN)
        .arg("--dir")
        .arg(&s.dir)
        .args(["create", &vg, "64M"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devs = s.bound();
    assert_eq!(devs.len(), 1);
    let deny = DenyLoop::new();
    let out = deny.loopvg(&s.dir, "list --json");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("note: {} ", devs[0]))
            && err.contains("not taken for a device of ours"),
        "{err}"
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = named(&list, &vg).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(v["active"], false, "{v}");
    for args in [
        format!("activate {vg}"),
        "activate --all".into(),
        format!("remove {vg}"),
    ] {
        let out = deny.loopvg(&s.dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args}: {err}");
        assert!(err.contains("cannot be told whether"), "{args}: {err}");
    }
    drop(deny);
    assert_eq!(s.bound(), devs, "bound once, as before");
    lvm2_sees(&devs, &vg, 1, 1);
    let out = Command::new(BIN)
        .arg("--dir")
        .arg(&s.dir)
        .args(["remove", &vg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.bound().is_empty() && s.files().is_empty());
}
