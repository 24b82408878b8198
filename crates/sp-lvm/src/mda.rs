//! The metadata-area header (`mda_header`), its raw locations and the circular buffer the
//! text metadata lives in (lvm2 `lib/format_text/format-text.c`).

use crate::label::{get_u32, get_u64, put_u32, put_u64};
use crate::{crc, round_up, FormatError, SECTOR};

/// `FMTT_MAGIC`.
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// `FMTT_VERSION`.
pub const MDA_VERSION: u32 = 1;
/// Bytes of the header at the area start; text starts after it.
pub const MDA_HEADER_SIZE: u64 = 512;
/// Largest text (NUL included) read or written, whatever the area's size: 64 MiB, 128
/// times the text of a VG that fills lvm2's default 1 MiB area. What a header claims
/// beyond it is refused before anything is allocated.
pub const MAX_TEXT_SIZE: u64 = 64 << 20;
/// `RAW_LOCN_IGNORED`.
pub const RAW_LOCN_IGNORED: u32 = 1;

/// Where one copy of the text metadata sits, relative to the area start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLocn {
    pub offset: u64,
    /// Text length including the terminating NUL.
    pub size: u64,
    pub checksum: u32,
    pub flags: u32,
}

/// The 512-byte header at the start of a metadata area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaHeader {
    /// Absolute byte offset of the area (and of this header).
    pub start: u64,
    /// Area size in bytes, header included.
    pub size: u64,
    /// `raw_locn[0]`: the committed metadata, if any.
    pub committed: Option<RawLocn>,
    /// `raw_locn[1]`: the precommitted metadata, if any.
    pub precommit: Option<RawLocn>,
}

