//! Reading PVs and VGs from backing files and loop devices, and writing new metadata in
//! lvm2's order: text into every metadata area, sync, then the area headers (the commit
//! point), sync.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sp_kernel::loopdev::{self, FileId, LoopDevice};
use sp_lvm::label::PvLabel;
use sp_lvm::mda::MdaHeader;
use sp_lvm::uuid::Uuid;
use sp_lvm::vg::{PvMeta, VgMeta};
use sp_lvm::{FormatError, SECTOR};

use crate::error::{io, Error, Result};
use crate::io::{Disk, DiskIo};

/// One device with an LVM2 label, as found on disk.
#[derive(Debug, Clone)]
pub struct PvOnDisk {
    /// The backing file: its path here when [`here`](Self::here), else the name the
    /// kernel gives it (the path in the mount namespace that bound it).
    pub file: PathBuf,
    /// The loop device it is bound to, if any. A bound PV is read from the device.
    pub dev: Option<LoopDevice>,
    /// Whether `file` is this mount namespace's path of the backing file (checked by
    /// identity: `LOOP_GET_STATUS64` against `stat`). False for a file bound from another
    /// mount namespace that is not visible here: such a PV is read and written through
    /// its device only, and its file is never touched.
    pub here: bool,
    /// Whether the backing file is one of the files in the directory loopvg was pointed
    /// at (`--dir`), by identity.
    pub in_dir: bool,
    /// Size of the backing file in bytes (of the device, when the file is not here).
    pub file_size: u64,
    pub label: PvLabel,
    /// Metadata-area headers, in label order (none for a PV without metadata copies).
    pub mdas: Vec<MdaHeader>,
    /// The committed metadata of the first readable area.
    pub meta: Option<VgMeta>,
}

/// A device with an LVM2 label (or something claiming to be one) that failed a check:
/// which file and loop device, the PV's id when the label was readable, and what failed.
#[derive(Debug, Clone)]
pub struct CorruptPv {
    pub file: PathBuf,
    pub dev: Option<LoopDevice>,
    pub pv_uuid: Option<Uuid>,
    pub problem: String,
}

impl std::fmt::Display for CorruptPv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.dev {
            write!(f, " ({})", d.path().display())?;
        }
        if let Some(u) = self.pv_uuid {
            write!(f, ", PV {u}")?;
        }
        write!(f, ": corrupt LVM metadata: {}", self.problem)
    }
}

/// What a file turned out to be.
#[derive(Debug, Clone)]
pub enum Inspected {
    /// No LVM2 label: not ours to report.
    NotPv,
    Pv(Box<PvOnDisk>),
    Corrupt(CorruptPv),
}

impl PvOnDisk {
    /// Reads the label, area headers and committed text of `file` (never through a
    /// symlink). `Ok(None)` when it carries no LVM2 label; a PV that fails a check is
    /// [`Error::CorruptPv`], naming the file and the check.
    pub fn read(file: &Path, dev: Option<LoopDevice>) -> Result<Option<Self>> {
        match Self::inspect(file, dev)? {
            Inspected::NotPv => Ok(None),
            Inspected::Pv(pv) => Ok(Some(*pv)),
            Inspected::Corrupt(c) => Err(Error::CorruptPv { pv: c.to_string() }),
        }
    }

    /// Like [`read`](Self::read), with a corrupt PV as a value. Everything read is
    /// bounded before it is allocated: the label's areas and every area header are
    /// checked against the file's size, a text is at most the area (and
    /// [`sp_lvm::mda::MAX_TEXT_SIZE`]). Only I/O failures are errors.
    ///
    /// With `dev`, the PV is read from the device (`/dev/loopN`, its node made when
    /// missing), never from the path: that may be another mount namespace's file.
    pub fn inspect(file: &Path, dev: Option<LoopDevice>) -> Result<Inspected> {
        let here = match dev {
            None => true,
            Some(d) => {
                let id = d.backing_id()?;
                id.is_some() && FileId::of_path(file).ok() == id
            }
        };
        let source = match dev {
            Some(d) => d.node()?,
            None => file.to_path_buf(),
        };
        Self::inspect_at(&source, file, dev, here)
    }

