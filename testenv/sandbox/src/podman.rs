//! Real containers for the tests: podman from Debian (runc — crun fails on this VM's
//! hybrid cgroups), `--network none` always (never the host's network), on a Debian 12
//! rootfs made by debootstrap and cached under `testenv/.cache/` (ignored by git;
//! about 35 s and 250 MB the first time). Each container runs on an overlay of the
//! rootfs (`--rootfs DIR:O`), so nothing it does reaches the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::require;

/// The packages the rootfs holds beyond debootstrap's minbase: lvm2 as the oracle inside,
/// and what the tools start or read.
const PACKAGES: &str = "lvm2,util-linux,iproute2,dnsmasq-base,iptables,kmod,procps";

/// The cached Debian 12 rootfs, made on first use (under a lock: one debootstrap at a
/// time).
pub fn debian_rootfs() -> PathBuf {
    require::root();
    require::program("debootstrap", "debootstrap");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache");
    std::fs::create_dir_all(&cache).expect("create testenv/.cache");
    let rootfs = cache.join("rootfs-bookworm");
    let lock = std::fs::File::create(cache.join("rootfs.lock")).expect("rootfs lock");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the rootfs cache");
    if !rootfs.join("usr/sbin/lvm").is_file() {
        let tmp = cache.join("rootfs-bookworm.partial");
        let _ = std::fs::remove_dir_all(&tmp);
        require::run(
            Command::new("debootstrap")
                .args([
                    "--variant=minbase",
                    &format!("--include={PACKAGES}"),
                    "bookworm",
                ])
                .arg(&tmp)
                .arg("http://deb.debian.org/debian"),
        );
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::rename(&tmp, &rootfs).expect("put the rootfs in place");
    }
    rootfs
}

/// `podman run` of one command in a fresh container on `rootfs`.
pub struct Container {
    args: Vec<String>,
}

impl Container {
    /// A privileged container (what CI jobs that make loop devices use), `--network
    /// none`, `--init` (dnsmasq daemonises: its zombies are reaped), the workspace's
    /// binaries at `/opt/sp`, descriptor and process limits of 4096 (podman's defaults,
    /// and limits above 65535 here, are refused by runc on this VM: "error setting
    /// rlimits … operation not permitted").
    pub fn privileged(rootfs: &Path) -> Self {
        Self::new(rootfs, &["--privileged"])
    }

    /// A container with `flags` instead of `--privileged` (`--cap-add SYS_ADMIN`,
    /// `--device …`): what a job gets that asked for less.
    pub fn with_flags(rootfs: &Path, flags: &[&str]) -> Self {
        Self::new(rootfs, flags)
    }

    fn new(rootfs: &Path, flags: &[&str]) -> Self {
        require::program("podman", "podman");
        require::program("runc", "runc");
        let bin = crate::workspace_bin("stackplumb");
        let bin_dir = bin.parent().expect("target/<profile>");
        let args = vec![
            "--runtime".into(),
            "runc".into(),
            "run".into(),
            "--rm".into(),
            "--init".into(),
            "--network".into(),
            "none".into(),
            "--ulimit".into(),
            "nofile=4096:4096".into(),
            "--ulimit".into(),
            "nproc=4096:4096".into(),
            "-v".into(),
            format!("{}:/opt/sp:ro", bin_dir.display()),
            "--rootfs".into(),
            format!("{}:O", rootfs.display()),
        ];
        // --rootfs must come last before the command: keep it there.
        let mut c = Container { args };
        let at = c.args.len() - 2;
        c.args.splice(at..at, flags.iter().map(|f| f.to_string()));
        c
    }

    /// Binds host directory `host` at `inside`.
    pub fn volume(mut self, host: &Path, inside: &str) -> Self {
        let at = self.args.len() - 2;
        self.args.splice(
            at..at,
            ["-v".to_owned(), format!("{}:{inside}", host.display())],
        );
        self
    }

    /// Runs `sh -c script` in the container.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("podman")
            .args(&self.args)
            .args(["/bin/sh", "-c", script])
            .output()
            .expect("run podman")
    }
}

/// Loop devices whose backing file is one of the files in host directory `dir`, by the
/// kernel's identity of the file (device and inode, as `losetup -l` reports them) — the
/// path the kernel names is the one of the mount namespace that bound it.
pub fn bound_by_identity(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let ids: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let out = require::run(Command::new("losetup").args([
        "-l",
        "-J",
        "-O",
        "NAME,BACK-INO,BACK-MAJ:MIN",
    ]));
    let v: serde_json::Value = if out.trim().is_empty() {
        serde_json::json!({"loopdevices": []})
    } else {
        serde_json::from_str(&out).expect("losetup -J")
    };
    let mut devs = Vec::new();
    for d in v["loopdevices"].as_array().into_iter().flatten() {
        let ino = d["back-ino"]
            .as_u64()
            .or_else(|| d["back-ino"].as_str()?.parse().ok());
        let majmin = d["back-maj:min"].as_str().unwrap_or("");
        let dev = majmin.split_once(':').and_then(|(a, b)| {
            Some(nix::sys::stat::makedev(
                a.trim().parse().ok()?,
                b.trim().parse().ok()?,
            ))
        });
        if let (Some(ino), Some(dev)) = (ino, dev) {
            if ids.contains(&(dev, ino)) {
                devs.push(d["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    devs.sort();
    devs
}

/// A host directory for one container's files; on drop, the loop devices bound to its
/// files — from whichever mount namespace — are detached and the directory removed.
pub struct HostDir(pub PathBuf);

impl HostDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sp-ctr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the container's host directory");
        HostDir(dir)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        for dev in bound_by_identity(&self.0) {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
