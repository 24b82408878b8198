//! The operations: create, extend (new PV or grow the last one), list, activate,
//! deactivate, remove. Each mutating one takes LVM's locks, checks everything it can
//! before touching anything, and undoes its own steps when it fails before the commit.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};
use sp_kernel::loopdev::{self, LoopDevice};
use sp_lvm::config::Value;
use sp_lvm::label::{PvLabel, DEFAULT_PE_START_SECTORS};
use sp_lvm::uuid::Uuid;
use sp_lvm::vg::{self, PvMeta, VgMeta, Writer, DEFAULT_EXTENT_SECTORS};
use sp_lvm::SECTOR;

use crate::error::{io, Error, Result};
use crate::io::{DiskIo, RealIo};
use crate::lock::{lock_vg, DEFAULT_LOCK_DIR};
use crate::ondisk::{
    block_device_vgs, commit, open_backing, scan_all, write_new_pv, CorruptPv, FoundVg, PvOnDisk,
    Target,
};
use crate::pending::{check_new_path, name_free, sync_dir, tidy, NewFile};
use crate::report::{report, VgReport};
use crate::size::{human, parse_size};

/// Where packstack keeps `cinder-volumes`.
pub const DEFAULT_DIR: &str = "/var/lib/cinder";

/// Smallest backing file: the metadata before `pe_start` plus one extent.
const MIN_SIZE: u64 = (DEFAULT_PE_START_SECTORS + DEFAULT_EXTENT_SECTORS) * SECTOR;

/// Backing files of one VG: `NAME`, then `NAME02` to `NAME999`.
const MAX_FILES: u32 = 1000;

/// Refuses to bind a file whose path is not UTF-8: `sp_kernel::loopdev::bound` reads
/// every loop device's backing file as text, so one such binding would make every later
/// scan fail.
fn check_bindable(path: &Path) -> Result<()> {
    match path.to_str() {
        Some(_) => Ok(()),
        None => Err(Error::NotUtf8Path(path.to_path_buf())),
    }
}

/// The error for a VG whose metadata names no PV (parsing refuses such metadata).
fn no_pv(name: &str) -> Error {
    Error::InUse {
        vg: name.to_string(),
        what: "its metadata names no physical volume".into(),
    }
}

/// Progress of a long write (`--preallocate` on a filesystem without fallocate).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// The operations with their settings.
pub struct Loopvg<'a> {
    /// Directory of backing files (new VGs, and where inactive files are looked for).
    pub dir: PathBuf,
    /// LVM's `locking_dir`.
    pub lock_dir: PathBuf,
    /// Device I/O for metadata (tests inject failures here).
    pub io: &'a dyn DiskIo,
    pub progress: Option<Progress<'a>>,
    /// Command line recorded as the metadata's `description`.
    pub description: String,
}

/// What `remove` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    pub name: String,
    #[serde(serialize_with = "crate::report::lossy_paths")]
    pub detached: Vec<PathBuf>,
    #[serde(serialize_with = "crate::report::lossy_paths")]
    pub files: Vec<PathBuf>,
    pub files_kept: bool,
}

impl Default for Loopvg<'_> {
    fn default() -> Self {
        Loopvg {
            dir: PathBuf::from(DEFAULT_DIR),
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
            io: &RealIo,
            progress: None,
            description: "Write from loopvg".into(),
        }
    }
}

/// A grown backing file: shrunk back on drop unless kept.
struct Grown {
    file: File,
    old_len: u64,
    dev: LoopDevice,
    keep: bool,
}

impl Drop for Grown {
    fn drop(&mut self) {
        if !self.keep && self.file.set_len(self.old_len).is_ok() {
            let _ = self.dev.set_capacity();
        }
    }
}

fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    // Loop ioctls need CAP_SYS_ADMIN: a container without it is told before any change.
    let missing = sp_kernel::caps::missing(&[sp_kernel::caps::Cap::SysAdmin]);
    if !missing.is_empty() {
        return Err(Error::Capabilities(sp_kernel::caps::explain(&missing)));
    }
    Ok(())
}

