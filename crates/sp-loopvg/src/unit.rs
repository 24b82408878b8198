//! The systemd unit that re-binds loop-file VGs at boot, before cinder-volume.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io, Result};

/// File name of the unit.
pub const UNIT_NAME: &str = "loopvg.service";

/// The unit text for `bin` (absolute path of loopvg) and the backing-file directory.
pub fn unit_text(bin: &Path, dir: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=Bind loop-file-backed LVM volume groups (loopvg activate --all)\n\
         Documentation=man:lvm(8)\n\
         DefaultDependencies=no\n\
         After=local-fs.target systemd-udev-settle.service\n\
         Wants=local-fs.target\n\
         Before=lvm2-activation.service openstack-cinder-volume.service cinder-volume.service shutdown.target\n\
         Conflicts=shutdown.target\n\
         RequiresMountsFor={dir}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={bin} activate --all --dir {dir}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n\
         RequiredBy=openstack-cinder-volume.service cinder-volume.service\n",
        bin = bin.display(),
        dir = dir.display(),
    )
}

/// Writes the unit into `unit_dir` (atomically: temporary file, fsync, rename).
pub fn install_unit(unit_dir: &Path, bin: &Path, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(unit_dir).map_err(io(format!("create {}", unit_dir.display())))?;
    let path = unit_dir.join(UNIT_NAME);
    let tmp = unit_dir.join(format!(".{UNIT_NAME}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(unit_text(bin, dir).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
    Ok(path)
}
