//! One error type for the kernel layer, with context added where the call is made.

use std::io;

/// Errors from kernel interfaces. Each carries what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A netlink request was answered with an error.
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The caller lacks the privilege the operation needs.
    #[error("{context}: permission denied — this needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")]
    NotPermitted { context: String },
    /// A name refused before anything touched the system (an interface name the
    /// kernel would not take, a namespace name that could escape `/run/netns`).
    #[error(transparent)]
    Name(#[from] sp_names::NameError),
    /// A link that must exist does not.
    #[error("no link named {0}")]
    NoSuchLink(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error, turning EPERM/EACCES into [`Error::NotPermitted`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::NotPermitted { context },
            _ => Error::Io { context, source },
        }
    }

    /// Wraps an errno from nix.
    pub fn from_errno(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Self::io(context, io::Error::from(errno))
    }

    /// Wraps a netlink error, turning EPERM answers into [`Error::NotPermitted`].
    pub fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        let context = context.into();
        if let rtnetlink::Error::NetlinkError(ref msg) = source {
            if let Some(code) = msg.code {
                // EACCES from netlink is not about privilege (e.g. an IPv6 address on
                // a link with IPv6 disabled); EPERM is.
                if -code.get() == libc::EPERM {
                    return Error::NotPermitted { context };
                }
            }
        }
        Error::Netlink { context, source }
    }

    /// The errno behind this error, from a system call or a netlink answer.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => msg.code.map(|c| -c.get()),
            Error::NotPermitted { .. } => Some(libc::EPERM),
            _ => None,
        }
    }

    /// True when the underlying cause is "no such file or process".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)))
    }
}
