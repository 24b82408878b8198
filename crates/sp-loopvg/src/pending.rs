//! New backing files are born under a pending name, `.<name>.loopvg-new`, locked (`flock`)
//! by the run that makes them, and take their final name only once VG metadata naming
//! them is committed. So a run killed at any point leaves something the next run can
//! finish: a pending file whose PV the VG names is renamed into place; one it does not
//! name (killed before the commit) is unbound and deleted. A pending file still locked
//! belongs to a live run and is left alone.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, Flock, FlockArg, RenameFlags, AT_FDCWD};
use sp_kernel::loopdev::{self, FileId, LoopDevice};

use crate::error::{io, Error, Result};
use crate::ondisk::{FoundVg, PvOnDisk};

const PENDING_SUFFIX: &str = ".loopvg-new";

fn pending_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().unwrap_or_default().to_string_lossy();
    final_path.with_file_name(format!(".{name}{PENDING_SUFFIX}"))
}

/// Refuses a path that exists in any form (a symlink is never followed or replaced).
pub fn check_new_path(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink(path.to_path_buf())),
        Ok(_) => Err(Error::FileExists(path.to_path_buf())),
        Err(_) => Ok(()),
    }
}

/// Whether neither `path` nor its pending name exists.
pub fn name_free(path: &Path) -> bool {
    check_new_path(path).is_ok() && check_new_path(&pending_path(path)).is_ok()
}

/// Syncs a directory so a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync directory {}", dir.display())))
}

/// A backing file this run is making: unbound and deleted on drop unless kept.
pub struct NewFile {
    /// The file, for binding to a loop device.
    pub file: File,
    /// The lock, on a second open of the file: a loop device keeps the file it binds
    /// open after this process is gone, so that one must not carry the lock.
    _lock: Flock<File>,
    pub pending: PathBuf,
    final_path: PathBuf,
    pub dev: Option<LoopDevice>,
    pub keep: bool,
}

impl NewFile {
    /// Creates `.<final>.loopvg-new` next to `final_path`: 0600, `O_EXCL`, never
    /// through a symlink, locked for the life of this run.
    pub fn create(final_path: &Path) -> Result<Self> {
        check_new_path(final_path)?;
        let pending = pending_path(final_path);
        check_new_path(&pending)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&pending)
            .map_err(io(format!("create {}", pending.display())))?;
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&pending)
            .map_err(io(format!("open {}", pending.display())))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io(format!("lock {}", pending.display()))(e.into()))?;
        let new = NewFile {
            file,
            _lock: lock,
            pending,
            final_path: final_path.to_path_buf(),
            dev: None,
            keep: false,
        };
        new.file
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io("chmod 0600"))?;
        Ok(new)
    }

    /// Gives the committed file its final name (never replacing anything).
    pub fn publish(&mut self) -> Result<()> {
        self.keep = true;
        rename_noreplace(&self.pending, &self.final_path)
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.keep {
            if let Some(d) = self.dev {
                let _ = d.detach();
            }
            let _ = fs::remove_file(&self.pending);
        }
    }
}

/// Not synced: after a crash either name is found, and the next run finishes the rename.
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(|e| io(format!("rename {} to {}", from.display(), to.display()))(e.into()))
}

/// Whether `file_name` is a pending name of a backing file of VG `vg`
/// (`.<vg>.loopvg-new` or `.<vg>NN.loopvg-new`).
fn pending_of(file_name: &str, vg: &str) -> Option<String> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(PENDING_SUFFIX)?;
    let rest = stem.strip_prefix(vg)?;
    (rest.is_empty() || (rest.len() >= 2 && rest.bytes().all(|b| b.is_ascii_digit())))
        .then(|| stem.to_string())
}

/// Finishes or clears what killed runs left for VG `name` in `dir` (see the module
/// doc). Returns whether anything changed.
pub fn tidy(dir: &Path, name: &str, vg: Option<&FoundVg>) -> Result<bool> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(false);
    };
    let mut changed = false;
    for entry in entries.flatten() {
        let Some(stem) = pending_of(&entry.file_name().to_string_lossy(), name) else {
            continue;
        };
        let path = entry.path();
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        else {
            continue;
        };
        // A live run holds its pending file locked.
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let pv = PvOnDisk::read(&path, None).ok().flatten();
        let named = pv
            .zip(vg)
            .is_some_and(|(pv, vg)| vg.pvs.iter().any(|p| p.meta.id == pv.label.pv_uuid));
        if named {
            let final_path = dir.join(stem);
            if check_new_path(&final_path).is_ok() {
                rename_noreplace(&path, &final_path)?;
                changed = true;
            }
        } else {
            // Left alone while some loop device cannot be asked what it holds: it may be
            // bound to this file.
            let Ok(bound) = loopdev::bound() else {
                continue;
            };
            if bound.iter().any(|b| b.backing.is_err()) {
                continue;
            }
            let id = FileId::of_path(&path).ok();
            if let Some(b) = bound.iter().find(|b| id.is_some_and(|id| b.is(id))) {
                b.dev.detach()?;
            }
            fs::remove_file(&path).map_err(io(format!("delete {}", path.display())))?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_names_belong_to_their_vg_only() {
        assert_eq!(
            pending_path(Path::new("/d/cv02")),
            Path::new("/d/.cv02.loopvg-new")
        );
        assert_eq!(pending_of(".cv.loopvg-new", "cv").as_deref(), Some("cv"));
        assert_eq!(
            pending_of(".cv02.loopvg-new", "cv").as_deref(),
            Some("cv02")
        );
        assert_eq!(pending_of(".cvx.loopvg-new", "cv"), None);
        assert_eq!(pending_of(".cv2.loopvg-new", "cv"), None);
        assert_eq!(pending_of("cv02", "cv"), None);
        assert_eq!(pending_of(".cv02.loopvg-new.x", "cv"), None);
    }
}
