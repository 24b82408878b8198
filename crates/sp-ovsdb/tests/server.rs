//! The client against a real ovsdb-server, and against a scripted peer for the parts a
//! real server does not do on demand (echo requests, messages split across writes).

use std::time::Duration;

use serde_json::{json, Value};
use sp_ovsdb::{
    Client, Condition, Datum, Endpoint, Error, MonitorRequest, Mutation, Mutator, Operation, Row,
};
use sp_testenv::ovs::Ovs;
use sp_testenv::sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn list_dbs_schema_transact_and_monitor_on_a_real_server() {
    sandbox::enter();
    let ovs = Ovs::start_db_only();
    let rt = runtime();
    rt.block_on(async {
        let db: Endpoint = ovs.db().parse().unwrap();
        let c = Client::connect(&db, Duration::from_secs(5)).await.unwrap();
        assert!(c
            .list_dbs()
            .await
            .unwrap()
            .contains(&"Open_vSwitch".to_owned()));
        let schema = c.get_schema("Open_vSwitch").await.unwrap();
        assert_eq!(schema["name"], "Open_vSwitch");
        assert!(schema["tables"]["Bridge"].is_object());
        c.echo().await.unwrap();

        let mut monitor = c
            .monitor(
                "Open_vSwitch",
                &[MonitorRequest {
                    table: "Bridge".into(),
                    columns: vec!["name".into(), "external_ids".into()],
                }],
            )
            .await
            .unwrap();
        assert!(monitor.initial.is_empty());

        // insert with named-uuid, referenced from a mutate in the same transaction
        let ops = [
            Operation::insert(
                "Bridge",
                Row::new().with("name", "br-x").with(
                    "external_ids",
                    Datum::string_map(&std::collections::BTreeMap::from([(
                        "k".to_owned(),
                        "v".to_owned(),
                    )])),
                ),
                Some("b"),
            ),
            Operation::mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::new("bridges", Mutator::Insert, Datum::named("b"))],
            ),
            Operation::select("Bridge", vec![Condition::eq("name", "br-x")], None),
        ];
        let r = c.transact("Open_vSwitch", &ops).await.unwrap();
        let uuid = r[0].uuid.clone().expect("insert uuid");
        assert_eq!(r[1].count, Some(1));
        assert_eq!(r[2].rows[0].uuid(), uuid);
        assert_eq!(r[2].rows[0].string_map("external_ids")["k"], "v");
        assert_eq!(
            ovs.vsctl(&["get", "Bridge", "br-x", "external_ids:k"]),
            "v\n"
        );

        let update = monitor.next(Duration::from_secs(5)).await.unwrap();
        let change = &update["Bridge"][&uuid];
        assert!(change.old.is_none());
        assert_eq!(change.new.as_ref().unwrap().str("name"), "br-x");
        c.monitor_cancel(monitor).await.unwrap();

        // A failing operation names its index and the server's words.
        let e = c
            .transact(
                "Open_vSwitch",
                &[
                    Operation::select("Bridge", vec![], Some(&["name"])),
                    Operation::assert_absent("Bridge", vec![Condition::eq("name", "br-x")]),
                ],
            )
            .await
            .unwrap_err();
        match &e {
            Error::Operation {
                index, op, error, ..
            } => {
                assert_eq!(
                    (*index, op.as_str(), error.as_str()),
                    (1, "wait", "timed out")
                )
            }
            other => panic!("{other}"),
        }
        // A constraint violation (Open_vSwitch holds one row at most) fails the commit.
        let e = c
            .transact(
                "Open_vSwitch",
                &[Operation::insert("Open_vSwitch", Row::new(), None)],
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Commit { .. }), "{e}");
        assert!(e.to_string().contains("constraint violation"), "{e}");
        // An unknown database is an RPC-level error.
        let e = c.get_schema("Nope").await.unwrap_err();
        assert!(matches!(e, Error::Rpc { .. }), "{e}");
        assert!(e.to_string().contains("unknown database"), "{e}");

        // The same server over tcp (the sandbox has its own loopback).
        sp_testenv::require::run(std::process::Command::new("ovs-appctl").args([
            &format!("--target={}", ovs.dir().join("ovsdb.ctl").display()),
            "ovsdb-server/add-remote",
            "ptcp:6640:127.0.0.1",
        ]));
        let tcp: Endpoint = "tcp:127.0.0.1:6640".parse().unwrap();
        let mut attempts = 0;
        let t = loop {
            match Client::connect(&tcp, Duration::from_secs(5)).await {
                Ok(t) => break t,
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let r = t
            .transact(
                "Open_vSwitch",
                &[Operation::select("Bridge", vec![], Some(&["name"]))],
            )
            .await
            .unwrap();
        assert_eq!(r[0].rows[0].str("name"), "br-x");
    });
}

