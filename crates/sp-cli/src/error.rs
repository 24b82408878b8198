//! A failed run as operators and machines read it: one line on standard error, and
//! with `--json` one object on standard output — `{"schema":1,"error":{"kind":…,
//! "message":…}}` (docs/json.md) — and the exit code of the table (docs/exit-codes.md).

use std::process::ExitCode;

use crate::exit;

/// What went wrong, as the `kind` of the JSON error and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The operation failed (exit 1).
    Failure,
    /// What was named does not exist (exit 1).
    NotFound,
    /// A daemon or the kernel did not answer in time (exit 1).
    Timeout,
    /// Bad arguments, refused before anything was read (exit 2).
    Usage,
    /// An input file or value refused, nothing changed (exit 2).
    InvalidInput,
    /// Problems found at error level (exit 3).
    Problems,
    /// Not converged (exit 4).
    NotConverged,
    /// Another run held the lock past the timeout (exit 5).
    Locked,
    /// Needs root or a capability (exit 6).
    Privilege,
}

impl Kind {
    /// The `kind` in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failure => "failure",
            Kind::NotFound => "not-found",
            Kind::Timeout => "timeout",
            Kind::Usage => "usage",
            Kind::InvalidInput => "invalid-input",
            Kind::Problems => "problems",
            Kind::NotConverged => "not-converged",
            Kind::Locked => "locked",
            Kind::Privilege => "privilege",
        }
    }

    /// The exit code (the table in [`exit`]).
    pub fn code(self) -> u8 {
        match self {
            Kind::Failure | Kind::NotFound | Kind::Timeout => exit::FAILURE,
            Kind::Usage | Kind::InvalidInput => exit::USAGE,
            Kind::Problems => exit::PROBLEMS,
            Kind::NotConverged => exit::DIFFERS,
            Kind::Locked => exit::LOCKED,
            Kind::Privilege => exit::PRIVILEGE,
        }
    }

    /// The kind of a refused system call: EPERM and EACCES say a privilege is missing.
    pub fn of_errno(errno: Option<i32>) -> Kind {
        match errno {
            Some(libc::EPERM) | Some(libc::EACCES) => Kind::Privilege,
            _ => Kind::Failure,
        }
    }
}

/// The JSON error object, alone on one line of standard output; `detail`'s members
/// are added to `error` (stackplumb's apply account: done, failed, not_done).
pub fn print_json(
    kind: &str,
    message: &str,
    detail: Option<serde_json::Map<String, serde_json::Value>>,
) {
    let mut error = serde_json::json!({ "kind": kind, "message": message });
    if let (Some(d), Some(e)) = (detail, error.as_object_mut()) {
        e.extend(d);
    }
    crate::outln!(
        "{}",
        serde_json::json!({ "schema": SCHEMA, "error": error })
    );
}

/// The version of the error object.
pub const SCHEMA: u32 = 1;

/// Reports a failed run of `tool` (`tool: message` on stderr; with `json`, the object on
/// stdout) and gives its exit code.
pub fn fail(tool: &str, json: bool, kind: Kind, message: &str) -> ExitCode {
    fail_with(tool, json, kind, message, None)
}

/// [`fail`] with more members in the JSON error.
pub fn fail_with(
    tool: &str,
    json: bool,
    kind: Kind,
    message: &str,
    detail: Option<serde_json::Map<String, serde_json::Value>>,
) -> ExitCode {
    if json {
        print_json(kind.as_str(), message, detail);
    }
    crate::errln!("{tool}: {message}");
    ExitCode::from(kind.code())
}
