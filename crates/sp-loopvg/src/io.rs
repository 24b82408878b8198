//! The device I/O the metadata writer goes through. Production code uses [`RealIo`];
//! tests wrap it in [`FailAfter`] to fail every write after the first `n`, which is how
//! the crash matrix is driven.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// One open device (a `/dev/loopN` or a backing file). `Sync` so the syncs of several
/// devices can run side by side.
pub trait Disk: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (fsync).
    fn sync(&self) -> io::Result<()>;
}

/// Opens devices for metadata I/O.
pub trait DiskIo: Sync {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Disk + '_>>;
}

/// Plain files and block devices, opened read-write, never through a symlink.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl Disk for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}

impl DiskIo for RealIo {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Disk + '_>> {
        // A loop device gets its node first when missing (containers).
        if let Some(n) = path
            .to_str()
            .and_then(|p| p.strip_prefix("/dev/loop"))
            .and_then(|n| n.parse().ok())
        {
            sp_kernel::loopdev::ensure_block_node(n).map_err(io::Error::other)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Box::new(f))
    }
}

/// Exit status of a process [`FailAfter::killing`] ended.
pub const KILLED_EXIT: i32 = 86;

/// Test wrapper: lets the first `writes` writes through, then fails that write and every
/// write and sync after it, like a device that died. [`killing`](Self::killing) instead
/// ends the process right there, without unwinding, like `kill -9`.
pub struct FailAfter<'a> {
    inner: &'a dyn DiskIo,
    kill: bool,
    left: AtomicUsize,
    failed: AtomicBool,
}

impl<'a> FailAfter<'a> {
    pub fn new(inner: &'a dyn DiskIo, writes: usize) -> Self {
        FailAfter {
            inner,
            kill: false,
            left: AtomicUsize::new(writes),
            failed: AtomicBool::new(false),
        }
    }

    /// Like [`new`](Self::new), but the process exits with [`KILLED_EXIT`] instead of
    /// the failing write: no rollback, no destructors.
    pub fn killing(inner: &'a dyn DiskIo, writes: usize) -> Self {
        FailAfter {
            kill: true,
            ..Self::new(inner, writes)
        }
    }

    /// Whether the injected failure happened.
    pub fn tripped(&self) -> bool {
        self.failed.load(SeqCst)
    }
}

struct FailingDisk<'a> {
    inner: Box<dyn Disk + 'a>,
    owner: &'a FailAfter<'a>,
}

impl Disk for FailingDisk<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let o = self.owner;
        if o.left
            .fetch_update(SeqCst, SeqCst, |l| l.checked_sub(1))
            .is_err()
        {
            if o.kill {
                std::process::exit(KILLED_EXIT);
            }
            o.failed.store(true, SeqCst);
            return Err(io::Error::other("injected write failure"));
        }
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        if self.owner.failed.load(SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        self.inner.sync()
    }
}

impl DiskIo for FailAfter<'_> {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Disk + '_>> {
        Ok(Box::new(FailingDisk {
            inner: self.inner.open(path)?,
            owner: self,
        }))
    }
}
