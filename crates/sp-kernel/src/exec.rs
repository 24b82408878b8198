//! Programs the tools start (dnsmasq, as Neutron does): found only in the system's directories — never through the
//! caller's `PATH` — as a root-owned executable nobody else may write, and started with
//! a fixed environment, never the caller's. Neutron's rootwrap does the same with its
//! `exec_dirs`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Where programs are looked for, in order (rootwrap's default `exec_dirs`).
pub const EXEC_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The `PATH` a child gets.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The absolute path of program `name` in [`EXEC_DIRS`]: a regular executable file owned
/// by root and writable by nobody else. `package` names what to install when it is
/// missing.
pub fn program(name: &str, package: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::io(
            format!("program name {name:?}: a bare name is looked up in {CHILD_PATH}"),
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    let mut refused = Vec::new();
    for dir in EXEC_DIRS {
        let path = Path::new(dir).join(name);
        let Ok(md) = std::fs::metadata(&path) else {
            continue;
        };
        if !md.is_file() || md.mode() & 0o111 == 0 {
            continue;
        }
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            refused.push(format!(
                "{} (owner uid {}, mode {:o}: must be root's and writable by root alone)",
                path.display(),
                md.uid(),
                md.mode() & 0o7777
            ));
            continue;
        }
        // A symlink (Debian's /sbin → /usr/sbin, alternatives) is resolved so the child
        // runs exactly what was checked.
        return std::fs::canonicalize(&path)
            .map_err(|e| Error::io(format!("resolve {}", path.display()), e));
    }
    Err(Error::io(
        if refused.is_empty() {
            format!("{name} not found in {CHILD_PATH} — install {package}")
        } else {
            format!("{name} refused: {}", refused.join("; "))
        },
        std::io::Error::from_raw_os_error(libc::ENOENT),
    ))
}

/// A command for program `name` (see [`program`]) with a fixed environment: only
/// `PATH` ([`CHILD_PATH`]) and `LC_ALL=C`. Its `argv[0]` is `name`, as a shell would
/// give it: multi-call programs (`xtables-nft-multi` behind Debian's
/// `iptables-restore`) dispatch on it, and Neutron's tools recognise dnsmasq by it.
pub fn command(name: &str, package: &str) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program(name, package)?);
    cmd.arg0(name)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("LC_ALL", "C");
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_come_from_the_system_directories_only() {
        let sh = program("sh", "dash").unwrap();
        assert!(sh.is_absolute() && sh.is_file(), "{}", sh.display());
        assert!(EXEC_DIRS.iter().any(|d| sh.starts_with(d)) || sh.starts_with("/usr"));
        for bad in ["", "./sh", "/bin/sh", "../sh"] {
            assert!(program(bad, "x").is_err(), "{bad:?}");
        }
        let e = program("no-such-program-sp", "its-package").unwrap_err();
        assert!(e.to_string().contains("install its-package"), "{e}");
    }

    #[test]
    fn children_get_a_fixed_environment() {
        let out = command("env", "coreutils")
            .unwrap()
            .env_remove("NOTHING")
            .output()
            .unwrap();
        let mut env: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        env.sort();
        assert_eq!(env, ["LC_ALL=C".to_owned(), format!("PATH={CHILD_PATH}")]);
    }
}
