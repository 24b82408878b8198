//! Floor 4: Open vSwitch bridges and ports over the OVSDB protocol — what `ovs-vsctl`
//! does for add-br / del-br / add-port / del-port / show, without running it.
//!
//! Every change is one OVSDB transaction that
//! * re-checks, inside the transaction, what was decided from the read before it (a
//!   `wait … until == []` guard per new name, so a concurrent client cannot make us
//!   create a duplicate),
//! * bumps `Open_vSwitch.next_cfg`,
//!
//! and then, unless `wait` is off, waits (with a timeout) until ovs-vswitchd reports
//! `cur_cfg >= next_cfg` and checks the new interfaces' `error` column — exactly how
//! ovs-vsctl knows a change has been applied.

mod announce;
pub mod attach;

mod error;
pub mod persist;
mod show;
mod state;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sp_names::IfName;
pub use sp_ovsdb::Endpoint;
use sp_ovsdb::{
    Client, Condition, Datum, MonitorRequest, Mutation, Mutator, Operation, Row, TableUpdates,
};

pub use error::Error;
pub use show::{Bridge, Interface, Port, Show, Target};
use state::State;

/// The database ovs-vswitchd reads.
pub const DB: &str = "Open_vSwitch";

/// Where ovsdb-server listens on a standard install (`OVS_RUNDIR` unset).
pub const DEFAULT_DB: &str = "unix:/var/run/openvswitch/db.sock";

