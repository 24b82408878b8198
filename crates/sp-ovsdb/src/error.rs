//! Every way an OVSDB conversation can fail, each with a message an operator can act on.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// An OVSDB client error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot parse OVSDB address {0:?}: expected unix:PATH or tcp:HOST:PORT")]
    BadEndpoint(String),

    #[error(
        "OVSDB socket {} does not exist — is ovsdb-server running? \
         (start Open vSwitch, or point --db at its socket)",
        .path.display()
    )]
    SocketMissing { path: PathBuf },

    #[error(
        "nothing listens on OVSDB socket {} (connection refused) — ovsdb-server is not running",
        .path.display()
    )]
    ServerNotRunning { path: PathBuf },

    #[error("cannot connect to OVSDB at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },

    #[error("OVSDB at {endpoint}: {what} got no answer within {after:?}")]
    Timeout {
        endpoint: String,
        what: String,
        after: Duration,
    },

    #[error("OVSDB connection to {endpoint} closed: {reason}")]
    Closed { endpoint: String, reason: String },

    #[error("ovsdb-server rejected {method}: {error}{}", details_suffix(.details))]
    Rpc {
        method: String,
        error: String,
        details: Option<String>,
    },

    #[error(
        "OVSDB transaction failed at operation {index} ({op}): {error}{}",
        details_suffix(.details)
    )]
    Operation {
        index: usize,
        op: String,
        error: String,
        details: Option<String>,
    },

    #[error("OVSDB transaction could not commit: {error}{}", details_suffix(.details))]
    Commit {
        error: String,
        details: Option<String>,
    },

    #[error("OVSDB protocol violation: {0}")]
    Protocol(String),

    /// A message, or a part of one, that is not what RFC 7047 says it must be. `what`
    /// names the part and what it should have been, `got` is an excerpt of what came.
    #[error("OVSDB protocol violation: malformed {what}: got {got}")]
    Malformed { what: String, got: String },

    #[error(
        "OVSDB protocol violation: the peer sent more than {limit} bytes without completing \
         a JSON value; connection dropped"
    )]
    MessageTooLarge { limit: usize },

    #[error(
        "OVSDB protocol violation: the peer nested JSON deeper than {limit} levels; \
         connection dropped"
    )]
    TooDeep { limit: usize },
}

fn details_suffix(details: &Option<String>) -> String {
    details
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl Error {
    /// Builds an error from an OVSDB `{"error": …, "details": …}` object (or a bare string).
    /// Any other JSON is shown as an excerpt.
    pub(crate) fn parts(v: &Value) -> (String, Option<String>) {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => excerpt(other),
        };
        match v {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("error").map(text).unwrap_or_else(|| excerpt(v)),
                o.get("details").filter(|d| !d.is_null()).map(text),
            ),
            other => (excerpt(other), None),
        }
    }

    /// A [`Error::Malformed`] for `got`.
    pub(crate) fn malformed(what: impl Into<String>, got: &Value) -> Error {
        Error::Malformed {
            what: what.into(),
            got: excerpt(got),
        }
    }
}

/// At most this many bytes of a peer's JSON go into an error message.
const EXCERPT_BYTES: usize = 200;
/// Nesting shown in an excerpt (deeper levels are `…`).
const EXCERPT_DEPTH: usize = 8;

/// A short rendering of `v` for error messages: at most [`EXCERPT_BYTES`] bytes (then
/// `…`), whatever the size of `v`, and bounded recursion whatever its depth.
pub(crate) fn excerpt(v: &Value) -> String {
    let mut out = String::new();
    // `Err` only means the budget ran out.
    if render(v, EXCERPT_DEPTH, &mut out).is_err() {
        out.truncate(floor_char_boundary(&out, EXCERPT_BYTES));
        out.push('…');
    }
    out
}

struct Full;

fn push(out: &mut String, s: &str) -> Result<(), Full> {
    out.push_str(s);
    if out.len() > EXCERPT_BYTES {
        Err(Full)
    } else {
        Ok(())
    }
}

fn render(v: &Value, depth: usize, out: &mut String) -> Result<(), Full> {
    match v {
        Value::Array(a) => {
            if depth == 0 {
                return push(out, if a.is_empty() { "[]" } else { "[…]" });
            }
            push(out, "[")?;
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    push(out, ",")?;
                }
                render(item, depth - 1, out)?;
            }
            push(out, "]")
        }
        Value::Object(o) => {
            if depth == 0 {
                return push(out, if o.is_empty() { "{}" } else { "{…}" });
            }
            push(out, "{")?;
            for (i, (k, item)) in o.iter().enumerate() {
                if i > 0 {
                    push(out, ",")?;
                }
                push(out, &quoted(k))?;
                push(out, ":")?;
                render(item, depth - 1, out)?;
            }
            push(out, "}")
        }
        Value::String(s) => push(
            out,
            &quoted(&s[..floor_char_boundary(s, EXCERPT_BYTES + 1)]),
        ),
        scalar => push(out, &scalar.to_string()),
    }
}

fn quoted(s: &str) -> String {
    Value::from(s).to_string()
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn excerpts_are_short_whatever_the_value() {
        assert_eq!(excerpt(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#);
        let huge = json!({"s": "é".repeat(1 << 20), "rows": vec![json!([1, 2]); 100_000]});
        let e = excerpt(&huge);
        assert!(e.len() <= EXCERPT_BYTES + 3 + 4, "{}", e.len());
        assert!(e.ends_with('…'));
        // Deep nesting built by hand (serde_json would refuse to parse it).
        let mut deep = json!(1);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(
            excerpt(&deep),
            format!("{}[…]{}", "[".repeat(8), "]".repeat(8))
        );
        // Dropping it recursively would overflow the test thread's stack.
        std::mem::forget(deep);
    }

    #[test]
    fn error_parts_of_any_shape() {
        let cases = [
            (json!("boom"), ("boom", None)),
            (json!({"error": "e", "details": "d"}), ("e", Some("d"))),
            (json!({"error": "e", "details": null}), ("e", None)),
            (json!({"error": 5, "details": [1]}), ("5", Some("[1]"))),
            (json!({"details": "d"}), (r#"{"details":"d"}"#, Some("d"))),
            (json!([1, 2]), ("[1,2]", None)),
            (json!(true), ("true", None)),
        ];
        for (v, (error, details)) in cases {
            let (e, d) = Error::parts(&v);
            assert_eq!((e.as_str(), d.as_deref()), (error, details), "{v}");
        }
    }
}
