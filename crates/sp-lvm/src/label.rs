//! The label sector: `LABELONE` header, PV header with its data- and metadata-area lists,
//! and the PV header extension (lvm2 `lib/label/label.h`, `lib/format_text/layout.h`).

use crate::uuid::Uuid;
use crate::{crc, FormatError, SECTOR};

/// `"LABELONE"`.
pub const LABEL_ID: &[u8; 8] = b"LABELONE";
/// Label type of the text format.
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
/// The sector pvcreate writes the label to.
pub const LABEL_SECTOR: u64 = 1;
/// Sectors searched for a label.
pub const LABEL_SCAN_SECTORS: u64 = 4;
/// Offset of the PV header inside the label sector.
const PV_HEADER_OFFSET: usize = 32;
/// `PV_EXT_USED`: the PV belongs to a VG.
pub const PV_EXT_USED: u32 = 1;
/// PV header extension version lvm2 2.02.150+ writes.
pub const PV_HEADER_EXTENSION_VSN: u32 = 2;
/// Default metadata-area start (bytes) and size (bytes, header included).
pub const DEFAULT_MDA_START: u64 = 4096;
pub const DEFAULT_MDA_SIZE: u64 = 2040 * SECTOR;
/// Default first physical extent, in sectors (1 MiB).
pub const DEFAULT_PE_START_SECTORS: u64 = 2048;

/// One `{offset, size}` disk location (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLocn {
    pub offset: u64,
    pub size: u64,
}

/// The label sector's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLabel {
    /// Sector the label was found in (written where it came from).
    pub sector: u64,
    pub pv_uuid: Uuid,
    /// Device size in bytes as recorded when the label was written.
    pub device_size: u64,
    pub data_areas: Vec<DiskLocn>,
    pub metadata_areas: Vec<DiskLocn>,
    /// Extension version (0 = no extension).
    pub ext_version: u32,
    pub ext_flags: u32,
    pub bootloader_areas: Vec<DiskLocn>,
}

impl PvLabel {
    /// The label pvcreate + vgcreate/vgextend write: one data area at `pe_start_sectors`,
    /// one metadata area at 4096 of 1,044,480 bytes, extension v2 with `PV_EXT_USED`.
    pub fn new_in_vg(pv_uuid: Uuid, device_size: u64, pe_start_sectors: u64) -> Self {
        PvLabel {
            sector: LABEL_SECTOR,
            pv_uuid,
            device_size,
            data_areas: vec![DiskLocn {
                offset: pe_start_sectors * SECTOR,
                size: 0,
            }],
            metadata_areas: vec![DiskLocn {
                offset: DEFAULT_MDA_START,
                size: DEFAULT_MDA_SIZE,
            }],
            ext_version: PV_HEADER_EXTENSION_VSN,
            ext_flags: PV_EXT_USED,
            bootloader_areas: Vec::new(),
        }
    }

    /// Absolute byte offset of the label sector.
    pub fn byte_offset(&self) -> u64 {
        self.sector * SECTOR
    }

    /// The 512-byte label sector.
    pub fn encode(&self) -> Result<[u8; 512], FormatError> {
        let mut s = [0u8; 512];
        s[0..8].copy_from_slice(LABEL_ID);
        put_u64(&mut s, 8, self.sector);
        put_u32(&mut s, 20, PV_HEADER_OFFSET as u32);
        s[24..32].copy_from_slice(LABEL_TYPE);
        let mut at = PV_HEADER_OFFSET;
        s[at..at + 32].copy_from_slice(self.pv_uuid.raw());
        put_u64(&mut s, at + 32, self.device_size);
        at += 40;
        for list in [&self.data_areas, &self.metadata_areas] {
            at = put_list(&mut s, at, list)?;
        }
        if self.ext_version != 0 {
            if at + 8 + 16 * (self.bootloader_areas.len() + 1) > 512 {
                return Err(FormatError::PvHeader(
                    "area lists overflow the label sector".into(),
                ));
            }
            put_u32(&mut s, at, self.ext_version);
            put_u32(&mut s, at + 4, self.ext_flags);
            put_list(&mut s, at + 8, &self.bootloader_areas)?;
        }
        let c = crc::calc(&s[20..]);
        put_u32(&mut s, 16, c);
        Ok(s)
    }