/// One write of a text copy: absolute device offset and the bytes (zero-padded to a
/// sector, as lvm2 writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextWrite {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl MdaHeader {
    /// An empty header for a fresh area.
    pub fn empty(start: u64, size: u64) -> Self {
        MdaHeader {
            start,
            size,
            committed: None,
            precommit: None,
        }
    }

    pub fn encode(&self) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[4..20].copy_from_slice(MDA_MAGIC);
        put_u32(&mut s, 20, MDA_VERSION);
        put_u64(&mut s, 24, self.start);
        put_u64(&mut s, 32, self.size);
        for (at, rl) in [(40, self.committed), (64, self.precommit)] {
            if let Some(rl) = rl {
                put_u64(&mut s, at, rl.offset);
                put_u64(&mut s, at + 8, rl.size);
                put_u32(&mut s, at + 16, rl.checksum);
                put_u32(&mut s, at + 20, rl.flags);
            }
        }
        let c = crc::calc(&s[4..]);
        put_u32(&mut s, 0, c);
        s
    }

    /// Decodes the header found at absolute offset `expected_start` and checks it on
    /// its own: checksum, magic, version, start, an area of at least two sectors whose
    /// end does not wrap, and raw locations inside the area (see
    /// [`decode_within`](Self::decode_within) for the device-size check).
    pub fn decode(s: &[u8], expected_start: u64) -> Result<Self, FormatError> {
        let h = Self::decode_unchecked_locns(s, expected_start)?;
        h.check_locns()?;
        Ok(h)
    }

    /// The header's own fields checked, its raw locations not yet.
    fn decode_unchecked_locns(s: &[u8], expected_start: u64) -> Result<Self, FormatError> {
        let s = s
            .get(..512)
            .ok_or_else(|| FormatError::MdaHeader("shorter than a sector".into()))?;
        if get_u32(s, 0)? != crc::calc(&s[4..]) {
            return Err(FormatError::MdaHeader("checksum mismatch".into()));
        }
        if s.get(4..20) != Some(&MDA_MAGIC[..]) {
            return Err(FormatError::MdaHeader("wrong magic".into()));
        }
        let version = get_u32(s, 20)?;
        if version != MDA_VERSION {
            return Err(FormatError::MdaHeader(format!("version {version}")));
        }
        let start = get_u64(s, 24)?;
        if start != expected_start {
            return Err(FormatError::MdaHeader(format!(
                "start {start} where {expected_start} was expected"
            )));
        }
        let size = get_u64(s, 32)?;
        if size < MDA_HEADER_SIZE + SECTOR {
            return Err(FormatError::MdaHeader(format!(
                "area size {size} is smaller than a header and one sector of text"
            )));
        }
        if start.checked_add(size).is_none() {
            return Err(FormatError::MdaHeader(format!(
                "area at {start} of {size} bytes wraps around"
            )));
        }
        let locn = |at: usize| -> Result<Option<RawLocn>, FormatError> {
            let offset = get_u64(s, at)?;
            if offset == 0 {
                return Ok(None);
            }
            Ok(Some(RawLocn {
                offset,
                size: get_u64(s, at + 8)?,
                checksum: get_u32(s, at + 16)?,
                flags: get_u32(s, at + 20)?,
            }))
        };
        Ok(MdaHeader {
            start,
            size,
            committed: locn(40)?,
            precommit: locn(64)?,
        })
    }

    fn check_locns(&self) -> Result<(), FormatError> {
        for (slot, rl) in [
            ("committed", self.committed),
            ("precommitted", self.precommit),
        ] {
            if let Some(rl) = rl {
                self.check_locn(rl)
                    .map_err(|why| FormatError::MdaHeader(format!("{slot} text {why}")))?;
            }
        }
        Ok(())
    }

    /// [`decode`](Self::decode), and the area must end within the device (`device_size`
    /// bytes): a header's sizes are checked against the device before anything is
    /// read or allocated from them.
    pub fn decode_within(
        s: &[u8],
        expected_start: u64,
        device_size: u64,
    ) -> Result<Self, FormatError> {
        let h = Self::decode_unchecked_locns(s, expected_start)?;
        // start + size was checked not to wrap.
        if h.start.saturating_add(h.size) > device_size {
            return Err(FormatError::MdaHeader(format!(
                "area at {} of {} bytes ends beyond the device of {device_size} bytes",
                h.start, h.size
            )));
        }
        h.check_locns()?;
        Ok(h)
    }

    /// Why a raw location cannot be in this area, if it cannot: its offset in the text
    /// space `[512, size)`, its length (NUL included) at least one byte and at most the
    /// text space (lvm2 refuses larger ones).
    fn check_locn(&self, rl: RawLocn) -> Result<(), String> {
        if rl.offset < MDA_HEADER_SIZE || rl.offset >= self.size {
            return Err(format!(
                "offset {} is outside the area's text space [{MDA_HEADER_SIZE}, {})",
                rl.offset, self.size
            ));
        }
        if rl.size > MAX_TEXT_SIZE {
            return Err(format!(
                "size {} is larger than the {MAX_TEXT_SIZE} bytes loopvg reads",
                rl.size
            ));
        }
        if rl.size == 0 || rl.size > self.size - MDA_HEADER_SIZE {
            return Err(format!(
                "size {} does not fit the area's {} bytes of text space",
                rl.size,
                self.size - MDA_HEADER_SIZE
            ));
        }
        Ok(())
    }

    /// Largest text (NUL included) the area holds next to a previous copy (0 for an area
    /// too small to hold any).
    pub fn max_text(&self) -> u64 {
        (self.size.saturating_sub(MDA_HEADER_SIZE) / 2)
            .saturating_sub(SECTOR)
            .min(MAX_TEXT_SIZE)
    }

    /// Where the committed text is, as absolute `(offset, length)` pieces (two when it
    /// wraps), or `None` when the area holds no (or ignored) metadata. The lengths sum
    /// to the text's size, which is at most the area's text space.
    pub fn committed_pieces(&self) -> Result<Option<Vec<(u64, u64)>>, FormatError> {
        let Some(rl) = self.committed.filter(|rl| rl.flags & RAW_LOCN_IGNORED == 0) else {
            return Ok(None);
        };
        self.check_locn(rl)
            .map_err(|why| FormatError::MdaHeader(format!("committed text {why}")))?;
        let outside = || FormatError::MdaHeader("text location outside the area".into());
        self.pieces(rl.offset, rl.size)?
            .into_iter()
            .map(|(off, len)| Ok((self.start.checked_add(off).ok_or_else(outside)?, len)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Checks text read from [`committed_pieces`](Self::committed_pieces) against the
    /// committed checksum.
    pub fn check_text(&self, text: &[u8]) -> Result<(), FormatError> {
        match self.committed {
            Some(rl) if rl.size == text.len() as u64 && crc::calc(text) == rl.checksum => Ok(()),
            _ => Err(FormatError::TextChecksum),
        }
    }

    /// The committed text (NUL included), checked. `area` holds the whole area, read
    /// from `start`.
    pub fn committed_text(&self, area: &[u8]) -> Result<Option<Vec<u8>>, FormatError> {
        let Some(pieces) = self.committed_pieces()? else {
            return Ok(None);
        };
        if (area.len() as u64) < self.size {
            return Err(FormatError::MdaHeader("area shorter than its size".into()));
        }
        let short = || FormatError::MdaHeader("text location outside the area".into());
        let mut text = Vec::new();
        for (off, len) in pieces {
            let at = usize::try_from(off - self.start).map_err(|_| short())?;
            let len = usize::try_from(len).map_err(|_| short())?;
            let end = at.checked_add(len).ok_or_else(short)?;
            text.extend_from_slice(area.get(at..end).ok_or_else(short)?);
        }
        self.check_text(&text)?;
        Ok(Some(text))
    }

    /// Where the next copy goes (lvm2 `_next_rlocn_offset`), relative to the area start.
    /// An old location that does not fit the area is an error, not a wrapped sum.
    fn next_offset(&self) -> Result<u64, FormatError> {
        let Some(old) = self.committed else {
            return Ok(MDA_HEADER_SIZE);
        };
        self.check_locn(old)
            .map_err(|why| FormatError::MdaHeader(format!("committed text {why}")))?;
        // check_locn: offset < size and old.size <= size - 512, so none of these wrap
        // for any size decode accepts; checked all the same.
        let bad = || FormatError::MdaHeader("committed text location wraps around".into());
        let end = old.offset.checked_add(old.size).ok_or_else(bad)?;
        let old_last = if end > self.size {
            (end - self.size)
                .checked_add(MDA_HEADER_SIZE - 1)
                .ok_or_else(bad)?
        } else {
            end - 1
        };
        if self.size.saturating_sub(old_last) < SECTOR {
            return Ok(MDA_HEADER_SIZE);
        }
        let n = round_up(old_last.checked_add(1).ok_or_else(bad)?, SECTOR).ok_or_else(bad)?;
        Ok(if n > self.size - SECTOR {
            MDA_HEADER_SIZE
        } else {
            n
        })
    }

    /// The linear `(relative offset, length)` pieces of a copy that may wrap (offset in
    /// the text space, length at most the text space).
    fn pieces(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>, FormatError> {
        let bad = || FormatError::MdaHeader("text location outside the area".into());
        if offset < MDA_HEADER_SIZE || offset >= self.size || len > self.size - MDA_HEADER_SIZE {
            return Err(bad());
        }
        if offset.checked_add(len).ok_or_else(bad)? <= self.size {
            Ok(vec![(offset, len)])
        } else {
            let first = self.size - offset;
            Ok(vec![(offset, first), (MDA_HEADER_SIZE, len - first)])
        }
    }

    /// Plans a new copy of `text` (NUL included): its location and the writes, each
    /// zero-padded to a sector, none touching the committed copy. Apply the writes, sync,
    /// then write the header with `committed` set to the returned location.
    pub fn place_text(&self, text: &[u8]) -> Result<(RawLocn, Vec<TextWrite>), FormatError> {
        let len = text.len() as u64;
        if len == 0 || len > self.max_text() {
            return Err(FormatError::TextTooLarge {
                len,
                max: self.max_text(),
            });
        }
        let offset = self.next_offset()?;
        let old = match self.committed {
            Some(old) => self.pieces(old.offset, old.size)?,
            None => Vec::new(),
        };
        let mut writes = Vec::new();
        let mut rest = text;
        for (off, n) in self.pieces(offset, len)? {
            // off < size and n <= size - 512: neither the rounding nor the sums wrap.
            let padded = round_up(n, SECTOR).unwrap_or(u64::MAX).min(self.size - off);
            let n = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            let mut bytes = piece.to_vec();
            bytes.resize(usize::try_from(padded).unwrap_or(n), 0);
            let clash = old
                .iter()
                .any(|&(o, l)| o < off.saturating_add(padded) && off < o.saturating_add(l));
            if clash {
                return Err(FormatError::TextTooLarge {
                    len,
                    max: self.max_text(),
                });
            }
            writes.push(TextWrite {
                offset: self.start.saturating_add(off),
                bytes,
            });
        }
        let locn = RawLocn {
            offset,
            size: len,
            checksum: crc::calc(text),
            flags: 0,
        };
        Ok((locn, writes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::{DEFAULT_MDA_SIZE, DEFAULT_MDA_START};

    /// Applies planned writes to an in-memory area.
    fn apply(area: &mut [u8], start: u64, writes: &[TextWrite]) {
        for w in writes {
            let at = (w.offset - start) as usize;
            area[at..at + w.bytes.len()].copy_from_slice(&w.bytes);
        }
    }

    #[test]
    fn real_header_decodes_and_reencodes() {
        // The header of the reference's 64 MiB PV: text at 512, 1011 bytes, crc 0x2bfe257c.
        let h = MdaHeader {
            start: DEFAULT_MDA_START,
            size: DEFAULT_MDA_SIZE,
            committed: Some(RawLocn {
                offset: 512,
                size: 1011,
                checksum: 0x2bfe_257c,
                flags: 0,
            }),
            precommit: None,
        };
        let raw = h.encode();
        assert_eq!(&raw[0..4], &[0xd6, 0x1e, 0x1c, 0x15]);
        assert_eq!(MdaHeader::decode(&raw, DEFAULT_MDA_START).unwrap(), h);
        let mut bad = raw;
        bad[100] = 1;
        assert!(MdaHeader::decode(&bad, DEFAULT_MDA_START).is_err());
        assert!(MdaHeader::decode(&raw, 8192).is_err());
    }

    #[test]
    fn copies_follow_each_other_and_wrap() {
        let size = 8 * SECTOR; // a tiny area: text space is sectors 1..8
        let mut h = MdaHeader::empty(1000, size);
        let mut area = vec![0u8; size as usize];
        let mut offsets = Vec::new();
        for i in 0..12u8 {
            let mut text = vec![b'a' + i; 700];
            text.push(0);
            let (locn, writes) = h.place_text(&text).unwrap();
            apply(&mut area, 1000, &writes);
            h.committed = Some(locn);
            assert_eq!(h.committed_text(&area).unwrap().unwrap(), text);
            offsets.push(locn.offset);
        }
        // the fourth copy starts in the last sector and wraps; the fifth follows it
        assert_eq!(&offsets[..5], &[512, 1536, 2560, 3584, 1024]);
        assert!(h.place_text(&vec![1u8; 2000]).is_err());
    }

    #[test]
    fn wrapping_copy_is_split() {
        let size = 8 * SECTOR;
        let mut h = MdaHeader::empty(0, size);
        h.committed = Some(RawLocn {
            offset: 1024,
            size: 2000,
            checksum: 0,
            flags: 0,
        });
        // old copy ends at 3024 -> next at 3072; 900 bytes wrap at 4096 back to 512.
        let (locn, writes) = h.place_text(&[7u8; 900]).unwrap();
        assert_eq!(locn.offset, 3072);
        assert_eq!(writes[0].offset, 3072);
        assert_eq!(writes[0].bytes.len(), 1024);
        assert_eq!(writes.len(), 1);
        let (_, writes) = h.place_text(&[7u8; 1200]).unwrap();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[1].offset, 512);
        assert_eq!(writes[1].bytes.len(), 512);
    }

    #[test]
    fn sizes_and_offsets_from_the_disk_never_wrap() {
        // An area smaller than its header: no text fits, nothing underflows.
        assert_eq!(MdaHeader::empty(0, 100).max_text(), 0);
        assert!(MdaHeader::empty(0, 100).place_text(b"x\0").is_err());
        // A committed copy whose end is past 2^64.
        let mut h = MdaHeader::empty(0, u64::MAX);
        h.committed = Some(RawLocn {
            offset: u64::MAX - 10,
            size: u64::MAX - 1024,
            checksum: 0,
            flags: 0,
        });
        assert!(h.committed_pieces().is_err());
        assert!(h.place_text(b"x\0").is_err());
        // Outside the area: refused, not read.
        h.size = 8 * SECTOR;
        assert!(h.committed_pieces().is_err());
        assert!(h.place_text(b"x\0").is_err());
    }

    #[test]
    fn header_sizes_are_checked_before_anything_is_read() {
        let mut h = MdaHeader::empty(4096, (32 << 20) + 512);
        h.committed = Some(RawLocn {
            offset: 512,
            size: 32 << 20,
            checksum: 0,
            flags: 0,
        });
        let raw = h.encode();
        // Alone it is consistent (the text fits the area it claims) ...
        assert!(MdaHeader::decode(&raw, 4096).is_ok());
        // ... but not the 16 KiB device it came from.
        let e = MdaHeader::decode_within(&raw, 4096, 16384).unwrap_err();
        assert!(e.to_string().contains("ends beyond the device"), "{e}");
        // Beyond what is ever read, whatever the area says.
        let mut huge = MdaHeader::empty(4096, (2 << 40) + 512);
        huge.committed = h.committed.map(|rl| RawLocn {
            size: 2 << 40,
            ..rl
        });
        let e = MdaHeader::decode(&huge.encode(), 4096).unwrap_err();
        assert!(
            e.to_string().contains("larger than the 67108864 bytes"),
            "{e}"
        );
        // The area's own bounds: a copy larger than its text space is refused.
        h.size = 8 * SECTOR;
        let e = MdaHeader::decode(&h.encode(), 4096).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        // An area whose end wraps around.
        let e = MdaHeader::decode(&MdaHeader::empty(4096, u64::MAX).encode(), 4096).unwrap_err();
        assert!(e.to_string().contains("wraps around"), "{e}");
    }
}
