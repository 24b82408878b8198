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
    /// Starts `argv` inside named namespace `netns` via `ip netns exec`, and returns once
    /// the process has left `ip`: the spawn returns when `ip` runs, which then enters the
    /// namespace and execs `argv[0]` in the same process — until that exec is through, a
    /// reader of /proc sees `ip` or a process without a command line. (`argv[0]` may exec
    /// further — a pyenv shim does —, so readiness beyond this is the caller's.)
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
        let parked = Parked { child };
        if netns.is_some() {
            parked.wait_until(&format!("has exec'd {}", argv[0]), |pid| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|e| e.file_name().is_some_and(|f| f != "ip"))
                    && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
            });
        }
        parked
    }

    /// PID of the parked process (`ip netns exec` execs the program, keeping the PID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 5 s) until `ready(pid)` holds — e.g. the process has entered its
    /// namespace or opened a descriptor — and panics with `what` otherwise.
    pub fn wait_until(&self, what: &str, ready: impl Fn(u32) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ready(self.pid()) {
            assert!(
                std::time::Instant::now() < deadline,
                "parked process {} never became ready: {what}",
                self.pid()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host NIC with its gateway, as an uplink move finds it: veth `nic` here with
/// `host_cidr`, up, and the default route via `gateway`; its peer `gw0` in a new
/// namespace `gw` holds `gateway` with the same prefix length.
pub fn nic_with_gateway(nic: &str, host_cidr: &str, gateway: &str) {
    let prefix = host_cidr.split_once('/').expect("ADDRESS/PREFIX").1;
    netns_add("gw");
    ip(&[
        "link", "add", nic, "type", "veth", "peer", "name", "gw0", "netns", "gw",
    ]);
    ip(&[
        "-n",
        "gw",
        "addr",
        "add",
        &format!("{gateway}/{prefix}"),
        "dev",
        "gw0",
    ]);
    ip(&["-n", "gw", "link", "set", "gw0", "up"]);
    ip(&["addr", "add", host_cidr, "dev", nic]);
    ip(&["link", "set", nic, "up"]);
    ip(&["route", "add", "default", "via", gateway, "dev", nic]);
}

/// Hosts on one L2 segment: a bridge `segment` here and, for each `(name, cidr)`, a
/// namespace `name` whose `eth0` — a veth onto `segment` — is up with `cidr`. The
/// guide's controller and compute node (10.0.0.101/.102) are two such hosts.
pub fn nodes_on_segment(nodes: &[(&str, &str)]) {
    ip(&["link", "add", "segment", "type", "bridge"]);
    ip(&["link", "set", "segment", "up"]);
    for (node, cidr) in nodes {
        netns_add(node);
        let seg = format!("{node}-seg");
        ip(&[
            "link", "add", &seg, "master", "segment", "up", "type", "veth", "peer", "name", "eth0",
            "netns", node,
        ]);
        ip(&["-n", node, "addr", "add", cidr, "dev", "eth0"]);
        ip(&["-n", node, "link", "set", "eth0", "up"]);
    }
}

/// What a DHCP server offered: the fields udhcpc hands its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: String,
    pub mask: String,
    pub mtu: String,
    pub router: String,
    pub dns: String,
}

/// Runs udhcpc once on `dev` inside `netns` (asking for option 26, the MTU) and returns
/// the lease it got; `dir` holds its script. Nothing is configured: the caller applies
/// what it needs, so no file of the host (resolv.conf) is ever touched.
pub fn dhcp_lease(dir: &std::path::Path, netns: &str, dev: &str) -> Lease {
    use std::os::unix::fs::PermissionsExt;
    require::program("udhcpc", "udhcpc");
    let script = dir.join("udhcpc.sh");
    let out = dir.join("lease");
    let body = format!(
        "#!/bin/sh\n[ \"$1\" = bound ] && printf '%s\\n' \"$ip\" \"$mask\" \"$mtu\" \"$router\" \"$dns\" > {}\nexit 0\n",
        out.display()
    );
    std::fs::write(&script, body).expect("write udhcpc script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _ = std::fs::remove_file(&out);
    let udhcpc = [
        "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "5", "-T", "1", "-O", "mtu", "-s",
    ];
    require::run(
        Command::new("ip")
            .args(["netns", "exec", netns])
            .args(udhcpc)
            .arg(&script),
    );
    let text = std::fs::read_to_string(&out).expect("udhcpc bound a lease");
    let mut f = text.lines().map(str::to_owned);
    let mut next = || f.next().unwrap_or_default();
    Lease {
        ip: next(),
        mask: next(),
        mtu: next(),
        router: next(),
        dns: next(),
    }
}

/// The guide's physical network: the controller (10.0.0.101), the compute node
/// (10.0.0.102) and an external PC (10.0.0.1, the ext-net gateway, which knows no route
/// to the tenant subnets) on one segment; both nodes route by default via 10.0.0.1.
pub fn guide_hosts() {
    nodes_on_segment(&[
        ("controller", "10.0.0.101/24"),
        ("compute", "10.0.0.102/24"),
        ("extpc", "10.0.0.1/24"),
    ]);
    for node in ["controller", "compute"] {
        ip(&["-n", node, "route", "add", "default", "via", "10.0.0.1"]);
    }
}