    /// Finds and decodes the label in the first sectors of a device (`head` holds at
    /// least the sectors to search; fewer are searched when it is shorter). Every value
    /// is read from the 512-byte sector and checked; nothing is allocated from a count
    /// the input gives (an area list ends within the sector).
    pub fn find(head: &[u8]) -> Result<Self, FormatError> {
        for sector in 0..LABEL_SCAN_SECTORS {
            let at = (sector * SECTOR) as usize;
            let Some(s) = head.get(at..at + SECTOR as usize) else {
                break;
            };
            if s.get(0..8) == Some(&LABEL_ID[..]) && get_u64(s, 8)? == sector {
                return Self::decode(s, sector);
            }
        }
        Err(FormatError::NoLabel)
    }

    /// Checks the areas the label names against the size of the device it was read
    /// from: every metadata area and the data start inside it, no sum wrapping.
    pub fn check_within(&self, device_size: u64) -> Result<(), FormatError> {
        for a in &self.metadata_areas {
            let end = a.offset.checked_add(a.size).ok_or_else(|| {
                FormatError::PvHeader(format!(
                    "metadata area at {} of {} bytes wraps around",
                    a.offset, a.size
                ))
            })?;
            if a.size < 2 * SECTOR {
                return Err(FormatError::PvHeader(format!(
                    "metadata area at {} of {} bytes is smaller than two sectors",
                    a.offset, a.size
                )));
            }
            if end > device_size {
                return Err(FormatError::PvHeader(format!(
                    "metadata area at {} of {} bytes does not fit the device of {device_size} bytes",
                    a.offset, a.size
                )));
            }
        }
        for a in &self.data_areas {
            if a.offset > device_size {
                return Err(FormatError::PvHeader(format!(
                    "data area at {} is beyond the device of {device_size} bytes",
                    a.offset
                )));
            }
        }
        Ok(())
    }

    fn decode(s: &[u8], sector: u64) -> Result<Self, FormatError> {
        let s: &[u8; 512] = s
            .get(..512)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| FormatError::PvHeader("label shorter than a sector".into()))?;
        let stored = get_u32(s, 16)?;
        let computed = crc::calc(&s[20..]);
        if stored != computed {
            return Err(FormatError::LabelChecksum { stored, computed });
        }
        if &s[24..32] != LABEL_TYPE {
            return Err(FormatError::PvHeader(format!(
                "label type {:?} is not LVM2 001",
                String::from_utf8_lossy(&s[24..32])
            )));
        }
        let offset = get_u32(s, 20)?;
        if offset as usize != PV_HEADER_OFFSET {
            return Err(FormatError::PvHeader(format!(
                "PV header at offset {offset}"
            )));
        }
        let mut at = PV_HEADER_OFFSET;
        let pv_uuid = Uuid::from_raw(&s[at..at + 32])?;
        let device_size = get_u64(s, at + 32)?;
        at += 40;
        let (data_areas, next) = get_list(s, at)?;
        let (metadata_areas, next) = get_list(s, next)?;
        let ext_version = if next + 8 <= 512 {
            get_u32(s, next)?
        } else {
            0
        };
        let (ext_flags, bootloader_areas) = if ext_version == 0 {
            (0, Vec::new())
        } else {
            (get_u32(s, next + 4)?, get_list(s, next + 8)?.0)
        };
        Ok(PvLabel {
            sector,
            pv_uuid,
            device_size,
            data_areas,
            metadata_areas,
            ext_version,
            ext_flags,
            bootloader_areas,
        })
    }
}

fn put_list(s: &mut [u8; 512], mut at: usize, list: &[DiskLocn]) -> Result<usize, FormatError> {
    if at + 16 * (list.len() + 1) > 512 {
        return Err(FormatError::PvHeader(
            "area lists overflow the label sector".into(),
        ));
    }
    for l in list {
        put_u64(s, at, l.offset);
        put_u64(s, at + 8, l.size);
        at += 16;
    }
    Ok(at + 16) // the zero terminator is already there
}

