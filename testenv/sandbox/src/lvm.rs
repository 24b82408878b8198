//! Loop-file scenes and the lvm2 oracle for loop-device tests.
//!
//! Loop devices are global, so a test keeps everything in a [`Scratch`] directory of its
//! own: dropping it unbinds every loop device whose backing file lives there (and no
//! other) and deletes the directory. [`Lvm`] runs real lvm2 commands restricted by a
//! device filter to the devices a test made, without the devices file, hints, udev,
//! backups or archives — they never scan or touch the host's disks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;

use sp_kernel::loopdev::{self, FileId, LoopDevice};

use crate::require;

/// A private directory for backing files; unbinds its loop devices on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh directory under /tmp named after `tag`. Needs root (loop devices).
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        require::root();
        let dir = std::env::temp_dir().join(format!(
            "sp-loopvg-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Loop devices (`/dev/loopN`) bound to files in this directory.
    pub fn bound(&self) -> Vec<String> {
        bound_under(&self.dir)
    }

    /// Names of the files in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Binds `file` with real losetup (the by-hand way of the guides); returns the device.
    pub fn losetup(&self, file: &Path) -> String {
        require::program("losetup", "util-linux");
        require::run(Command::new("losetup").args(["-f", "--show"]).arg(file))
            .trim()
            .to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for dev in self.bound() {
            if let Some(n) = dev.strip_prefix("/dev/loop").and_then(|n| n.parse().ok()) {
                let _ = LoopDevice::from_index(n).node();
            }
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Loop devices bound to files under `dir`, by the kernel's identity of the backing file
/// (`LOOP_GET_STATUS64` against `stat` of every file under `dir`): another mount
/// namespace's file at the same path is not one of them. A device whose file was deleted
/// while bound (the kernel's name ends in `" (deleted)"`) and whose name lies under `dir`
/// counts too, so a test still sees what was left bound after its files went.
pub fn bound_under(dir: &Path) -> Vec<String> {
    let mut ids = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                ids.insert(FileId::of(&m));
            }
        }
    }
    let mut out = Vec::new();
    for b in loopdev::bound().unwrap_or_default() {
        let name = b.name.as_os_str().as_bytes();
        let deleted = name
            .strip_suffix(b" (deleted)")
            .is_some_and(|n| Path::new(std::ffi::OsStr::from_bytes(n)).starts_with(dir))
            && b.backing.as_ref().is_ok_and(|id| !ids.contains(id));
        if b.backing.as_ref().is_ok_and(|id| ids.contains(id)) || deleted {
            out.push(b.dev.path().display().to_string());
        }
    }
    out.sort();
    out
}

/// Real lvm2, restricted to `devices`.
pub struct Lvm {
    pub devices: Vec<String>,
    /// Device types lvm2 does not know by default (`devices/types`), e.g. `zram`.
    types: Vec<String>,
}

impl Lvm {
    /// Every `/dev/loopN` among `devices` gets its node first when missing (a private
    /// `/dev` in a container or a test), so lvm2 sees every PV.
    pub fn new(devices: Vec<String>) -> Self {
        require::program("lvm", "lvm2");
        for d in &devices {
            if let Some(n) = d.strip_prefix("/dev/loop").and_then(|n| n.parse().ok()) {
                LoopDevice::from_index(n)
                    .node()
                    .unwrap_or_else(|e| panic!("device node {d}: {e}"));
            }
        }
        assert!(
            !devices.is_empty(),
            "an lvm2 oracle needs devices to look at"
        );
        Lvm {
            devices,
            types: Vec::new(),
        }
    }

    /// Also accepts block devices of driver `kind` (lvm2's `devices/types`), e.g. zram.
    pub fn with_type(mut self, kind: &str) -> Self {
        self.types.push(kind.to_string());
        self
    }

    /// Restricted to every loop device bound to a file of `scratch`.
    pub fn of(scratch: &Scratch) -> Self {
        Self::new(scratch.bound())
    }

    fn config(&self) -> String {
        let accept: String = self
            .devices
            .iter()
            .map(|d| format!("\"a|^{d}$|\","))
            .collect();
        let types: Vec<String> = self.types.iter().map(|t| format!("\"{t}\", 16")).collect();
        let types = if types.is_empty() {
            String::new()
        } else {
            format!("types=[{}] ", types.join(", "))
        };
        format!(
            "devices {{ use_devicesfile=0 hints=\"none\" {types}filter=[{accept}\"r|.*|\"] \
             global_filter=[{accept}\"r|.*|\"] }} \
             activation {{ udev_sync=0 udev_rules=0 }} backup {{ backup=0 archive=0 }}"
        )
    }

    /// `lvm <args> --config <restriction>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("lvm");
        c.args(args)
            .arg("--config")
            .arg(self.config())
            .env("LVM_SUPPRESS_FD_WARNINGS", "1");
        c
    }

    /// Runs and returns stdout; panics with stderr on failure.
    pub fn run(&self, args: &[&str]) -> String {
        require::run(&mut self.cmd(args))
    }

    /// An LV of `size` in `vg` as Cinder makes them, without device-mapper: metadata
    /// only (`lvcreate --driverloaded n -an -Zn`).
    pub fn lvcreate(&self, vg: &str, size: &str, name: &str) {
        self.run(&[
            "lvcreate",
            "--driverloaded",
            "n",
            "-an",
            "-Zn",
            "-y",
            "-L",
            size,
            "-n",
            name,
            vg,
        ]);
    }

    /// Exit status and stderr.
    pub fn status(&self, args: &[&str]) -> (bool, String) {
        let out = self.cmd(args).output().expect("run lvm");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn report(&self, cmd: &str, vg: &str, fields: &str, key: &str) -> Vec<Value> {
        let select = format!("vg_name={vg}");
        let out = self.run(&[
            cmd,
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
            "--select",
            &select,
        ]);
        let v: Value = serde_json::from_str(&out).expect("lvm json");
        v["report"][0][key].as_array().cloned().unwrap_or_default()
    }

    /// `vgs` row of `vg`: name, size, free, seqno, extent size/count, free count, pv count.
    pub fn vgs(&self, vg: &str) -> Value {
        let rows = self.report(
            "vgs",
            vg,
            "vg_name,vg_uuid,vg_size,vg_free,vg_seqno,vg_extent_size,vg_extent_count,vg_free_count,pv_count,lv_count",
            "vg",
        );
        assert_eq!(rows.len(), 1, "vgs {vg}: {rows:?}");
        rows[0].clone()
    }

    /// `pvs` rows of `vg`: name, uuid, sizes, extents.
    pub fn pvs(&self, vg: &str) -> Vec<Value> {
        self.report(
            "pvs",
            vg,
            "pv_name,pv_uuid,pv_size,dev_size,pv_free,pv_pe_count,pv_pe_alloc_count,pe_start",
            "pv",
        )
    }

    /// `vgck vg` plus `pvck` on every device; `Err` carries what they said.
    pub fn check(&self, vg: &str) -> Result<(), String> {
        let (ok, err) = self.status(&["vgck", vg]);
        if !ok {
            return Err(format!("vgck {vg}: {err}"));
        }
        for d in &self.devices {
            let (ok, err) = self.status(&["pvck", d]);
            if !ok {
                return Err(format!("pvck {d}: {err}"));
            }
        }
        Ok(())
    }
}

/// A report field as a number (lvm2 prints numbers as strings).
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("field {field} of {v}"))
}