/// The ovsdb-server ovs-vsctl talks to by default: `unix:$OVS_RUNDIR/db.sock`, or
/// [`DEFAULT_DB`] when `OVS_RUNDIR` is unset or empty. (`OVS_DBDIR` names the directory
/// of `conf.db`, a file only ovsdb-server opens: nothing here reads it.)
pub fn default_db() -> Endpoint {
    match std::env::var_os("OVS_RUNDIR") {
        Some(dir) if !dir.is_empty() => Endpoint::Unix(std::path::Path::new(&dir).join("db.sock")),
        _ => DEFAULT_DB.parse().expect("a valid endpoint"),
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Change {
    Created,
    Deleted,
    /// Already as asked (`--may-exist`, `--if-exists`): nothing was sent.
    Unchanged,
    /// The port was moved here from bridge `from`.
    Moved {
        from: String,
    },
}

/// A bridge to create.
#[derive(Debug, Clone, Default)]
pub struct BridgeSpec {
    /// `netdev` for the userspace datapath (hosts without the openvswitch kernel
    /// module); empty for the default (`system`).
    pub datapath_type: String,
    /// `secure` or `standalone`.
    pub fail_mode: Option<String>,
    /// An existing bridge of that name is success, not an error.
    pub may_exist: bool,
}

/// A port (with its one interface) to create.
#[derive(Debug, Clone, Default)]
pub struct PortSpec {
    pub name: String,
    /// Interface type: empty for a system device (a NIC, a veth), `internal` for a port
    /// OVS creates (Neutron's `qg-`, `qr-`, `tap…`), `patch`, …
    pub kind: String,
    /// Interface options (`peer` for patch ports).
    pub options: BTreeMap<String, String>,
    /// Interface external_ids (Neutron: `iface-id`, `attached-mac`, `iface-status`).
    pub external_ids: BTreeMap<String, String>,
    /// Access VLAN tag.
    pub tag: Option<u16>,
    /// The port already on this bridge is success, not an error.
    pub may_exist: bool,
    /// The port on another bridge is moved here instead of refused.
    pub move_from_other_bridge: bool,
}

impl PortSpec {
    /// A port named `name` of interface type `kind`.
    pub fn new(name: &str, kind: &str) -> PortSpec {
        PortSpec {
            name: name.to_owned(),
            kind: kind.to_owned(),
            ..PortSpec::default()
        }
    }

    /// Marks the interface as Neutron's port `iface_id` with MAC `mac`, as the OVS agent
    /// does (`external_ids:iface-id`, `attached-mac`, `iface-status=active`).
    pub fn neutron(mut self, iface_id: &str, mac: &str) -> PortSpec {
        for (k, v) in [
            ("iface-id", iface_id),
            ("attached-mac", mac),
            ("iface-status", "active"),
        ] {
            self.external_ids.insert(k.to_owned(), v.to_owned());
        }
        self
    }
}

/// A pair of patch ports joining two bridges (`patch-int` on br-int ↔ `patch-tun` on
/// br-tun).
#[derive(Debug, Clone)]
pub struct PatchSpec {
    pub bridge: String,
    pub port: String,
    pub peer_bridge: String,
    pub peer_port: String,
    pub may_exist: bool,
}

/// A connection to ovsdb-server for Open vSwitch operations.
pub struct Ovs {
    client: Client,
    wait: bool,
}

/// Operations of one transaction and the interfaces it creates.
#[derive(Default)]
struct Txn {
    ops: Vec<Operation>,
    new_ifaces: Vec<String>,
}

fn by_uuid(uuid: &str) -> Vec<Condition> {
    vec![Condition::eq("_uuid", Datum::uuid(uuid))]
}

fn by_name(name: &str) -> Vec<Condition> {
    vec![Condition::eq("name", name)]
}

fn cur_cfg(updates: &TableUpdates) -> Option<i64> {
    updates
        .get("Open_vSwitch")?
        .values()
        .find_map(|u| u.new.as_ref()?.int("cur_cfg"))
}

impl Ovs {
    /// Connects to ovsdb-server at `db`. `timeout` bounds every request and the wait for
    /// ovs-vswitchd; `wait: false` is ovs-vsctl's `--no-wait`.
    pub async fn connect(db: &Endpoint, timeout: Duration, wait: bool) -> Result<Ovs, Error> {
        Ok(Ovs {
            client: Client::connect(db, timeout).await?,
            wait,
        })
    }

    /// The bound on every request and on the wait for ovs-vswitchd.
    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// `add-br NAME` (`--may-exist`), with the bridge's internal port and interface.
    pub async fn add_br(&self, name: &str, spec: &BridgeSpec) -> Result<Change, Error> {
        IfName::check(name)?;
        let st = State::read(&self.client).await?;
        if st.bridge(name).is_some() {
            return match spec.may_exist {
                true => Ok(Change::Unchanged),
                false => Err(Error::BridgeExists(name.to_owned())),
            };
        }
        let mut txn = Txn::default();
        plan_port(
            &mut txn,
            &st,
            "a bridge",
            &PortSpec::new(name, "internal"),
            "0",
        )?;
        let mut bridge = Row::new()
            .with("name", name)
            .with("ports", Datum::named("port0"));
        if !spec.datapath_type.is_empty() {
            bridge = bridge.with("datapath_type", spec.datapath_type.as_str());
        }
        if let Some(mode) = &spec.fail_mode {
            bridge = bridge.with("fail_mode", mode.as_str());
        }
        txn.ops
            .push(Operation::assert_absent("Bridge", by_name(name)));
        txn.ops
            .push(Operation::insert("Bridge", bridge, Some("bridge")));
        txn.ops.push(Operation::mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                Datum::named("bridge"),
            )],
        ));
        self.commit(txn).await?;
        Ok(Change::Created)
    }

    /// `del-br NAME` (`--if-exists`): its ports and interfaces go with it.
    pub async fn del_br(&self, name: &str, if_exists: bool) -> Result<Change, Error> {
        let st = State::read(&self.client).await?;
        let Some(bridge) = st.bridge(name) else {
            return match if_exists {
                true => Ok(Change::Unchanged),
                false => Err(Error::NoBridge(name.to_owned())),
            };
        };
        let txn = Txn {
            ops: vec![Operation::mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::new(
                    "bridges",
                    Mutator::Delete,
                    Datum::uuids([bridge.uuid()]),
                )],
            )],
            new_ifaces: vec![],
        };
        self.commit(txn).await?;
        Ok(Change::Deleted)
    }

    /// `add-port BRIDGE PORT` (`--may-exist`), optionally moving it from another bridge.
    pub async fn add_port(&self, bridge: &str, spec: &PortSpec) -> Result<Change, Error> {
        let st = State::read(&self.client).await?;
        let mut txn = Txn::default();
        let change = plan_add_port(&mut txn, &st, bridge, spec, "0")?;
        if change != Change::Unchanged {
            self.commit(txn).await?;
        }
        Ok(change)
    }

    /// Both ends of a patch pair in one transaction.
    pub async fn add_patch(&self, spec: &PatchSpec) -> Result<[Change; 2], Error> {
        let st = State::read(&self.client).await?;
        let mut txn = Txn::default();
        let end = |port: &str, peer: &str| PortSpec {
            options: BTreeMap::from([("peer".to_owned(), peer.to_owned())]),
            may_exist: spec.may_exist,
            ..PortSpec::new(port, "patch")
        };
        let changes = [
            plan_add_port(
                &mut txn,
                &st,
                &spec.bridge,
                &end(&spec.port, &spec.peer_port),
                "0",
            )?,
            plan_add_port(
                &mut txn,
                &st,
                &spec.peer_bridge,
                &end(&spec.peer_port, &spec.port),
                "1",
            )?,
        ];
        if !txn.ops.is_empty() {
            self.commit(txn).await?;
        }
        Ok(changes)
    }

    /// `del-port [BRIDGE] PORT` (`--if-exists`).
    pub async fn del_port(
        &self,
        bridge: Option<&str>,
        port: &str,
        if_exists: bool,
    ) -> Result<Change, Error> {
        let st = State::read(&self.client).await?;
        if let Some(b) = bridge.filter(|b| st.bridge(b).is_none()) {
            return Err(Error::NoBridge(b.to_owned()));
        }
        let Some((row, Some(owner))) = st.port(port) else {
            return match if_exists {
                true => Ok(Change::Unchanged),
                false => Err(Error::NoPort {
                    port: port.to_owned(),
                    bridge: bridge.map(str::to_owned),
                }),
            };
        };
        let owner_name = owner.str("name");
        if let Some(b) = bridge.filter(|b| *b != owner_name) {
            return Err(Error::PortNotOnBridge {
                port: port.to_owned(),
                bridge: b.to_owned(),
                actual: owner_name.to_owned(),
            });
        }
        if owner_name == port {
            return Err(Error::LocalPort(port.to_owned()));
        }
        let txn = Txn {
            ops: vec![remove_port(owner.uuid(), row.uuid())],
            new_ifaces: vec![],
        };
        self.commit(txn).await?;
        Ok(Change::Deleted)
    }

    /// `list-br`: bridge names, sorted.
    pub async fn list_br(&self) -> Result<Vec<String>, Error> {
        let st = State::read(&self.client).await?;
        let mut names: Vec<String> = st.bridges.iter().map(|b| b.str("name").into()).collect();
        names.sort();
        Ok(names)
    }

    /// `list-ports BRIDGE`: its ports except the bridge's own local port, sorted.
    pub async fn list_ports(&self, bridge: &str) -> Result<Vec<String>, Error> {
        let st = State::read(&self.client).await?;
        let b = st
            .bridge(bridge)
            .ok_or_else(|| Error::NoBridge(bridge.to_owned()))?;
        let mut names: Vec<String> = b
            .uuids("ports")
            .into_iter()
            .filter_map(|u| st.ports.get(u))
            .map(|p| p.str("name").to_owned())
            .filter(|n| n != bridge)
            .collect();
        names.sort();
        Ok(names)
    }

    /// `show`: the whole configuration (`Display` prints ovs-vsctl's text).
    pub async fn show(&self) -> Result<Show, Error> {
        Ok(Show::from_state(&State::read(&self.client).await?))
    }

    /// Sends `txn` with the `next_cfg` bump, then waits for ovs-vswitchd unless told not
    /// to, and reports the new interfaces' errors.
    async fn commit(&self, mut txn: Txn) -> Result<(), Error> {
        if self.wait {
            txn.ops.push(Operation::mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::new("next_cfg", Mutator::Add, 1i64)],
            ));
            txn.ops.push(Operation::select(
                "Open_vSwitch",
                vec![],
                Some(&["next_cfg"]),
            ));
        }
        tracing::debug!(
            db = %self.client.endpoint(),
            operations = txn.ops.len(),
            "transaction sent"
        );
        let results = self
            .client
            .transact(DB, &txn.ops)
            .await
            .map_err(|e| match e {
                sp_ovsdb::Error::Operation { index, ref op, .. } if op == "wait" => Error::Raced {
                    // The index is the server's, checked against `ops` by sp-ovsdb.
                    table: txn.ops.get(index).map(op_table).unwrap_or_default(),
                },
                e => e.into(),
            })?;
        for (op, result) in txn.ops.iter().zip(&results) {
            if let (Operation::Mutate { table, .. }, Some(0)) = (op, result.count) {
                return Err(match table.as_str() {
                    "Open_vSwitch" => Error::NotInitialized {
                        db: self.client.endpoint().to_string(),
                    },
                    _ => Error::Raced {
                        table: table.clone(),
                    },
                });
            }
        }
        if !self.wait {
            return Ok(());
        }
        let next_cfg = results
            .last()
            .and_then(|r| r.rows.first())
            .and_then(|r| r.int("next_cfg"))
            .ok_or_else(|| sp_ovsdb::Error::Protocol("select next_cfg returned no row".into()))?;
        tracing::info!(
            next_cfg,
            "in the database; waiting for ovs-vswitchd to apply it"
        );
        self.wait_applied(next_cfg).await?;
        tracing::info!(next_cfg, "applied by ovs-vswitchd");
        self.check_ifaces(&txn.new_ifaces).await
    }

    /// Waits until ovs-vswitchd has applied configuration `next_cfg`.
    async fn wait_applied(&self, next_cfg: i64) -> Result<(), Error> {
        let after = self.client.timeout();
        let deadline = Instant::now() + after;
        let request = MonitorRequest {
            table: "Open_vSwitch".into(),
            columns: vec!["cur_cfg".into()],
        };
        let mut monitor = self.client.monitor(DB, &[request]).await?;
        let mut cur = cur_cfg(&monitor.initial).unwrap_or(0);
        let outcome = loop {
            if cur >= next_cfg {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match monitor.next(left).await {
                Ok(updates) => cur = cur_cfg(&updates).unwrap_or(cur),
                Err(sp_ovsdb::Error::Timeout { .. }) => {
                    break Err(Error::WaitTimeout {
                        next_cfg,
                        cur_cfg: cur,
                        after,
                    })
                }
                Err(e) => break Err(e.into()),
            }
        };
        // The connection stays usable after a timeout: stop the monitor either way.
        let cancelled = self.client.monitor_cancel(monitor).await;
        outcome?;
        Ok(cancelled?)
    }

    async fn check_ifaces(&self, names: &[String]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        let ops: Vec<Operation> = names
            .iter()
            .map(|n| Operation::select("Interface", by_name(n), Some(&["name", "error"])))
            .collect();
        for result in self.client.transact(DB, &ops).await? {
            for row in result.rows {
                if let Some(error) = row.opt_str("error") {
                    return Err(Error::Interface {
                        iface: row.str("name").to_owned(),
                        error: error.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn op_table(op: &Operation) -> String {
    match op {
        Operation::Wait { table, .. } => table.clone(),
        other => other.name().to_owned(),
    }
}

/// Inserts `port` into (or deletes it from) the bridge's `ports`.
fn bridge_ports(bridge_uuid: &str, mutator: Mutator, port: Datum) -> Operation {
    Operation::mutate(
        "Bridge",
        by_uuid(bridge_uuid),
        vec![Mutation::new("ports", mutator, port)],
    )
}

fn remove_port(bridge_uuid: &str, port_uuid: &str) -> Operation {
    bridge_ports(bridge_uuid, Mutator::Delete, Datum::uuids([port_uuid]))
}

/// Adds to `txn` a new Port + Interface named `spec.name` (`port{suffix}` /
/// `iface{suffix}` as named-uuids), guarded so the names are still free at commit.
/// `what` names the object in the "already exists" error.
fn plan_port(
    txn: &mut Txn,
    st: &State,
    what: &'static str,
    spec: &PortSpec,
    suffix: &str,
) -> Result<(), Error> {
    IfName::check(&spec.name)?;
    if let Some((_, owner)) = st.port(&spec.name) {
        return Err(Error::PortExists {
            what,
            name: spec.name.clone(),
            bridge: owner.map(|b| b.str("name")).unwrap_or("(none)").to_owned(),
            same_bridge: false,
        });
    }
    if st.iface(&spec.name).is_some() {
        return Err(Error::InterfaceExists(spec.name.clone()));
    }
    let (iface, port) = (format!("iface{suffix}"), format!("port{suffix}"));
    let mut iface_row = Row::new().with("name", spec.name.as_str());
    if !spec.kind.is_empty() {
        iface_row = iface_row.with("type", spec.kind.as_str());
    }
    if !spec.options.is_empty() {
        iface_row = iface_row.with("options", Datum::string_map(&spec.options));
    }
    if !spec.external_ids.is_empty() {
        iface_row = iface_row.with("external_ids", Datum::string_map(&spec.external_ids));
    }
    let mut port_row = Row::new()
        .with("name", spec.name.as_str())
        .with("interfaces", Datum::named(&iface));
    if let Some(tag) = spec.tag {
        port_row = port_row.with("tag", i64::from(tag));
    }
    txn.ops.extend([
        Operation::assert_absent("Port", by_name(&spec.name)),
        Operation::assert_absent("Interface", by_name(&spec.name)),
        Operation::insert("Interface", iface_row, Some(&iface)),
        Operation::insert("Port", port_row, Some(&port)),
    ]);
    txn.new_ifaces.push(spec.name.clone());
    Ok(())
}

/// Plans `add-port BRIDGE spec` into `txn`: nothing when `--may-exist` finds it there, a
/// move when asked to take it from another bridge, else a new port.
fn plan_add_port(
    txn: &mut Txn,
    st: &State,
    bridge: &str,
    spec: &PortSpec,
    suffix: &str,
) -> Result<Change, Error> {
    IfName::check(&spec.name)?;
    let br = st
        .bridge(bridge)
        .ok_or_else(|| Error::NoBridge(bridge.to_owned()))?;
    if let Some((port, Some(owner))) = st.port(&spec.name) {
        let owner_name = owner.str("name");
        if owner_name == bridge {
            return match spec.may_exist {
                true => Ok(Change::Unchanged),
                false => Err(Error::PortExists {
                    what: "a port",
                    name: spec.name.clone(),
                    bridge: bridge.to_owned(),
                    same_bridge: true,
                }),
            };
        }
        if !spec.move_from_other_bridge {
            return Err(Error::PortOnOtherBridge {
                port: spec.name.clone(),
                bridge: bridge.to_owned(),
                other: owner_name.to_owned(),
            });
        }
        txn.ops.push(remove_port(owner.uuid(), port.uuid()));
        txn.ops.push(bridge_ports(
            br.uuid(),
            Mutator::Insert,
            Datum::uuids([port.uuid()]),
        ));
        return Ok(Change::Moved {
            from: owner_name.to_owned(),
        });
    }
    plan_port(txn, st, "a port", spec, suffix)?;
    txn.ops.push(bridge_ports(
        br.uuid(),
        Mutator::Insert,
        Datum::named(&format!("port{suffix}")),
    ));
    Ok(Change::Created)
}
