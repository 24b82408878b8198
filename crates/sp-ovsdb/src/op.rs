//! Typed transaction operations (RFC 7047 §5.2) and their results.

use serde_json::{json, Map, Value};

use crate::{Datum, Error, Row};

/// A condition function (`"=="`, `"includes"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
    Includes,
    Excludes,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Ge => ">=",
            Function::Gt => ">",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: Function,
    pub value: Datum,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Datum>) -> Condition {
        Condition::new(column, Function::Eq, value)
    }

    /// Any function.
    pub fn new(column: &str, function: Function, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.to_owned(),
            function,
            value: value.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

/// A mutator (`"+="`, `"insert"`, `"delete"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Insert,
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: Mutator,
    pub value: Datum,
}

impl Mutation {
    /// Any mutation.
    pub fn new(column: &str, mutator: Mutator, value: impl Into<Datum>) -> Mutation {
        Mutation {
            column: column.to_owned(),
            mutator,
            value: value.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!([self.column, self.mutator.as_str(), self.value.to_json()])
    }
}

/// When a `wait` operation is satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Equal,
    NotEqual,
}

/// One operation of a `transact` request.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Insert {
        table: String,
        row: Row,
        uuid_name: Option<String>,
    },
    Select {
        table: String,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    },
    Update {
        table: String,
        conditions: Vec<Condition>,
        row: Row,
    },
    Mutate {
        table: String,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    Delete {
        table: String,
        conditions: Vec<Condition>,
    },
    /// Aborts the transaction unless the selected `columns` of the rows matching
    /// `conditions` are (or are not) exactly `rows` within `timeout_ms` (0 = check now).
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: Until,
        rows: Vec<Row>,
        timeout_ms: Option<u64>,
    },
    /// Text for the server's log.
    Comment(String),
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| json!(s)).collect())
}

fn conds(c: &[Condition]) -> Value {
    Value::Array(c.iter().map(Condition::to_json).collect())
}

impl Operation {
    /// Insert `row` into `table`, naming it `uuid_name` for later operations.
    pub fn insert(table: &str, row: Row, uuid_name: Option<&str>) -> Operation {
        Operation::Insert {
            table: table.to_owned(),
            row,
            uuid_name: uuid_name.map(str::to_owned),
        }
    }

    /// Select `columns` (all when `None`) of the rows matching `conditions`.
    pub fn select(table: &str, conditions: Vec<Condition>, columns: Option<&[&str]>) -> Operation {
        Operation::Select {
            table: table.to_owned(),
            conditions,
            columns: columns.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    /// Mutate the rows matching `conditions`.
    pub fn mutate(table: &str, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Operation {
        Operation::Mutate {
            table: table.to_owned(),
            conditions,
            mutations,
        }
    }

    /// Fail the transaction at once if any row of `table` matches `conditions`.
    pub fn assert_absent(table: &str, conditions: Vec<Condition>) -> Operation {
        Operation::Wait {
            table: table.to_owned(),
            conditions,
            columns: vec!["_uuid".to_owned()],
            until: Until::Equal,
            rows: vec![],
            timeout_ms: Some(0),
        }
    }

    /// The operation's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Insert { .. } => "insert",
            Operation::Select { .. } => "select",
            Operation::Update { .. } => "update",
            Operation::Mutate { .. } => "mutate",
            Operation::Delete { .. } => "delete",
            Operation::Wait { .. } => "wait",
            Operation::Comment(_) => "comment",
        }
    }

    /// The JSON object of this operation.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("op".into(), json!(self.name()));
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                o.insert("table".into(), json!(table));
                o.insert("row".into(), row.to_json());
                if let Some(n) = uuid_name {
                    o.insert("uuid-name".into(), json!(n));
                }
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                o.insert("table".into(), json!(table));
                o.insert("where".into(), conds(conditions));
                if let Some(c) = columns {
                    o.insert("columns".into(), strings(c));
                }
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                o.insert("table".into(), json!(table));
                o.insert("where".into(), conds(conditions));
                o.insert("row".into(), row.to_json());
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                o.insert("table".into(), json!(table));
                o.insert("where".into(), conds(conditions));
                o.insert(
                    "mutations".into(),
                    Value::Array(mutations.iter().map(Mutation::to_json).collect()),
                );
            }
            Operation::Delete { table, conditions } => {
                o.insert("table".into(), json!(table));
                o.insert("where".into(), conds(conditions));
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until,
                rows,
                timeout_ms,
            } => {
                o.insert("table".into(), json!(table));
                o.insert("where".into(), conds(conditions));
                o.insert("columns".into(), strings(columns));
                let until = match until {
                    Until::Equal => "==",
                    Until::NotEqual => "!=",
                };
                o.insert("until".into(), json!(until));
                o.insert(
                    "rows".into(),
                    Value::Array(rows.iter().map(Row::to_json).collect()),
                );
                if let Some(t) = timeout_ms {
                    o.insert("timeout".into(), json!(t));
                }
            }
            Operation::Comment(text) => {
                o.insert("comment".into(), json!(text));
            }
        }
        Value::Object(o)
    }
}

