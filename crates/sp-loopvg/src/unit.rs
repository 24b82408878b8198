//! The systemd unit that re-binds loop-file VGs at boot, before cinder-volume.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io, Error, Result};

/// File name of the unit.
pub const UNIT_NAME: &str = "loopvg.service";

/// Checks a path that goes into the unit file: absolute, UTF-8, and only characters
/// that mean nothing to systemd's unit parser — ASCII letters, digits and `/._+-@:,`.
/// So no newline (a new directive), no other control character, no space (a new
/// argument, a second path in `RequiresMountsFor=`), no `%` (a specifier), `$` (a
/// variable), `\`, quote or `;`.
pub fn check_unit_path(what: &str, path: &Path) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::InvalidUnitPath {
            what: what.to_string(),
            path: path.to_path_buf(),
            reason,
        })
    };
    let Some(text) = path.to_str() else {
        return refuse("it is not UTF-8, which a unit file must be".into());
    };
    if !path.is_absolute() {
        return refuse("it is not absolute".into());
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/._+-@:,".contains(c)))
    {
        return refuse(format!(
            "{c:?} may not appear in a unit file's paths (only A-Z a-z 0-9 / . _ + - @ : , may)"
        ));
    }
    Ok(())
}

/// The unit text for `bin` (absolute path of loopvg) and the backing-file directory,
/// both checked by [`check_unit_path`] first.
pub fn unit_text(bin: &Path, dir: &Path) -> Result<String> {
    check_unit_path("--bin", bin)?;
    check_unit_path("--dir", dir)?;
    Ok(format!(
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
    ))
}

/// Writes the unit into `unit_dir` (atomically: temporary file, fsync, rename).
/// Nothing is created when `bin` or `dir` is refused.
pub fn install_unit(unit_dir: &Path, bin: &Path, dir: &Path) -> Result<PathBuf> {
    let text = unit_text(bin, dir)?;
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
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn unit_paths_cannot_inject_directives() {
        let ok = Path::new("/usr/local/bin/loopvg");
        assert!(unit_text(ok, Path::new("/var/lib/cinder")).is_ok());
        assert!(unit_text(ok, Path::new("/srv/cinder_1.x+y@z:a,b-c")).is_ok());
        for bad in [
            "/x\nExecStartPre=/bin/sh -c id",
            "/x\rExecStartPre=/bin/id",
            "/x\tb",
            "/x y",
            "/x%h",
            "/x$HOME",
            "/x\\n",
            "/x\"y",
            "/x;y",
            "/x\u{7f}",
            "relative/dir",
            "",
        ] {
            let e = unit_text(ok, Path::new(bad)).unwrap_err();
            assert!(e.to_string().contains("--dir"), "{bad:?}: {e}");
            let e = unit_text(Path::new(bad), Path::new("/var/lib/cinder")).unwrap_err();
            assert!(e.to_string().contains("--bin"), "{bad:?}: {e}");
        }
        let not_utf8 = Path::new(OsStr::from_bytes(b"/tmp/x\xff"));
        let e = unit_text(ok, not_utf8).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_refused_path_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("loopvg-unit-{}", std::process::id()));
        let e = install_unit(&dir, Path::new("/bin/loopvg"), Path::new("/x\nA=b"));
        assert!(e.is_err());
        assert!(!dir.exists(), "nothing created");
    }
}
