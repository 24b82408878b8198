//! Errors of the bridge operations: bad input named precisely, kernel errors with
//! context, and rollbacks that report both the cause and anything that could not be undone.

/// Everything that can go wrong in `sp-bridge`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error(transparent)]
    Name(#[from] sp_names::NameError),
    #[error("invalid VNI {0}: a VXLAN id is 1–16777215")]
    InvalidVni(u64),
    #[error("invalid address {0:?} (expected ADDRESS/PREFIX like 192.168.0.1/24)")]
    InvalidCidr(String),
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
    #[error("{name} exists but is a {found}, not a {wanted}")]
    WrongKind {
        name: String,
        found: String,
        wanted: &'static str,
    },
    #[error("no interface holds local_ip {0}: VXLAN needs the address of the tunnel interface")]
    NoLocalIp(std::net::IpAddr),
    #[error("{0} has no global address to move")]
    NoAddress(String),
    #[error("address {address} is already on {link}{}", namespace.as_ref().map(|n| format!(" in {n}")).unwrap_or_default())]
    AddressInUse {
        address: String,
        link: String,
        namespace: Option<String>,
    },
    #[error("{0} is enslaved to {1}; detach it first (or it is the uplink of another network)")]
    Busy(String, String),
    #[error(
        "gateway {gateway} did not answer through {device} within {after:?}; the move was undone"
    )]
    GatewaySilent {
        gateway: std::net::IpAddr,
        device: String,
        after: std::time::Duration,
    },
    #[error("checking the gateway through {device}: {source}")]
    GatewayCheck {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Injected(#[from] sp_kernel::steps::Injected),
    /// Steps failed; those done were undone in reverse.
    #[error(transparent)]
    RolledBack(#[from] Box<sp_kernel::steps::RolledBack<Error>>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
