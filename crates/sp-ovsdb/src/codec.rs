//! Streaming JSON decoder: OVSDB peers send JSON objects back to back with no delimiter,
//! and a read may end anywhere inside one.
//!
//! Bytes are scanned once (bracket depth, strings and escapes tracked across reads) to
//! find where each top-level value ends; only then is that slice parsed. Consumed bytes
//! (values taken, whitespace between them) are only skipped over, and dropped from the
//! buffer once per exhausted buffer, so decoding costs time linear in the input however
//! it is split into reads and whatever lies between values.
//!
//! Bounds: a value may not nest deeper than [`MAX_DEPTH`] nor grow beyond
//! [`MAX_MESSAGE_SIZE`] bytes (or the limit given to [`Decoder::with_limit`]) before it
//! is complete; either is a final error, so the buffer never holds more than the limit
//! plus the last bytes pushed.

use serde_json::Value;

use crate::Error;

/// The largest JSON value (one JSON-RPC message) accepted from a peer: 64 MiB. A peer
/// that sends more without completing a value is cut off. The whole Open_vSwitch
/// database of a large host (thousands of ports) is a few MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The deepest nesting of `{`/`[` accepted. OVSDB messages nest about ten levels (an
/// update notification's map datum is at depth 9); serde_json refuses 128.
pub const MAX_DEPTH: usize = 100;

/// Accumulates bytes from the socket and yields each complete JSON value once it has
/// arrived whole.
///
/// Any input is handled without panicking: a value is either yielded, awaited, or an
/// error. Errors are final (the stream cannot be resynchronised): later calls repeat
/// the error and bytes pushed afterwards are discarded.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the value being scanned starts: bytes before it are consumed.
    start: usize,
    /// How far `buf` has been scanned.
    scanned: usize,
    /// Open `{`/`[` at `scanned`; 0 before a value starts.
    depth: usize,
    in_string: bool,
    escaped: bool,
    limit: usize,
    /// The error that ended the stream.
    failed: Option<String>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(MAX_MESSAGE_SIZE)
    }
}

/// Keep at most this much capacity once the buffer is empty, so one large message does
/// not pin its memory for the rest of the connection.
const IDLE_CAPACITY: usize = 256 * 1024;

