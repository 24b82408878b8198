//! The volume-group text metadata (lvm2 `export.c` / `import_vsn1.c`) as a typed view
//! over the config tree: read what lvm2 wrote, change seqno / PVs / sizes, write it back
//! with everything else (LVs, tags, unknown keys) untouched.

use std::collections::BTreeMap;

use crate::config::{Item, Items, Value};
use crate::uuid::Uuid;
use crate::{FormatError, SECTOR};

/// Default extent size in sectors (4 MiB).
pub const DEFAULT_EXTENT_SECTORS: u64 = 8192;
/// lvm2's `NAME_LEN`: names are shorter than this.
const NAME_LEN: usize = 128;
/// Largest seqno: lvm2 keeps it in a `uint32_t` (`struct volume_group`, read with
/// `dm_config_get_uint32`), so a bigger one is not a seqno lvm2 can hold, and a VG at this
/// one cannot be written again.
pub const MAX_SEQNO: u64 = u32::MAX as u64;
/// Largest extent size, extent count (`pe_count`, `extent_count`) and stripe count:
/// lvm2 reads them as `uint32_t`.
pub const MAX_U32_FIELD: u64 = u32::MAX as u64;

fn meta_err(msg: impl Into<String>) -> FormatError {
    FormatError::Metadata(msg.into())
}

/// One `pvN { … }` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvMeta {
    /// The section name (`pv0`, `pv1`, …), referenced by LV segments.
    pub key: String,
    pub id: Uuid,
    /// Device hint (`/dev/loop3`); lvm2 finds PVs by id.
    pub device: String,
    /// Size in sectors as lvm2 records it.
    pub dev_size: u64,
    /// First extent, in sectors.
    pub pe_start: u64,
    pub pe_count: u64,
}

/// The lines after the VG block that say who wrote it (all optional for lvm2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub description: String,
    pub creation_host: String,
    /// Seconds since the epoch.
    pub creation_time: u64,
}

/// Number of whole extents of a device of `dev_sectors` with data from `pe_start` (0
/// for an extent size of 0, which [`VgMeta::parse`] refuses).
pub fn pe_count(dev_sectors: u64, pe_start: u64, extent_size: u64) -> u64 {
    dev_sectors
        .saturating_sub(pe_start)
        .checked_div(extent_size)
        .unwrap_or(0)
}

/// lvm2's rules for a VG name (`validate_name`); `Err` says what is wrong.
pub fn validate_vg_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.starts_with('-') {
        return Err("a name may not start with '-'".into());
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(format!(
            "{c:?} is not allowed (only A-Z a-z 0-9 . _ - + are)"
        ));
    }
    if name.len() >= NAME_LEN {
        return Err(format!("longer than {} characters", NAME_LEN - 1));
    }
    Ok(())
}

/// A volume group's name, checked by lvm2's rules ([`validate_vg_name`]) — it becomes a
/// lock file's and a device directory's name, so it can hold neither `/` nor `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VgName(String);