    /// Reads the PV at `source` (a file, a loop device or another block device, opened
    /// read-only), recorded as backing file `file`.
    pub(crate) fn inspect_at(
        source: &Path,
        file: &Path,
        dev: Option<LoopDevice>,
        here: bool,
    ) -> Result<Inspected> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(source)
            .map_err(io(format!("open {}", source.display())))?;
        let m = f.metadata().map_err(io("stat"))?;
        let file_size = if m.file_type().is_block_device() {
            f.seek(SeekFrom::End(0))
                .map_err(io(format!("size of {}", source.display())))?
        } else if m.file_type().is_file() {
            m.len()
        } else {
            return Ok(Inspected::NotPv);
        };
        let mut head = vec![0u8; 4 * SECTOR as usize];
        if file_size < head.len() as u64 {
            return Ok(Inspected::NotPv);
        }
        Disk::read_at(&f, &mut head, 0).map_err(io(format!("read {}", source.display())))?;
        let corrupt = |pv_uuid: Option<Uuid>, problem: String| {
            Ok(Inspected::Corrupt(CorruptPv {
                file: file.to_path_buf(),
                dev,
                pv_uuid,
                problem,
            }))
        };
        let label = match PvLabel::find(&head) {
            Ok(l) => l,
            Err(FormatError::NoLabel) => return Ok(Inspected::NotPv),
            Err(e) => return corrupt(None, e.to_string()),
        };
        let uuid = Some(label.pv_uuid);
        if let Err(e) = label.check_within(file_size) {
            return corrupt(uuid, e.to_string());
        }
        let mut mdas = Vec::new();
        let mut meta = None;
        let read = |buf: &mut [u8], at: u64| {
            Disk::read_at(&f, buf, at).map_err(io(format!("read metadata of {}", source.display())))
        };
        for area in &label.metadata_areas {
            let mut sector = [0u8; SECTOR as usize];
            read(&mut sector, area.offset)?;
            let h = match MdaHeader::decode_within(&sector, area.offset, file_size) {
                Ok(h) => h,
                Err(e) => return corrupt(uuid, format!("area at {}: {e}", area.offset)),
            };
            if meta.is_none() {
                let pieces = match h.committed_pieces() {
                    Ok(p) => p,
                    Err(e) => return corrupt(uuid, format!("area at {}: {e}", area.offset)),
                };
                if let Some(pieces) = pieces {
                    let mut text = Vec::new();
                    for (at, len) in pieces {
                        // Bounded: at most the area, which is inside the file, and at
                        // most MAX_TEXT_SIZE.
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        let mut piece = Vec::new();
                        if piece.try_reserve_exact(len).is_err() {
                            return corrupt(uuid, format!("text of {len} bytes"));
                        }
                        piece.resize(len, 0);
                        read(&mut piece, at)?;
                        text.extend_from_slice(&piece);
                    }
                    let parsed = h.check_text(&text).and_then(|()| VgMeta::parse(&text));
                    match parsed {
                        Ok(m) => meta = Some(m),
                        Err(e) => return corrupt(uuid, format!("area at {}: {e}", area.offset)),
                    }
                }
            }
            mdas.push(h);
        }
        Ok(Inspected::Pv(Box::new(PvOnDisk {
            file: file.to_path_buf(),
            dev,
            here,
            in_dir: false,
            file_size,
            label,
            mdas,
            meta,
        })))
    }

    /// Where metadata is written: the loop device when bound, else the file.
    pub fn write_path(&self) -> PathBuf {
        self.dev.map_or_else(|| self.file.clone(), |d| d.path())
    }
}

/// A PV named in a VG's metadata, with what was found for it.
#[derive(Debug, Clone)]
pub struct FoundPv {
    pub meta: PvMeta,
    pub disk: Option<PvOnDisk>,
    /// The device carrying this PV's label, when its metadata failed a check.
    pub corrupt: Option<CorruptPv>,
}

