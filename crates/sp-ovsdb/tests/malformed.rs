//! The client against a fake server on a unix socket that sends what RFC 7047 does not
//! allow: every malformed message is an error for whoever it concerns (or is counted and
//! dropped), never a panic, and the session goes on unless the stream itself is lost —
//! then the connection is dropped and the calls say why.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sp_ovsdb::{Client, Decoder, Endpoint, Error, MonitorRequest, Operation, MAX_MESSAGE_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A temp dir of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sp-ovsdb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves one connection on a unix socket in `dir` with `script`.
fn serve<F, Fut>(dir: &Path, script: F) -> (Endpoint, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let sock = dir.join("db.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        script(Peer {
            s,
            dec: Decoder::default(),
        })
        .await;
    });
    (Endpoint::Unix(sock), task)
}

/// The fake server's side of the connection.
struct Peer {
    s: UnixStream,
    dec: Decoder,
}

impl Peer {
    /// The client's next message.
    async fn recv(&mut self) -> Value {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(v) = self.dec.next_value().unwrap() {
                return v;
            }
            let n = self.s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client hung up");
            self.dec.push(&buf[..n]);
        }
    }

    /// The client's next request, which must be `method`.
    async fn request(&mut self, method: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["method"], method, "{v}");
        v
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.s.write_all(bytes.as_ref()).await.unwrap();
    }

    async fn reply(&mut self, req: &Value, result: Value) {
        let r = json!({"id": req["id"], "result": result, "error": null});
        self.send(r.to_string()).await;
    }

    /// Waits until the client closes the connection (its end of the stream).
    async fn expect_hang_up(&mut self) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut buf))
            .await
            .expect("the client keeps the connection open")
            .unwrap_or(0);
        assert_eq!(n, 0, "the client sent more");
    }
}

async fn connect(db: &Endpoint) -> Client {
    Client::connect(db, Duration::from_secs(5)).await.unwrap()
}

fn monitor_request() -> [MonitorRequest; 1] {
    [MonitorRequest {
        table: "Open_vSwitch".into(),
        columns: vec!["cur_cfg".into()],
    }]
}