/// Reading every loop device needs root (their nodes are root's, mode 0660 for group
/// disk); capabilities are not needed.
fn require_reader(command: &'static str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRootToRead(command))
    }
}

/// Random bytes from getrandom(2): no `/dev/urandom` needed (a container's `/dev` may
/// lack it).
fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io("getrandom")(e));
        }
        done += n as usize;
    }
    Ok(())
}

fn random_uuid() -> Result<Uuid> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(Uuid::from_random(bytes))
}

/// A PV's file must be this mount namespace's for a change that touches the file.
fn here<'a>(vg: &FoundVg, disk: &'a PvOnDisk) -> Result<&'a PvOnDisk> {
    if disk.here {
        return Ok(disk);
    }
    let pv = vg
        .pvs
        .iter()
        .find(|p| p.meta.id == disk.label.pv_uuid)
        .map_or_else(String::new, |p| p.meta.key.clone());
    Err(Error::NotHere {
        vg: vg.name().to_string(),
        pv,
        dev: disk.write_path().display().to_string(),
        file: disk.file.clone(),
    })
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| printable(h.trim(), 255))
        .unwrap_or_default()
}

/// `s` with control characters replaced by `?`, cut to `max` characters: what goes
/// into the metadata's writer lines stays one line of text. (A description too long
/// for the area fails the placement with `TextTooLarge`, before anything is written.)
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect()
}

