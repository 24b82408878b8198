//! OVSDB values (RFC 7047 §5.1): atoms, sets, maps and rows, with their JSON notation.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::Error;

/// One OVSDB atom.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    /// A row's UUID, `["uuid", "…"]`.
    Uuid(String),
    /// A row inserted earlier in the same transaction, `["named-uuid", "…"]`.
    NamedUuid(String),
}

impl Atom {
    /// The JSON notation of this atom.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    /// Parses an atom; `None` when `v` is not one. Total over any JSON: an integer that
    /// does not fit an `i64` (RFC 7047's integers are 64-bit signed) is not an atom.
    pub fn from_json(v: &Value) -> Option<Atom> {
        Some(match v {
            Value::Bool(b) => Atom::Boolean(*b),
            Value::String(s) => Atom::String(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Atom::Integer(i),
                None if n.is_f64() => Atom::Real(n.as_f64()?),
                None => return None,
            },
            Value::Array(a) => match a.as_slice() {
                [Value::String(tag), Value::String(id)] if tag == "uuid" => Atom::Uuid(id.clone()),
                [Value::String(tag), Value::String(id)] if tag == "named-uuid" => {
                    Atom::NamedUuid(id.clone())
                }
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The string inside a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The UUID inside a uuid atom.
    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Atom::Uuid(u) => Some(u),
            _ => None,
        }
    }

    /// The number inside an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Atom::String(s.to_owned())
    }
}

impl From<String> for Atom {
    fn from(s: String) -> Self {
        Atom::String(s)
    }
}

impl From<i64> for Atom {
    fn from(i: i64) -> Self {
        Atom::Integer(i)
    }
}

impl From<bool> for Atom {
    fn from(b: bool) -> Self {
        Atom::Boolean(b)
    }
}

/// A column value: a bare atom, a set or a map.
///
/// The server sends a set of exactly one element as the bare atom, so readers should use
/// [`Datum::atoms`], which sees both the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Atom(Atom),
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

impl Datum {
    /// A set of UUID references.
    pub fn uuids<I: IntoIterator<Item = S>, S: Into<String>>(uuids: I) -> Datum {
        Datum::Set(uuids.into_iter().map(|u| Atom::Uuid(u.into())).collect())
    }

    /// A reference to a row inserted in the same transaction under `name`.
    pub fn named(name: &str) -> Datum {
        Datum::Atom(Atom::NamedUuid(name.to_owned()))
    }

    /// A UUID reference.
    pub fn uuid(uuid: &str) -> Datum {
        Datum::Atom(Atom::Uuid(uuid.to_owned()))
    }

    /// A string→string map.
    pub fn string_map<'a, I: IntoIterator<Item = (&'a String, &'a String)>>(map: I) -> Datum {
        Datum::Map(
            map.into_iter()
                .map(|(k, v)| (Atom::from(k.as_str()), Atom::from(v.as_str())))
                .collect(),
        )
    }

    /// The JSON notation of this datum.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Atom(a) => a.to_json(),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Parses a datum in the RFC's notation: an atom, `["set", [atom…]]` or
    /// `["map", [[atom, atom]…]]`. Total over any JSON (no recursion, so any depth):
    /// anything else is [`Error::Malformed`] naming the offending part.
    pub fn from_json(v: &Value) -> Result<Datum, Error> {
        const VALUE: &str = "OVSDB value (expected an atom, [\"uuid\",…], [\"named-uuid\",…], \
                             [\"set\",[atoms]] or [\"map\",[[atom,atom]…]])";
        if let Some(atom) = Atom::from_json(v) {
            return Ok(Datum::Atom(atom));
        }
        let atom = |what: &str, i: &Value| {
            Atom::from_json(i)
                .ok_or_else(|| Error::malformed(format!("{what} (expected an atom)"), i))
        };
        match v.as_array().map(Vec::as_slice) {
            Some([Value::String(tag), Value::Array(items)]) if tag == "set" => items
                .iter()
                .map(|i| atom("set element", i))
                .collect::<Result<_, _>>()
                .map(Datum::Set),
            Some([Value::String(tag), Value::Array(items)]) if tag == "map" => items
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => Ok((atom("map key", k)?, atom("map value", v)?)),
                    _ => Err(Error::malformed("map pair (expected [key, value])", pair)),
                })
                .collect::<Result<_, _>>()
                .map(Datum::Map),
            _ => Err(Error::malformed(VALUE, v)),
        }
    }

    /// The elements of a set, a bare atom being a set of one; empty for a map.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Datum::Atom(a) => std::slice::from_ref(a),
            Datum::Set(s) => s,
            Datum::Map(_) => &[],
        }
    }

    /// The pairs of a map; empty for anything else (an empty map may arrive as a set).
    pub fn pairs(&self) -> &[(Atom, Atom)] {
        match self {
            Datum::Map(m) => m,
            _ => &[],
        }
    }
}

