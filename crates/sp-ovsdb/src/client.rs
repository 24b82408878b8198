//! The JSON-RPC connection: one reader task dispatches replies by id, answers the
//! server's `echo` and routes `update` notifications to their monitor.
//!
//! Total over what the server sends: a message of the wrong shape is an error for the
//! call or monitor it concerns (never a panic); one that concerns nobody is counted
//! ([`Client::dropped`]) and the session goes on. Only a stream that cannot be decoded
//! any more (invalid JSON, a value over [`crate::MAX_MESSAGE_SIZE`] or nested deeper than
//! [`crate::MAX_DEPTH`]) ends the connection, and every waiting call fails with why.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::message::{parse_table_updates, Incoming, TableUpdates};
use crate::{Decoder, Error, OpResult, Operation, Result};

/// Where ovsdb-server listens: `unix:PATH` (or a bare absolute path) or `tcp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            Ok(Endpoint::Unix(path.into()))
        } else if s.starts_with('/') {
            Ok(Endpoint::Unix(s.into()))
        } else if let Some(addr) = s.strip_prefix("tcp:").filter(|a| a.contains(':')) {
            Ok(Endpoint::Tcp(addr.to_owned()))
        } else {
            Err(Error::BadEndpoint(s.to_owned()))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

type Writer = Arc<AsyncMutex<Box<dyn AsyncWrite + Send + Unpin>>>;

/// A reply's `result` and `error`.
type Reply = (Value, Value);

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    monitors: Mutex<HashMap<String, mpsc::UnboundedSender<Result<TableUpdates>>>>,
    closed: Mutex<Option<String>>,
    dropped: Mutex<Dropped>,
}

/// Messages from the server that concerned no call or monitor and were dropped
/// (RFC 7047 violations the session survives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// How many.
    pub count: u64,
    /// What was wrong with the last one.
    pub last: Option<String>,
}

/// Locks `m`, whatever a panicking holder left (nothing here panics while holding one).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn close(&self, reason: String) {
        lock(&self.closed).get_or_insert(reason);
        // Dropping the senders wakes every waiter with "closed".
        lock(&self.pending).clear();
        lock(&self.monitors).clear();
    }

    fn drop_message(&self, why: String) {
        let mut d = lock(&self.dropped);
        d.count += 1;
        d.last = Some(why);
    }
}

/// A connection to ovsdb-server. Every call gives up after the connection's timeout.
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
    writer: Writer,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Columns of one table to monitor.
#[derive(Debug, Clone)]
pub struct MonitorRequest {
    pub table: String,
    pub columns: Vec<String>,
}

/// A running monitor: its initial contents and the stream of later updates.
pub struct Monitor {
    id: String,
    endpoint: String,
    /// The monitored rows as they were when the monitor started.
    pub initial: TableUpdates,
    updates: mpsc::UnboundedReceiver<Result<TableUpdates>>,
}

impl Monitor {
    /// Waits for the next `update` notification of this monitor (at most `within`).
    /// A malformed notification is an error ([`Error::Malformed`]); the monitor and the
    /// connection go on.
    pub async fn next(&mut self, within: Duration) -> Result<TableUpdates> {
        match tokio::time::timeout(within, self.updates.recv()).await {
            Ok(Some(updates)) => updates,
            Ok(None) => Err(Error::Closed {
                endpoint: self.endpoint.clone(),
                reason: format!("the connection ended while monitor {} ran", self.id),
            }),
            Err(_) => Err(Error::Timeout {
                endpoint: self.endpoint.clone(),
                what: format!("monitor {} update", self.id),
                after: within,
            }),
        }
    }
}