impl Decoder {
    /// A decoder refusing values larger than `limit` bytes (the default is
    /// [`MAX_MESSAGE_SIZE`]).
    pub fn with_limit(limit: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            limit,
            failed: None,
        }
    }

    /// Appends bytes just read (discarded once the decoder has failed).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held: the incomplete value and what is pushed but not yet scanned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error.to_string());
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
        error
    }

    /// Drops the consumed bytes (called when the buffer is exhausted: each byte of an
    /// incomplete value is moved at most once per value taken before it).
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > IDLE_CAPACITY {
                self.buf.shrink_to(IDLE_CAPACITY);
            }
        } else if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.scanned -= self.start;
        self.start = 0;
    }

    /// Takes the next complete value, `Ok(None)` when more bytes are needed.
    /// A syntax error, a value nested deeper than [`MAX_DEPTH`] or larger than the limit
    /// is final: the stream cannot be resynchronised.
    pub fn next_value(&mut self) -> Result<Option<Value>, Error> {
        if let Some(e) = &self.failed {
            return Err(Error::Protocol(format!("the stream already failed: {e}")));
        }
        while self.scanned < self.buf.len() {
            if self.depth > 0 && self.scanned - self.start >= self.limit {
                let e = Error::MessageTooLarge { limit: self.limit };
                return Err(self.fail(e));
            }
            if self.in_string {
                // Skip to the next quote or backslash in one go.
                if self.escaped {
                    self.escaped = false;
                    self.scanned += 1;
                    continue;
                }
                let end = self.buf.len().min(self.start.saturating_add(self.limit));
                let rest = &self.buf[self.scanned..end];
                match rest.iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(i) => {
                        if rest[i] == b'"' {
                            self.in_string = false;
                        } else {
                            self.escaped = true;
                        }
                        self.scanned += i + 1;
                    }
                    None => self.scanned += rest.len(),
                }
                continue;
            }
            let b = self.buf[self.scanned];
            self.scanned += 1;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                    // Whitespace between values: consumed, dropped at the next compaction.
                    self.start = self.scanned;
                }
                b'{' | b'[' => {
                    if self.depth == MAX_DEPTH {
                        return Err(self.fail(Error::TooDeep { limit: MAX_DEPTH }));
                    }
                    self.depth += 1;
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let value = serde_json::from_slice(&self.buf[self.start..self.scanned]);
                        self.start = self.scanned;
                        if self.start == self.buf.len() {
                            self.compact();
                        }
                        return match value {
                            Ok(v) => Ok(Some(v)),
                            Err(e) => Err(self.fail(Error::Protocol(format!("invalid JSON: {e}")))),
                        };
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                _ if self.depth > 0 => {}
                other => {
                    return Err(self.fail(Error::Protocol(format!(
                        "expected a JSON object, got byte {:?}",
                        char::from(other)
                    ))))
                }
            }
        }
        self.compact();
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

    const MIB: usize = 1 << 20;
    /// Generous for a debug build; release timings are in docs/ovs-attach.md.
    const BOUND: std::time::Duration = std::time::Duration::from_millis(500);

    /// Feeds `stream` in 64 KiB reads (as the client's read loop does) and times it.
    fn timed(what: &str, stream: &[u8]) -> (Vec<Value>, std::time::Duration) {
        let t = std::time::Instant::now();
        let mut d = Decoder::default();
        let mut got = vec![];
        for chunk in stream.chunks(64 * 1024) {
            d.push(chunk);
            got.extend(drain(&mut d));
        }
        let took = t.elapsed();
        eprintln!("{what}: {} bytes in 64 KiB reads: {took:?}", stream.len());
        assert_eq!(d.buffered(), 0);
        (got, took)
    }

    #[test]
    fn a_mebibyte_of_whitespace_is_linear() {
        let mut stream = b"{\"a\":1}".to_vec();
        stream.extend(b" \n\t\r".repeat(MIB / 4));
        stream.extend(b"{\"b\":2}");
        let (got, took) = timed("whitespace", &stream);
        assert_eq!(got, vec![json!({"a":1}), json!({"b":2})]);
        assert!(took < BOUND, "{took:?}");
        // Byte by byte too.
        let t = std::time::Instant::now();
        let mut d = Decoder::default();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while d.next_value().unwrap().is_some() {}
        }
        eprintln!("whitespace: byte by byte: {:?}", t.elapsed());
        assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    }

    #[test]
    fn a_mebibyte_of_small_values_is_linear() {
        let one = br#"{"id":null,"method":"update","params":["m1",{}]} "#;
        let stream = one.repeat(MIB / one.len());
        let (got, took) = timed("small values", &stream);
        assert_eq!(got.len(), MIB / one.len());
        assert!(took < BOUND, "{took:?}");
    }

    #[test]
    fn one_mebibyte_value_is_linear() {
        // One long string, and one value of many small parts, each read byte by byte
        // as well as in chunks.
        let long =
            serde_json::to_vec(&json!({"id": 1, "result": "x\\\"".repeat(MIB / 5)})).unwrap();
        let rows: Vec<Value> = (0..MIB / 15)
            .map(|i| json!(["uuid", format!("{i:x}")]))
            .collect();
        let many = serde_json::to_vec(&json!({"id": 2, "result": ["set", rows]})).unwrap();
        for (what, stream) in [("one long string", long), ("one value of many parts", many)] {
            assert!(stream.len() >= MIB - 64, "{}", stream.len());
            let (got, took) = timed(what, &stream);
            assert_eq!(got.len(), 1);
            assert!(took < BOUND, "{took:?}");
            let t = std::time::Instant::now();
            let mut d = Decoder::default();
            for chunk in stream.chunks(7) {
                d.push(chunk);
                assert!(d.next_value().unwrap().is_none() || d.buffered() == 0);
            }
            eprintln!("{what}: in 7-byte reads: {:?}", t.elapsed());
            assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let mut d = Decoder::default();
        d.push(ok.as_bytes());
        assert!(d.next_value().unwrap().is_some());
        // One level more, and far more (a stack overflow for a recursive parser).
        for depth in [MAX_DEPTH + 1, 1_000_000] {
            let mut d = Decoder::default();
            d.push(format!("{{\"a\":{}", "[{\"b\":".repeat(depth)).as_bytes());
            let e = d.next_value().unwrap_err();
            assert!(matches!(e, Error::TooDeep { limit: MAX_DEPTH }), "{e}");
            assert!(e.to_string().contains("deeper than 100 levels"), "{e}");
            // Final: the rest is refused and not kept.
            d.push(b"]}");
            assert!(d.next_value().is_err());
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn a_value_larger_than_the_limit_is_refused() {
        // Exactly the limit passes, one byte more does not, however it is split.
        let at_limit = |n: usize| format!("{{\"a\":\"{}\"}}", "x".repeat(n - 8));
        assert_eq!(at_limit(100).len(), 100);
        for chunk in [1, 7, 100, 1000] {
            let mut d = Decoder::with_limit(100);
            let mut got = vec![];
            for c in at_limit(100).as_bytes().chunks(chunk) {
                d.push(c);
                got.extend(drain(&mut d));
            }
            assert_eq!(got.len(), 1);
            let mut d = Decoder::with_limit(100);
            let mut err = None;
            for c in at_limit(101).as_bytes().chunks(chunk) {
                d.push(c);
                if let Err(e) = d.next_value() {
                    err = Some(e);
                    break;
                }
            }
            let e = err.expect("refused");
            assert!(matches!(e, Error::MessageTooLarge { limit: 100 }), "{e}");
        }
        // Whitespace between values and completed values do not count.
        let mut d = Decoder::with_limit(100);
        for _ in 0..1000 {
            d.push(&[b' '; 1000]);
            d.push(at_limit(100).as_bytes());
            assert!(d.next_value().unwrap().is_some());
        }
    }

    #[test]
    fn the_default_limit_bounds_memory() {
        let mut d = Decoder::default();
        d.push(b"{\"method\":\"update\",\"params\":[\"m1\",\"");
        let chunk = vec![b'x'; MIB];
        let mut pushed = 0;
        let e = loop {
            d.push(&chunk);
            pushed += chunk.len();
            match d.next_value() {
                Ok(None) => assert!(d.buffered() <= MAX_MESSAGE_SIZE + chunk.len()),
                Ok(Some(v)) => panic!("{v}"),
                Err(e) => break e,
            }
            assert!(pushed <= MAX_MESSAGE_SIZE + chunk.len(), "never refused");
        };
        assert!(matches!(e, Error::MessageTooLarge { .. }), "{e}");
        assert_eq!(MAX_MESSAGE_SIZE, 64 * MIB);
        assert!(e.to_string().contains("more than 67108864 bytes"), "{e}");
        assert_eq!(d.buffered(), 0);
        d.push(&chunk);
        assert_eq!(d.buffered(), 0, "bytes after the failure are not kept");
    }

    #[test]
    fn every_stream_shape_is_a_value_a_wait_or_an_error() {
        // (stream, values before the end, then: None = waiting, Some(text) = error)
        let cases: &[(&[u8], usize, Option<&str>)] = &[
            (b"", 0, None),
            (b"   \n", 0, None),
            (b"{", 0, None),
            (b"{\"a\":\"}", 0, None),
            (b"{\"a\":\"\\", 0, None),
            (b"[1,2]", 1, None),
            (b"{}[]{}", 3, None),
            (b"}", 0, Some("expected a JSON object")),
            (b"]", 0, Some("expected a JSON object")),
            (b"42", 0, Some("expected a JSON object")),
            (b"\"s\"", 0, Some("expected a JSON object")),
            (b"null", 0, Some("expected a JSON object")),
            (b"{}x", 1, Some("expected a JSON object")),
            (b"{]", 0, Some("invalid JSON")),
            (b"[}", 0, Some("invalid JSON")),
            (b"{1:2}", 0, Some("invalid JSON")),
            (b"{\"a\" 1}", 0, Some("invalid JSON")),
            (b"[\"\xff\"]", 0, Some("invalid JSON")),
            (b"[\"\\u\"]", 0, Some("invalid JSON")),
            (b"{\"a\":1,}", 0, Some("invalid JSON")),
            (b"\x00", 0, Some("expected a JSON object")),
        ];
        for &(stream, values, end) in cases {
            let mut d = Decoder::default();
            d.push(stream);
            for _ in 0..values {
                assert!(d.next_value().unwrap().is_some(), "{stream:?}");
            }
            match (d.next_value(), end) {
                (Ok(None), None) => {}
                (Err(e), Some(want)) => {
                    assert!(e.to_string().contains(want), "{stream:?}: {e}");
                    assert!(d.next_value().is_err(), "errors are final");
                }
                (other, _) => panic!("{stream:?}: {other:?}"),
            }
        }
    }
}
