//! Netlink attributes: written into a buffer (nested ones included) and read back by
//! an iterator that is total — any bytes give attributes or an error, never a panic,
//! and every step moves forward, so no input loops.

use crate::Error;

/// `NLA_F_NESTED`: set on nested attributes, as the kernel's policy expects.
const NLA_F_NESTED: u16 = 1 << 15;
/// The type bits of `nla_type`.
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

/// A buffer that attributes are appended to. An attribute too long for netlink's
/// 16-bit length is not written and marks the writer `overflowed`.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
    pub(crate) overflowed: bool,
}

fn pad(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

impl Writer {
    pub(crate) fn bytes(&mut self, kind: u16, value: &[u8]) {
        let Ok(len) = u16::try_from(4 + value.len()) else {
            self.overflowed = true;
            return;
        };
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        pad(&mut self.buf);
    }

    /// A string, NUL-terminated as the kernel's `NLA_STRING` policy accepts it.
    pub(crate) fn str(&mut self, kind: u16, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.bytes(kind, &v);
    }

    pub(crate) fn be32(&mut self, kind: u16, value: u32) {
        self.bytes(kind, &value.to_be_bytes());
    }

    pub(crate) fn be64(&mut self, kind: u16, value: u64) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// A nested attribute whose contents `f` writes.
    pub(crate) fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Writer)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        f(self);
        let Ok(len) = u16::try_from(self.buf.len() - start) else {
            self.overflowed = true;
            self.buf.truncate(start);
            return;
        };
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }
}

/// One attribute read: its type (flags masked off) and value.
#[derive(Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

/// The attributes in `buf`, in order; a malformed one ends the walk with an error.
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = Result<Attr<'_>, Error>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (len, kind) = match rest {
            [a, b, c, d, ..] => (
                usize::from(u16::from_ne_bytes([*a, *b])),
                u16::from_ne_bytes([*c, *d]) & NLA_TYPE_MASK,
            ),
            _ => {
                rest = &[];
                return Some(Err(Error::malformed("attribute header cut short")));
            }
        };
        if len < 4 || len > rest.len() {
            rest = &[];
            return Some(Err(Error::malformed(format!(
                "attribute of length {len} in {} bytes",
                buf.len()
            ))));
        }
        let value = &rest[4..len];
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok(Attr { kind, value }))
    })
}

impl<'a> Attr<'a> {
    pub(crate) fn be32(&self) -> Result<u32, Error> {
        self.value
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| Error::malformed(format!("attribute {} is not 4 bytes", self.kind)))
    }

    pub(crate) fn be64(&self) -> Result<u64, Error> {
        self.value
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::malformed(format!("attribute {} is not 8 bytes", self.kind)))
    }

    /// A string attribute: up to its first NUL, UTF-8.
    pub(crate) fn str(&self) -> Result<String, Error> {
        self.text().map(str::to_owned)
    }

    /// The string, borrowed from the message (up to its NUL).
    pub(crate) fn text(&self) -> Result<&'a str, Error> {
        let end = self
            .value
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.value.len());
        std::str::from_utf8(&self.value[..end])
            .map_err(|_| Error::malformed(format!("attribute {} is not UTF-8", self.kind)))
    }

    pub(crate) fn nested(&self) -> impl Iterator<Item = Result<Attr<'a>, Error>> {
        attrs(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_read_back() {
        let mut w = Writer::default();
        w.str(1, "nat");
        w.nest(2, |w| {
            w.be32(1, 7);
            w.bytes(2, &[1, 2, 3]);
        });
        let got: Vec<_> = attrs(&w.buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].str().unwrap(), "nat");
        let inner: Vec<_> = got[1].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].be32().unwrap(), 7);
        assert_eq!(inner[1].value, &[1, 2, 3]);
    }

    #[test]
    fn cut_and_zero_lengths_are_errors() {
        assert!(attrs(&[4, 0]).any(|a| a.is_err()));
        assert!(attrs(&[0, 0, 1, 0]).any(|a| a.is_err()));
        assert!(attrs(&[200, 0, 1, 0, 0, 0, 0, 0]).any(|a| a.is_err()));
        // a valid attribute whose padding is missing at the end of the buffer
        let got: Vec<_> = attrs(&[5, 0, 1, 0, 9]).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().value, &[9]);
    }
}
