//! What `loopvg list` (and every command that changes a VG) reports, in the numbers
//! `vgs`/`pvs --units b` print.

use std::path::PathBuf;

use serde::Serialize;
use sp_lvm::SECTOR;

use crate::error::Result;
use crate::ondisk::FoundVg;

/// One VG, as `vgs` would count it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VgReport {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    /// Bytes.
    pub extent_size: u64,
    pub extent_count: u64,
    pub free_count: u64,
    /// `vg_size` in bytes.
    pub size: u64,
    /// `vg_free` in bytes.
    pub free: u64,
    pub lv_count: usize,
    /// Every PV has a backing file bound to a loop device.
    pub active: bool,
    pub pvs: Vec<PvReport>,
}

/// One PV, as `pvs` would count it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PvReport {
    /// `pvN` in the metadata.
    pub key: String,
    pub uuid: String,
    /// `/dev/loopN` when bound.
    #[serde(serialize_with = "lossy_path")]
    pub device: Option<PathBuf>,
    /// In JSON, a path that is not UTF-8 has U+FFFD in place of its bad bytes. When
    /// `file_here` is false, the name the kernel gives the file (its path in the mount
    /// namespace that bound it), which is not that file here.
    #[serde(serialize_with = "lossy_path")]
    pub file: Option<PathBuf>,
    /// Whether `file` is the backing file in this mount namespace (by identity).
    pub file_here: bool,
    /// `pv_size` in bytes as `pvs` reports it for a PV in a VG: `pe_count` extents.
    pub size: u64,
    /// The metadata's `dev_size`, in bytes.
    pub recorded_size: u64,
    /// Size of the backing file in bytes (`dev_size` of `pvs`).
    pub file_size: Option<u64>,
    /// Bytes.
    pub pe_start: u64,
    pub pe_count: u64,
    pub pe_alloc: u64,
    /// `pv_free` in bytes.
    pub free: u64,
}

/// Serialises a path as text, lossily where it is not UTF-8 (serde refuses such paths,
/// and a file name must not make a report fail).
fn lossy_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// Like [`lossy_path`], for a list.
pub(crate) fn lossy_paths<S: serde::Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|p| p.to_string_lossy()))
}

pub fn report(vg: &FoundVg) -> Result<VgReport> {
    // VgMeta::parse checked that every PV's and the VG's extents in bytes fit a u64;
    // the arithmetic saturates all the same.
    let extent = vg.meta.extent_size().saturating_mul(SECTOR);
    let used = vg.meta.allocated()?;
    let pvs: Vec<PvReport> = vg
        .pvs
        .iter()
        .map(|pv| {
            let pe_alloc = used.get(&pv.meta.key).copied().unwrap_or(0);
            PvReport {
                key: pv.meta.key.clone(),
                uuid: pv.meta.id.to_string(),
                device: pv.disk.as_ref().and_then(|d| d.dev).map(|d| d.path()),
                file: pv.disk.as_ref().map(|d| d.file.clone()),
                file_here: pv.disk.as_ref().is_some_and(|d| d.here),
                size: pv.meta.pe_count.saturating_mul(extent),
                recorded_size: pv.meta.dev_size.saturating_mul(SECTOR),
                file_size: pv.disk.as_ref().map(|d| d.file_size),
                pe_start: pv.meta.pe_start.saturating_mul(SECTOR),
                pe_count: pv.meta.pe_count,
                pe_alloc,
                free: (pv.meta.pe_count - pe_alloc.min(pv.meta.pe_count)).saturating_mul(extent),
            }
        })
        .collect();
    let extent_count = pvs.iter().fold(0u64, |n, p| n.saturating_add(p.pe_count));
    let alloc = pvs.iter().fold(0u64, |n, p| n.saturating_add(p.pe_alloc));
    let free_count = extent_count - alloc.min(extent_count);
    Ok(VgReport {
        name: vg.name().to_string(),
        uuid: vg.meta.id()?.to_string(),
        seqno: vg.meta.seqno(),
        extent_size: extent,
        extent_count,
        free_count,
        size: extent_count.saturating_mul(extent),
        free: free_count.saturating_mul(extent),
        lv_count: vg.meta.lv_count(),
        active: vg
            .pvs
            .iter()
            .all(|p| p.disk.as_ref().is_some_and(|d| d.dev.is_some())),
        pvs,
    })
}
