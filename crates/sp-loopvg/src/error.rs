//! Errors of the loopvg operations, each saying what to do about it.

use std::io;
use std::path::PathBuf;

use sp_kernel::loopdev::LoopError;
use sp_lvm::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "loopvg must run as root (it binds loop devices and takes LVM's locks in /run/lock/lvm)"
    )]
    NotRoot,
    #[error(
        "loopvg {0} must run as root: it reads the LVM labels on every loop device \
         (/dev/loopN, root's) and the backing files; as another user it would see none"
    )]
    NotRootToRead(&'static str),
    #[error("loopvg {0}, for its loop devices; nothing was changed")]
    Capabilities(String),
    #[error("invalid volume group name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid {what} {path:?} for the systemd unit: {reason}")]
    InvalidUnitPath {
        what: String,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize { input: String, reason: String },
    #[error(
        "A volume group called {name} already exists (on {whereabouts}); VG names are \
         host-wide, as for vgcreate: choose another name"
    )]
    VgExists { name: String, whereabouts: String },
    #[error(
        "volume group {name:?} is not one of {dir}: none of its backing files is there (it is \
         on {whereabouts}); nothing was changed (`--dir` names the directory of the VG's files)"
    )]
    VgElsewhere {
        name: String,
        dir: PathBuf,
        whereabouts: String,
    },
    #[error(
        "volume group {vg:?}: physical volume {pv} is on {dev}, bound from a file not visible in \
         this mount namespace (the kernel names it {file}); nothing was changed — run this \
         where that file is"
    )]
    NotHere {
        vg: String,
        pv: String,
        dev: String,
        file: PathBuf,
    },
    #[error(
        "volume group {name:?} not found (looked at bound loop devices and the files in {dir}); \
         `loopvg list` shows what there is"
    )]
    VgNotFound { name: String, dir: PathBuf },
    #[error(
        "volume group {name:?} not found intact (looked at bound loop devices and the files in \
         {dir}); these PVs carry corrupt LVM metadata and may hold it, nothing was changed on \
         them (`pvck` shows what lvm2 makes of them): {corrupt}"
    )]
    VgCorrupt {
        name: String,
        dir: PathBuf,
        corrupt: String,
    },
    #[error("{pv}; nothing was changed on it (`pvck` shows what lvm2 makes of it)")]
    CorruptPv { pv: String },
    #[error(
        "{0:?} is not UTF-8: loopvg binds only files whose path is (the kernel's list of loop \
         devices is read as text; one such binding would stop every scan); use a UTF-8 --dir"
    )]
    NotUtf8Path(PathBuf),
    #[error("{0} already exists; loopvg never reuses or overwrites a file")]
    FileExists(PathBuf),
    #[error("{0} is a symbolic link; loopvg never follows links for backing files")]
    Symlink(PathBuf),
    #[error("not enough space in {dir}: {need} requested, {free} available on that filesystem")]
    NoSpace {
        dir: PathBuf,
        need: String,
        free: String,
    },
    #[error("{size} is too small: a PV needs at least {min} (1 MiB metadata + one 4 MiB extent)")]
    TooSmall { size: String, min: String },
    #[error("volume group {vg:?}: physical volume {pv} ({uuid}) {problem}")]
    PvUnavailable {
        vg: String,
        pv: String,
        uuid: String,
        problem: String,
    },
    #[error("volume group {vg:?} is in use: {what}")]
    InUse { vg: String, what: String },
    #[error(transparent)]
    Loop(#[from] LoopError),
    #[error("LVM metadata: {0}")]
    Format(#[from] FormatError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl Error {
    /// Whether it is a missing privilege (root, a capability): nothing was tried
    /// (`sp_cli::exit::PRIVILEGE`).
    pub fn is_privilege(&self) -> bool {
        matches!(
            self,
            Error::NotRoot | Error::NotRootToRead(_) | Error::Capabilities(_)
        )
    }
}

/// `map_err` helper: `.map_err(io("open x"))`.
pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