/// Serves one connection on a fresh unix socket in `dir` with `script`; returns the
/// socket path and the server task.
fn scripted<F, Fut>(
    dir: &std::path::Path,
    script: F,
) -> (std::path::PathBuf, tokio::task::JoinHandle<()>)
where
    F: FnOnce(tokio::net::UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    std::fs::create_dir_all(dir).unwrap();
    let sock = dir.join("peer.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        script(s).await;
    });
    (sock, task)
}

/// A scripted server on a unix socket: sends an `echo` request split over two writes,
/// expects the client's echo reply, then answers the client's request.
#[test]
fn answers_the_servers_echo_and_reassembles_split_messages() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("sp-ovsdb-fake-{}", std::process::id()));
    rt.block_on(async {
        let (sock, server) = scripted(&dir, |mut s| async move {
            s.write_all(br#"{"id":"echo","method":"ec"#).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(br#"ho","params":[]}"#).await.unwrap();
            let mut dec = sp_ovsdb::Decoder::default();
            let mut msgs: Vec<Value> = vec![];
            let mut buf = [0u8; 4096];
            while msgs.len() < 2 {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "client hung up");
                dec.push(&buf[..n]);
                while let Some(v) = dec.next_value().unwrap() {
                    msgs.push(v);
                }
            }
            let (echo, req): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|m| m["id"] == "echo");
            assert_eq!(echo[0], json!({"id":"echo","result":[],"error":null}));
            assert_eq!(req[0]["method"], "list_dbs");
            let reply = json!({"id": req[0]["id"], "result": ["Open_vSwitch"], "error": null});
            s.write_all(reply.to_string().as_bytes()).await.unwrap();
            // Keep the connection open until the client is done.
            let _ = s.read(&mut buf).await;
        });
        let c = Client::connect(&Endpoint::Unix(sock), Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.list_dbs().await.unwrap(), vec!["Open_vSwitch"]);
        drop(c);
        server.await.unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server that never answers: the call times out, naming what it waited for.
#[test]
fn a_silent_server_times_out() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("sp-ovsdb-silent-{}", std::process::id()));
    rt.block_on(async {
        let (sock, _server) = scripted(&dir, |s| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let c = Client::connect(&Endpoint::Unix(sock), Duration::from_millis(200))
            .await
            .unwrap();
        let e = c.list_dbs().await.unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("list_dbs got no answer within 200ms"),
            "{e}"
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server that hangs up: the pending call fails at once, saying so.
#[test]
fn a_hang_up_fails_the_call_with_the_reason() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("sp-ovsdb-hangup-{}", std::process::id()));
    rt.block_on(async {
        let (sock, server) = scripted(&dir, |mut s| async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        });
        let c = Client::connect(&Endpoint::Unix(sock), Duration::from_secs(5))
            .await
            .unwrap();
        let e = c.list_dbs().await.unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
        assert!(
            e.to_string().contains("the server closed the connection"),
            "{e}"
        );
        // Later calls fail the same way without waiting for the timeout.
        let t = std::time::Instant::now();
        assert!(matches!(c.echo().await.unwrap_err(), Error::Closed { .. }));
        assert!(t.elapsed() < Duration::from_secs(1));
        server.await.unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
