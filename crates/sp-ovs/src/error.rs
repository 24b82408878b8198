//! What can go wrong with an Open vSwitch operation, in ovs-vsctl's words where it has them.

use std::time::Duration;

/// An `sp-ovs` error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] sp_ovsdb::Error),

    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "the database at {db} has no Open_vSwitch row — it was never initialised \
         (start Open vSwitch once, or run `ovs-vsctl --no-wait init`)"
    )]
    NotInitialized { db: String },

    #[error(
        "cannot create a bridge named {0} because a bridge named {0} already exists \
         (--may-exist accepts that)"
    )]
    BridgeExists(String),

    #[error("no bridge named {0}")]
    NoBridge(String),

    #[error(
        "cannot create {what} named {name} because a port named {name} already exists \
         on bridge {bridge}{}", if *.same_bridge { " (--may-exist accepts that)" } else { "" }
    )]
    PortExists {
        what: &'static str,
        name: String,
        bridge: String,
        same_bridge: bool,
    },

    #[error(
        "cannot add port {port} to bridge {bridge}: it is already on bridge {other} \
         (--move moves it, in one transaction)"
    )]
    PortOnOtherBridge {
        port: String,
        bridge: String,
        other: String,
    },

    #[error("cannot create a port named {0} because an interface named {0} already exists")]
    InterfaceExists(String),

    #[error("no port named {port}{}", .bridge.as_deref().map(|b| format!(" on bridge {b}")).unwrap_or_default())]
    NoPort {
        port: String,
        bridge: Option<String>,
    },

    #[error("port {port} is on bridge {actual}, not on bridge {bridge}")]
    PortNotOnBridge {
        port: String,
        bridge: String,
        actual: String,
    },

    #[error(
        "cannot delete port {0} because it is the local port for bridge {0} \
         (deleting it requires deleting the entire bridge: del-br {0})"
    )]
    LocalPort(String),

    #[error("{table} changed while this command ran (another client was faster); run it again")]
    Raced { table: String },

    #[error(
        "ovs-vswitchd did not apply the change within {after:?} (next_cfg {next_cfg}, \
         cur_cfg {cur_cfg}) — is ovs-vswitchd running? The database already holds the \
         change; --no-wait does not wait for ovs-vswitchd"
    )]
    WaitTimeout {
        next_cfg: i64,
        cur_cfg: i64,
        after: Duration,
    },

    #[error(transparent)]
    Name(#[from] sp_names::NameError),

    #[error(transparent)]
    Injected(#[from] sp_kernel::steps::Injected),

    /// Steps failed; those done were undone in reverse.
    #[error(transparent)]
    RolledBack(#[from] Box<sp_kernel::steps::RolledBack<Error>>),

    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),

    #[error("no network device named {0}")]
    NoDevice(String),

    #[error(
        "{nic} has no global address to move onto {bridge} (nothing to attach: \
         `ovs-attach add-port {bridge} {nic}` adds the port alone)"
    )]
    NoAddress { nic: String, bridge: String },

    #[error("{nic} is enslaved to {master} (a Linux bridge or bond); release it first")]
    Enslaved { nic: String, master: String },

    #[error(
        "bridge {bridge} has no network device after {after:?} — is ovs-vswitchd running, \
         and does the datapath exist (without the openvswitch kernel module use \
         --datapath-type netdev)?"
    )]
    NoBridgeDevice { bridge: String, after: Duration },

    #[error("gateway {gateway} did not answer ICMP echo through {device} within {after:?}")]
    GatewaySilent {
        gateway: std::net::IpAddr,
        device: String,
        after: Duration,
    },

    #[error("checking the gateway through {device}: {source}")]
    GatewayCheck {
        device: String,
        source: std::io::Error,
    },

    #[error("error detected while setting up {iface}: {error} (see the ovs-vswitchd log)")]
    Interface { iface: String, error: String },
}