/// A VG: its newest metadata and its PVs in metadata order.
#[derive(Debug, Clone)]
pub struct FoundVg {
    pub meta: VgMeta,
    pub pvs: Vec<FoundPv>,
    /// When some of its PVs' files look unbound while loop devices could not be asked
    /// what they hold: those devices' notes (any of them may be bound to such a file).
    pub unsure: Vec<String>,
}

impl FoundVg {
    pub fn name(&self) -> &str {
        self.meta.name()
    }

    /// Whether any of its PVs' backing files is a file of the directory scanned (by
    /// identity): the VGs `--dir` points at, the only ones loopvg changes.
    pub fn in_dir(&self) -> bool {
        self.pvs
            .iter()
            .any(|p| p.disk.as_ref().is_some_and(|d| d.in_dir))
    }

    /// Refuses a change that relies on a PV's file being unbound when that cannot be
    /// told (a loop device that could not be asked may be bound to it).
    pub fn sure_unbound(&self) -> Result<()> {
        if self.unsure.is_empty() {
            return Ok(());
        }
        Err(Error::InUse {
            vg: self.name().to_string(),
            what: format!(
                "it cannot be told whether its unbound-looking files are bound already ({}); \
                 nothing was changed",
                self.unsure.join("; ")
            ),
        })
    }

    /// Where its PVs are, for messages: `/dev/loop0 (file …)`.
    pub fn whereabouts(&self) -> String {
        let places: Vec<String> = self
            .pvs
            .iter()
            .filter_map(|p| p.disk.as_ref())
            .map(|d| match d.dev {
                Some(dev) if d.here => format!("{} ({})", dev.path().display(), d.file.display()),
                Some(dev) => format!(
                    "{} (bound from another mount namespace's {})",
                    dev.path().display(),
                    d.file.display()
                ),
                None => d.file.display().to_string(),
            })
            .collect();
        places.join(", ")
    }

    /// Every PV with its disk, or an error naming the first one missing (or unbound when
    /// `bound` is asked for).
    pub fn disks(&self, bound: bool) -> Result<Vec<&PvOnDisk>> {
        self.pvs
            .iter()
            .map(|pv| {
                let problem = match &pv.disk {
                    None if pv.corrupt.is_some() => {
                        let c = pv.corrupt.as_ref().map(ToString::to_string).unwrap_or_default();
                        return Err(Error::PvUnavailable {
                            vg: self.name().to_string(),
                            pv: pv.meta.key.clone(),
                            uuid: pv.meta.id.to_string(),
                            problem: format!("is on {c}; nothing was changed"),
                        });
                    }
                    None => "has no backing file in the places searched; `loopvg activate` needs every file",
                    Some(d) if bound && d.dev.is_none() => {
                        "is not bound to a loop device; run `loopvg activate` first"
                    }
                    Some(d) => return Ok(d),
                };
                Err(Error::PvUnavailable {
                    vg: self.name().to_string(),
                    pv: pv.meta.key.clone(),
                    uuid: pv.meta.id.to_string(),
                    problem: problem.to_string(),
                })
            })
            .collect()
    }
}

/// What a scan found: the VGs, the devices whose LVM metadata failed a check, and the
/// loop devices that could not be asked what they hold (skipped, never taken for ours).
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub vgs: Vec<FoundVg>,
    pub corrupt: Vec<CorruptPv>,
    pub skipped: Vec<String>,
}

/// Every volume group on bound loop devices and on regular files in `dir`.
pub fn scan(dir: &Path) -> Result<Vec<FoundVg>> {
    Ok(scan_all(dir)?.vgs)
}

