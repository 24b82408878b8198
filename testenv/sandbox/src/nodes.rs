//! Running the `stackplumb` binary inside the guide's nodes (namespaces in a sandbox):
//! its CLI tests and the end-to-end tests of `tests/` share this.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::scene;
use crate::{require, sandbox};
use serde_json::Value;

/// stackplumb's files and flags for every run of a test.
#[derive(Clone)]
pub struct Cli {
    /// Each node's `--config-dir`: its own files, as the guide leaves them on it (the
    /// controller's all of them, the compute node's `linuxbridge_agent.ini` alone).
    pub configs: Vec<(String, PathBuf)>,
    /// `--state-dir`; `--cinder-dir` is `cinder/` in it.
    pub state: PathBuf,
    /// Flags given to every run (`--ovsdb …`).
    pub extra: Vec<String>,
}

impl Cli {
    /// `stackplumb ARGS` to run inside node `node` (nsenter switches the network
    /// namespace only, and execs stackplumb: its PID is stackplumb's).
    pub fn cmd(&self, node: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{node}"))
            .arg(crate::workspace_bin("stackplumb"))
            .arg("--config-dir")
            .arg(self.config(node))
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--cinder-dir")
            .arg(self.state.join("cinder"))
            .args(&self.extra)
            .args(args);
        cmd
    }

    /// Node `node`'s configuration directory (the controller's for a host that is no
    /// node of the topology, such as the external PC).
    pub fn config(&self, node: &str) -> &std::path::Path {
        let of = |n: &str| self.configs.iter().find(|(c, _)| c == n).map(|(_, d)| d);
        of(node)
            .or_else(|| of("controller"))
            .expect("a configuration directory for the controller")
    }

    /// The same runs with `dir` as node `node`'s configuration.
    pub fn with_config(&self, node: &str, dir: PathBuf) -> Cli {
        let mut cli = self.clone();
        cli.configs.retain(|(n, _)| n != node);
        cli.configs.push((node.to_owned(), dir));
        cli
    }

    pub fn on(&self, node: &str, args: &[&str]) -> Output {
        self.cmd(node, args).output().expect("run stackplumb")
    }

    /// The `--json` output of a run that must succeed: its last JSON line (apply and
    /// destroy print one line per action, then their result).
    pub fn json(&self, node: &str, args: &[&str]) -> Value {
        let (code, lines) = self.json_lines(node, args);
        assert_eq!(code, Some(0), "{args:?} on {node}: {lines:?}");
        lines.into_iter().last().expect("a JSON line")
    }

    /// Every `--json` line of a run, and its exit code, whatever it is.
    pub fn json_lines(&self, node: &str, args: &[&str]) -> (Option<i32>, Vec<Value>) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.on(node, &all);
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "{args:?} on {node}: {e} in {l:?}; stderr {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
            })
            .collect();
        (out.status.code(), lines)
    }

    /// Starts `--json apply` on `node` and SIGKILLs it as soon as it has reported
    /// `actions` completed actions — a moment inside the work whatever the machine's
    /// speed (a kill timed by the clock lands after the end when this run is faster
    /// than the one that set the clock). Returns the lines it printed.
    pub fn kill_apply_after(&self, node: &str, actions: usize) -> Vec<String> {
        use std::io::BufRead;
        let mut child = self
            .cmd(node, &["--json", "apply"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run stackplumb");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut lines = Vec::new();
        while lines.len() < actions {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    }
}

/// Ends the dnsmasq and metadata proxy processes a state directory names (its own and
/// those of state directories one level down, as a test with two `--state-dir`s has),
/// releases its loop devices and removes it — also when the test fails midway. Those
/// processes are daemons: left running, each keeps its dead sandbox's namespaces.
pub struct Cleanup(PathBuf);

impl Cleanup {
    /// Cleans up `state` when dropped.
    pub fn new(state: PathBuf) -> Cleanup {
        Cleanup(state)
    }
}

/// The pids in `state`'s dnsmasq (`dhcp/<net>/pid`) and metadata proxy
/// (`stackplumb/*.pid`) pid files.
fn daemon_pids(state: &std::path::Path) -> Vec<String> {
    let files = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    };
    files(state.join("dhcp"))
        .map(|d| d.join("pid"))
        .chain(
            files(state.join("stackplumb")).filter(|f| f.extension().is_some_and(|x| x == "pid")),
        )
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|p| p.trim().to_owned())
        .collect()
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dev in crate::lvm::bound_under(&self.0) {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let subdirs = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir());
        let states: Vec<PathBuf> = std::iter::once(self.0.clone()).chain(subdirs).collect();
        for pid in states.iter().flat_map(|s| daemon_pids(s)) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sandbox with the guide's two nodes and the external PC on one segment, and
/// stackplumb reading the guide's files.
pub fn two_nodes() -> (Cli, Cleanup) {
    sandbox::enter();
    require::program("nsenter", "util-linux");
    require::program("dnsmasq", "dnsmasq-base");
    scene::guide_hosts();
    let state = std::env::temp_dir().join(format!("stackplumb-{}", std::process::id()));
    let cli = Cli {
        configs: vec![
            ("controller".into(), crate::guide_config_dir()),
            ("compute".into(), crate::guide_compute_config_dir()),
        ],
        state: state.clone(),
        extra: vec![],
    };
    (cli, Cleanup(state))
}

/// The names of `node`'s links.
pub fn link_names(node: &str) -> Vec<String> {
    crate::oracle::links(Some(node))
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// One line of `stackplumb --json supervise`, its `schema` (2) and `time` members
/// checked (UTC, RFC 3339, milliseconds: `2026-12-01T13:46:44.123Z`) and taken out; a
/// `changed` event's change checked typed ([`crate::assert_typed_change`]).
pub fn supervise_event(line: &str) -> serde_json::Value {
    let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
    let schema = e.as_object_mut().and_then(|o| o.remove("schema"));
    assert_eq!(schema, Some(serde_json::json!(2)), "{line}");
    let time = e
        .as_object_mut()
        .and_then(|o| o.remove("time"))
        .unwrap_or_else(|| panic!("an event without its time: {line}"));
    let time = time.as_str().expect("time is a string");
    let shape = time.len() == 24
        && time.ends_with('Z')
        && time.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "time {time:?} is not RFC 3339 UTC with milliseconds");
    if e["event"] == "changed" {
        crate::assert_typed_change(&e);
    }
    e
}
