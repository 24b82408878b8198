//! Floor 1: a small client for the OVSDB management protocol (RFC 7047).
//!
//! * [`Client`] speaks JSON-RPC 1.0 over a unix or tcp socket: `list_dbs`, `get_schema`,
//!   `transact`, `monitor`/`monitor_cancel`; it answers the server's `echo` by itself and
//!   puts a timeout on every call.
//! * [`Operation`] is a typed transaction operation (insert / select / update / mutate /
//!   delete / wait / comment) built from [`Condition`]s, [`Mutation`]s and [`Row`]s of
//!   [`Datum`]s, encoded as the RFC's `["set",…]`, `["map",…]`, `["uuid",…]` and
//!   `["named-uuid",…]` notation.
//! * Every failure is an [`Error`]: a missing socket names its path, an OVSDB error reply
//!   keeps its `error` and `details`, a failed operation inside a transaction says which.
//!
//! * What the server sends is untrusted: [`Decoder`] is linear in its input and bounded
//!   ([`MAX_MESSAGE_SIZE`], [`MAX_DEPTH`]); [`Incoming::from_json`], [`Datum::from_json`]
//!   and [`Row::from_json`] are total over any JSON, a wrong shape being
//!   [`Error::Malformed`] (`docs/ovs-attach.md`, "What the client accepts").
//!
//! Nothing here knows about Open vSwitch's schema: that is `sp-ovs`.

mod client;
mod codec;
mod datum;
mod error;
mod message;
mod op;

pub use client::{Client, Dropped, Endpoint, Monitor, MonitorRequest};
pub use codec::{Decoder, MAX_DEPTH, MAX_MESSAGE_SIZE};
pub use datum::{Atom, Datum, Row};
pub use error::Error;
pub use message::{parse_table_updates, Incoming, RowUpdate, TableUpdates};
pub use op::{Condition, Function, Mutation, Mutator, OpResult, Operation, Until};

/// Result of this crate's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
