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
    /// LVs as `vgs` counts them (`lv_count`: the visible ones).
    pub lv_count: usize,
    /// Snapshots (`snap_count`).
    pub snap_count: usize,
    /// `max_lv`, `max_pv` (0: no limit).
    pub max_lv: u64,
    pub max_pv: u64,
    /// `vg_attr` as `vgs` shows it (`wz--n-`; `p` when a PV has no device).
    pub attr: String,
    /// PVs without a loop device (`vg_missing_pv_count`).
    pub missing_pv_count: usize,
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
    /// `pv_attr` as `pvs` shows it (`a--`; `m` when missing).
    pub attr: String,
    /// No loop device carries it (`pv_missing`; lvm2 names such a PV `[unknown]`).
    pub missing: bool,
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

/// `vg_attr`: permissions, resizeable, exported, partial, allocation policy, clustered.
fn vg_attr(status: &[String], policy: &str, partial: bool) -> String {
    let has = |w: &str| status.iter().any(|s| s == w);
    let policy = match policy {
        "contiguous" => 'c',
        "cling" | "cling_by_tags" => 'l',
        "normal" => 'n',
        "anywhere" => 'a',
        "inherit" => 'i',
        _ => '-',
    };
    [
        if has("WRITE") { 'w' } else { 'r' },
        if has("RESIZEABLE") { 'z' } else { '-' },
        if has("EXPORTED") { 'x' } else { '-' },
        if partial { 'p' } else { '-' },
        policy,
        if has("CLUSTERED") { 'c' } else { '-' },
    ]
    .iter()
    .collect()
}

pub fn report(vg: &FoundVg) -> Result<VgReport> {
    // VgMeta::parse checked that every PV's and the VG's extents in bytes fit a u64;
    // the arithmetic saturates all the same.
    let extent = vg.meta.extent_size().saturating_mul(SECTOR);
    let used = vg.meta.allocated()?;
    let vg_status = vg.meta.status();
    let exported = vg_status.iter().any(|s| s == "EXPORTED");
    let pvs: Vec<PvReport> = vg
        .pvs
        .iter()
        .map(|pv| {
            let pe_alloc = used.get(&pv.meta.key).copied().unwrap_or(0);
            let device = pv.disk.as_ref().and_then(|d| d.dev).map(|d| d.path());
            let status = vg.meta.pv_status(&pv.meta.key);
            let attr = [
                if status.iter().any(|s| s == "ALLOCATABLE") {
                    'a'
                } else {
                    'u'
                },
                if exported { 'x' } else { '-' },
                if device.is_none() { 'm' } else { '-' },
            ]
            .iter()
            .collect();
            PvReport {
                key: pv.meta.key.clone(),
                uuid: pv.meta.id.to_string(),
                missing: device.is_none(),
                device,
                file: pv.disk.as_ref().map(|d| d.file.clone()),
                file_here: pv.disk.as_ref().is_some_and(|d| d.here),
                size: pv.meta.pe_count.saturating_mul(extent),
                recorded_size: pv.meta.dev_size.saturating_mul(SECTOR),
                file_size: pv.disk.as_ref().map(|d| d.file_size),
                pe_start: pv.meta.pe_start.saturating_mul(SECTOR),
                pe_count: pv.meta.pe_count,
                pe_alloc,
                free: (pv.meta.pe_count - pe_alloc.min(pv.meta.pe_count)).saturating_mul(extent),
                attr,
            }
        })
        .collect();
    let extent_count = pvs.iter().fold(0u64, |n, p| n.saturating_add(p.pe_count));
    let alloc = pvs.iter().fold(0u64, |n, p| n.saturating_add(p.pe_alloc));
    let free_count = extent_count - alloc.min(extent_count);
    let missing_pv_count = pvs.iter().filter(|p| p.missing).count();
    let (lv_count, snap_count) = vg.meta.lv_counts();
    Ok(VgReport {
        name: vg.name().to_string(),
        uuid: vg.meta.id()?.to_string(),
        seqno: vg.meta.seqno(),
        extent_size: extent,
        extent_count,
        free_count,
        size: extent_count.saturating_mul(extent),
        free: free_count.saturating_mul(extent),
        lv_count,
        snap_count,
        max_lv: vg.meta.max_lv(),
        max_pv: vg.meta.max_pv(),
        attr: vg_attr(
            &vg_status,
            &vg.meta.allocation_policy(),
            missing_pv_count > 0,
        ),
        missing_pv_count,
        active: missing_pv_count == 0,
        pvs,
    })
}