fn get_list(s: &[u8], mut at: usize) -> Result<(Vec<DiskLocn>, usize), FormatError> {
    let mut out = Vec::new();
    loop {
        if at + 16 > 512 {
            return Err(FormatError::PvHeader("unterminated area list".into()));
        }
        let l = DiskLocn {
            offset: get_u64(s, at)?,
            size: get_u64(s, at + 8)?,
        };
        at += 16;
        if l.offset == 0 {
            return Ok((out, at));
        }
        out.push(l);
    }
}

pub(crate) fn put_u32(s: &mut [u8], at: usize, v: u32) {
    s[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(s: &mut [u8], at: usize, v: u64) {
    s[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn truncated() -> FormatError {
    FormatError::PvHeader("structure cut short".into())
}

/// A little-endian `u32` at `at`; an error, never a panic, when `s` is too short.
pub(crate) fn get_u32(s: &[u8], at: usize) -> Result<u32, FormatError> {
    let b = s.get(at..at.checked_add(4).ok_or_else(truncated)?);
    b.and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(truncated)
}

/// A little-endian `u64` at `at`; an error, never a panic, when `s` is too short.
pub(crate) fn get_u64(s: &[u8], at: usize) -> Result<u64, FormatError> {
    let b = s.get(at..at.checked_add(8).ok_or_else(truncated)?);
    b.and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label of a 64 MiB PV added by real vgextend (reference doc, section 2).
    fn real_label() -> [u8; 512] {
        let mut s = [0u8; 512];
        let words: &[(usize, &[u8])] = &[
            (
                0x00,
                b"LABELONE\x01\0\0\0\0\0\0\0\x03\x63\xe0\x1b\x20\0\0\0LVM2 001",
            ),
            (0x20, b"MT4CT6OeRG80XPXEhcDyQ3JOkyb0EMTL"),
            (0x40, b"\0\0\0\x04\0\0\0\0\0\0\x10\0\0\0\0\0"),
            (0x68, b"\0\x10\0\0\0\0\0\0\0\xf0\x0f\0\0\0\0\0"),
            (0x88, b"\x02\0\0\0\x01\0\0\0"),
        ];
        for (at, b) in words {
            s[*at..*at + b.len()].copy_from_slice(b);
        }
        s
    }

    #[test]
    fn decodes_and_reencodes_real_label() {
        let raw = real_label();
        let mut head = vec![0u8; 2048];
        head[512..1024].copy_from_slice(&raw);
        let l = PvLabel::find(&head).unwrap();
        assert_eq!(l.sector, 1);
        assert_eq!(l.pv_uuid.dashed(), "MT4CT6-OeRG-80XP-XEhc-DyQ3-JOky-b0EMTL");
        assert_eq!(l.device_size, 64 << 20);
        assert_eq!(l.ext_flags, PV_EXT_USED);
        let ours = PvLabel::new_in_vg(l.pv_uuid, 64 << 20, DEFAULT_PE_START_SECTORS);
        assert_eq!(ours, l);
        assert_eq!(ours.encode().unwrap(), raw);
    }

    #[test]
    fn too_many_areas_are_an_error_not_a_panic() {
        let mut l = PvLabel::new_in_vg(Uuid::from_random([1; 32]), 64 << 20, 2048);
        let many = vec![DiskLocn { offset: 1, size: 1 }; 26];
        l.data_areas = many.clone();
        assert!(l.encode().is_err());
        l.data_areas = many[..25].to_vec();
        l.metadata_areas.clear();
        assert!(l.encode().is_err(), "no room for the extension");
        l.ext_version = 0;
        l.ext_flags = 0;
        let raw = l.encode().unwrap();
        let mut head = vec![0u8; 2048];
        head[512..1024].copy_from_slice(&raw);
        assert_eq!(PvLabel::find(&head).unwrap(), l);
        // Cut short: a label in the last, partial sector is not read past the end.
        assert_eq!(PvLabel::find(&head[..600]), Err(FormatError::NoLabel));
    }

    #[test]
    fn rejects_bad_checksum_and_missing_label() {
        let mut head = vec![0u8; 2048];
        assert_eq!(PvLabel::find(&head), Err(FormatError::NoLabel));
        head[512..1024].copy_from_slice(&real_label());
        head[600] ^= 1;
        assert!(matches!(
            PvLabel::find(&head),
            Err(FormatError::LabelChecksum { .. })
        ));
    }
}
