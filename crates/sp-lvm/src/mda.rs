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

    /// Decodes the header found at absolute offset `expected_start`.
    pub fn decode(s: &[u8], expected_start: u64) -> Result<Self, FormatError> {
        let s = s
            .get(..512)
            .ok_or_else(|| FormatError::MdaHeader("shorter than a sector".into()))?;
        if get_u32(s, 0) != crc::calc(&s[4..]) {
            return Err(FormatError::MdaHeader("checksum mismatch".into()));
        }
        if &s[4..20] != MDA_MAGIC {
            return Err(FormatError::MdaHeader("wrong magic".into()));
        }
        let version = get_u32(s, 20);
        if version != MDA_VERSION {
            return Err(FormatError::MdaHeader(format!("version {version}")));
        }
        let start = get_u64(s, 24);
        if start != expected_start {
            return Err(FormatError::MdaHeader(format!(
                "start {start} where {expected_start} was expected"
            )));
        }
        let locn = |at: usize| {
            let offset = get_u64(s, at);
            (offset != 0).then(|| RawLocn {
                offset,
                size: get_u64(s, at + 8),
                checksum: get_u32(s, at + 16),
                flags: get_u32(s, at + 20),
            })
        };
        Ok(MdaHeader {
            start,
            size: get_u64(s, 32),
            committed: locn(40),
            precommit: locn(64),
        })
    }

    /// Largest text (NUL included) the area holds next to a previous copy.
    pub fn max_text(&self) -> u64 {
        (self.size - MDA_HEADER_SIZE) / 2 - SECTOR
    }

    /// Where the committed text is, as absolute `(offset, length)` pieces (two when it
    /// wraps), or `None` when the area holds no (or ignored) metadata.
    pub fn committed_pieces(&self) -> Result<Option<Vec<(u64, u64)>>, FormatError> {
        let Some(rl) = self.committed.filter(|rl| rl.flags & RAW_LOCN_IGNORED == 0) else {
            return Ok(None);
        };
        if rl.offset < MDA_HEADER_SIZE
            || rl.offset >= self.size
            || rl.size > self.size - MDA_HEADER_SIZE
        {
            return Err(FormatError::MdaHeader(
                "text location outside the area".into(),
            ));
        }
        Ok(Some(
            self.pieces(rl.offset, rl.size)
                .into_iter()
                .map(|(off, len)| (self.start + off, len))
                .collect(),
        ))
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
        if area.len() < self.size as usize {
            return Err(FormatError::MdaHeader("area shorter than its size".into()));
        }
        let mut text = Vec::new();
        for (off, len) in pieces {
            let at = (off - self.start) as usize;
            text.extend_from_slice(&area[at..at + len as usize]);
        }
        self.check_text(&text)?;
        Ok(Some(text))
    }

    /// Where the next copy goes (lvm2 `_next_rlocn_offset`), relative to the area start.
    fn next_offset(&self) -> u64 {
        let Some(old) = self.committed else {
            return MDA_HEADER_SIZE;
        };
        let end = old.offset + old.size;
        let old_last = if end > self.size {
            end - self.size + MDA_HEADER_SIZE - 1
        } else {
            end - 1
        };
        if self.size - old_last < SECTOR {
            return MDA_HEADER_SIZE;
        }
        let n = round_up(old_last + 1, SECTOR);
        if n > self.size - SECTOR {
            MDA_HEADER_SIZE
        } else {
            n
        }
    }

    /// The linear `(relative offset, length)` pieces of a copy that may wrap.
    fn pieces(&self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        if offset + len <= self.size {
            vec![(offset, len)]
        } else {
            let first = self.size - offset;
            vec![(offset, first), (MDA_HEADER_SIZE, len - first)]
        }
    }

    /// Plans a new copy of `text` (NUL included): its location and the writes, each
    /// zero-padded to a sector, none touching the committed copy. Apply the writes, sync,
    /// then write the header with `committed` set to the returned location.
    pub fn place_text(&self, text: &[u8]) -> Result<(RawLocn, Vec<TextWrite>), FormatError> {
        let len = text.len() as u64;
        if len > self.max_text() {
            return Err(FormatError::TextTooLarge {
                len,
                max: self.max_text(),
            });
        }
        let offset = self.next_offset();
        let mut writes = Vec::new();
        let mut used = 0u64;
        for (off, n) in self.pieces(offset, len) {
            let padded = round_up(n, SECTOR).min(self.size - off);
            let mut bytes = text[used as usize..(used + n) as usize].to_vec();
            bytes.resize(padded as usize, 0);
            if let Some(old) = self.committed {
                let clash = self
                    .pieces(old.offset, old.size)
                    .iter()
                    .any(|&(o, l)| o < off + padded && off < o + l);
                if clash {
                    return Err(FormatError::TextTooLarge {
                        len,
                        max: self.max_text(),
                    });
                }
            }
            writes.push(TextWrite {
                offset: self.start + off,
                bytes,
            });
            used += n;
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
}
