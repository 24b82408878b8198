//! Files the tools write, made so that nothing planted in their directories can turn a
//! write against the host: the last component is never followed when it is a symlink
//! (`O_NOFOLLOW`), new files are made next to their target and renamed over it
//! (`openat` + `renameat` on a directory opened with `O_NOFOLLOW`), and modes are set
//! explicitly (`fchmod`), whatever the umask. Configuration is read only from regular
//! files, with a size limit, so a FIFO or a device named as a config file is refused
//! instead of hanging the run.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};

use crate::{Error, Result};

/// The largest configuration file read (the guide's are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

fn err(context: impl Into<String>, e: nix::errno::Errno) -> Error {
    Error::from_errno(context, e)
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => Error::io(
            format!(
                "{} is not a directory (a symlink is not followed)",
                path.display()
            ),
            std::io::Error::from_raw_os_error(e as i32),
        ),
        e => err(format!("open directory {}", path.display()), e),
    })
}

/// Makes directory `path` with `mode` (parents that are missing too, 0755), or checks
/// that the one there is a real directory — not a symlink — and gives it `mode`: for a
/// directory of ours (inside the state directory). Only the last component is checked:
/// callers ensure each level of a tree they own, from its top down.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    let fd = make_or_open_dir(path, mode)?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| err(format!("chmod {}", path.display()), e))
}

/// [`ensure_dir`] for a directory the operator names (the state directory): made with
/// `mode` when missing, else only checked — never re-moded (`--state-dir /tmp` must not
/// take /tmp's sticky bit). It must be a real directory, and not writable by group or
/// others unless sticky.
pub fn ensure_top_dir(path: &Path, mode: u32) -> Result<()> {
    let fd = make_or_open_dir(path, mode)?;
    let st = fstat(&fd).map_err(|e| err(format!("stat {}", path.display()), e))?;
    let m = st.st_mode;
    if m & 0o022 != 0 && m & 0o1000 == 0 {
        return Err(Error::io(
            format!(
                "{} is writable by others (mode {:o}): anyone could plant files in it",
                path.display(),
                m & 0o7777
            ),
            std::io::Error::from_raw_os_error(libc::EPERM),
        ));
    }
    Ok(())
}

fn make_or_open_dir(path: &Path, mode: u32) -> Result<OwnedFd> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            ensure_dir(parent, 0o755)?;
        }
    }
    match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
        Ok(()) => {
            let fd = open_dir(path)?;
            // Made by this call: its mode whatever the umask.
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| err(format!("chmod {}", path.display()), e))?;
            Ok(fd)
        }
        Err(nix::errno::Errno::EEXIST) => open_dir(path),
        Err(e) => Err(err(format!("create directory {}", path.display()), e)),
    }
}

/// The directory and the single name of `path`, refusing `..` and empty names.
fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let bad = || {
        Error::io(
            format!("{}: not a file name in a directory", path.display()),
            std::io::Error::from_raw_os_error(libc::EINVAL),
        )
    };
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => return Err(bad()),
    };
    let dir = path.parent().ok_or_else(bad)?;
    Ok((
        if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        },
        name,
    ))
}

