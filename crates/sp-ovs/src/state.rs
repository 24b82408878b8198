//! One consistent read of the Open vSwitch configuration: every table `show` and the
//! operations need, selected in a single transaction.

use std::collections::HashMap;

use sp_ovsdb::{Client, Operation, Row};

use crate::{Error, DB};

/// Rows of the tables `show` and the operations look at.
pub(crate) struct State {
    pub root: Row,
    pub bridges: Vec<Row>,
    pub ports: HashMap<String, Row>,
    pub ifaces: HashMap<String, Row>,
    pub controllers: HashMap<String, Row>,
    pub managers: HashMap<String, Row>,
}

const TABLES: [(&str, &[&str]); 6] = [
    (
        "Open_vSwitch",
        &[
            "_uuid",
            "bridges",
            "manager_options",
            "ovs_version",
            "cur_cfg",
            "next_cfg",
        ],
    ),
    (
        "Bridge",
        &[
            "_uuid",
            "name",
            "ports",
            "controller",
            "fail_mode",
            "datapath_type",
        ],
    ),
    ("Port", &["_uuid", "name", "interfaces", "tag", "trunks"]),
    (
        "Interface",
        &[
            "_uuid",
            "name",
            "type",
            "options",
            "error",
            "bfd_status",
            "ofport",
            "external_ids",
        ],
    ),
    ("Controller", &["_uuid", "target", "is_connected"]),
    ("Manager", &["_uuid", "target", "is_connected"]),
];

fn by_uuid(rows: Vec<Row>) -> HashMap<String, Row> {
    rows.into_iter().map(|r| (r.uuid().to_owned(), r)).collect()
}

impl State {
    pub async fn read(client: &Client) -> Result<State, Error> {
        let ops: Vec<Operation> = TABLES
            .iter()
            .map(|(table, columns)| Operation::select(table, vec![], Some(columns)))
            .collect();
        let mut results = client.transact(DB, &ops).await?.into_iter().map(|r| r.rows);
        let mut next = || results.next().unwrap_or_default();
        let root = next()
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotInitialized {
                db: client.endpoint().to_string(),
            })?;
        Ok(State {
            root,
            bridges: next(),
            ports: by_uuid(next()),
            ifaces: by_uuid(next()),
            controllers: by_uuid(next()),
            managers: by_uuid(next()),
        })
    }

    pub fn bridge(&self, name: &str) -> Option<&Row> {
        self.bridges.iter().find(|b| b.str("name") == name)
    }

    /// The port named `name` and the bridge holding it.
    pub fn port(&self, name: &str) -> Option<(&Row, Option<&Row>)> {
        let port = self.ports.values().find(|p| p.str("name") == name)?;
        let owner = self
            .bridges
            .iter()
            .find(|b| b.uuids("ports").contains(&port.uuid()));
        Some((port, owner))
    }

    pub fn iface(&self, name: &str) -> Option<&Row> {
        self.ifaces.values().find(|i| i.str("name") == name)
    }
}
