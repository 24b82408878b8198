//! The device I/O the metadata writer goes through. Production code uses [`RealIo`];
//! tests wrap it in [`FailAfter`] to fail every write after the first `n`, which is how
//! the crash matrix is driven.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// One open device (a `/dev/loopN` or a backing file).
pub trait Disk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (fsync).
    fn sync(&self) -> io::Result<()>;
}

/// Opens devices for metadata I/O.
pub trait DiskIo {
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
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Box::new(f))
    }
}

/// Test wrapper: lets the first `writes` writes through, then fails that write and every
/// write and sync after it, like a device that died (or a process that was killed).
pub struct FailAfter<'a> {
    inner: &'a dyn DiskIo,
    left: Cell<usize>,
    done: Cell<usize>,
    failed: Cell<bool>,
}

impl<'a> FailAfter<'a> {
    pub fn new(inner: &'a dyn DiskIo, writes: usize) -> Self {
        FailAfter {
            inner,
            left: Cell::new(writes),
            done: Cell::new(0),
            failed: Cell::new(false),
        }
    }

    /// Writes that went through.
    pub fn writes_done(&self) -> usize {
        self.done.get()
    }

    /// Whether the injected failure happened.
    pub fn tripped(&self) -> bool {
        self.failed.get()
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
        let left = self.owner.left.get();
        if left == 0 {
            self.owner.failed.set(true);
            return Err(io::Error::other("injected write failure"));
        }
        self.inner.write_at(buf, offset)?;
        self.owner.left.set(left - 1);
        self.owner.done.set(self.owner.done.get() + 1);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if self.owner.failed.get() {
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
