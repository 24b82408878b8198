//! LVM's own file locks (lvm2 `lib/locking/file_locking.c`): `flock` on
//! `<locking_dir>/P_global` and `<locking_dir>/V_<vg>`, so real lvm2 commands and other
//! loopvg runs are excluded while we write. lvm2 2.03 takes `<name>:aux` first while it
//! waits (write priority); we do the same.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{io, Error, Result};

/// lvm2's default `global/locking_dir`.
pub const DEFAULT_LOCK_DIR: &str = "/run/lock/lvm";

/// Held locks, released on drop (global last).
pub struct Locks {
    _vg: VgLock,
    _global: Flock<File>,
}

/// The VG lock; its file is removed while still held on release, as lvm2 does
/// (`_undo_flock`), so lock files of VGs do not pile up. Waiters notice the unlinked
/// file and take the lock again on a new one.
struct VgLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for VgLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Takes `P_global` then `V_<vg>`, both exclusive, blocking like lvm2 does. Creates the
/// lock directory when it is missing (containers).
pub fn lock_vg(lock_dir: &Path, vg: &str) -> Result<Locks> {
    // The name becomes a file name in lock_dir: only names lvm2 accepts (no `/`, not
    // `.`/`..`), checked before anything is created or opened.
    sp_lvm::vg::validate_vg_name(vg).map_err(|reason| Error::InvalidName {
        name: vg.to_string(),
        reason,
    })?;
    if !lock_dir.is_dir() {
        if let Some(parent) = lock_dir.parent() {
            fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        }
        match DirBuilder::new().mode(0o700).create(lock_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(format!("create {}", lock_dir.display()))(e)),
        }
    }
    let global = write_priority_lock(lock_dir, "P_global")?;
    let name = format!("V_{vg}");
    let vg = VgLock {
        _lock: write_priority_lock(lock_dir, &name)?,
        path: lock_dir.join(name),
    };
    Ok(Locks {
        _vg: vg,
        _global: global,
    })
}

/// lvm2's write-priority protocol (`_do_write_priority_flock`): hold `<name>:aux` while
/// waiting for `<name>`, so queued writers are not starved by readers; then drop `:aux`.
fn write_priority_lock(lock_dir: &Path, name: &str) -> Result<Flock<File>> {
    let aux_path = lock_dir.join(format!("{name}:aux"));
    let aux = flock(&aux_path)?;
    let main = flock(&lock_dir.join(name))?;
    let _ = fs::remove_file(&aux_path);
    drop(aux);
    Ok(main)
}

/// Opens and locks `path`, again when lvm2 unlinked the file between our open and our
/// lock (it removes lock files it releases), as lvm2's `_do_flock` does.
fn flock(path: &PathBuf) -> Result<Flock<File>> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io(format!("open lock file {}", path.display())))?;
        let locked = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
            what: format!("flock {}", path.display()),
            source: e.into(),
        })?;
        let same = match (fs::metadata(path), locked.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            return Ok(locked);
        }
    }
}
