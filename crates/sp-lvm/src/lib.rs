//! Floor 2: the LVM2 on-disk format, pure code without syscalls.
//!
//! * [`crc`] — LVM's CRC-32 (initial value `0xf597a6cf`, no final XOR).
//! * [`label`] — the label sector (`LABELONE`) with the PV header and its extension.
//! * [`mda`] — the metadata-area header, raw locations and the circular text buffer.
//! * [`config`] — LVM's config text (sections, `key = value`), parsed and written back
//!   byte for byte.
//! * [`vg`] — the volume-group text metadata as a typed view over [`config`].
//! * [`size`] — sizes as lvm2 reads them (`20G`, `1.5G`, `100` = MiB) and shows them
//!   (`--units`), and [`size::Size`].
//! * [`uuid`] — LVM identifiers (32 characters, dashed 6-4-4-4-4-4-6 in text).
//!
//! Sizes are bytes unless a name says `sectors`; a sector is 512 bytes.

pub mod config;
mod crc;
pub mod label;
pub mod mda;
pub mod size;
pub mod uuid;
pub mod vg;

/// Bytes in a sector, LVM's unit for on-disk offsets in the text metadata.
pub const SECTOR: u64 = 512;

/// Everything that can be wrong with bytes that should be LVM2 on-disk structures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("no LVM2 label in the first four sectors")]
    NoLabel,
    #[error("LVM2 label checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    LabelChecksum { stored: u32, computed: u32 },
    #[error("bad PV header: {0}")]
    PvHeader(String),
    #[error("bad metadata area header: {0}")]
    MdaHeader(String),
    #[error("metadata text checksum mismatch")]
    TextChecksum,
    #[error("metadata text of {len} bytes does not fit the metadata area (at most {max} bytes)")]
    TextTooLarge { len: u64, max: u64 },
    #[error("metadata text, line {line}: {msg}")]
    Syntax { line: usize, msg: String },
    #[error("metadata: {0}")]
    Metadata(String),
}

/// Rounds `v` up to a multiple of `to` (non-zero); `None` when that does not fit a `u64`.
pub(crate) fn round_up(v: u64, to: u64) -> Option<u64> {
    v.div_ceil(to).checked_mul(to)
}
