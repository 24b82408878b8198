//! The README's install (`packaging/install.sh`) and the Debian package
//! (`packaging/deb.sh`): binaries, man pages, completions, loopvg.service and
//! stackplumb.service where an operator's tools look for them. Nothing is installed on
//! this host: the install goes below a temporary prefix, the package into an overlay of
//! the cached Debian 12 rootfs (`sp_testenv::podman::debian_rootfs`), in this test's
//! own mount namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sp_testenv::{require, sandbox, workspace_bin, TOOLS};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory of the workspace's built binaries.
fn bins() -> PathBuf {
    workspace_bin("stackplumb").parent().unwrap().to_owned()
}

fn ok(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory of this test, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let d = std::env::temp_dir().join(format!("sp-install-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Temp(d)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.0.join("root"))
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What an installed tree must hold below `root` (`/usr/local`, `/usr`), units in `units`.
fn check_tree(root: &Path, units: &Path) {
    for t in TOOLS {
        for f in [
            format!("bin/{t}"),
            format!("share/man/man1/{t}.1.gz"),
            format!("share/bash-completion/completions/{t}"),
            format!("share/zsh/vendor-completions/_{t}"),
            format!("share/fish/vendor_completions.d/{t}.fish"),
        ] {
            assert!(
                root.join(&f).is_file(),
                "{} missing",
                root.join(f).display()
            );
        }
    }
    for u in ["loopvg.service", "stackplumb.service"] {
        assert!(
            units.join(u).is_file(),
            "{u} missing in {}",
            units.display()
        );
    }
}

#[test]
fn install_puts_tools_man_pages_completions_and_units_below_the_prefix() {
    require::program("man", "man-db");
    require::program("systemd-analyze", "systemd");
    require::program("bash", "bash");
    let t = Temp::new("prefix");
    let prefix = t.0.join("usr-local");
    ok(
        "install.sh",
        Command::new(repo().join("packaging/install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--bins")
            .arg(bins()),
    );
    let units = prefix.join("lib/systemd/system");
    check_tree(&prefix, &units);
    // systemd reads both units as they are (ExecStart= binaries present, man: pages found).
    let stackplumb = std::fs::read_to_string(units.join("stackplumb.service")).unwrap();
    for line in [
        "Wants=network-online.target",
        "After=network-online.target loopvg.service",
        &format!("ExecStartPre={}/bin/stackplumb apply", prefix.display()),
        &format!("ExecStart={}/bin/stackplumb supervise", prefix.display()),
        "Restart=on-failure",
    ] {
        assert!(
            stackplumb.lines().any(|l| l == line),
            "{line:?} not in\n{stackplumb}"
        );
    }
    let loopvg = std::fs::read_to_string(units.join("loopvg.service")).unwrap();
    assert!(
        loopvg.contains(&format!(
            "ExecStart={}/bin/loopvg activate --all",
            prefix.display()
        )),
        "{loopvg}"
    );
    ok(
        "systemd-analyze verify",
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join("loopvg.service"))
            .arg(units.join("stackplumb.service"))
            .env(
                "MANPATH",
                format!("{}:", prefix.join("share/man").display()),
            ),
    );
    // The man pages render; the completions load.
    for tool in TOOLS {
        let page = prefix.join(format!("share/man/man1/{tool}.1.gz"));
        let text = ok(
            "man -l",
            Command::new("man").arg("-l").arg(&page).env("PAGER", "cat"),
        );
        assert!(text.contains("EXAMPLES AND EXIT STATUS"), "{tool}");
        let script = format!(
            "source '{}'; complete -p {tool}",
            prefix
                .join(format!("share/bash-completion/completions/{tool}"))
                .display()
        );
        let listed = ok(
            "bash completion",
            Command::new("bash").args(["-c", &script]),
        );
        assert!(listed.trim_end().ends_with(tool), "{listed}");
    }
    // A prefix systemd would misread is refused, nothing written.
    let bad = t.0.join("with space");
    let out = Command::new(repo().join("packaging/install.sh"))
        .arg("--prefix")
        .arg(&bad)
        .arg("--bins")
        .arg(bins())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!bad.exists());
}

#[test]
fn the_deb_installs_in_a_clean_debian_12_and_its_tools_run_there() {
    require::program("dpkg-deb", "dpkg");
    // Made (or found) first: debootstrap needs the host's network, the sandbox has none.
    let rootfs = sp_testenv::podman::debian_rootfs();
    // A mount namespace of this test's own, for the overlay.
    sandbox::enter();
    let t = Temp::new("deb");
    let deb = ok(
        "deb.sh",
        Command::new(repo().join("packaging/deb.sh"))
            .arg("--bins")
            .arg(bins())
            .arg("--out")
            .arg(&t.0),
    );
    let deb = PathBuf::from(deb.trim());
    assert!(deb.is_file(), "{deb:?}");
    let info = ok(
        "dpkg-deb --info",
        Command::new("dpkg-deb").arg("--info").arg(&deb),
    );
    assert!(info.contains("Package: stackplumb"), "{info}");
    // The cached rootfs stays as it is: the package goes into an overlay of it.
    let (upper, work, root) = (t.0.join("upper"), t.0.join("work"), t.0.join("root"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d).unwrap();
    }
    ok(
        "mount overlay",
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                rootfs.display(),
                upper.display(),
                work.display()
            ))
            .arg(&root),
    );
    assert!(!root.join("usr/bin/stackplumb").exists(), "a clean rootfs");
    ok(
        "dpkg -i",
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&deb),
    );
    let status = ok(
        "dpkg -s",
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["-s", "stackplumb"]),
    );
    assert!(status.contains("Status: install ok installed"), "{status}");
    check_tree(&root.join("usr"), &root.join("lib/systemd/system"));
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/stackplumb.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/stackplumb supervise"),
        "{unit}"
    );
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/loopvg.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/loopvg activate --all"),
        "{unit}"
    );
    // The tools run in there: their own C library, not this host's files.
    let chroot = |args: &[&str]| {
        ok(
            &format!("chroot {args:?}"),
            Command::new("/usr/sbin/chroot")
                .arg(&root)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin"),
        )
    };
    for tool in TOOLS {
        let v = chroot(&[&format!("/usr/bin/{tool}"), "--version"]);
        assert_eq!(v, format!("{tool} {}\n", env!("CARGO_PKG_VERSION")));
        chroot(&[&format!("/usr/bin/{tool}"), "--help"]);
        let listed = chroot(&[
            "bash",
            "-c",
            &format!("source /usr/share/bash-completion/completions/{tool}; complete -p {tool}"),
        ]);
        assert!(listed.trim_end().ends_with(tool), "{listed}");
    }
    // Work done in there: loopvg writes its unit (what install-unit does on a host).
    let out = chroot(&[
        "/usr/bin/loopvg",
        "install-unit",
        "--unit-dir",
        "/tmp/units",
        "--bin",
        "/usr/bin/loopvg",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unit"], "/tmp/units/loopvg.service", "{v}");
    // Removed cleanly.
    ok(
        "dpkg -r",
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["-r", "stackplumb"]),
    );
    assert!(!root.join("usr/bin/stackplumb").exists());
}