/// The result of one successful operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpResult {
    /// `insert`: the new row's UUID.
    pub uuid: Option<String>,
    /// `select`: the rows.
    pub rows: Vec<Row>,
    /// `update`, `mutate`, `delete`: how many rows matched.
    pub count: Option<u64>,
}

impl OpResult {
    /// Splits a `transact` result array into per-operation results, turning the first
    /// failed operation (or the commit failure after the last operation) into an error.
    pub(crate) fn parse_all(ops: &[Operation], result: &Value) -> Result<Vec<OpResult>, Error> {
        let items = result.as_array().ok_or_else(|| {
            Error::malformed(
                "transact result (expected an array of operation results)",
                result,
            )
        })?;
        for (index, item) in items.iter().enumerate() {
            if item.get("error").is_some_and(|e| !e.is_null()) {
                let (error, details) = Error::parts(item);
                return Err(match ops.get(index) {
                    Some(op) => Error::Operation {
                        index,
                        op: op.name().to_owned(),
                        error,
                        details,
                    },
                    None => Error::Commit { error, details },
                });
            }
        }
        if items.len() < ops.len() {
            return Err(Error::Protocol(format!(
                "transact returned {} results for {} operations",
                items.len(),
                ops.len()
            )));
        }
        ops.iter()
            .zip(items)
            .enumerate()
            .map(|(index, (op, item))| OpResult::parse(index, op, item))
            .collect()
    }

