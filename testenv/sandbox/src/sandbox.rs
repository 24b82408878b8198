//! A throwaway network + mount namespace for the calling thread.
//!
//! Call [`enter`] first thing in a test. Under cargo-nextest every test is its own
//! process, so nothing else shares the namespaces; under plain `cargo test` the unshare is
//! per thread and still isolates. Build tokio runtimes *after* entering so their worker
//! threads inherit the sandbox. Child processes (`ip`, `dnsmasq`, our binaries) inherit
//! it as well. When the test process exits, the namespaces, every named namespace in
//! the private `/run/netns` and every link inside them are gone.

use crate::require;

/// Enters a fresh network namespace and a private mount namespace with an empty
/// tmpfs on `/run/netns` and a fresh sysfs on `/sys` — the product's own sandbox,
/// `sp_kernel::netns::enter_sandbox`, which the demo runs in — and brings `lo` up.
/// Panics (failing the test) with a message naming what is missing when it cannot.
pub fn enter() {
    require::root();
    sp_kernel::netns::enter_sandbox().unwrap_or_else(|e| {
        panic!(
            "sandbox: {e} — the tests need root with CAP_SYS_ADMIN (a privileged \
             container at least)"
        )
    });
    require::program("ip", "iproute2");
    crate::scene::ip(&["link", "set", "lo", "up"]);
}