/// The hardening issue: `{"method":"update","params":["m<N>"]}` panicked the client
/// (and `ovs-attach add-br`, which waits on a monitor). Now the monitor gets an error,
/// and the monitor and the session go on.
#[test]
fn a_short_update_is_an_error_for_its_monitor_and_the_session_goes_on() {
    let dir = TempDir::new("short-update");
    runtime().block_on(async {
        let (db, server) = serve(&dir.0, |mut p| async move {
            let req = p.request("monitor").await;
            let id = req["params"][1].as_str().unwrap().to_owned();
            p.reply(&req, json!({})).await;
            // The issue's message, then other bad shapes for the same monitor.
            p.send(json!({"method": "update", "params": [id]}).to_string())
                .await;
            p.send(json!({"method": "update", "params": [id, {"Open_vSwitch": 5}]}).to_string())
                .await;
            p.send(json!({"method": "update", "params": [id, {}, {}]}).to_string())
                .await;
            // Naming no monitor: every monitor is told.
            p.send(br#"{"method":"update","params":[17,{}]}"#).await;
            p.send(br#"{"method":"update","params":"x"}"#).await;
            // For a monitor that does not exist (cancelled, say): nobody is told.
            p.send(br#"{"method":"update","params":["m999",{}]}"#).await;
            p.send(
                json!({"method": "update", "params": [id, {"Open_vSwitch": {"r": {"new": {"cur_cfg": 7}}}}]})
                    .to_string(),
            )
            .await;
            let req = p.request("list_dbs").await;
            p.reply(&req, json!(["Open_vSwitch"])).await;
            let req = p.request("monitor_cancel").await;
            p.reply(&req, json!({})).await;
            p.expect_hang_up().await;
        });
        let c = connect(&db).await;
        let mut m = c.monitor("Open_vSwitch", &monitor_request()).await.unwrap();
        let within = Duration::from_secs(5);
        for want in [
            "malformed update notification for monitor m1: update notification params \
             (expected [monitor-id, table-updates]): got [\"m1\"]",
            "malformed table-update of table Open_vSwitch (expected a JSON object): got 5",
            "malformed update notification for monitor m1",
            "malformed update notification params (expected [monitor-id, table-updates]): got [17,{}]",
            "got \"x\"",
        ] {
            let e = m.next(within).await.unwrap_err();
            assert!(matches!(e, Error::Malformed { .. }), "{e}");
            assert!(e.to_string().contains(want), "{e}\nwant {want}");
        }
        let good = m.next(within).await.unwrap();
        assert_eq!(
            good["Open_vSwitch"]["r"].new.as_ref().unwrap().int("cur_cfg"),
            Some(7)
        );
        assert_eq!(c.list_dbs().await.unwrap(), vec!["Open_vSwitch"]);
        assert_eq!(c.dropped().count, 2, "{:?}", c.dropped());
        c.monitor_cancel(m).await.unwrap();
        drop(c);
        server.await.unwrap();
    });
}

/// Replies and requests of every wrong shape: each call fails with a clear error (or
/// the message is dropped and counted), and the next call on the same connection works.
#[test]
fn malformed_replies_and_requests_fail_cleanly_and_the_session_goes_on() {
    let dir = TempDir::new("malformed");
    runtime().block_on(async {
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (db, server) = serve(&dir.0, |mut p| async move {
            // Things no call waits for: dropped, counted.
            for junk in [
                r#"{"id":12345,"result":[],"error":null}"#,
                r#"{"id":"x","result":[],"error":null}"#,
                r#"{"id":-3,"result":[]}"#,
                r#"{"result":[]}"#,
                r#"[1,2,3]"#,
                r#"[]"#,
                r#"{"method":5,"id":1}"#,
                r#"{"method":["echo"],"params":[]}"#,
                r#"{"method":"echo","params":[1]}"#,
            ] {
                p.send(junk).await;
            }
            // Requests the client answers: echo of odd params, an unknown method.
            p.send(r#"{"id":"e1","method":"echo","params":{"deep":[[["x"]]]}}"#)
                .await;
            assert_eq!(
                p.recv().await,
                json!({"id": "e1", "result": {"deep": [[["x"]]]}, "error": null})
            );
            p.send(r#"{"id":[7],"method":"lock","params":["l"]}"#).await;
            assert_eq!(
                p.recv().await,
                json!({"id": [7], "result": null, "error": "unknown method lock"})
            );
            p.send(r#"{"id":null,"method":"locked","params":["l"]}"#).await;
            ready_tx.send(()).unwrap();
            // Results of the wrong type, errors of odd shapes.
            let req = p.request("list_dbs").await;
            p.reply(&req, json!("Open_vSwitch")).await;
            let req = p.request("list_dbs").await;
            p.reply(&req, json!(["Open_vSwitch", 5])).await;
            let req = p.request("list_dbs").await;
            p.send(json!({"id": req["id"]}).to_string()).await;
            let req = p.request("list_dbs").await;
            p.send(json!({"id": req["id"], "result": null, "error": {"error": ["x"], "details": {"d": 1}}}).to_string())
                .await;
            let req = p.request("echo").await;
            p.reply(&req, json!({"a": 1})).await;
            let req = p.request("transact").await;
            p.reply(&req, json!({"rows": []})).await;
            let req = p.request("transact").await;
            p.reply(&req, json!([{"rows": [{"name": ["set", [{"x": 1}]]}]}]))
                .await;
            let req = p.request("transact").await;
            p.reply(&req, json!([{"uuid": "not-a-uuid-atom"}])).await;
            let req = p.request("monitor").await;
            p.reply(&req, json!({"Open_vSwitch": {"r": {"new": 1}}})).await;
            // A reply whose result is huge: the error stays short.
            let req = p.request("list_dbs").await;
            p.reply(&req, json!({"x": "y".repeat(1 << 20)})).await;
            // And after all that, a good exchange.
            let req = p.request("list_dbs").await;
            p.reply(&req, json!(["Open_vSwitch"])).await;
            p.expect_hang_up().await;
        });
        let c = connect(&db).await;
        ready.await.unwrap();
        let malformed = |r: Result<Vec<String>, Error>, want: &str| {
            let e = r.unwrap_err();
            assert!(matches!(e, Error::Malformed { .. }), "{e}");
            assert!(e.to_string().contains(want), "{e}\nwant {want}");
        };
        let want_dbs = "malformed list_dbs result (expected an array of strings)";
        malformed(c.list_dbs().await, want_dbs);
        malformed(c.list_dbs().await, want_dbs);
        malformed(c.list_dbs().await, &format!("{want_dbs}: got null"));
        let e = c.list_dbs().await.unwrap_err();
        assert!(matches!(e, Error::Rpc { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            r#"ovsdb-server rejected list_dbs: ["x"] ({"d":1})"#
        );
        let e = c.echo().await.unwrap_err();
        assert!(e.to_string().contains("malformed echo result"), "{e}");
        let select = [Operation::select("Bridge", vec![], None)];
        let e = c.transact("Open_vSwitch", &select).await.unwrap_err();
        assert!(e.to_string().contains("malformed transact result"), "{e}");
        let e = c.transact("Open_vSwitch", &select).await.unwrap_err();
        assert!(e.to_string().contains("column \"name\": set element"), "{e}");
        let insert = [Operation::insert("Bridge", sp_ovsdb::Row::new(), None)];
        let e = c.transact("Open_vSwitch", &insert).await.unwrap_err();
        assert!(e.to_string().contains("operation 0 (insert)"), "{e}");
        let e = match c.monitor("Open_vSwitch", &monitor_request()).await {
            Err(e) => e,
            Ok(_) => panic!("a malformed initial state was accepted"),
        };
        assert!(e.to_string().contains("Open_vSwitch row r (new)"), "{e}");
        let e = c.list_dbs().await.unwrap_err();
        assert!(e.to_string().len() < 500, "{} bytes", e.to_string().len());
        assert_eq!(c.list_dbs().await.unwrap(), vec!["Open_vSwitch"]);
        let dropped = c.dropped();
        assert_eq!(dropped.count, 9, "{dropped:?}");
        assert!(
            dropped.last.as_deref().unwrap().contains("echo notification"),
            "{dropped:?}"
        );
        drop(c);
        server.await.unwrap();
    });
}

/// Streams the client cannot go on with: the connection is dropped (the fake server
/// sees the client hang up) and the waiting call says why.
#[test]
fn a_lost_stream_drops_the_connection_and_says_why() {
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "deep",
            b"[".repeat(1_000_000),
            "nested JSON deeper than 100 levels",
        ),
        (
            "syntax",
            br#"{"id":1,"result":[1,,2]}"#.to_vec(),
            "invalid JSON",
        ),
        ("scalar", b"42 ".to_vec(), "expected a JSON object"),
        (
            "utf8",
            b"{\"id\":1,\"result\":[\"\xff\"]}".to_vec(),
            "invalid JSON",
        ),
    ];
    for (name, bytes, want) in cases {
        let dir = TempDir::new(name);
        runtime().block_on(async {
            let (db, server) = serve(&dir.0, |mut p| async move {
                p.request("list_dbs").await;
                // The client may hang up before all is written.
                let _ = p.s.write_all(&bytes).await;
                p.expect_hang_up().await;
            });
            let c = connect(&db).await;
            let e = c.list_dbs().await.unwrap_err();
            assert!(matches!(e, Error::Closed { .. }), "{name}: {e}");
            assert!(e.to_string().contains(want), "{name}: {e}");
            // Later calls fail at once, saying the same.
            let e = c.echo().await.unwrap_err();
            assert!(e.to_string().contains(want), "{name}: {e}");
            server.await.unwrap();
        });
    }
}

/// A peer that sends more than MAX_MESSAGE_SIZE without completing a value is cut off
/// once the limit is reached: the client never holds much more than the limit.
#[test]
fn a_message_over_the_size_limit_drops_the_connection() {
    let dir = TempDir::new("too-large");
    runtime().block_on(async {
        let (db, server) = serve(&dir.0, |mut p| async move {
            p.request("list_dbs").await;
            p.send(br#"{"id":1,"result":[""#).await;
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0;
            // The client hangs up at the limit; writes then fail.
            let failed = loop {
                if let Err(e) = p.s.write_all(&chunk).await {
                    break e;
                }
                sent += chunk.len();
                assert!(sent <= 2 * MAX_MESSAGE_SIZE, "the client kept reading");
            };
            assert!(
                matches!(
                    failed.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{failed}"
            );
            assert!(
                sent >= MAX_MESSAGE_SIZE - (1 << 21),
                "cut off early: {sent}"
            );
        });
        let c = connect(&db).await;
        let e = c.list_dbs().await.unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("more than 67108864 bytes without completing a JSON value"),
            "{e}"
        );
        server.await.unwrap();
    });
}

/// Whitespace between messages costs nothing: 16 MiB of it before a reply.
#[test]
fn whitespace_between_messages_is_cheap() {
    let dir = TempDir::new("whitespace");
    runtime().block_on(async {
        let (db, server) = serve(&dir.0, |mut p| async move {
            let req = p.request("list_dbs").await;
            let spaces = b" \n".repeat(8 << 20);
            p.send(&spaces).await;
            p.reply(&req, json!(["Open_vSwitch"])).await;
            p.send(&spaces).await;
            let req = p.request("list_dbs").await;
            p.reply(&req, json!(["x"])).await;
            p.expect_hang_up().await;
        });
        let c = connect(&db).await;
        let t = Instant::now();
        assert_eq!(c.list_dbs().await.unwrap(), vec!["Open_vSwitch"]);
        assert_eq!(c.list_dbs().await.unwrap(), vec!["x"]);
        // 32 MiB scanned in a debug build; quadratic draining took seconds per MiB.
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        drop(c);
        server.await.unwrap();
    });
}
