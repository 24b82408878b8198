//! What the server sends, classified (RFC 7047 §4, JSON-RPC 1.0): replies to our
//! requests, its `echo` requests, `update` notifications of our monitors, and anything
//! else. Total over any JSON value: every shape is either one of these or an
//! [`Error::Malformed`] naming what was wrong, never a panic.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Error, Result, Row};

/// A row's change: `old` absent for an insert, `new` absent for a delete.
#[derive(Debug, Clone, PartialEq)]
pub struct RowUpdate {
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// table → row UUID → change.
pub type TableUpdates = BTreeMap<String, BTreeMap<String, RowUpdate>>;

/// One message from the server.
#[derive(Debug)]
pub enum Incoming {
    /// A reply to our request `id` (we only send integer ids): `result` and `error` as
    /// sent (`null` when absent), for the caller to judge.
    Reply {
        id: u64,
        result: Value,
        error: Value,
    },
    /// A reply whose id is not one of ours (not a non-negative integer): nobody waits
    /// for it.
    StrayReply { id: Value },
    /// The server's `echo` request, answered with its `params`.
    Echo { id: Value, params: Value },
    /// An `update` notification for monitor `monitor`: its table-updates, or what was
    /// wrong with them. `monitor` is `None` when the params do not name one (then
    /// `updates` is the error; every monitor may have missed an update).
    Update {
        monitor: Option<String>,
        updates: Result<TableUpdates>,
    },
    /// Another request (answered with an error) or notification (`id` null, ignored).
    Other { method: String, id: Value },
}

impl Incoming {
    /// Classifies one decoded message. `Err` is a message no caller can be told about:
    /// not an object, or a non-string `method`.
    pub fn from_json(msg: Value) -> Result<Incoming> {
        let Value::Object(mut msg) = msg else {
            return Err(Error::malformed(
                "JSON-RPC message (expected an object)",
                &msg,
            ));
        };
        let mut take = |k: &str| msg.remove(k).unwrap_or(Value::Null);
        let method = take("method");
        let id = take("id");
        let params = take("params");
        match method {
            Value::Null => Ok(match id.as_u64() {
                Some(id) => Incoming::Reply {
                    id,
                    result: take("result"),
                    error: take("error"),
                },
                None => Incoming::StrayReply { id },
            }),
            Value::String(m) if m == "echo" => Ok(Incoming::Echo { id, params }),
            Value::String(m) if m == "update" => Ok(update(params)),
            Value::String(method) => Ok(Incoming::Other { method, id }),
            other => Err(Error::malformed(
                "JSON-RPC method (expected a string)",
                &other,
            )),
        }
    }
}

/// `"params": [<monitor id>, <table-updates>]`.
fn update(params: Value) -> Incoming {
    const WHAT: &str = "update notification params (expected [monitor-id, table-updates])";
    let unnamed = |params: &Value| Incoming::Update {
        monitor: None,
        updates: Err(Error::malformed(WHAT, params)),
    };
    let Value::Array(mut params) = params else {
        return unnamed(&params);
    };
    let Some(Value::String(monitor)) = params.first() else {
        return unnamed(&Value::Array(params));
    };
    let monitor = monitor.clone();
    let updates = match params.len() {
        2 => parse_table_updates(&params[1]),
        _ => {
            // Short or long: the monitor is named, so it is told.
            params.truncate(4);
            Err(Error::malformed(
                format!("update notification for monitor {monitor}: {WHAT}"),
                &Value::Array(params),
            ))
        }
    };
    Incoming::Update {
        monitor: Some(monitor),
        updates,
    }
}

/// Parses `<table-updates>` (RFC 7047 §4.1.6): table name → row UUID →
/// `{"old": row, "new": row}`, either side absent (or null).
pub fn parse_table_updates(v: &Value) -> Result<TableUpdates> {
    let tables = v
        .as_object()
        .ok_or_else(|| Error::malformed("table-updates (expected a JSON object)", v))?;
    let mut out = TableUpdates::new();
    for (table, rows) in tables {
        let rows = rows.as_object().ok_or_else(|| {
            Error::malformed(
                format!("table-update of table {table} (expected a JSON object)"),
                rows,
            )
        })?;
        let mut changes = BTreeMap::new();
        for (uuid, change) in rows {
            let change = change.as_object().ok_or_else(|| {
                Error::malformed(
                    format!("row-update of {table} row {uuid} (expected a JSON object)"),
                    change,
                )
            })?;
            let side = |k: &str| match change.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(row) => Row::from_json(row).map(Some).map_err(|e| match e {
                    Error::Malformed { what, got } => Error::Malformed {
                        what: format!("{table} row {uuid} ({k}): {what}"),
                        got,
                    },
                    other => other,
                }),
            };
            changes.insert(
                uuid.clone(),
                RowUpdate {
                    old: side("old")?,
                    new: side("new")?,
                },
            );
        }
        out.insert(table.clone(), changes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_short_update_of_the_issue_tells_its_monitor() {
        match Incoming::from_json(json!({"method":"update","params":["m1"]})).unwrap() {
            Incoming::Update { monitor, updates } => {
                assert_eq!(monitor.as_deref(), Some("m1"));
                let e = updates.unwrap_err();
                assert!(matches!(e, Error::Malformed { .. }), "{e}");
                assert_eq!(
                    e.to_string(),
                    "OVSDB protocol violation: malformed update notification for monitor m1: \
                     update notification params (expected [monitor-id, table-updates]): \
                     got [\"m1\"]"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every message shape: what it is classified as (a short description), or the
    /// words of its error.
    #[test]
    fn every_message_shape_is_classified_or_an_error() {
        let row = json!({"name": "br-ex", "ports": ["set", [["uuid", "p"]]]});
        let cases: Vec<(Value, &str)> = vec![
            // replies
            (json!({"id": 1, "result": [], "error": null}), "reply 1"),
            (json!({"id": 1}), "reply 1"),
            (json!({"id": 1, "result": 5, "error": {"x": 1}}), "reply 1"),
            (json!({"id": 1, "method": null, "result": 5}), "reply 1"),
            (
                json!({"id": u64::MAX, "result": 5}),
                "reply 18446744073709551615",
            ),
            (json!({"id": -1, "result": []}), "stray"),
            (json!({"id": 1.5, "result": []}), "stray"),
            (json!({"id": "1", "result": []}), "stray"),
            (json!({"id": [1], "result": []}), "stray"),
            (json!({"result": []}), "stray"),
            (json!({}), "stray"),
            // echo
            (
                json!({"id": "echo", "method": "echo", "params": []}),
                "echo",
            ),
            (json!({"id": "echo", "method": "echo"}), "echo"),
            (
                json!({"id": "echo", "method": "echo", "params": {"a": 1}}),
                "echo",
            ),
            (json!({"method": "echo", "params": 5}), "echo"),
            // updates
            (
                json!({"method": "update", "params": ["m1", {}]}),
                "update m1 ok",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {"new": row}}}]}),
                "update m1 ok",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {"old": null, "new": row}}}]}),
                "update m1 ok",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {}}}]}),
                "update m1 ok",
            ),
            (
                json!({"method": "update", "params": ["m1"]}),
                "update m1 error: malformed update notification for monitor m1",
            ),
            (
                json!({"method": "update", "params": ["m1", {}, {}]}),
                "update m1 error: malformed update notification for monitor m1",
            ),
            (
                json!({"method": "update", "params": ["m1", null]}),
                "update m1 error: malformed table-updates",
            ),
            (
                json!({"method": "update", "params": ["m1", []]}),
                "update m1 error: malformed table-updates",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": []}]}),
                "update m1 error: malformed table-update of table Bridge",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": 5}}]}),
                "update m1 error: malformed row-update of Bridge row u",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {"new": []}}}]}),
                "update m1 error: malformed Bridge row u (new): row",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {"old": {"ports": ["set", [{}]]}}}}]}),
                "update m1 error: malformed Bridge row u (old): column \"ports\": set element",
            ),
            (
                json!({"method": "update", "params": ["m1", {"Bridge": {"u": {"new": {"c": ["map", [["k"]]]}}}}]}),
                "update m1 error: map pair",
            ),
            (
                json!({"method": "update", "params": []}),
                "update ? error: malformed update notification params",
            ),
            (
                json!({"method": "update", "params": [1, {}]}),
                "update ? error: malformed update notification params",
            ),
            (
                json!({"method": "update", "params": [null]}),
                "update ? error: malformed update notification params",
            ),
            (
                json!({"method": "update", "params": "m1"}),
                "update ? error: malformed update notification params",
            ),
            (
                json!({"method": "update", "params": {"0": "m1"}}),
                "update ? error: malformed update notification params",
            ),
            (
                json!({"method": "update"}),
                "update ? error: malformed update notification params",
            ),
            // others
            (
                json!({"id": 3, "method": "lock", "params": ["x"]}),
                "other lock",
            ),
            (json!({"method": "locked", "params": ["x"]}), "other locked"),
            (
                json!({"method": "update2", "params": ["m1"]}),
                "other update2",
            ),
            (json!({"method": 5}), "error: malformed JSON-RPC method"),
            (
                json!({"method": ["echo"], "id": 1}),
                "error: malformed JSON-RPC method",
            ),
            (
                json!({"method": {}, "id": 1}),
                "error: malformed JSON-RPC method",
            ),
            (json!([1, 2]), "error: malformed JSON-RPC message"),
            (json!([]), "error: malformed JSON-RPC message"),
            (json!("update"), "error: malformed JSON-RPC message"),
            (json!(null), "error: malformed JSON-RPC message"),
        ];
        for (msg, want) in cases {
            let text = msg.to_string();
            let got = match Incoming::from_json(msg) {
                Ok(Incoming::Reply { id, .. }) => format!("reply {id}"),
                Ok(Incoming::StrayReply { .. }) => "stray".into(),
                Ok(Incoming::Echo { .. }) => "echo".into(),
                Ok(Incoming::Update { monitor, updates }) => {
                    match (monitor.as_deref().unwrap_or("?"), updates) {
                        (monitor, Ok(_)) => format!("update {monitor} ok"),
                        (monitor, Err(e)) => format!("update {monitor} error: {e}"),
                    }
                }
                Ok(Incoming::Other { method, .. }) => format!("other {method}"),
                Err(e) => format!("error: {e}"),
            };
            let got = got.replace("OVSDB protocol violation: ", "");
            let ok = match want.split_once(": ") {
                Some((head, tail)) => got.starts_with(head) && got.contains(tail),
                None => got == want,
            };
            assert!(ok, "{text}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn updates_parse() {
        let u = parse_table_updates(
            &json!({"Open_vSwitch": {"r": {"new": {"cur_cfg": 4}, "old": {"cur_cfg": 3}}}}),
        )
        .unwrap();
        let change = &u["Open_vSwitch"]["r"];
        assert_eq!(change.new.as_ref().unwrap().int("cur_cfg"), Some(4));
        assert_eq!(change.old.as_ref().unwrap().int("cur_cfg"), Some(3));
    }

    /// A cheap stand-in for the fuzz targets: pseudo-random streams of JSON-ish bytes,
    /// split at random, through the decoder, the classifier and the datum parser. The
    /// property is only that nothing panics.
    #[test]
    fn random_streams_never_panic() {
        let tokens: Vec<&str> = r#"{ } [ ] [ ] { } , , : : " \\ "update" "method" "params" "id" "echo" "set" "map" "uuid" "named-uuid" "result" "error" "new" "old" "m1" 1 -2 3.5 1e999 18446744073709551616 true null"#
            .split(' ')
            .collect();
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut values = 0;
        for _ in 0..20_000 {
            let len = next() % 24;
            let stream: Vec<u8> = (0..len)
                .flat_map(|_| tokens[next() % tokens.len()].bytes())
                .collect();
            for limit in [usize::MAX, 64, 0] {
                let mut d = crate::Decoder::with_limit(limit);
                let mut rest = &stream[..];
                'feed: while !rest.is_empty() {
                    let cut = (next() % 16).min(rest.len()).max(1);
                    d.push(&rest[..cut]);
                    rest = &rest[cut..];
                    loop {
                        match d.next_value() {
                            Ok(Some(v)) => {
                                values += 1;
                                let _ = crate::Datum::from_json(&v);
                                let _ = Row::from_json(&v);
                                let _ = parse_table_updates(&v);
                                let _ = Incoming::from_json(v);
                            }
                            Ok(None) => break,
                            Err(_) => break 'feed,
                        }
                    }
                }
            }
        }
        assert!(values > 100, "only {values} values decoded");
        // Shapes the tokens rarely make.
        for v in [
            json!({"method": "update", "params": ["m1", {"T": {"u": {"new": {"c": ["map", [[["set", []], 1]]]}}}}]}),
            json!({"method": "update", "params": ["m1", {"T": {"u": {"old": {"c": ["set", [["uuid", "a"], ["named-uuid", "b"], ["uuid"]]]}}}}]}),
            json!({"id": 1, "method": "echo", "params": ["set", ["map", []]]}),
        ] {
            let _ = Incoming::from_json(v);
        }
    }
}
