//! `show`: the configuration as a tree, printed exactly like `ovs-vsctl show` (Open vSwitch
//! 3.x) and serialisable as JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use serde::Serialize;
use sp_ovsdb::{Atom, Row};

use crate::state::State;

/// The whole switch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Show {
    pub uuid: String,
    pub managers: Vec<Target>,
    pub bridges: Vec<Bridge>,
    pub ovs_version: Option<String>,
}

/// A manager or controller connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    pub target: String,
    pub is_connected: bool,
}

/// A bridge and its ports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bridge {
    pub name: String,
    pub controllers: Vec<Target>,
    pub fail_mode: Option<String>,
    pub datapath_type: String,
    pub ports: Vec<Port>,
}

/// A port and its interfaces.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Port {
    pub name: String,
    pub tag: Option<i64>,
    pub trunks: Vec<i64>,
    pub interfaces: Vec<Interface>,
}

/// An interface.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub error: Option<String>,
    pub bfd_status: BTreeMap<String, String>,
    pub ofport: Option<i64>,
    pub external_ids: BTreeMap<String, String>,
}

/// Rows referenced from `column`, in UUID order as ovs-vsctl walks them.
fn refs<'a>(row: &Row, column: &str, table: &'a HashMap<String, Row>) -> Vec<&'a Row> {
    let mut uuids = row.uuids(column);
    uuids.sort_unstable();
    uuids.into_iter().filter_map(|u| table.get(u)).collect()
}

fn targets(row: &Row, column: &str, table: &HashMap<String, Row>) -> Vec<Target> {
    refs(row, column, table)
        .into_iter()
        .map(|t| Target {
            target: t.str("target").to_owned(),
            is_connected: t.bool("is_connected"),
        })
        .collect()
}

impl Show {
    pub(crate) fn from_state(st: &State) -> Show {
        let bridges_by_uuid: HashMap<String, Row> = st
            .bridges
            .iter()
            .map(|b| (b.uuid().to_owned(), b.clone()))
            .collect();
        let interface = |i: &Row| Interface {
            name: i.str("name").to_owned(),
            kind: i.str("type").to_owned(),
            options: i.string_map("options"),
            error: i.opt_str("error").map(str::to_owned),
            bfd_status: i.string_map("bfd_status"),
            ofport: i.int("ofport"),
            external_ids: i.string_map("external_ids"),
        };
        let port = |p: &Row| Port {
            name: p.str("name").to_owned(),
            tag: p.int("tag"),
            trunks: p.atoms("trunks").iter().filter_map(Atom::as_i64).collect(),
            interfaces: refs(p, "interfaces", &st.ifaces)
                .into_iter()
                .map(interface)
                .collect(),
        };
        let bridge = |b: &Row| Bridge {
            name: b.str("name").to_owned(),
            controllers: targets(b, "controller", &st.controllers),
            fail_mode: b.opt_str("fail_mode").map(str::to_owned),
            datapath_type: b.str("datapath_type").to_owned(),
            ports: refs(b, "ports", &st.ports).into_iter().map(port).collect(),
        };
        Show {
            uuid: st.root.uuid().to_owned(),
            managers: targets(&st.root, "manager_options", &st.managers),
            bridges: refs(&st.root, "bridges", &bridges_by_uuid)
                .into_iter()
                .map(bridge)
                .collect(),
            ovs_version: st.root.opt_str("ovs_version").map(str::to_owned),
        }
    }
}

/// ovs-vsctl's `string_needs_quotes` (Open vSwitch 3.x): bare only for identifiers made of
/// letters, digits, `_`, `-`, `.` that start with a letter or `_`, and are neither
/// `true`/`false` nor a UUID.
fn needs_quotes(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || s == "true"
        || s == "false"
        || looks_like_uuid(s)
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn quoted(s: &str) -> String {
    if needs_quotes(s) {
        serde_json::Value::from(s).to_string()
    } else {
        s.to_owned()
    }
}

fn map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}={}", quoted(k), quoted(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn line(out: &mut String, level: usize, text: fmt::Arguments<'_>) {
    let _ = writeln!(out, "{:width$}{text}", "", width = level * 4);
}

fn target(out: &mut String, level: usize, table: &str, t: &Target) {
    line(out, level, format_args!("{table} {}", quoted(&t.target)));
    if t.is_connected {
        line(out, level + 1, format_args!("is_connected: true"));
    }
}

