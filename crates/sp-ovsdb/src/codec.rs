//! Streaming JSON decoder: OVSDB peers send JSON objects back to back with no delimiter,
//! and a read may end anywhere inside one.

use serde_json::Value;

/// Accumulates bytes from the socket and yields each complete JSON value once it has
/// arrived whole.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes just read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete value, `Ok(None)` when more bytes are needed.
    /// A syntax error is final: the stream cannot be resynchronised.
    pub fn next_value(&mut self) -> Result<Option<Value>, serde_json::Error> {
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match values.next() {
            None => {
                // Only whitespace is buffered.
                self.buf.clear();
                Ok(None)
            }
            Some(Ok(value)) => {
                let used = values.byte_offset();
                self.buf.drain(..used);
                Ok(Some(value))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(e),
        }
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
        let stream = br#"{"id":1,"result":["Open_vSwitch"],"error":null}{"id":"echo","method":"echo","params":[]}  {"method":"update","params":["m",{"T":{"u":{"new":{"s":"a}{b"}}}}]}"#;
        for cut in 0..=stream.len() {
            let mut d = Decoder::default();
            d.push(&stream[..cut]);
            let mut got = drain(&mut d);
            d.push(&stream[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0]["result"], json!(["Open_vSwitch"]));
            assert_eq!(got[1]["method"], "echo");
            assert_eq!(got[2]["params"][1]["T"]["u"]["new"]["s"], "a}{b");
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
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decoder::default();
        d.push(b"{\"a\":1}}");
        assert_eq!(d.next_value().unwrap(), Some(json!({"a":1})));
        assert!(d.next_value().is_err());
    }
}
