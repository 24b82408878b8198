//! Preconditions that make a test fail loudly (never skip) when the machine lacks them.

use std::path::Path;
use std::process::Command;

/// Fails the test unless it runs as root.
pub fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates network namespaces and links); \
         run the suite as root with `testenv/test.sh`"
    );
}

/// Fails the test unless `program` is on PATH; `package` names the Debian package.
pub fn program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file();
    assert!(
        found,
        "this test needs `{program}` (Debian package {package}); \
         `testenv/setup.sh` installs it"
    );
}

/// Runs a command and returns stdout; panics with the command line and stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
