//! Loop devices through their ioctls (`linux/loop.h`): find a free index on
//! `/dev/loop-control`, bind a backing file with `LOOP_CONFIGURE` (falling back to
//! `LOOP_SET_FD` + `LOOP_SET_STATUS64`), grow with `LOOP_SET_CAPACITY`, detach with
//! `LOOP_CLR_FD`, and find which device a file is bound to by the kernel's own answer:
//! `LOOP_GET_STATUS64` gives the backing file's device and inode, which name one file
//! in every mount namespace (the path in sysfs is the one of the namespace that bound
//! it, and may be another file here). Device nodes missing in containers are created
//! (`mknod`, numbers from sysfs) before any device is opened.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_CONTROL_DEV: (u64, u64) = (10, 237);
/// util-linux tries this often when another process binds the index it was handed.
const BUSY_RETRIES: u32 = 64;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
nix::ioctl_none_bad!(loop_set_capacity, 0x4C07);
nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);

/// A file's identity: its filesystem's device and its inode, as `stat` gives them and
/// as `LOOP_GET_STATUS64` reports a backing file (`lo_device`, `lo_inode`; both in the
/// kernel's `new_encode_dev` form, which is what `st_dev` carries too). Unlike a path,
/// it names the same file in every mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(m: &Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    /// The identity of the file at `path` (a symlink is not followed).
    pub fn of_path(path: &Path) -> io::Result<Self> {
        fs::symlink_metadata(path).map(|m| Self::of(&m))
    }
}

/// What went wrong with a loop device.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("no free loop device: {0} (is the loop module loaded, max_loop reached?)")]
    Exhausted(io::Error),
    /// The device cgroup of a container refuses loop devices (EPERM on open).
    #[error(
        "opening {} was refused (EPERM): a container's device cgroup allows no loop \
         devices — run it with --privileged, or with --device /dev/loop-control \
         --device /dev/loop0 … --device /dev/loopN", .0.display()
    )]
    Denied(PathBuf),
    /// A missing device node cannot be made: `why` names the container setting.
    #[error(
        "cannot make the device node {} (mknod: {source}): {why} — run it with \
         --privileged, or pass the devices with --device /dev/loop-control --device \
         /dev/loop0 … --device /dev/loopN", path.display()
    )]
    NoNode {
        path: PathBuf,
        source: io::Error,
        why: &'static str,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LoopError {
    let what = what.into();
    move |source| LoopError::Io { what, source }
}

/// A loop device `/dev/loopN`, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopDevice {
    index: u32,
}

impl LoopDevice {
    pub fn from_index(index: u32) -> Self {
        LoopDevice { index }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// `/dev/loopN` (see [`node`](Self::node) for a path that is sure to exist).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.index))
    }

    fn sysfs(&self) -> PathBuf {
        PathBuf::from(format!("/sys/block/loop{}", self.index))
    }