/// [`scan`], with the corrupt PVs seen on the way (a corrupt PV is never a VG's
/// candidate: nothing is written to it).
///
/// A bound loop device is read from the device; its backing file is found by the
/// kernel's identity (`LOOP_GET_STATUS64` against `stat` of the files in `dir`, then of
/// the path sysfs names), never by the path alone. A file in `dir` bound to a device
/// is that device's PV, wherever it was bound from.
pub fn scan_all(dir: &Path) -> Result<Scan> {
    let mut files: Vec<(PathBuf, FileId)> = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let path = e.path();
                if let Ok(m) = fs::symlink_metadata(&path) {
                    if m.file_type().is_file() {
                        files.push((path, FileId::of(&m)));
                    }
                }
            }
            files.sort();
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("read directory {}", dir.display()))(e)),
    }
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    let mut corrupt = Vec::new();
    let mut skipped = Vec::new();
    let mut consider = |inspected: Result<Inspected>, in_dir: bool| match inspected {
        Ok(Inspected::Pv(mut pv)) => {
            pv.in_dir = in_dir;
            candidates.push(*pv);
        }
        Ok(Inspected::Corrupt(c)) => corrupt.push(c),
        // Devices and files we cannot read, or that are not PVs, are not ours to report.
        Ok(Inspected::NotPv) | Err(_) => {}
    };
    for b in loopdev::bound().map_err(io("list loop devices in /sys/block"))? {
        let id = match b.backing {
            Ok(id) => id,
            Err(why) => {
                skipped.push(format!(
                    "{} (bound to {}) skipped: {why}; it is not taken for a device of ours",
                    b.dev.path().display(),
                    b.name.display()
                ));
                continue;
            }
        };
        if !seen.insert(id) {
            // The same file bound twice: its first device serves.
            continue;
        }
        let in_dir = files.iter().find(|(_, f)| *f == id);
        let (file, here) = match in_dir {
            Some((p, _)) => (p.clone(), true),
            None => {
                let here = FileId::of_path(&b.name).is_ok_and(|f| f == id);
                (b.name.clone(), here)
            }
        };
        let source = match b.dev.node() {
            Ok(n) => n,
            Err(e) => {
                skipped.push(format!("{} skipped: {e}", b.dev.path().display()));
                continue;
            }
        };
        consider(
            PvOnDisk::inspect_at(&source, &file, Some(b.dev), here),
            in_dir.is_some(),
        );
    }
    for (f, id) in &files {
        if seen.insert(*id) {
            consider(PvOnDisk::inspect_at(f, f, None, true), true);
        }
    }
    // The newest metadata per VG id, then every PV it names.
    let mut newest: BTreeMap<String, VgMeta> = BTreeMap::new();
    for c in &candidates {
        let Some(meta) = &c.meta else { continue };
        let id = meta.id()?.to_string();
        if newest.get(&id).is_none_or(|m| m.seqno() < meta.seqno()) {
            newest.insert(id, meta.clone());
        }
    }
    let mut vgs = Vec::new();
    for meta in newest.into_values() {
        let pvs: Vec<FoundPv> = meta
            .pvs()?
            .into_iter()
            .map(|pv| FoundPv {
                disk: candidates
                    .iter()
                    .find(|c| c.label.pv_uuid == pv.id)
                    .cloned(),
                corrupt: corrupt.iter().find(|c| c.pv_uuid == Some(pv.id)).cloned(),
                meta: pv,
            })
            .collect();
        let unbound = pvs
            .iter()
            .any(|p| p.disk.as_ref().is_some_and(|d| d.dev.is_none()));
        let unsure = if unbound { skipped.clone() } else { Vec::new() };
        vgs.push(FoundVg { meta, pvs, unsure });
    }
    vgs.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Scan {
        vgs,
        corrupt,
        skipped,
    })
}

/// Names of the VGs on this host's other block devices — those lvm2 would scan
/// (`/sys/class/block`, loop devices aside: [`scan_all`] reads those): each device read
/// only, its first four sectors and metadata area. Devices without a node here, or
/// that cannot be opened, are skipped.
pub fn block_device_vgs() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/class/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Whole loop devices are read by `scan_all` (their partitions are read here).
        if name
            .strip_prefix("loop")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let sys = e.path();
        let size = fs::read_to_string(sys.join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        // Empty devices, and device-mapper devices that are suspended (a read would wait
        // for their resume; lvm2 skips them too).
        let suspended = fs::read_to_string(sys.join("dm/suspended")).is_ok_and(|s| s.trim() == "1");
        if size == 0 || suspended {
            continue;
        }
        let Some((major, minor)) = fs::read_to_string(sys.join("dev")).ok().and_then(|s| {
            let (a, b) = s.trim().split_once(':')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
        }) else {
            continue;
        };
        // The node here must be that device (a container's /dev may differ).
        let node = Path::new("/dev").join(&name);
        let rdev = nix::sys::stat::makedev(major, minor);
        if !fs::metadata(&node).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev) {
            continue;
        }
        if let Ok(Inspected::Pv(pv)) = PvOnDisk::inspect_at(&node, &node, None, false) {
            if let Some(meta) = pv.meta {
                out.push((meta.name().to_string(), node));
            }
        }
    }
    out
}

