//! A throwaway network + mount namespace for the calling thread.
//!
//! Call [`enter`] first thing in a test. Under cargo-nextest every test is its own
//! process, so nothing else shares the namespaces; under plain `cargo test` the unshare is
//! per thread and still isolates. Build tokio runtimes *after* entering so their worker
//! threads inherit the sandbox. Child processes (`ip`, `dnsmasq`, our binaries) inherit
//! it as well. When the test process exits, the namespaces, every named namespace in
//! the private `/run/netns` and every link inside them are gone.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::require;

/// Directory holding named network namespaces, as iproute2 uses it.
pub const NETNS_DIR: &str = "/run/netns";

/// Enters a fresh network namespace and a private mount namespace with an empty
/// tmpfs on `/run/netns`, and brings `lo` up. Panics (failing the test) with a message
/// naming what is missing when it cannot.
pub fn enter() {
    require::root();
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).unwrap_or_else(|e| {
        panic!(
            "sandbox: unshare(CLONE_NEWNET|CLONE_NEWNS) failed: {e} — the tests need \
             root with CAP_SYS_ADMIN (a privileged container at least)"
        )
    });
    // Mount events must not travel back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("sandbox: making / private failed: {e}"));
    std::fs::create_dir_all(NETNS_DIR)
        .unwrap_or_else(|e| panic!("sandbox: cannot create {NETNS_DIR}: {e}"));
    mount(
        Some("tmpfs"),
        NETNS_DIR,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .unwrap_or_else(|e| panic!("sandbox: tmpfs on {NETNS_DIR} failed: {e}"));
    // `/sys` must show this namespace's devices to the tools we start (`ip`, dnsmasq).
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("sandbox: remounting /sys failed: {e}"));
    require::program("ip", "iproute2");
    crate::scene::ip(&["link", "set", "lo", "up"]);
}
