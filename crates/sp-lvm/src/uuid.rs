//! LVM identifiers: 32 characters of `[0-9a-zA-Z]`, written undashed in the label and
//! dashed 6-4-4-4-4-4-6 in the text metadata.

use crate::FormatError;

const CHARS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const GROUPS: [usize; 7] = [6, 4, 4, 4, 4, 4, 6];

/// An LVM identifier (PV or VG id).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid([u8; 32]);

impl Uuid {
    /// Builds an identifier from 32 random bytes (the caller owns the randomness).
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Uuid(bytes.map(|b| CHARS[usize::from(b) % CHARS.len()]))
    }

    /// Parses the undashed 32-character form (as stored in the label).
    pub fn from_raw(raw: &[u8]) -> Result<Self, FormatError> {
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| FormatError::Metadata(format!("uuid of {} bytes", raw.len())))?;
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return Err(FormatError::Metadata(format!(
                "uuid {:?} has characters outside [0-9a-zA-Z]",
                String::from_utf8_lossy(raw)
            )));
        }
        Ok(Uuid(bytes))
    }

    /// Parses the dashed form used in the text metadata (dashes are optional).
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let raw: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
        Self::from_raw(&raw)
    }

    /// The undashed 32 bytes, as in the label.
    pub fn raw(&self) -> &[u8; 32] {
        &self.0
    }

    /// The dashed text form.
    pub fn dashed(&self) -> String {
        let mut out = String::with_capacity(38);
        let mut at = 0;
        for (i, len) in GROUPS.iter().enumerate() {
            if i > 0 {
                out.push('-');
            }
            out.extend(self.0[at..at + len].iter().map(|&b| char::from(b)));
            at += len;
        }
        out
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dashed())
    }
}

impl std::fmt::Debug for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Uuid({})", self.dashed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_round_trip() {
        let u = Uuid::parse("4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0f").unwrap();
        assert_eq!(u.raw(), b"4pnc8A5xeH8S4NK0v8zVUi1vUm6giz0f");
        assert_eq!(u.dashed(), "4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0f");
        assert!(Uuid::parse("short").is_err());
        assert!(Uuid::parse("4pnc8A-5xeH-8S4N-K0v8-zVUi-1vUm-6giz0!").is_err());
        let r = Uuid::from_random([255; 32]);
        assert!(r.raw().iter().all(u8::is_ascii_alphanumeric));
    }
}