/// Writes `data` to `path` with `mode`: a new file made beside it (never following a
/// symlink) and renamed over it, so a reader sees the old or the new content whole and a
/// symlink planted at `path` is replaced, not written through.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = split(path)?;
    let dirfd = open_dir(dir)?;
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = nix::unistd::unlinkat(&dirfd, &tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        &dirfd,
        &tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(|e| err(format!("create {}", dir.join(&tmp).display()), e))?;
    let done = (|| {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| err(format!("chmod {}", path.display()), e))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        drop(f);
        renameat(&dirfd, &tmp, &dirfd, name)
            .map_err(|e| err(format!("rename into {}", path.display()), e))
    })();
    if done.is_err() {
        let _ = nix::unistd::unlinkat(&dirfd, &tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    done
}

/// Reads a configuration file: a regular file (opened without blocking, so a FIFO
/// cannot hang the run) of at most [`MAX_CONFIG_BYTES`], as UTF-8. The error does not
/// repeat the path: callers name the file their way.
pub fn read_config(path: &Path) -> std::io::Result<String> {
    use std::io::{Error as IoError, ErrorKind};
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(IoError::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(IoError::new(
            ErrorKind::FileTooLarge,
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    String::from_utf8(text).map_err(|_| IoError::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

/// A fresh work directory named `<prefix>XXXXXX` in `dir` (`mkdtemp`: a name nobody can
/// guess, made by this call, so nobody can have planted anything in it), then given
/// `mode` — 0755 where an unprivileged helper (dnsmasq) must read below it.
pub fn fresh_temp_dir(dir: &Path, prefix: &str, mode: u32) -> Result<PathBuf> {
    let mut template = dir.as_os_str().as_bytes().to_vec();
    template.extend_from_slice(b"/");
    template.extend_from_slice(prefix.as_bytes());
    template.extend_from_slice(b"XXXXXX");
    let template = PathBuf::from(std::ffi::OsStr::from_bytes(&template));
    let made = nix::unistd::mkdtemp(&template).map_err(|e| {
        err(
            format!("create a private directory in {}", dir.display()),
            e,
        )
    })?;
    let fd = open_dir(&made)?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| err(format!("chmod {}", made.display()), e))?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch() -> PathBuf {
        fresh_temp_dir(&std::env::temp_dir(), "sp-files-test-", 0o700).unwrap()
    }

    #[test]
    fn writes_do_not_follow_planted_symlinks_and_modes_ignore_the_umask() {
        let d = scratch();
        let victim = d.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("record")).unwrap();
        let old = nix::sys::stat::umask(Mode::empty());
        write_file(&d.join("record"), b"new", 0o600).unwrap();
        ensure_dir(&d.join("sub"), 0o700).unwrap();
        nix::sys::stat::umask(old);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let rec = std::fs::symlink_metadata(d.join("record")).unwrap();
        assert!(rec.file_type().is_file(), "the symlink was replaced");
        assert_eq!(rec.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(d.join("record")).unwrap(), b"new");
        let sub = std::fs::metadata(d.join("sub")).unwrap();
        assert_eq!(sub.mode() & 0o777, 0o700);

        // A symlinked directory is refused, and its target keeps its mode.
        let target = d.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&target, d.join("dhcp")).unwrap();
        let e = ensure_dir(&d.join("dhcp"), 0o755).unwrap_err();
        assert!(e.to_string().contains("symlink is not followed"), "{e}");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o700);
        let e = write_file(&d.join("dhcp/x"), b"", 0o600).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(!target.join("x").exists());

        // The operator's directory keeps its mode; one anyone may write is refused.
        let top = d.join("top");
        std::fs::create_dir(&top).unwrap();
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o750)).unwrap();
        ensure_top_dir(&top, 0o755).unwrap();
        assert_eq!(std::fs::metadata(&top).unwrap().mode() & 0o7777, 0o750);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_top_dir(&top, 0o755).unwrap();
        assert_eq!(std::fs::metadata(&top).unwrap().mode() & 0o7777, 0o1777);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_top_dir(&top, 0o755).is_err());

        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn config_is_read_only_from_regular_files() {
        let d = scratch();
        let fifo = d.join("fifo.ini");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_config(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(read_config(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        assert!(read_config(&d).is_err());
        std::fs::write(d.join("ok.ini"), "[DEFAULT]\n").unwrap();
        assert_eq!(read_config(&d.join("ok.ini")).unwrap(), "[DEFAULT]\n");
        std::fs::write(d.join("bad.ini"), b"\xff\xfe").unwrap();
        assert!(read_config(&d.join("bad.ini")).is_err());
        let tmp = fresh_temp_dir(&d, "work-", 0o700).unwrap();
        assert_eq!(std::fs::metadata(&tmp).unwrap().mode() & 0o777, 0o700);
        assert!(tmp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("work-"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
