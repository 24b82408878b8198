//! The static release binaries (`testenv/static.sh`, which `testenv/test.sh` runs first)
//! need no C library at all: each runs in a root directory holding nothing but itself
//! (and `/proc`), where a dynamically linked program cannot even start — as in a
//! busybox or distroless CI image, or Debian 11 with its glibc 2.31.

use std::path::{Path, PathBuf};
use std::process::Command;

use sp_testenv::{require, sandbox, TOOLS};

fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/static")
}

/// Runs `/TOOL ARGS` chrooted into `root`, in this test's sandbox.
fn in_root(root: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    require::program("chroot", "coreutils");
    // An absolute path: the child's environment is empty.
    Command::new("/usr/sbin/chroot")
        .arg(root)
        .arg(format!("/{tool}"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn the_static_binaries_run_where_there_is_no_c_library() {
    sandbox::enter();
    let dir = static_dir();
    for t in TOOLS {
        assert!(
            dir.join(t).is_file(),
            "{} missing: build the static binaries with testenv/static.sh \
             (testenv/test.sh does it before the tests)",
            dir.join(t).display()
        );
    }
    let root = std::env::temp_dir().join(format!("sp-static-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("proc")).unwrap();
    for t in TOOLS {
        std::fs::copy(dir.join(t), root.join(t)).unwrap();
    }
    require::run(
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc")),
    );
    // A dynamically linked program cannot start there: the check can fail.
    std::fs::copy("/bin/true", root.join("true")).unwrap();
    let dynamic = Command::new("chroot")
        .arg(&root)
        .arg("/true")
        .output()
        .unwrap();
    assert!(
        !dynamic.status.success(),
        "a dynamic binary ran without its libc"
    );
    for t in TOOLS {
        let out = in_root(&root, t, &["--version"]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(t),
            "{t} --version in a root without libc: {out:?}"
        );
    }
    // Real work, not only argument parsing: netlink and procfs.
    let out = in_root(&root, "netns-inspect", &["--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["namespaces"].as_array().is_some_and(|n| !n.is_empty()),
        "{v}"
    );
    sp_testenv::scene::ip(&["link", "add", "brq5b6a8b87-fd", "type", "bridge"]);
    let out = in_root(&root, "bridgectl", &["--json", "show"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("brq5b6a8b87-fd"),
        "{out:?}"
    );
    let _ = Command::new("umount").arg(root.join("proc")).status();
    let _ = std::fs::remove_dir_all(&root);
}