impl Client {
    /// Connects to `endpoint`; the connection attempt and every later call are bounded
    /// by `timeout`.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Client> {
        let connect_error = |source: std::io::Error| match (endpoint, source.kind()) {
            (Endpoint::Unix(path), std::io::ErrorKind::NotFound) => {
                Error::SocketMissing { path: path.clone() }
            }
            (Endpoint::Unix(path), std::io::ErrorKind::ConnectionRefused) => {
                Error::ServerNotRunning { path: path.clone() }
            }
            _ => Error::Connect {
                endpoint: endpoint.to_string(),
                source,
            },
        };
        let timed_out = || Error::Timeout {
            endpoint: endpoint.to_string(),
            what: "connect".into(),
            after: timeout,
        };
        let (rd, wr): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_error)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_error)?;
                s.set_nodelay(true).map_err(connect_error)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let writer: Writer = Arc::new(AsyncMutex::new(wr));
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(rd, writer.clone(), shared.clone()));
        Ok(Client {
            endpoint: endpoint.clone(),
            timeout,
            writer,
            shared,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// The address this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The timeout applied to every call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            endpoint: self.endpoint.to_string(),
            reason: lock(&self.shared.closed)
                .clone()
                .unwrap_or_else(|| "connection lost".into()),
        }
    }

    /// Sends one request and waits for its reply; an OVSDB error reply becomes
    /// [`Error::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        let exchange = async {
            if lock(&self.shared.closed).is_some() {
                return Err(self.closed_error());
            }
            let msg = json!({"method": method, "params": params, "id": id});
            write_message(&self.writer, &msg)
                .await
                .map_err(|e| Error::Closed {
                    endpoint: self.endpoint.to_string(),
                    reason: format!("write failed: {e}"),
                })?;
            rx.await.map_err(|_| self.closed_error())
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        lock(&self.shared.pending).remove(&id);
        let (result, error) = outcome.map_err(|_| Error::Timeout {
            endpoint: self.endpoint.to_string(),
            what: method.to_owned(),
            after: self.timeout,
        })??;
        if !error.is_null() {
            let (error, details) = Error::parts(&error);
            return Err(Error::Rpc {
                method: method.to_owned(),
                error,
                details,
            });
        }
        Ok(result)
    }

    /// The server's messages that concerned no call or monitor (a reply to an id never
    /// sent, a message that is not a JSON-RPC object…), dropped without ending the
    /// session.
    pub fn dropped(&self) -> Dropped {
        lock(&self.shared.dropped).clone()
    }

    /// `list_dbs`: the databases the server holds.
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self.call("list_dbs", json!([])).await?;
        let bad = || Error::malformed("list_dbs result (expected an array of strings)", &v);
        v.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_str().map(str::to_owned).ok_or_else(bad))
            .collect()
    }

    /// `get_schema`: the database schema as JSON.
    pub async fn get_schema(&self, db: &str) -> Result<Value> {
        self.call("get_schema", json!([db])).await
    }

    /// `echo`: checks that the server answers.
    pub async fn echo(&self) -> Result<()> {
        let v = self.call("echo", json!(["stackplumb"])).await?;
        if v != json!(["stackplumb"]) {
            return Err(Error::malformed(
                "echo result (expected the params sent, [\"stackplumb\"])",
                &v,
            ));
        }
        Ok(())
    }

    /// `transact`: runs `ops` atomically. The first failed operation (with its index)
    /// or a failed commit is an error; otherwise one result per operation.
    pub async fn transact(&self, db: &str, ops: &[Operation]) -> Result<Vec<OpResult>> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().map(Operation::to_json));
        let result = self.call("transact", Value::Array(params)).await?;
        OpResult::parse_all(ops, &result)
    }

    /// `monitor`: the current contents of the requested columns, then every change.
    pub async fn monitor(&self, db: &str, requests: &[MonitorRequest]) -> Result<Monitor> {
        let id = format!("m{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.monitors).insert(id.clone(), tx);
        let spec: serde_json::Map<String, Value> = requests
            .iter()
            .map(|r| (r.table.clone(), json!({"columns": r.columns})))
            .collect();
        let initial = match self
            .call("monitor", json!([db, id, spec]))
            .await
            .and_then(|v| parse_table_updates(&v))
        {
            Ok(initial) => initial,
            Err(e) => {
                lock(&self.shared.monitors).remove(&id);
                return Err(e);
            }
        };
        Ok(Monitor {
            id,
            endpoint: self.endpoint.to_string(),
            initial,
            updates: rx,
        })
    }

    /// `monitor_cancel`.
    pub async fn monitor_cancel(&self, monitor: Monitor) -> Result<()> {
        lock(&self.shared.monitors).remove(&monitor.id);
        self.call("monitor_cancel", json!([monitor.id])).await?;
        Ok(())
    }
}