    /// The bound file as the kernel names it (`None` when unbound); a deleted file keeps
    /// its old path with `" (deleted)"` appended.
    pub fn backing_file(&self) -> io::Result<Option<PathBuf>> {
        // Bytes, not UTF-8: another job's file may have any name.
        match fs::read(self.sysfs().join("loop/backing_file")) {
            Ok(mut s) => {
                if s.last() == Some(&b'\n') {
                    s.pop();
                }
                Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(s))))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size the kernel sees, in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let sectors = fs::read_to_string(self.sysfs().join("size"))?;
        sectors
            .trim()
            .parse::<u64>()
            .map(|s| s * 512)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Whether something (a device-mapper table) holds the device open.
    pub fn has_holders(&self) -> bool {
        fs::read_dir(self.sysfs().join("holders"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }

    /// `/dev/loopN`, created first when missing (containers see only the nodes that
    /// existed when they started).
    pub fn node(&self) -> Result<PathBuf, LoopError> {
        ensure_block_node(self.index)?;
        Ok(self.path())
    }

    /// The device opened read-only (its node made first when missing).
    pub fn open_read(&self) -> Result<File, LoopError> {
        ensure_block_node(self.index)?;
        open_dev(&self.path(), false)
    }

    /// The bound file's identity as the kernel knows it (`LOOP_GET_STATUS64`), `None`
    /// when the device is unbound.
    pub fn backing_id(&self) -> Result<Option<FileId>, LoopError> {
        let dev = self.open_read()?;
        let mut info = std::mem::MaybeUninit::<LoopInfo64>::zeroed();
        // SAFETY: LOOP_GET_STATUS64 fills a `struct loop_info64`; the fd is a loop device.
        match unsafe { loop_get_status64(dev.as_raw_fd(), info.as_mut_ptr()) } {
            Ok(_) => {
                // SAFETY: zero-initialised and filled by the kernel; every field is an
                // integer or byte array, valid for any bits.
                let info = unsafe { info.assume_init() };
                Ok(Some(FileId {
                    dev: info.lo_device,
                    ino: info.lo_inode,
                }))
            }
            Err(Errno::ENXIO) => Ok(None),
            Err(e) => Err(io_err(format!(
                "LOOP_GET_STATUS64 {}",
                self.path().display()
            ))(e.into())),
        }
    }

    fn open(&self) -> Result<File, LoopError> {
        ensure_block_node(self.index)?;
        open_dev(&self.path(), true)
    }

    /// Re-reads the backing file's size (after the file grew).
    pub fn set_capacity(&self) -> Result<(), LoopError> {
        let dev = self.open()?;
        // SAFETY: LOOP_SET_CAPACITY takes no argument; the fd is a loop device.
        unsafe { loop_set_capacity(dev.as_raw_fd()) }.map_err(|e| {
            io_err(format!("LOOP_SET_CAPACITY {}", self.path().display()))(e.into())
        })?;
        Ok(())
    }

    /// Unbinds the backing file.
    pub fn detach(&self) -> Result<(), LoopError> {
        let dev = self.open()?;
        // SAFETY: LOOP_CLR_FD takes no argument; the fd is a loop device.
        unsafe { loop_clr_fd(dev.as_raw_fd()) }
            .map_err(|e| io_err(format!("LOOP_CLR_FD {}", self.path().display()))(e.into()))?;
        Ok(())
    }
}

/// Creates `/dev/loopN` (block) when missing, numbers from `/sys/block/loopN/dev`.
pub fn ensure_block_node(index: u32) -> Result<(), LoopError> {
    let path = PathBuf::from(format!("/dev/loop{index}"));
    if path.exists() {
        return Ok(());
    }
    let numbers = fs::read_to_string(format!("/sys/block/loop{index}/dev"))
        .map_err(io_err(format!("loop{index} is not known to the kernel")))?;
    let (major, minor) = numbers
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| {
            io_err(format!(
                "/sys/block/loop{index}/dev says {:?}",
                numbers.trim()
            ))(io::Error::from_raw_os_error(libc::EINVAL))
        })?;
    make_node(&path, SFlag::S_IFBLK, (major, minor))
}

/// Opens a device node; EPERM (the device cgroup's answer, where missing permission
/// bits give EACCES) is [`LoopError::Denied`].
fn open_dev(path: &Path, write: bool) -> Result<File, LoopError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => LoopError::Denied(path.to_path_buf()),
            _ => io_err(format!("open {}", path.display()))(e),
        })
}

fn make_node(path: &Path, kind: SFlag, (major, minor): (u64, u64)) -> Result<(), LoopError> {
    match mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o660),
        makedev(major, minor),
    ) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e @ (Errno::EPERM | Errno::EROFS)) => Err(LoopError::NoNode {
            path: path.to_path_buf(),
            source: e.into(),
            why: if e == Errno::EROFS {
                "the container's /dev is read-only"
            } else if !crate::caps::missing(&[crate::caps::Cap::Mknod]).is_empty() {
                "the container lacks CAP_MKNOD (--cap-add MKNOD)"
            } else {
                "a container's device cgroup allows no loop devices"
            },
        }),
        Err(e) => Err(io_err(format!("mknod {}", path.display()))(e.into())),
    }
}