impl VgName {
    /// Checks `name` and takes it; `Err` says what is wrong.
    pub fn new(name: impl Into<String>) -> Result<VgName, String> {
        let name = name.into();
        validate_vg_name(&name)?;
        Ok(VgName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for VgName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VgName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for VgName {
    type Err = String;
    fn from_str(s: &str) -> Result<VgName, String> {
        VgName::new(s)
    }
}

/// The words of a section's `status` and `flags` lists.
fn flags(items: &Items) -> Vec<String> {
    ["status", "flags"]
        .iter()
        .filter_map(|k| items.get(k).and_then(Value::as_list))
        .flat_map(|l| l.iter().filter_map(Value::as_str))
        .collect()
}

/// A VG's text metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgMeta {
    doc: Items,
}

impl VgMeta {
    /// Parses the on-disk text (a trailing NUL is allowed) and checks what lvm2 requires,
    /// and that every number loopvg computes with stays in range: the VG name follows
    /// lvm2's rules ([`validate_vg_name`]; it goes into lock and file names), seqno at
    /// most [`MAX_SEQNO`], extent size 1 to 2^32-1 sectors, at least one PV and no PV id
    /// twice, `pe_count` at most 2^32-1, every PV's and the VG's size in bytes fitting
    /// 64 bits, and each LV's `segment_count` equal to its segments (lvm2's check).
    pub fn parse(text: &[u8]) -> Result<Self, FormatError> {
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let s = std::str::from_utf8(text.get(..end).unwrap_or_default())
            .map_err(|_| meta_err("text is not UTF-8"))?;
        let meta = VgMeta {
            doc: Items::parse(s)?,
        };
        if meta.doc.get_str("contents").as_deref() != Some("Text Format Volume Group")
            || meta.doc.get_u64("version") != Some(1)
        {
            return Err(meta_err(
                "missing `contents = \"Text Format Volume Group\"` / `version = 1`",
            ));
        }
        let vg = meta.vg()?;
        validate_vg_name(meta.name())
            .map_err(|why| meta_err(format!("VG name {:?}: {why}", meta.name())))?;
        for key in ["id", "seqno", "status", "extent_size"] {
            if vg.get(key).is_none() {
                return Err(meta_err(format!("VG has no `{key}`")));
            }
        }
        meta.id()?;
        let seqno = vg
            .get_u64("seqno")
            .ok_or_else(|| meta_err("VG seqno is not a number of 0 to 2^64-1"))?;
        if seqno > MAX_SEQNO {
            return Err(meta_err(format!(
                "VG seqno {seqno} is larger than lvm2's 32-bit sequence number ({MAX_SEQNO})"
            )));
        }
        let extent_size = vg.get_u64("extent_size").unwrap_or(0);
        if extent_size == 0 || extent_size > MAX_U32_FIELD {
            return Err(meta_err(format!(
                "VG extent_size {extent_size} is not 1 to {MAX_U32_FIELD} sectors"
            )));
        }
        let pvs = meta.pvs()?;
        if pvs.is_empty() {
            return Err(meta_err("VG names no physical volume"));
        }
        let mut total: u64 = 0;
        let mut ids = std::collections::HashSet::new();
        for pv in &pvs {
            if !ids.insert(pv.id) {
                return Err(meta_err(format!("PV id {} appears twice", pv.id)));
            }
            if pv.pe_count > MAX_U32_FIELD {
                return Err(meta_err(format!(
                    "{}: pe_count {} is larger than {MAX_U32_FIELD}",
                    pv.key, pv.pe_count
                )));
            }
            let bytes = |sectors: u64| sectors.checked_mul(SECTOR);
            let extents = pv
                .pe_count
                .checked_mul(extent_size)
                .and_then(|e| e.checked_add(pv.pe_start));
            if bytes(pv.dev_size).is_none()
                || bytes(pv.pe_start).is_none()
                || extents.and_then(bytes).is_none()
            {
                return Err(meta_err(format!(
                    "{}: dev_size {}, pe_start {}, pe_count {} do not fit 64-bit byte counts",
                    pv.key, pv.dev_size, pv.pe_start, pv.pe_count
                )));
            }
            total = total
                .checked_add(pv.pe_count)
                .filter(|t| t.checked_mul(extent_size).and_then(bytes).is_some())
                .ok_or_else(|| meta_err("the VG's size does not fit a 64-bit byte count"))?;
        }
        let max_pv = vg.get_u64("max_pv").unwrap_or(0);
        if max_pv > 0 && pvs.len() as u64 > max_pv {
            return Err(meta_err(format!(
                "VG has {} PVs, more than its max_pv = {max_pv}",
                pvs.len()
            )));
        }
        meta.check_lvs()?;
        Ok(meta)
    }

    /// lvm2's checks of LV sections that loopvg's arithmetic relies on: each LV's
    /// `segment_count` equals its segments; a segment's `extent_count` at most 2^32-1,
    /// its `stripe_count` 1 to 2^32-1.
    fn check_lvs(&self) -> Result<(), FormatError> {
        let vg = self.vg()?;
        let Some(lvs) = vg.section("logical_volumes") else {
            return Ok(());
        };
        for (lv_name, lv) in Items::from(lvs).sections() {
            let lv = Items::from(lv);
            let count = lv.sections().count() as u64;
            if let Some(said) = lv.get("segment_count") {
                if said.as_u64() != Some(count) {
                    return Err(meta_err(format!(
                        "segment_count and actual number of segments disagree for logical volume {lv_name}"
                    )));
                }
            }
            for (seg_name, seg) in lv.sections() {
                let seg = Items::from(seg);
                if seg.get_u64("extent_count").unwrap_or(0) > MAX_U32_FIELD {
                    return Err(meta_err(format!(
                        "{lv_name}/{seg_name}: extent_count is larger than {MAX_U32_FIELD}"
                    )));
                }
                if let Some(n) = seg.get("stripe_count") {
                    if !matches!(n.as_u64(), Some(1..=MAX_U32_FIELD)) {
                        return Err(meta_err(format!(
                            "{lv_name}/{seg_name}: stripe_count is not 1 to {MAX_U32_FIELD}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// A new VG laid out exactly as lvm2 2.03 writes it.
    pub fn new(
        name: &str,
        id: Uuid,
        extent_size: u64,
        pvs: &[PvMeta],
        writer: &Writer,
    ) -> Result<Self, FormatError> {
        validate_vg_name(name).map_err(FormatError::Metadata)?;
        let text = format!(
            "{name} {{\nid = \"{id}\"\nseqno = 1\nformat = \"lvm2\"\n\
             status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\n\
             extent_size = {extent_size}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\n\
             physical_volumes {{\n}}\n\n\n}}\n\
             # Generated by loopvg {version}\n\n\
             contents = \"Text Format Volume Group\"\nversion = 1\n\n\
             description = \"\"\n\ncreation_host = \"\"\ncreation_time = 0\n\n",
            version = env!("CARGO_PKG_VERSION"),
        );
        let mut meta = VgMeta {
            doc: Items::parse(&text)?,
        };
        for pv in pvs {
            meta.add_pv(pv)?;
        }
        meta.set_writer(writer);
        Ok(meta)
    }

    /// The VG name (the first section of the document).
    pub fn name(&self) -> &str {
        self.doc.sections().next().map(|(n, _)| n).unwrap_or("")
    }

    fn vg(&self) -> Result<Items, FormatError> {
        self.doc
            .sections()
            .next()
            .map(|(_, items)| Items::from(items))
            .ok_or_else(|| FormatError::Metadata("no VG section".into()))
    }

    fn vg_mut(&mut self) -> Result<&mut Vec<Item>, FormatError> {
        self.doc
            .0
            .iter_mut()
            .find_map(|i| match i {
                Item::Section { items, .. } => Some(items),
                _ => None,
            })
            .ok_or_else(|| meta_err("no VG section"))
    }

    fn vg_num(&self, key: &str) -> u64 {
        self.vg().ok().and_then(|v| v.get_u64(key)).unwrap_or(0)
    }

    pub fn id(&self) -> Result<Uuid, FormatError> {
        let id = self.vg()?.get_str("id").unwrap_or_default();
        Uuid::parse(&id)
    }

    pub fn seqno(&self) -> u64 {
        self.vg_num("seqno")
    }

    /// Extent size in sectors.
    pub fn extent_size(&self) -> u64 {
        self.vg_num("extent_size")
    }

    /// The VG's `status` and `flags` words (`READ`, `WRITE`, `RESIZEABLE`, `EXPORTED`…).
    pub fn status(&self) -> Vec<String> {
        self.vg().map(|vg| flags(&vg)).unwrap_or_default()
    }

    /// `allocation_policy`; `normal` when absent, as lvm2 reads it.
    pub fn allocation_policy(&self) -> String {
        self.vg()
            .ok()
            .and_then(|vg| vg.get_str("allocation_policy"))
            .unwrap_or_else(|| "normal".into())
    }

    /// `max_lv` (0: no limit).
    pub fn max_lv(&self) -> u64 {
        self.vg_num("max_lv")
    }

    /// `max_pv` (0: no limit).
    pub fn max_pv(&self) -> u64 {
        self.vg_num("max_pv")
    }

    /// The `status` and `flags` words of the PV `key` (`ALLOCATABLE`, `EXPORTED`, `MISSING`).
    pub fn pv_status(&self, key: &str) -> Vec<String> {
        self.vg()
            .ok()
            .and_then(|vg| {
                let pvs = Items::from(vg.section("physical_volumes")?);
                let pv = Items::from(pvs.section(key)?);
                Some(flags(&pv))
            })
            .unwrap_or_default()
    }

    /// LVs as `vgs` counts them: (`lv_count`, `snap_count`) — the LVs whose status says
    /// `VISIBLE`, and the snapshots (each a hidden LV with a `snapshot` segment).
    pub fn lv_counts(&self) -> (usize, usize) {
        let Some(lvs) = self
            .vg()
            .ok()
            .and_then(|vg| vg.section("logical_volumes").map(Items::from))
        else {
            return (0, 0);
        };
        let (mut visible, mut snapshots) = (0, 0);
        for (_, lv) in lvs.sections() {
            let lv = Items::from(lv);
            if flags(&lv).iter().any(|f| f == "VISIBLE") {
                visible += 1;
            }
            if lv
                .sections()
                .any(|(_, seg)| Items::from(seg).get_str("type").as_deref() == Some("snapshot"))
            {
                snapshots += 1;
            }
        }
        (visible, snapshots)
    }

    /// Why lvm2 would refuse to change this VG's PVs (`vgextend`, `pvresize`), if it
    /// would: not writable or resizeable, exported, shared (lvmlockd), at `max_pv`.
    pub fn change_refused(&self, adding_pv: bool) -> Option<String> {
        let vg = self.vg().ok()?;
        let status = flags(&vg);
        let has = |s: &str| status.iter().any(|x| x == s);
        if !has("WRITE") {
            return Some("it is read-only".into());
        }
        if has("EXPORTED") {
            return Some("it is exported (vgimport it first)".into());
        }
        if vg.get_str("lock_type").is_some_and(|t| t != "none") {
            return Some("it is a shared VG (lvmlockd); use lvm2 with lvmlockd".into());
        }
        if adding_pv && !has("RESIZEABLE") {
            return Some("it is not resizeable (vgchange -x y)".into());
        }
        let max_pv = vg.get_u64("max_pv").unwrap_or(0);
        if adding_pv && max_pv > 0 && self.pvs().ok()?.len() as u64 >= max_pv {
            return Some(format!("it already has max_pv = {max_pv} PVs"));
        }
        None
    }

    /// Sets seqno; refused above [`MAX_SEQNO`] (lvm2 could not read it back).
    pub fn set_seqno(&mut self, seqno: u64) -> Result<(), FormatError> {
        if seqno > MAX_SEQNO {
            return Err(meta_err(format!(
                "seqno {seqno} is beyond lvm2's 32-bit sequence number ({MAX_SEQNO}); \
                 the VG cannot take another metadata version"
            )));
        }
        set(self.vg_mut()?, "seqno", Value::int(seqno));
        Ok(())
    }

    /// The seqno of the next version (seqno + 1), refused at [`MAX_SEQNO`].
    pub fn next_seqno(&self) -> Result<u64, FormatError> {
        self.seqno()
            .checked_add(1)
            .filter(|&n| n <= MAX_SEQNO)
            .ok_or_else(|| {
                meta_err(format!(
                    "seqno {} is at lvm2's limit ({MAX_SEQNO}); the VG cannot take another \
                     metadata version",
                    self.seqno()
                ))
            })
    }

    /// The PVs in the order of the metadata.
    pub fn pvs(&self) -> Result<Vec<PvMeta>, FormatError> {
        let vg = self.vg()?;
        let Some(pvs) = vg.section("physical_volumes") else {
            return Ok(Vec::new());
        };
        Items::from(pvs)
            .sections()
            .map(|(key, items)| {
                let pv = Items::from(items);
                let num = |k: &str| {
                    pv.get_u64(k)
                        .ok_or_else(|| FormatError::Metadata(format!("{key} has no `{k}`")))
                };
                Ok(PvMeta {
                    key: key.to_string(),
                    id: Uuid::parse(&pv.get_str("id").unwrap_or_default())?,
                    device: pv.get_str("device").unwrap_or_default(),
                    dev_size: pv.get_u64("dev_size").unwrap_or(0),
                    pe_start: num("pe_start")?,
                    pe_count: num("pe_count")?,
                })
            })
            .collect()
    }

    /// Number of logical volumes.
    pub fn lv_count(&self) -> usize {
        self.vg()
            .ok()
            .and_then(|vg| {
                vg.section("logical_volumes")
                    .map(|l| Items::from(l).sections().count())
            })
            .unwrap_or(0)
    }

    /// Extents used by LV segments, per PV key (`stripes = ["pv0", 0, …]` areas).
    pub fn allocated(&self) -> Result<BTreeMap<String, u64>, FormatError> {
        let mut used = BTreeMap::new();
        let vg = self.vg()?;
        let Some(lvs) = vg.section("logical_volumes") else {
            return Ok(used);
        };
        for (_, lv) in Items::from(lvs).sections() {
            for (_, seg) in Items::from(lv).sections() {
                let seg = Items::from(seg);
                let Some(stripes) = seg.get("stripes").and_then(Value::as_list) else {
                    continue;
                };
                let count = seg.get_u64("extent_count").unwrap_or(0);
                let n = seg.get_u64("stripe_count").unwrap_or(1).max(1);
                for pair in stripes.chunks(2) {
                    if let Some(pv) = pair.first().and_then(Value::as_str) {
                        let e = used.entry(pv).or_insert(0u64);
                        *e = e.saturating_add(count / n);
                    }
                }
            }
        }
        Ok(used)
    }

    /// Appends a PV section (lvm2's layout: a blank line, then `pvN { … }`). The key is
    /// chosen here (`pv<highest+1>`); returns it.
    pub fn add_pv(&mut self, pv: &PvMeta) -> Result<String, FormatError> {
        let next = self
            .pvs()?
            .iter()
            .filter_map(|p| p.key.strip_prefix("pv")?.parse::<u64>().ok())
            .max()
            .map_or(Some(0), |n| n.checked_add(1))
            .ok_or_else(|| meta_err("no PV key left after pv18446744073709551615"))?;
        let key = format!("pv{next}");
        let text = format!(
            "{key} {{\nid = \"{}\"\ndevice = \"{}\"\n\nstatus = [\"ALLOCATABLE\"]\nflags = []\n\
             dev_size = {}\npe_start = {}\npe_count = {}\n}}\n",
            pv.id,
            pv.device.replace('\\', "\\\\").replace('"', "\\\""),
            pv.dev_size,
            pv.pe_start,
            pv.pe_count
        );
        let section = Items::parse(&text)?.0;
        let vg = self.vg_mut()?;
        let pvs = match vg
            .iter()
            .position(|i| matches!(i, Item::Section { name, .. } if name == "physical_volumes"))
        {
            Some(at) => at,
            None => {
                vg.push(Item::Section {
                    name: "physical_volumes".into(),
                    items: Vec::new(),
                });
                vg.len() - 1
            }
        };
        let Some(Item::Section { items, .. }) = vg.get_mut(pvs) else {
            return Err(meta_err("no physical_volumes section"));
        };
        items.push(Item::Blank);
        items.extend(section);
        Ok(key)
    }

    /// Records a resized PV the way `pvresize` does: `dev_size` and `pe_count`.
    pub fn resize_pv(
        &mut self,
        key: &str,
        dev_size: u64,
        pe_count: u64,
    ) -> Result<(), FormatError> {
        self.update_pv(
            key,
            &[
                ("dev_size", Value::int(dev_size)),
                ("pe_count", Value::int(pe_count)),
            ],
        )
    }

    /// Sets fields of the PV section `key` (e.g. the `device` hint).
    pub fn update_pv(&mut self, key: &str, fields: &[(&str, Value)]) -> Result<(), FormatError> {
        let pv = self
            .vg_mut()?
            .iter_mut()
            .find_map(|i| match i {
                Item::Section { name, items } if name == "physical_volumes" => Some(items),
                _ => None,
            })
            .and_then(|pvs| {
                pvs.iter_mut().find_map(|i| match i {
                    Item::Section { name, items } if name == key => Some(items),
                    _ => None,
                })
            })
            .ok_or_else(|| FormatError::Metadata(format!("no PV {key}")))?;
        for (field, value) in fields {
            set(pv, field, value.clone());
        }
        Ok(())
    }

    /// Sets who wrote this version (description, host, time) after the VG block.
    pub fn set_writer(&mut self, w: &Writer) {
        self.doc.set("description", Value::string(&w.description));
        self.doc
            .set("creation_host", Value::string(&w.creation_host));
        self.doc.set("creation_time", Value::int(w.creation_time));
    }

    /// The on-disk text, NUL-terminated (size and checksum include the NUL).
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = String::new();
        self.doc.write(&mut out);
        let mut bytes = out.into_bytes();
        bytes.push(0);
        bytes
    }
}

fn set(items: &mut Vec<Item>, key: &str, value: Value) {
    let mut it = Items(std::mem::take(items));
    it.set(key, value);
    *items = it.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vg_names_follow_lvm_rules() {
        for ok in ["cinder-volumes", "vg_01", "a.b+c", "A"] {
            assert_eq!(validate_vg_name(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(128);
        for bad in ["", "-vg", ".", "..", "vg/x", "vg x", "vé", long.as_str()] {
            assert!(validate_vg_name(bad).is_err(), "{bad}");
            assert!(bad.parse::<VgName>().is_err(), "{bad}");
        }
        assert_eq!(
            VgName::new("cinder-volumes").unwrap().as_str(),
            "cinder-volumes"
        );
    }

    const PV0: &str =
        "physical_volumes {\npv0 {\nid = \"4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0f\"\n\
        pe_start = 2048\npe_count = 1\n}\n}\n";

    #[test]
    fn refuses_what_lvm2_refuses() {
        let vg = |status: &str, extra: &str| {
            let text = format!(
                "v {{\nid = \"4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0f\"\nseqno = 1\n\
                 status = [{status}]\nextent_size = 8192\nmax_lv = 0\n{extra}\n{PV0}}}\n\
                 contents = \"Text Format Volume Group\"\nversion = 1\n"
            );
            VgMeta::parse(text.as_bytes()).unwrap()
        };
        let rw = "\"RESIZEABLE\", \"READ\", \"WRITE\"";
        assert_eq!(vg(rw, "max_pv = 0").change_refused(true), None);
        assert!(vg("\"READ\"", "").change_refused(false).is_some());
        assert!(vg(&format!("{rw}, \"EXPORTED\""), "")
            .change_refused(false)
            .is_some());
        assert!(vg(rw, "lock_type = \"sanlock\"")
            .change_refused(false)
            .is_some());
        assert!(vg("\"READ\", \"WRITE\"", "").change_refused(true).is_some());
        assert_eq!(vg("\"READ\", \"WRITE\"", "").change_refused(false), None);
        let full = vg(rw, "max_pv = 1");
        assert!(full.change_refused(true).unwrap().contains("max_pv"));
    }

    #[test]
    fn extent_arithmetic() {
        assert_eq!(pe_count(131072, 2048, 8192), 15);
        assert_eq!(pe_count(196608, 2048, 8192), 23);
        assert_eq!(pe_count(1000, 2048, 8192), 0);
        assert_eq!(pe_count(131072, 2048, 0), 0);
    }
}