impl<T: Into<Atom>> From<T> for Datum {
    fn from(v: T) -> Self {
        Datum::Atom(v.into())
    }
}

/// A row: column name → value. Used both for rows sent (insert/update) and rows read
/// (select/monitor), with typed readers that treat a missing column as empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub BTreeMap<String, Datum>);

impl Row {
    /// An empty row.
    pub fn new() -> Row {
        Row::default()
    }

    /// This row with `column` set to `value`.
    pub fn with(mut self, column: &str, value: impl Into<Datum>) -> Row {
        self.0.insert(column.to_owned(), value.into());
        self
    }

    /// The value of a column.
    pub fn get(&self, column: &str) -> Option<&Datum> {
        self.0.get(column)
    }

    /// A string column (`""` when unset).
    pub fn str(&self, column: &str) -> &str {
        self.atoms(column)
            .first()
            .and_then(Atom::as_str)
            .unwrap_or("")
    }

    /// An optional string column.
    pub fn opt_str(&self, column: &str) -> Option<&str> {
        self.atoms(column).first().and_then(Atom::as_str)
    }

    /// An optional integer column.
    pub fn int(&self, column: &str) -> Option<i64> {
        self.atoms(column).first().and_then(Atom::as_i64)
    }

    /// A boolean column (`false` when unset).
    pub fn bool(&self, column: &str) -> bool {
        matches!(self.atoms(column).first(), Some(Atom::Boolean(true)))
    }

    /// The row's own UUID (`_uuid`).
    pub fn uuid(&self) -> &str {
        self.atoms("_uuid")
            .first()
            .and_then(Atom::as_uuid)
            .unwrap_or("")
    }

    /// The atoms of a set column (empty when unset).
    pub fn atoms(&self, column: &str) -> &[Atom] {
        self.get(column).map(Datum::atoms).unwrap_or(&[])
    }

    /// The UUIDs in a reference column.
    pub fn uuids(&self, column: &str) -> Vec<&str> {
        self.atoms(column)
            .iter()
            .filter_map(Atom::as_uuid)
            .collect()
    }

    /// A string→string map column.
    pub fn string_map(&self, column: &str) -> BTreeMap<String, String> {
        self.get(column)
            .map(Datum::pairs)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
            .collect()
    }