fn get_free() -> Result<u32, LoopError> {
    if !Path::new(LOOP_CONTROL).exists() {
        make_node(Path::new(LOOP_CONTROL), SFlag::S_IFCHR, LOOP_CONTROL_DEV)?;
    }
    let ctl = open_dev(Path::new(LOOP_CONTROL), true).map_err(|e| match e {
        LoopError::Io { source, .. } => LoopError::Exhausted(source),
        other => other,
    })?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns an index.
    let n = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }
        .map_err(|e| LoopError::Exhausted(e.into()))?;
    Ok(n as u32)
}

fn file_name_field(name: &Path) -> [u8; 64] {
    let mut field = [0u8; 64];
    let bytes = name.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(63);
    field[..n].copy_from_slice(&bytes[..n]);
    field
}

fn bind(dev: &File, backing: &File, name: &Path) -> Result<(), Errno> {
    let info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: file_name_field(name),
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info,
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid, fully initialised `struct loop_config`.
    match unsafe { loop_configure(dev.as_raw_fd(), &config) } {
        Ok(_) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOTTY) => {
            // Kernel older than 5.8: bind, then set the status.
            // SAFETY: LOOP_SET_FD takes the backing file descriptor.
            unsafe { loop_set_fd(dev.as_raw_fd(), backing.as_raw_fd()) }?;
            // SAFETY: `config.info` is a valid `struct loop_info64`.
            if let Err(e) = unsafe { loop_set_status64(dev.as_raw_fd(), &config.info) } {
                // SAFETY: undo the bind made just above.
                let _ = unsafe { loop_clr_fd(dev.as_raw_fd()) };
                return Err(e);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Binds `backing` (opened read-write by the caller; `name` is recorded as its name) to a
/// free loop device, retrying when another process takes the index first. No autoclear:
/// the binding outlives this process.
pub fn attach(backing: &File, name: &Path) -> Result<LoopDevice, LoopError> {
    let mut last = Errno::EBUSY;
    for attempt in 0..BUSY_RETRIES {
        let loopdev = LoopDevice::from_index(get_free()?);
        let dev = loopdev.open()?;
        match bind(&dev, backing, name) {
            Ok(()) => return Ok(loopdev),
            Err(e @ (Errno::EBUSY | Errno::EAGAIN)) => {
                last = e;
                if attempt > 2 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Err(e) => {
                return Err(io_err(format!(
                    "bind {} to {}",
                    name.display(),
                    loopdev.path().display()
                ))(e.into()))
            }
        }
    }
    Err(LoopError::Exhausted(last.into()))
}

/// A bound loop device: the name the kernel gives its file (the path in the mount
/// namespace that bound it: cosmetic here) and the file's identity, or why it could not
/// be asked (a device cgroup refusing the device, a node that cannot be made).
#[derive(Debug, Clone)]
pub struct Bound {
    pub dev: LoopDevice,
    pub name: PathBuf,
    pub backing: Result<FileId, String>,
}

impl Bound {
    /// Whether the bound file is the one whose identity is `id`; a device whose identity
    /// could not be read is never taken for anyone's.
    pub fn is(&self, id: FileId) -> bool {
        self.backing.as_ref().is_ok_and(|b| *b == id)
    }
}

/// Indexes of the loop devices sysfs lists as bound.
fn bound_indexes() -> io::Result<Vec<(LoopDevice, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/sys/block")? {
        let name = entry?.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix("loop"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let dev = LoopDevice::from_index(index);
        if let Some(file) = dev.backing_file()? {
            out.push((dev, file));
        }
    }
    out.sort();
    Ok(out)
}

/// Every bound loop device, with its file's identity from the kernel.
pub fn bound() -> io::Result<Vec<Bound>> {
    let mut out = Vec::new();
    for (dev, name) in bound_indexes()? {
        let backing = match dev.backing_id() {
            Ok(Some(id)) => Ok(id),
            // Unbound between the listing and the question.
            Ok(None) => continue,
            Err(e) => Err(e.to_string()),
        };
        out.push(Bound { dev, name, backing });
    }
    Ok(out)
}

/// The loop device `file` is bound to, by the kernel's identity of its backing file
/// (never by path: another mount namespace may have another file at that path).
pub fn find_by_file(file: &Path) -> io::Result<Option<LoopDevice>> {
    let want = FileId::of(&fs::metadata(file)?);
    Ok(bound()?.into_iter().find(|b| b.is(want)).map(|b| b.dev))
}
