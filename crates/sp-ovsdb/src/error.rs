//! Every way an OVSDB conversation can fail, each with a message an operator can act on.

use std::path::PathBuf;
use std::time::Duration;

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
}

fn details_suffix(details: &Option<String>) -> String {
    details
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl Error {
    /// Builds an error from an OVSDB `{"error": …, "details": …}` object (or a bare string).
    pub(crate) fn parts(v: &serde_json::Value) -> (String, Option<String>) {
        match v {
            serde_json::Value::String(s) => (s.clone(), None),
            other => (
                other["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| other.to_string()),
                other["details"].as_str().map(str::to_owned),
            ),
        }
    }
}