    /// One successful operation's result, in the shape RFC 7047 §5.2 gives for `op`.
    fn parse(index: usize, op: &Operation, item: &Value) -> Result<OpResult, Error> {
        let what = |expected: &str| {
            format!(
                "result of operation {index} ({}) (expected {expected})",
                op.name()
            )
        };
        let obj = item
            .as_object()
            .ok_or_else(|| Error::malformed(what("a JSON object"), item))?;
        let mut out = OpResult::default();
        match op {
            Operation::Insert { .. } => match obj.get("uuid").and_then(Value::as_array) {
                Some(u) => match u.as_slice() {
                    [Value::String(tag), Value::String(uuid)] if tag == "uuid" => {
                        out.uuid = Some(uuid.clone())
                    }
                    _ => return Err(Error::malformed(what("{\"uuid\": [\"uuid\", …]}"), item)),
                },
                None => return Err(Error::malformed(what("{\"uuid\": [\"uuid\", …]}"), item)),
            },
            Operation::Select { .. } => {
                let rows = obj
                    .get("rows")
                    .and_then(Value::as_array)
                    .ok_or_else(|| Error::malformed(what("{\"rows\": [row…]}"), item))?;
                out.rows = rows.iter().map(Row::from_json).collect::<Result<_, _>>()?;
            }
            Operation::Update { .. } | Operation::Mutate { .. } | Operation::Delete { .. } => {
                out.count = Some(
                    obj.get("count")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| Error::malformed(what("{\"count\": n}"), item))?,
                );
            }
            Operation::Wait { .. } | Operation::Comment(_) => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_encode_as_the_rfc_says() {
        let ops = [
            (
                Operation::insert(
                    "Port",
                    Row::new()
                        .with("name", "p")
                        .with("interfaces", Datum::named("i")),
                    Some("port"),
                ),
                json!({"op":"insert","table":"Port","row":{"name":"p","interfaces":["named-uuid","i"]},"uuid-name":"port"}),
            ),
            (
                Operation::select(
                    "Bridge",
                    vec![Condition::eq("name", "br-ex")],
                    Some(&["_uuid", "ports"]),
                ),
                json!({"op":"select","table":"Bridge","where":[["name","==","br-ex"]],"columns":["_uuid","ports"]}),
            ),
            (
                Operation::mutate(
                    "Open_vSwitch",
                    vec![],
                    vec![Mutation::new("next_cfg", Mutator::Add, 1i64)],
                ),
                json!({"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["next_cfg","+=",1]]}),
            ),
            (
                Operation::mutate(
                    "Bridge",
                    vec![Condition::new("_uuid", Function::Eq, Datum::uuid("b"))],
                    vec![Mutation::new("ports", Mutator::Delete, Datum::uuids(["p"]))],
                ),
                json!({"op":"mutate","table":"Bridge","where":[["_uuid","==",["uuid","b"]]],"mutations":[["ports","delete",["set",[["uuid","p"]]]]]}),
            ),
            (
                Operation::assert_absent("Port", vec![Condition::eq("name", "p")]),
                json!({"op":"wait","table":"Port","where":[["name","==","p"]],"columns":["_uuid"],"until":"==","rows":[],"timeout":0}),
            ),
            (
                Operation::Update {
                    table: "Interface".into(),
                    conditions: vec![Condition::new("ofport", Function::Lt, 0i64)],
                    row: Row::new().with("type", "internal"),
                },
                json!({"op":"update","table":"Interface","where":[["ofport","<",0]],"row":{"type":"internal"}}),
            ),
            (
                Operation::Delete {
                    table: "Manager".into(),
                    conditions: vec![Condition::new("target", Function::Includes, "ptcp:6640")],
                },
                json!({"op":"delete","table":"Manager","where":[["target","includes","ptcp:6640"]]}),
            ),
            (
                Operation::Comment("ovs-attach: add-br br-ex".into()),
                json!({"op":"comment","comment":"ovs-attach: add-br br-ex"}),
            ),
        ];
        for (op, want) in ops {
            assert_eq!(op.to_json(), want);
        }
    }

    #[test]
    fn results_and_per_operation_errors() {
        let ops = vec![
            Operation::assert_absent("Port", vec![]),
            Operation::select("Bridge", vec![], None),
        ];
        let ok = json!([{}, {"rows": [{"name": "br-ex"}]}]);
        let r = OpResult::parse_all(&ops, &ok).unwrap();
        assert_eq!(r[1].rows[0].str("name"), "br-ex");

        let failed = json!([{"error": "timed out", "details": "\"wait\" timed out"}, null]);
        match OpResult::parse_all(&ops, &failed).unwrap_err() {
            Error::Operation {
                index,
                op,
                error,
                details,
            } => {
                assert_eq!(
                    (index, op.as_str(), error.as_str()),
                    (0, "wait", "timed out")
                );
                assert_eq!(details.as_deref(), Some("\"wait\" timed out"));
            }
            e => panic!("{e}"),
        }

        let commit =
            json!([{}, {"rows": []}, {"error": "referential integrity violation", "details": "x"}]);
        let e = OpResult::parse_all(&ops, &commit).unwrap_err();
        assert!(matches!(e, Error::Commit { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "OVSDB transaction could not commit: referential integrity violation (x)"
        );
    }

    #[test]
    fn results_of_the_wrong_shape_are_errors_naming_the_operation() {
        let insert = Operation::insert("Bridge", Row::new(), None);
        let select = Operation::select("Bridge", vec![], None);
        let mutate = Operation::mutate("Bridge", vec![], vec![]);
        let wait = Operation::assert_absent("Port", vec![]);
        // (operation, its result, what the error says; "" = fine)
        let cases = [
            (&insert, json!({"uuid": ["uuid", "u"]}), ""),
            (&insert, json!({}), "operation 0 (insert)"),
            (&insert, json!({"uuid": "u"}), "operation 0 (insert)"),
            (&insert, json!({"uuid": ["uuid"]}), "operation 0 (insert)"),
            (
                &insert,
                json!({"uuid": ["uuid", 1]}),
                "operation 0 (insert)",
            ),
            (
                &insert,
                json!({"uuid": ["named-uuid", "u"]}),
                "operation 0 (insert)",
            ),
            (&insert, json!(null), "operation 0 (insert)"),
            (&select, json!({"rows": []}), ""),
            (&select, json!({}), "operation 0 (select)"),
            (&select, json!({"rows": {}}), "operation 0 (select)"),
            (&select, json!({"rows": [1]}), "malformed row"),
            (&select, json!({"rows": [{"c": {}}]}), "column \"c\""),
            (&select, json!([]), "operation 0 (select)"),
            (&mutate, json!({"count": 0}), ""),
            (&mutate, json!({"count": -1}), "operation 0 (mutate)"),
            (&mutate, json!({"count": "1"}), "operation 0 (mutate)"),
            (&mutate, json!({}), "operation 0 (mutate)"),
            (&wait, json!({}), ""),
            (&wait, json!({"anything": [1]}), ""),
            (&wait, json!(5), "operation 0 (wait)"),
        ];
        for (op, item, want) in cases {
            let ops = [op.clone()];
            match OpResult::parse_all(&ops, &json!([item])) {
                Ok(_) => assert!(want.is_empty(), "{item}"),
                Err(e) => {
                    assert!(
                        !want.is_empty() && e.to_string().contains(want),
                        "{item}: {e}"
                    )
                }
            }
        }
        // The whole result of the wrong shape.
        for result in [json!(null), json!({}), json!("x"), json!(1)] {
            let e = OpResult::parse_all(std::slice::from_ref(&wait), &result).unwrap_err();
            assert!(e.to_string().contains("malformed transact result"), "{e}");
        }
        // Short, or errors of odd shapes.
        let e = OpResult::parse_all(&[wait.clone(), wait.clone()], &json!([{}])).unwrap_err();
        assert!(e.to_string().contains("1 results for 2 operations"), "{e}");
        let e = OpResult::parse_all(std::slice::from_ref(&wait), &json!([{"error": {"a": 1}}]))
            .unwrap_err();
        assert!(matches!(e, Error::Operation { .. }), "{e}");
        let e = OpResult::parse_all(std::slice::from_ref(&wait), &json!([{}, {"error": 7}]))
            .unwrap_err();
        assert!(matches!(e, Error::Commit { .. }), "{e}");
    }
}
