//! Reading PVs and VGs from backing files and loop devices, and writing new metadata in
//! lvm2's order: text into every metadata area, sync, then the area headers (the commit
//! point), sync.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sp_kernel::loopdev::{self, LoopDevice};
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
    /// The backing file.
    pub file: PathBuf,
    /// The loop device it is bound to, if any.
    pub dev: Option<LoopDevice>,
    /// Size of the backing file in bytes.
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
    pub fn inspect(file: &Path, dev: Option<LoopDevice>) -> Result<Inspected> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(file)
            .map_err(io(format!("open {}", file.display())))?;
        let file_size = f.metadata().map_err(io("stat"))?.len();
        let mut head = vec![0u8; 4 * SECTOR as usize];
        if file_size < head.len() as u64 {
            return Ok(Inspected::NotPv);
        }
        Disk::read_at(&f, &mut head, 0).map_err(io(format!("read {}", file.display())))?;
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
            Disk::read_at(&f, buf, at).map_err(io(format!("read metadata of {}", file.display())))
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
}

impl FoundVg {
    pub fn name(&self) -> &str {
        self.meta.name()
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

/// What a scan found: the VGs, and the devices whose LVM metadata failed a check.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub vgs: Vec<FoundVg>,
    pub corrupt: Vec<CorruptPv>,
}

/// Every volume group on bound loop devices and on regular files in `dir`.
pub fn scan(dir: &Path) -> Result<Vec<FoundVg>> {
    Ok(scan_all(dir)?.vgs)
}

/// [`scan`], with the corrupt PVs seen on the way (a corrupt PV is never a VG's
/// candidate: nothing is written to it).
pub fn scan_all(dir: &Path) -> Result<Scan> {
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    let mut corrupt = Vec::new();
    let mut consider = |file: PathBuf, dev: Option<LoopDevice>| {
        let Ok(m) = fs::symlink_metadata(&file) else {
            return;
        };
        if !m.file_type().is_file() || !seen.insert((m.dev(), m.ino())) {
            return;
        }
        // Files we cannot read or that are not PVs are not ours to report.
        match PvOnDisk::inspect(&file, dev) {
            Ok(Inspected::Pv(pv)) => candidates.push(*pv),
            Ok(Inspected::Corrupt(c)) => corrupt.push(c),
            Ok(Inspected::NotPv) | Err(_) => {}
        }
    };
    for (dev, file) in loopdev::bound().map_err(io("list loop devices in /sys/block"))? {
        consider(file, Some(dev));
    }
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            files.sort();
            for f in files {
                consider(f, None);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("read directory {}", dir.display()))(e)),
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
        let pvs = meta
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
        vgs.push(FoundVg { meta, pvs });
    }
    vgs.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Scan { vgs, corrupt })
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