/// One device to commit metadata to: where to write and its current area headers.
pub struct Target {
    pub path: PathBuf,
    pub mdas: Vec<MdaHeader>,
}

impl From<&PvOnDisk> for Target {
    fn from(pv: &PvOnDisk) -> Self {
        Target {
            path: pv.write_path(),
            mdas: pv.mdas.clone(),
        }
    }
}

/// Writes `meta` to every area of every target. Returns `Err` with `committed` telling
/// how many headers (commit points) were written before the failure.
pub fn commit(
    io_: &dyn DiskIo,
    targets: &[Target],
    meta: &VgMeta,
    committed: &mut usize,
) -> Result<()> {
    let text = meta.to_text();
    let mut open = Vec::new();
    for t in targets {
        let disk = io_
            .open(&t.path)
            .map_err(io(format!("open {}", t.path.display())))?;
        let mut headers = Vec::new();
        for h in &t.mdas {
            let (locn, writes) = h.place_text(&text)?;
            for w in writes {
                disk.write_at(&w.bytes, w.offset)
                    .map_err(io(format!("write metadata to {}", t.path.display())))?;
            }
            headers.push(MdaHeader {
                committed: Some(locn),
                precommit: None,
                ..h.clone()
            });
        }
        open.push((disk, headers, &t.path));
    }
    sync_each(&open)?;
    // The commit: one sector per area header. Any subset of them landing is readable
    // (lvm2 takes the highest seqno), so they are all written, then synced.
    for (disk, headers, path) in &open {
        for h in headers {
            disk.write_at(&h.encode(), h.start)
                .map_err(io(format!("commit metadata on {}", path.display())))?;
            *committed += 1;
        }
    }
    sync_each(&open)
}

/// Syncs every device side by side (the filesystem under the loop devices can then
/// commit them together) and reports the first failure.
fn sync_each<T: Sync>(open: &[(Box<dyn Disk + '_>, T, &PathBuf)]) -> Result<()> {
    std::thread::scope(|scope| {
        let syncs: Vec<_> = open
            .iter()
            .map(|(disk, _, path)| {
                scope.spawn(move || disk.sync().map_err(io(format!("sync {}", path.display()))))
            })
            .collect();
        syncs
            .into_iter()
            .map(|t| t.join().expect("sync thread"))
            .collect::<Result<Vec<()>>>()
            .map(drop)
    })
}

/// Writes a new PV's label and empty area header (before its VG metadata).
pub fn write_new_pv(io_: &dyn DiskIo, path: &Path, label: &PvLabel) -> Result<Vec<MdaHeader>> {
    let disk = io_
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    let mdas: Vec<MdaHeader> = label
        .metadata_areas
        .iter()
        .map(|a| MdaHeader::empty(a.offset, a.size))
        .collect();
    disk.write_at(&label.encode()?, label.byte_offset())
        .map_err(io(format!("write label to {}", path.display())))?;
    for h in &mdas {
        disk.write_at(&h.encode(), h.start)
            .map_err(io(format!("write metadata header to {}", path.display())))?;
    }
    // Synced with the text by `commit`, before any header points at it.
    Ok(mdas)
}

/// Opens a backing file read-write without following a symlink.
pub fn open_backing(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::Symlink(path.to_path_buf())
            } else {
                io(format!("open {}", path.display()))(e)
            }
        })
}
