//! Scene builders for tests, made with the real tools (tests may run anything; the
//! product may not). Everything lives inside the caller's sandbox.

use std::process::{Child, Command, Stdio};

use crate::require;

/// Runs `ip ARGS…` and panics with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    require::run(Command::new("ip").args(args))
}

/// `ip netns add NAME`.
pub fn netns_add(name: &str) {
    ip(&["netns", "add", name]);
    ip(&["-n", name, "link", "set", "lo", "up"]);
}

/// A process parked inside a namespace (or the sandbox itself when `netns` is `None`);
/// killed and reaped by PID on drop.
pub struct Parked {
    child: Child,
}

impl Parked {
    /// Starts `argv` inside named namespace `netns` via `ip netns exec`.
    pub fn start(netns: Option<&str>, argv: &[&str]) -> Self {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        Parked { child }
    }

    /// PID of the parked process (`ip netns exec` execs the program, keeping the PID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
