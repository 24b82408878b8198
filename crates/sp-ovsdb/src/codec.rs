//! Streaming JSON decoder: OVSDB peers send JSON objects back to back with no delimiter,
//! and a read may end anywhere inside one.
//!
//! Bytes are scanned once (bracket depth, strings and escapes tracked across reads) to
//! find where each top-level value ends; only then is that slice parsed, so a large
//! message arriving in many reads costs linear time.

use serde_json::Value;

use crate::Error;

/// Accumulates bytes from the socket and yields each complete JSON value once it has
/// arrived whole.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    scanned: usize,
    /// Open `{`/`[` at `scanned`; 0 before a value starts.
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Decoder {
    /// Appends bytes just read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete value, `Ok(None)` when more bytes are needed.
    /// A syntax error is final: the stream cannot be resynchronised.
    pub fn next_value(&mut self) -> Result<Option<Value>, Error> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                    // Whitespace between values.
                    self.buf.drain(..self.scanned);
                    self.scanned = 0;
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.scanned;
                        self.scanned = 0;
                        let value = serde_json::from_slice(&self.buf[..end]);
                        self.buf.drain(..end);
                        return value
                            .map(Some)
                            .map_err(|e| Error::Protocol(format!("invalid JSON: {e}")));
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                _ if self.depth > 0 => {}
                other => {
                    return Err(Error::Protocol(format!(
                        "expected a JSON object, got byte {:?}",
                        char::from(other)
                    )))
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drain(d: &mut Decoder) -> Vec<Value> {
        let mut out = vec![];
        while let Some(v) = d.next_value().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn objects_back_to_back_split_at_every_byte() {
        let stream = br#"{"id":1,"result":["Open_vSwitch"],"error":null}{"id":"echo","method":"echo","params":[]}  {"method":"update","params":["m",{"T":{"u":{"new":{"s":"a}{b\"]\\"}}}}]}"#;
        for cut in 0..=stream.len() {
            let mut d = Decoder::default();
            d.push(&stream[..cut]);
            let mut got = drain(&mut d);
            d.push(&stream[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0]["result"], json!(["Open_vSwitch"]));
            assert_eq!(got[1]["method"], "echo");
            assert_eq!(got[2]["params"][1]["T"]["u"]["new"]["s"], "a}{b\"]\\");
        }
    }

    #[test]
    fn byte_by_byte_with_whitespace_between() {
        let stream = b" {\"a\":1}\n\n{\"b\":[2,3]}\n";
        let mut d = Decoder::default();
        let mut got = vec![];
        for b in stream {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, vec![json!({"a":1}), json!({"b":[2,3]})]);
        assert!(d.buf.is_empty());
    }

    #[test]
    fn a_large_message_in_many_reads() {
        let rows: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("tap{i}"), "options": ["map", [["k", "v}"]]]}))
            .collect();
        let msg = serde_json::to_vec(&json!({"id": 7, "result": rows, "error": null})).unwrap();
        let mut d = Decoder::default();
        let mut got = vec![];
        for chunk in msg.chunks(1000) {
            d.push(chunk);
            got.extend(drain(&mut d));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["result"][4999]["name"], "tap4999");
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decoder::default();
        d.push(b"{\"a\":1}}");
        assert_eq!(d.next_value().unwrap(), Some(json!({"a":1})));
        assert!(d.next_value().is_err());
        let mut d = Decoder::default();
        d.push(b"{\"a\":tru}");
        assert!(d.next_value().is_err());
        let mut d = Decoder::default();
        d.push(b"42");
        assert!(d.next_value().is_err());
    }
}
