//! A private Open vSwitch: a real `ovsdb-server` and `ovs-vswitchd` (Debian's
//! openvswitch-switch) in a temporary run directory, killed by PID on drop.
//!
//! Call it inside [`crate::sandbox::enter`]: bridges use the userspace `netdev`
//! datapath (this kernel has no openvswitch module), so their internal ports are tap
//! devices born in the test's throwaway network namespace. Nothing system-wide is used:
//! `OVS_RUNDIR`, `OVS_DBDIR`, `OVS_LOGDIR` and `OVS_SYSCONFDIR` point into the directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::require;

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// A running private ovsdb-server (and, unless asked otherwise, ovs-vswitchd).
pub struct Ovs {
    dir: PathBuf,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
}

impl Ovs {
    /// Starts ovsdb-server with an initialised `Open_vSwitch` row, and ovs-vswitchd.
    pub fn start() -> Ovs {
        Ovs::start_in(None)
    }

    /// As [`Ovs::start`], with ovs-vswitchd in named network namespace `netns` (a node
    /// of a scene): its bridges' devices are born there and it reaches the NICs there.
    pub fn start_in(netns: Option<&str>) -> Ovs {
        let mut ovs = Ovs::start_db_only();
        let dir = &ovs.dir;
        ovs.vswitchd = Some(spawn(
            dir,
            netns,
            "ovs-vswitchd",
            &[
                &format!("unix:{}", ovs.socket().display()),
                &arg(dir, "--unixctl=", "vswitchd.ctl"),
                &arg(dir, "--pidfile=", "vswitchd.pid"),
                &arg(dir, "--log-file=", "vswitchd.log"),
            ],
        ));
        ovs
    }

    /// Starts only ovsdb-server (with the `Open_vSwitch` row): nothing will ever apply
    /// a configuration, so `cur_cfg` never catches up with `next_cfg`.
    pub fn start_db_only() -> Ovs {
        require::root();
        for p in ["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"] {
            require::program(p, "openvswitch-switch");
        }
        assert!(
            Path::new(SCHEMA).is_file(),
            "{SCHEMA} missing (Debian package openvswitch-common); `testenv/setup.sh` installs it"
        );
        let dir = std::env::temp_dir().join(format!("sp-ovs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let db = dir.join("conf.db");
        require::run(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(SCHEMA),
        );
        let ovsdb = spawn(
            &dir,
            None,
            "ovsdb-server",
            &[
                &db.display().to_string(),
                &arg(&dir, "--remote=punix:", "db.sock"),
                &arg(&dir, "--unixctl=", "ovsdb.ctl"),
                &arg(&dir, "--pidfile=", "ovsdb.pid"),
                &arg(&dir, "--log-file=", "ovsdb.log"),
            ],
        );
        let ovs = Ovs {
            dir,
            ovsdb: Some(ovsdb),
            vswitchd: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ovs.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "ovsdb-server did not create {} within 10 s; log: {}",
                ovs.socket().display(),
                ovs.log("ovsdb.log")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ovs.vsctl(&["--no-wait", "init"]);
        ovs
    }

    /// The private run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the database socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// The `--db` argument for this server: `unix:PATH`.
    pub fn db(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// A daemon's log (for failure messages).
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// The oracle: `ovs-vsctl --db=… --timeout=10 ARGS…`, stdout on success.
    pub fn vsctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ovs-vsctl");
        cmd.arg(format!("--db={}", self.db()))
            .arg("--timeout=10")
            .args(args);
        env(&mut cmd, &self.dir);
        require::run(&mut cmd)
    }

    /// `ovs-vsctl --format=json list TABLE` as one JSON object per row
    /// (column → value in OVSDB notation).
    pub fn list(&self, table: &str) -> Vec<Map<String, Value>> {
        let out = self.vsctl(&["--format=json", "list", table]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("ovs-vsctl list {table}: {e}"));
        let headings: Vec<String> = v["headings"]
            .as_array()
            .expect("headings")
            .iter()
            .map(|h| h.as_str().expect("heading").to_owned())
            .collect();
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|row| {
                headings
                    .iter()
                    .cloned()
                    .zip(row.as_array().expect("row").iter().cloned())
                    .collect()
            })
            .collect()
    }

    /// The row of `table` whose `name` is `name`, if any.
    pub fn row(&self, table: &str, name: &str) -> Option<Map<String, Value>> {
        self.list(table).into_iter().find(|r| r["name"] == name)
    }

    /// Stops ovs-vswitchd (by PID), leaving ovsdb-server running.
    pub fn stop_vswitchd(&mut self) {
        if let Some(child) = self.vswitchd.take() {
            stop(child);
        }
    }
}

fn arg(dir: &Path, option: &str, file: &str) -> String {
    format!("{option}{}", dir.join(file).display())
}

/// Keeps the daemons (and ovs-vsctl) away from the system's run, db and log directories.
fn env(cmd: &mut Command, dir: &Path) {
    for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
        cmd.env(var, dir);
    }
}

fn spawn(dir: &Path, netns: Option<&str>, program: &str, args: &[&str]) -> Child {
    let ns = netns.map(|n| {
        std::fs::File::open(format!("/run/netns/{n}"))
            .unwrap_or_else(|e| panic!("network namespace {n}: {e}"))
    });
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut cmd, dir);
    // SAFETY: prctl and setns are async-signal-safe; nothing else runs between fork and
    // exec. If the test process dies without unwinding (killed on timeout), the daemons
    // die too.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(f) = &ns {
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
            }
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop_vswitchd();
        if let Some(child) = self.ovsdb.take() {
            stop(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