/// lvm2's name rules ([`vg::validate_vg_name`]), checked before a name touches anything
/// (lock files, backing-file names, `/dev`).
fn check_name(name: &str) -> Result<()> {
    vg::validate_vg_name(name).map_err(|reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// The metadata section of a PV this run made: the whole file, extents from 1 MiB.
fn new_pv_meta(pv: &PvOnDisk, extent_size: u64) -> PvMeta {
    let sectors = pv.file_size / SECTOR;
    PvMeta {
        key: String::new(),
        id: pv.label.pv_uuid,
        device: pv.write_path().display().to_string(),
        dev_size: sectors,
        pe_start: DEFAULT_PE_START_SECTORS,
        pe_count: vg::pe_count(sectors, DEFAULT_PE_START_SECTORS, extent_size),
    }
}

/// Writes `size` bytes of zeros from the start of `file`, reporting progress per chunk.
fn write_zeros(file: &File, size: u64, progress: Option<Progress>) -> Result<()> {
    const CHUNK: u64 = 8 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let mut done = 0;
    while done < size {
        let n = CHUNK.min(size - done);
        std::os::unix::fs::FileExt::write_all_at(file, &zeros[..n as usize], done)
            .map_err(io("write zeros"))?;
        done += n;
        if let Some(p) = progress {
            p(done, size);
        }
    }
    Ok(())
}

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
fn free_space(dir: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| io(format!("statvfs {}", dir.display()))(e.into()))?;
    Ok(st.blocks_available() * st.fragment_size())
}

fn check_space(dir: &Path, need: u64) -> Result<()> {
    let free = free_space(dir)?;
    if need > free {
        return Err(Error::NoSpace {
            dir: dir.to_path_buf(),
            need: human(need),
            free: human(free),
        });
    }
    Ok(())
}

fn parse(input: &str, relative: bool) -> Result<u64> {
    let size = parse_size(input, relative).map_err(|reason| Error::InvalidSize {
        input: input.to_string(),
        reason,
    })?;
    if size < MIN_SIZE {
        return Err(Error::TooSmall {
            size: human(size),
            min: human(MIN_SIZE),
        });
    }
    Ok(size)
}

/// Tells lvm2 its device hints are stale (lvm2 `_touch_newhints`).
fn touch_newhints() {
    if Path::new("/run/lvm").is_dir() {
        let _ = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open("/run/lvm/newhints");
    }
}

impl Loopvg<'_> {
    fn writer(&self) -> Writer {
        Writer {
            description: printable(&self.description, usize::MAX),
            creation_host: hostname(),
            creation_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The VG `name` whose files are in the directory (by identity); a VG of that name
    /// elsewhere on the host is [`Error::VgElsewhere`], never touched.
    fn find(&self, name: &str) -> Result<FoundVg> {
        check_name(name)?;
        let found = scan_all(&self.dir)?;
        let (mut vgs, elsewhere): (Vec<FoundVg>, Vec<FoundVg>) = found
            .vgs
            .into_iter()
            .filter(|v| v.name() == name)
            .partition(FoundVg::in_dir);
        if vgs.is_empty() && !elsewhere.is_empty() {
            return Err(Error::VgElsewhere {
                name: name.to_string(),
                dir: self.dir.clone(),
                whereabouts: elsewhere
                    .iter()
                    .map(FoundVg::whereabouts)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        self.one(name, vgs.len(), &found.corrupt)
            .map(|()| vgs.remove(0))
    }

    /// Every VG called `name` on this host (loop devices, files in the directory).
    fn find_all(&self, name: &str) -> Result<Vec<FoundVg>> {
        check_name(name)?;
        let found = scan_all(&self.dir)?;
        let vgs: Vec<FoundVg> = found.vgs.into_iter().filter(|v| v.name() == name).collect();
        if vgs.is_empty() {
            self.one(name, 0, &found.corrupt)?;
        }
        Ok(vgs)
    }

    /// Ok when exactly one VG was found, else why not.
    fn one(&self, name: &str, count: usize, corrupt: &[CorruptPv]) -> Result<()> {
        match count {
            0 if !corrupt.is_empty() => Err(Error::VgCorrupt {
                name: name.to_string(),
                dir: self.dir.clone(),
                corrupt: corrupt
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            0 => Err(Error::VgNotFound {
                name: name.to_string(),
                dir: self.dir.clone(),
            }),
            1 => Ok(()),
            n => Err(Error::InUse {
                vg: name.to_string(),
                what: format!("{n} different volume groups carry this name; resolve with vgrename"),
            }),
        }
    }

    /// The VG for a change of its PVs, refused where lvm2 would refuse it.
    fn changeable(&self, name: &str, adding_pv: bool) -> Result<FoundVg> {
        let vg = self.finished(name)?;
        // A change needs a seqno lvm2 can hold: checked before anything is touched.
        vg.meta.next_seqno()?;
        match vg.meta.change_refused(adding_pv) {
            Some(why) => Err(Error::InUse {
                vg: name.to_string(),
                what: why,
            }),
            None => Ok(vg),
        }
    }

    /// The VG, after finishing what killed runs left next to its files.
    fn finished(&self, name: &str) -> Result<FoundVg> {
        let vg = self.find(name)?;
        let mut dirs: Vec<PathBuf> = vg
            .pvs
            .iter()
            .filter_map(|p| p.disk.as_ref().filter(|d| d.here))
            .filter_map(|d| Some(d.file.parent()?.to_path_buf()))
            .collect();
        dirs.push(self.dir.clone());
        dirs.dedup();
        let mut changed = false;
        for dir in dirs {
            changed |= tidy(&dir, name, Some(&vg))?;
        }
        if changed {
            self.find(name)
        } else {
            Ok(vg)
        }
    }

    fn reread(&self, name: &str) -> Result<VgReport> {
        report(&self.find(name)?)
    }

    /// Creates the backing file (0600, never through a symlink), sized and optionally
    /// preallocated, bound to a loop device, with a PV label and empty metadata area.
    fn new_pv(&self, path: &Path, size: u64, preallocate: bool) -> Result<(NewFile, PvOnDisk)> {
        check_bindable(path)?;
        let mut guard = NewFile::create(path)?;
        let file = &guard.file;
        file.set_len(size)
            .map_err(io(format!("size {} to {}", path.display(), human(size))))?;
        if preallocate {
            self.preallocate(file, size)?;
        }
        // The size becomes durable with the first sync of the loop device (loop turns a
        // flush into fsync of the file); the directory entry needs its own sync.
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        let dev = loopdev::attach(file, path)?;
        guard.dev = Some(dev);
        let label = PvLabel::new_in_vg(random_uuid()?, size, DEFAULT_PE_START_SECTORS);
        let mdas = write_new_pv(self.io, &dev.path(), &label)?;
        let pv = PvOnDisk {
            file: guard.pending.clone(),
            dev: Some(dev),
            here: true,
            in_dir: path.parent() == Some(self.dir.as_path()),
            file_size: size,
            label,
            mdas,
            meta: None,
        };
        Ok((guard, pv))
    }

    fn preallocate(&self, file: &File, size: u64) -> Result<()> {
        match fallocate(file, FallocateFlags::empty(), 0, size as i64) {
            Ok(()) => return Ok(()),
            Err(Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(io("fallocate")(e.into())),
        }
        // No fallocate here: write zeros, showing progress.
        write_zeros(file, size, self.progress)
    }

    /// `loopvg create NAME SIZE`: backing file `<dir>/NAME`, loop device, PV and VG.
    pub fn create(&self, name: &str, size: &str, preallocate: bool) -> Result<VgReport> {
        check_name(name)?;
        if Path::new("/dev").join(name).exists() {
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: format!("/dev/{name} already exists (lvm2 refuses such names)"),
            });
        }
        let size = parse(size, false)?;
        check_bindable(&self.dir)?;
        require_root()?;
        let _locks = lock_vg(&self.lock_dir, name)?;
        self.check_name_free(name)?;
        tidy(&self.dir, name, None)?;
        let path = self.dir.join(name);
        check_new_path(&path)?;
        fs::create_dir_all(&self.dir).map_err(io(format!("create {}", self.dir.display())))?;
        check_space(&self.dir, size)?;
        let (mut guard, pv) = self.new_pv(&path, size, preallocate)?;
        let meta = VgMeta::new(
            name,
            random_uuid()?,
            DEFAULT_EXTENT_SECTORS,
            &[new_pv_meta(&pv, DEFAULT_EXTENT_SECTORS)],
            &self.writer(),
        )?;
        self.commit_vg(&[Target::from(&pv)], &meta, &mut guard.keep)?;
        guard.publish()?;
        self.reread(name)
    }

    /// Refuses a VG name that exists anywhere on this host — on any loop device (whoever
    /// bound it, in whichever mount namespace), in the directory, or on a block device
    /// lvm2 would scan — as vgcreate does.
    fn check_name_free(&self, name: &str) -> Result<()> {
        let mut places: Vec<String> = scan_all(&self.dir)?
            .vgs
            .iter()
            .filter(|v| v.name() == name)
            .map(FoundVg::whereabouts)
            .collect();
        places.extend(
            block_device_vgs()
                .into_iter()
                .filter(|(n, _)| n == name)
                .map(|(_, dev)| dev.display().to_string()),
        );
        if places.is_empty() {
            Ok(())
        } else {
            Err(Error::VgExists {
                name: name.to_string(),
                whereabouts: places.join("; "),
            })
        }
    }

    /// Commits `meta` to `targets`. Once any header carries it, `keep` is set: what this
    /// run added (a new file, a grown file) is part of the VG from then on.
    fn commit_vg(&self, targets: &[Target], meta: &VgMeta, keep: &mut bool) -> Result<()> {
        let mut committed = 0;
        let result = commit(self.io, targets, meta, &mut committed);
        *keep = committed > 0;
        result?;
        touch_newhints();
        Ok(())
    }

    /// The new metadata version: seqno + 1, current device hints, who wrote it.
    fn next_version(&self, vg: &FoundVg, disks: &[&PvOnDisk]) -> Result<VgMeta> {
        let mut meta = vg.meta.clone();
        meta.set_seqno(vg.meta.next_seqno()?)?;
        for (pv, disk) in vg.pvs.iter().zip(disks) {
            let hint = Value::string(&disk.write_path().display().to_string());
            meta.update_pv(&pv.meta.key, &[("device", hint)])?;
        }
        meta.set_writer(&self.writer());
        Ok(meta)
    }

    /// `loopvg extend NAME +SIZE`: a new backing file `<NAME>02`, `…03` next to the last
    /// one, as a new PV on every PV's metadata.
    pub fn extend(&self, name: &str, size: &str) -> Result<VgReport> {
        check_name(name)?;
        let size = parse(size, true)?;
        require_root()?;
        let _locks = lock_vg(&self.lock_dir, name)?;
        let vg = self.changeable(name, true)?;
        let disks = vg.disks(true)?;
        if disks.is_empty() {
            return Err(no_pv(name));
        }
        // Next to the last file that is this namespace's (and in the directory, when one
        // is); another namespace's path is never used here.
        let last = disks
            .iter()
            .rev()
            .find(|d| d.in_dir)
            .or_else(|| disks.iter().rev().find(|d| d.here));
        let dir = last
            .and_then(|d| d.file.parent())
            .unwrap_or(&self.dir)
            .to_path_buf();
        let path = (2..MAX_FILES)
            .map(|n| dir.join(format!("{name}{n:02}")))
            .find(|p| name_free(p))
            .ok_or_else(|| Error::InUse {
                vg: name.to_string(),
                what: format!(
                    "{name}02 to {name}{} are all taken in {}",
                    MAX_FILES - 1,
                    dir.display()
                ),
            })?;
        check_space(&dir, size)?;
        let (mut guard, pv) = self.new_pv(&path, size, false)?;
        let mut meta = self.next_version(&vg, &disks)?;
        meta.add_pv(&new_pv_meta(&pv, vg.meta.extent_size()))?;
        let mut targets: Vec<Target> = disks.iter().map(|d| Target::from(*d)).collect();
        targets.push(Target::from(&pv));
        self.commit_vg(&targets, &meta, &mut guard.keep)?;
        guard.publish()?;
        self.reread(name)
    }

    /// `loopvg extend NAME +SIZE --grow`: grows the last backing file, refreshes the loop
    /// device's capacity and records the larger PV (what `pvresize` does).
    pub fn grow(&self, name: &str, size: &str) -> Result<VgReport> {
        check_name(name)?;
        let delta = parse_size(size, true).map_err(|reason| Error::InvalidSize {
            input: size.to_string(),
            reason,
        })?;
        require_root()?;
        let _locks = lock_vg(&self.lock_dir, name)?;
        let vg = self.changeable(name, false)?;
        let disks = vg.disks(true)?;
        let (Some(last_pv), Some(&last)) = (vg.pvs.last(), disks.last()) else {
            return Err(no_pv(name));
        };
        let last = here(&vg, last)?;
        let first_area = last.label.metadata_areas.first().map_or(0, |a| a.offset);
        if last.mdas.iter().any(|m| m.start > first_area) {
            return Err(Error::InUse {
                vg: name.to_string(),
                what: format!(
                    "{} keeps a second metadata area at its end; grow it with pvresize",
                    last.file.display()
                ),
            });
        }
        let Some(dev) = last.dev else {
            return Err(Error::PvUnavailable {
                vg: name.to_string(),
                pv: last_pv.meta.key.clone(),
                uuid: last_pv.meta.id.to_string(),
                problem: "is not bound to a loop device; run `loopvg activate` first".into(),
            });
        };
        let dir = last.file.parent().unwrap_or(&self.dir).to_path_buf();
        check_space(&dir, delta)?;
        let file = open_backing(&last.file)?;
        let old_len = file.metadata().map_err(io("stat"))?.len();
        let new_len = old_len
            .checked_add(delta)
            .ok_or_else(|| Error::InvalidSize {
                input: size.to_string(),
                reason: "too large".into(),
            })?;
        file.set_len(new_len)
            .map_err(io(format!("grow {}", last.file.display())))?;
        let mut grown = Grown {
            file,
            old_len,
            dev,
            keep: false,
        };
        grown.file.sync_all().map_err(io("sync the backing file"))?;
        dev.set_capacity()?;
        let sectors = dev.size().map_err(io("read the loop device size"))? / SECTOR;
        let pe_start = last_pv.meta.pe_start;
        let mut meta = self.next_version(&vg, &disks)?;
        // lvm2's pvresize records dev_size = sectors - pe_start.
        let dev_size = sectors.checked_sub(pe_start).ok_or_else(|| Error::InUse {
            vg: name.to_string(),
            what: format!(
                "{} records pe_start {pe_start} sectors, beyond its device of {sectors} sectors",
                last_pv.meta.key
            ),
        })?;
        meta.resize_pv(
            &last_pv.meta.key,
            dev_size,
            vg::pe_count(sectors, pe_start, vg.meta.extent_size()),
        )?;
        let targets: Vec<Target> = disks.iter().map(|d| Target::from(*d)).collect();
        self.commit_vg(&targets, &meta, &mut grown.keep)?;
        self.reread(name)
    }

    /// `loopvg list [NAME]`. Needs root: as another user no loop device could be read,
    /// and an empty list would be a lie.
    pub fn list(&self, name: Option<&str>) -> Result<Vec<VgReport>> {
        if let Some(n) = name {
            require_reader("list")?;
            return self.find_all(n)?.iter().map(report).collect();
        }
        Ok(self.survey()?.0)
    }

    /// The VG `name` whose files are in the directory, `None` when there is none (a VG
    /// of that name elsewhere on the host is not this directory's: `None` too). What
    /// stackplumb's volume step asks.
    pub fn here(&self, name: &str) -> Result<Option<VgReport>> {
        match self.find(name) {
            Ok(vg) => Ok(Some(report(&vg)?)),
            Err(Error::VgNotFound { .. } | Error::VgElsewhere { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `loopvg list`: every VG on this host's loop devices and in the directory, the PVs
    /// whose LVM metadata failed a check (which hold no VG that can be listed), and the
    /// loop devices that could not be asked what they hold (the binary warns about both).
    pub fn survey(&self) -> Result<(Vec<VgReport>, Vec<CorruptPv>, Vec<String>)> {
        require_reader("list")?;
        let found = scan_all(&self.dir)?;
        let vgs = found.vgs.iter().map(report).collect::<Result<_>>()?;
        Ok((vgs, found.corrupt, found.skipped))
    }

    /// `loopvg activate [NAME]`: binds every unbound backing file of the VG (of every VG
    /// found in the directory when `name` is `None`). Nothing is bound unless every PV's
    /// file is there.
    pub fn activate(&self, name: Option<&str>) -> Result<Vec<VgReport>> {
        require_root()?;
        let names: Vec<String> = match name {
            Some(n) => {
                check_name(n)?;
                vec![n.to_string()]
            }
            None => scan_all(&self.dir)?
                .vgs
                .iter()
                .filter(|v| v.in_dir())
                .map(|v| v.name().to_string())
                .collect(),
        };
        for name in &names {
            let _locks = lock_vg(&self.lock_dir, name)?;
            let vg = self.finished(name)?;
            let mut bound = Vec::new();
            let disks = vg.disks(false)?;
            for disk in disks.iter().filter(|d| d.dev.is_none()) {
                check_bindable(&disk.file)?;
                vg.sure_unbound()?;
            }
            for disk in disks {
                // Bound already — here or from another mount namespace: the scan asked
                // the kernel for every device's file; it is never bound twice.
                if disk.dev.is_some() {
                    continue;
                }
                let attached = open_backing(&disk.file)
                    .and_then(|file| Ok(loopdev::attach(&file, &disk.file)?));
                match attached {
                    Ok(dev) => bound.push(dev),
                    Err(e) => {
                        // all or nothing for this VG
                        for dev in bound {
                            let _ = dev.detach();
                        }
                        return Err(e);
                    }
                }
            }
        }
        touch_newhints();
        names.iter().map(|n| self.reread(n)).collect()
    }

    /// `loopvg deactivate NAME`: unbinds the VG's loop devices (refused while
    /// device-mapper holds them, i.e. LVs are active).
    pub fn deactivate(&self, name: &str) -> Result<VgReport> {
        check_name(name)?;
        require_root()?;
        let _locks = lock_vg(&self.lock_dir, name)?;
        let vg = self.find(name)?;
        let devs = self.bound_unheld(&vg)?;
        for d in devs {
            d.detach()?;
        }
        self.reread(name)
    }

    fn bound_unheld(&self, vg: &FoundVg) -> Result<Vec<LoopDevice>> {
        for d in vg.pvs.iter().filter_map(|p| p.disk.as_ref()) {
            here(vg, d)?;
        }
        let devs: Vec<LoopDevice> = vg.pvs.iter().filter_map(|p| p.disk.as_ref()?.dev).collect();
        if let Some(d) = devs.iter().find(|d| d.has_holders()) {
            return Err(Error::InUse {
                vg: vg.name().to_string(),
                what: format!(
                    "{} is held open (active LVs?); deactivate them with `vgchange -an {}`",
                    d.path().display(),
                    vg.name()
                ),
            });
        }
        Ok(devs)
    }

    /// `loopvg remove NAME [--keep-files]`: wipes the PV labels and area headers (like
    /// vgremove + pvremove), unbinds the loop devices and deletes the backing files
    /// (kept, wiped, with `keep_files`). Refused while the VG has LVs.
    pub fn remove(&self, name: &str, keep_files: bool) -> Result<Removed> {
        check_name(name)?;
        require_root()?;
        let _locks = lock_vg(&self.lock_dir, name)?;
        let vg = self.find(name)?;
        if vg.meta.lv_count() > 0 {
            return Err(Error::InUse {
                vg: name.to_string(),
                what: format!(
                    "it has {} logical volume(s); delete them first (lvremove, or the Cinder volumes)",
                    vg.meta.lv_count()
                ),
            });
        }
        let disks = vg.disks(false)?;
        let devs = self.bound_unheld(&vg)?;
        for d in &disks {
            here(&vg, d)?;
        }
        if disks.iter().any(|d| d.dev.is_none()) {
            vg.sure_unbound()?;
        }
        for d in &disks {
            let path = d.write_path();
            let disk = self
                .io
                .open(&path)
                .map_err(io(format!("open {}", path.display())))?;
            for h in &d.mdas {
                disk.write_at(&[0u8; 512], h.start)
                    .map_err(io(format!("wipe {}", path.display())))?;
            }
            disk.write_at(&[0u8; 512], d.label.byte_offset())
                .map_err(io(format!("wipe {}", path.display())))?;
            disk.sync()
                .map_err(io(format!("sync {}", path.display())))?;
        }
        for d in &devs {
            d.detach()?;
        }
        let files: Vec<PathBuf> = disks.iter().map(|d| d.file.clone()).collect();
        if !keep_files {
            for f in &files {
                fs::remove_file(f).map_err(io(format!("delete {}", f.display())))?;
            }
        }
        touch_newhints();
        Ok(Removed {
            name: name.to_string(),
            detached: devs.iter().map(LoopDevice::path).collect(),
            files,
            files_kept: keep_files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zeros_fill_the_file_with_progress() {
        let path = std::env::temp_dir().join(format!("loopvg-zeros-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let seen = RefCell::new(Vec::new());
        let progress = |done: u64, total: u64| seen.borrow_mut().push((done, total));
        write_zeros(&file, 20 << 20, Some(&progress)).unwrap();
        let meta = file.metadata().unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(meta.len(), 20 << 20);
        assert!(
            meta.blocks() * 512 >= 20 << 20,
            "blocks written, not a hole"
        );
        assert_eq!(
            *seen.borrow(),
            [
                (8 << 20, 20 << 20),
                (16 << 20, 20 << 20),
                (20 << 20, 20 << 20)
            ]
        );
    }
}