    /// The JSON object sent for this row.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// Parses a row object as the server sends it: column name → datum. Anything else
    /// is [`Error::Malformed`], naming the column whose value is wrong.
    pub fn from_json(v: &Value) -> Result<Row, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::malformed("row (expected a JSON object)", v))?;
        obj.iter()
            .map(|(k, v)| {
                let datum = Datum::from_json(v).map_err(|e| match e {
                    Error::Malformed { what, got } => Error::Malformed {
                        what: format!("column {k:?}: {what}"),
                        got,
                    },
                    other => other,
                })?;
                Ok((k.clone(), datum))
            })
            .collect::<Result<_, _>>()
            .map(Row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation_round_trips() {
        let cases = [
            json!(42),
            json!(1.5),
            json!(true),
            json!("br-ex"),
            json!(["uuid", "3f1057d2-3d85-4619-b862-2c5db502b0a1"]),
            json!(["named-uuid", "port"]),
            json!(["set", []]),
            json!(["set", [1, 2]]),
            json!(["set", [["uuid", "a"], ["uuid", "b"]]]),
            json!(["map", [["peer", "patch-tun"]]]),
            json!(["map", []]),
        ];
        for c in cases {
            assert_eq!(Datum::from_json(&c).unwrap().to_json(), c);
        }
        assert!(Datum::from_json(&json!({"a": 1})).is_err());
        assert!(Datum::from_json(&json!(["set", [{}]])).is_err());
        assert!(Datum::from_json(&json!(["map", [["k"]]])).is_err());
    }

    #[test]
    fn a_single_element_set_reads_like_a_bare_atom() {
        let row = Row::from_json(&json!({
            "_uuid": ["uuid", "u1"],
            "ports": ["uuid", "p1"],
            "trunks": ["set", [1, 2]],
            "tag": ["set", []],
            "error": "boom",
            "options": ["map", [["peer", "patch-int"]]],
            "ofport": 3,
        }))
        .unwrap();
        assert_eq!(row.uuid(), "u1");
        assert_eq!(row.uuids("ports"), vec!["p1"]);
        assert_eq!(row.atoms("trunks").len(), 2);
        assert_eq!(row.int("tag"), None);
        assert_eq!(row.int("ofport"), Some(3));
        assert_eq!(row.opt_str("error"), Some("boom"));
        assert_eq!(row.str("missing"), "");
        assert_eq!(row.string_map("options")["peer"], "patch-int");
        assert!(row.string_map("tag").is_empty());
    }

    #[test]
    fn rows_encode_to_objects() {
        let row = Row::new()
            .with("name", "br-ex")
            .with("ports", Datum::named("p"))
            .with("interfaces", Datum::uuids(["x"]));
        assert_eq!(
            row.to_json(),
            json!({"name": "br-ex", "ports": ["named-uuid", "p"], "interfaces": ["set", [["uuid", "x"]]]})
        );
    }

    #[test]
    fn every_malformed_shape_is_an_error_naming_it() {
        // (JSON, what the error must mention)
        let cases = [
            (json!(null), "OVSDB value"),
            (json!({"a": 1}), "OVSDB value"),
            (json!([]), "OVSDB value"),
            (json!(["set"]), "OVSDB value"),
            (json!(["set", []]), ""),
            (json!(["set", [], []]), "OVSDB value"),
            (json!(["set", {}]), "OVSDB value"),
            (json!(["set", "x"]), "OVSDB value"),
            (json!(["set", [{}]]), "set element"),
            (json!(["set", [null]]), "set element"),
            (json!(["set", [["set", []]]]), "set element"),
            (json!(["set", [["uuid"]]]), "set element"),
            (json!(["set", [["uuid", 1]]]), "set element"),
            (json!(["set", [["uuid", "a", "b"]]]), "set element"),
            (json!(["set", [18446744073709551615u64]]), "set element"),
            (json!(["map"]), "OVSDB value"),
            (json!(["map", {}]), "OVSDB value"),
            (json!(["map", [["k"]]]), "map pair"),
            (json!(["map", [["k", "v", "w"]]]), "map pair"),
            (json!(["map", ["k"]]), "map pair"),
            (json!(["map", [[{}, "v"]]]), "map key"),
            (json!(["map", [["k", ["map", []]]]]), "map value"),
            (json!(["map", [[null, null]]]), "map key"),
            (json!(["uuid"]), "OVSDB value"),
            (json!(["uuid", 7]), "OVSDB value"),
            (json!(["uuid", "a", "b"]), "OVSDB value"),
            (json!(["named-uuid"]), "OVSDB value"),
            (json!(["named-uuid", ["uuid", "a"]]), "OVSDB value"),
            (json!([1, 2]), "OVSDB value"),
            (json!([["set", []]]), "OVSDB value"),
            (json!(18446744073709551615u64), "OVSDB value"),
        ];
        for (v, want) in cases {
            match Datum::from_json(&v) {
                Ok(d) => assert!(want.is_empty(), "{v} parsed as {d:?}"),
                Err(e @ Error::Malformed { .. }) => {
                    assert!(!want.is_empty(), "{v}: {e}");
                    assert!(e.to_string().contains(want), "{v}: {e}");
                }
                Err(e) => panic!("{v}: not Malformed: {e}"),
            }
        }
        // Non-string map keys are atoms like any other.
        assert_eq!(
            Datum::from_json(&json!(["map", [[1, true], [["uuid", "u"], 2.5]]])).unwrap(),
            Datum::Map(vec![
                (Atom::Integer(1), Atom::Boolean(true)),
                (Atom::Uuid("u".into()), Atom::Real(2.5)),
            ])
        );
        // Rows name the column.
        for bad in [json!(null), json!([]), json!("row"), json!(1)] {
            assert!(Row::from_json(&bad)
                .unwrap_err()
                .to_string()
                .contains("row"));
        }
        let e = Row::from_json(&json!({"ports": ["set", [{}]]})).unwrap_err();
        assert!(
            e.to_string().contains("column \"ports\": set element"),
            "{e}"
        );
    }

    #[test]
    fn huge_and_deep_values_do_not_hurt() {
        let n = 200_000;
        let set = json!(["set", (0..n).collect::<Vec<_>>()]);
        assert_eq!(Datum::from_json(&set).unwrap().atoms().len(), n);
        let mut bad = (0..n).map(|i| json!(i)).collect::<Vec<_>>();
        bad.push(json!({"x": "y".repeat(1 << 20)}));
        let e = Datum::from_json(&json!(["set", bad]))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 600, "{} bytes", e.len());
        // Nesting far beyond what serde_json parses, built by hand.
        let mut deep = json!(["set", []]);
        for _ in 0..100_000 {
            deep = Value::Array(vec![json!("set"), Value::Array(vec![deep])]);
        }
        assert!(Datum::from_json(&deep).is_err());
        let row = Value::Object([("c".to_owned(), deep)].into_iter().collect());
        assert!(Row::from_json(&row).is_err());
        // Dropping it recursively would overflow the test thread's stack.
        std::mem::forget(row);
    }
}