async fn write_message(writer: &Writer, msg: &Value) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let mut w = writer.lock().await;
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn read_loop(mut rd: Box<dyn AsyncRead + Send + Unpin>, writer: Writer, shared: Arc<Shared>) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let reason = 'read: loop {
        match rd.read(&mut buf).await {
            Ok(0) => break "the server closed the connection".to_owned(),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => break format!("read failed: {e}"),
        }
        loop {
            match decoder.next_value() {
                Ok(Some(msg)) => {
                    if let Err(e) = dispatch(msg, &writer, &shared).await {
                        break 'read format!("cannot answer the server: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read format!("the server sent garbage: {e}"),
            }
        }
    };
    shared.close(reason);
    // Drop the connection: with both halves gone the socket is closed.
    drop(rd);
    *writer.lock().await = Box::new(tokio::io::sink());
}

async fn dispatch(msg: Value, writer: &Writer, shared: &Shared) -> std::io::Result<()> {
    let msg = match Incoming::from_json(msg) {
        Ok(msg) => msg,
        Err(e) => {
            shared.drop_message(e.to_string());
            return Ok(());
        }
    };
    match msg {
        Incoming::Reply { id, result, error } => match lock(&shared.pending).remove(&id) {
            Some(tx) => {
                let _ = tx.send((result, error));
            }
            // Late (the call timed out) or never asked for.
            None => shared.drop_message(format!("a reply to id {id}, which nobody waits for")),
        },
        Incoming::StrayReply { id } => shared.drop_message(format!(
            "a reply to id {}, which this client never sends",
            crate::error::excerpt(&id)
        )),
        Incoming::Echo {
            id: Value::Null, ..
        } => shared.drop_message("an echo notification (echo is a request)".into()),
        Incoming::Echo { id, params } => {
            let reply = json!({"id": id, "result": params, "error": null});
            write_message(writer, &reply).await?;
        }
        Incoming::Update {
            monitor: Some(monitor),
            updates,
        } => {
            // An unknown monitor: an update sent before our monitor_cancel arrived.
            if let Some(tx) = lock(&shared.monitors).get(&monitor) {
                let _ = tx.send(updates);
            }
        }
        Incoming::Update {
            monitor: None,
            updates,
        } => {
            // Any monitor may have missed an update: each is told.
            let (what, got) = match updates {
                Err(Error::Malformed { what, got }) => (what, got),
                Err(e) => (e.to_string(), String::new()),
                Ok(_) => (
                    "update notification naming no monitor".into(),
                    String::new(),
                ),
            };
            for tx in lock(&shared.monitors).values() {
                let _ = tx.send(Err(Error::Malformed {
                    what: what.clone(),
                    got: got.clone(),
                }));
            }
            shared.drop_message(Error::Malformed { what, got }.to_string());
        }
        Incoming::Other {
            id: Value::Null, ..
        } => {}
        Incoming::Other { method, id } => {
            let reply =
                json!({"id": id, "result": null, "error": format!("unknown method {method}")});
            write_message(writer, &reply).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:/var/run/openvswitch/db.sock"
                .parse::<Endpoint>()
                .unwrap(),
            Endpoint::Unix("/var/run/openvswitch/db.sock".into())
        );
        assert_eq!(
            "/tmp/db.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/db.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:6640".into())
        );
        for bad in ["", "unix:", "tcp:6640", "ssl:1.2.3.4:6640", "db.sock"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::Tcp("127.0.0.1:6640".into()).to_string(),
            "tcp:127.0.0.1:6640"
        );
    }
}