impl fmt::Display for Show {
    /// The `ovs-vsctl show` text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        line(&mut out, 0, format_args!("{}", self.uuid));
        for m in &self.managers {
            target(&mut out, 1, "Manager", m);
        }
        for b in &self.bridges {
            line(&mut out, 1, format_args!("Bridge {}", quoted(&b.name)));
            for c in &b.controllers {
                target(&mut out, 2, "Controller", c);
            }
            if let Some(mode) = &b.fail_mode {
                line(&mut out, 2, format_args!("fail_mode: {}", quoted(mode)));
            }
            if !b.datapath_type.is_empty() {
                line(
                    &mut out,
                    2,
                    format_args!("datapath_type: {}", quoted(&b.datapath_type)),
                );
            }
            for p in &b.ports {
                line(&mut out, 2, format_args!("Port {}", quoted(&p.name)));
                if let Some(tag) = p.tag {
                    line(&mut out, 3, format_args!("tag: {tag}"));
                }
                if !p.trunks.is_empty() {
                    let t: Vec<String> = p.trunks.iter().map(i64::to_string).collect();
                    line(&mut out, 3, format_args!("trunks: [{}]", t.join(", ")));
                }
                for i in &p.interfaces {
                    line(&mut out, 3, format_args!("Interface {}", quoted(&i.name)));
                    if !i.kind.is_empty() {
                        line(&mut out, 4, format_args!("type: {}", quoted(&i.kind)));
                    }
                    if !i.options.is_empty() {
                        line(&mut out, 4, format_args!("options: {}", map(&i.options)));
                    }
                    if let Some(e) = &i.error {
                        line(&mut out, 4, format_args!("error: {}", quoted(e)));
                    }
                    if !i.bfd_status.is_empty() {
                        line(
                            &mut out,
                            4,
                            format_args!("bfd_status: {}", map(&i.bfd_status)),
                        );
                    }
                }
            }
        }
        if let Some(v) = &self.ovs_version {
            line(&mut out, 1, format_args!("ovs_version: {}", quoted(v)));
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_ovs_3() {
        for bare in ["br-ex", "qg-48cdaf68-67", "eno1", "internal", "_x.y"] {
            assert_eq!(quoted(bare), bare);
        }
        for (s, q) in [
            ("2.5.0", "\"2.5.0\""),
            ("", "\"\""),
            ("true", "\"true\""),
            ("ptcp:6640", "\"ptcp:6640\""),
            (
                "could not open network device eno1 (No such device)",
                "\"could not open network device eno1 (No such device)\"",
            ),
            (
                "ad8bb742-5fd4-43cb-b277-dba16e9a6b2e",
                "\"ad8bb742-5fd4-43cb-b277-dba16e9a6b2e\"",
            ),
        ] {
            assert_eq!(quoted(s), q);
        }
    }

    #[test]
    fn renders_the_notes_tree() {
        let iface = |name: &str, kind: &str, peer: Option<&str>| Interface {
            name: name.into(),
            kind: kind.into(),
            options: peer
                .map(|p| BTreeMap::from([("peer".to_owned(), p.to_owned())]))
                .unwrap_or_default(),
            error: None,
            bfd_status: BTreeMap::new(),
            ofport: None,
            external_ids: BTreeMap::new(),
        };
        let port = |name: &str, tag: Option<i64>, i: Interface| Port {
            name: name.into(),
            tag,
            trunks: vec![],
            interfaces: vec![i],
        };
        let show = Show {
            uuid: "ad8bb742-5fd4-43cb-b277-dba16e9a6b2e".into(),
            managers: vec![],
            bridges: vec![Bridge {
                name: "br-tun".into(),
                controllers: vec![],
                fail_mode: Some("secure".into()),
                datapath_type: String::new(),
                ports: vec![
                    port(
                        "patch-int",
                        None,
                        iface("patch-int", "patch", Some("patch-tun")),
                    ),
                    port(
                        "qr-610bdae7-c1",
                        Some(1),
                        iface("qr-610bdae7-c1", "internal", None),
                    ),
                ],
            }],
            ovs_version: Some("2.5.0".into()),
        };
        assert_eq!(
            show.to_string(),
            "ad8bb742-5fd4-43cb-b277-dba16e9a6b2e
    Bridge br-tun
        fail_mode: secure
        Port patch-int
            Interface patch-int
                type: patch
                options: {peer=patch-tun}
        Port qr-610bdae7-c1
            tag: 1
            Interface qr-610bdae7-c1
                type: internal
    ovs_version: \"2.5.0\"
"
        );
    }
}
