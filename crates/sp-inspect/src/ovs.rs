//! Open vSwitch as its ovsdb-server holds it (`sp-ovsdb`): bridges, ports, interfaces,
//! one transaction of three selects; then each link that is an OVS interface is told
//! where it is plugged.

use std::collections::HashMap;
use std::time::Duration;

use sp_ovsdb::{Client, Endpoint, Operation, Row};

use crate::model::*;

const DB: &str = "Open_vSwitch";

/// How long the server has to answer: it is local, and an inspection must not hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The ovsdb-server address ovs-vsctl uses by default: `unix:$OVS_RUNDIR/db.sock`,
/// `OVS_RUNDIR` defaulting to `/var/run/openvswitch`.
pub fn default_endpoint() -> Endpoint {
    let rundir = std::env::var_os("OVS_RUNDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| "/var/run/openvswitch".into(), std::path::PathBuf::from);
    Endpoint::Unix(rundir.join("db.sock"))
}

/// Whether the error only says no ovsdb-server runs there.
pub fn is_absent(e: &sp_ovsdb::Error) -> bool {
    matches!(
        e,
        sp_ovsdb::Error::SocketMissing { .. } | sp_ovsdb::Error::ServerNotRunning { .. }
    )
}

fn string_option(row: &Row, column: &str, key: &str) -> Option<String> {
    row.string_map(column).remove(key)
}

fn interface(row: &Row) -> OvsInterface {
    let ids = row.string_map("external_ids");
    OvsInterface {
        name: row.str("name").to_owned(),
        iface_type: row.str("type").to_owned(),
        peer: string_option(row, "options", "peer"),
        remote_ip: string_option(row, "options", "remote_ip"),
        local_ip: string_option(row, "options", "local_ip"),
        iface_id: ids.get("iface-id").cloned(),
        attached_mac: ids.get("attached-mac").cloned(),
        ofport: row.int("ofport"),
        error: row.opt_str("error").map(str::to_owned),
        external_ids: ids,
    }
}

/// Reads every bridge with its ports and their interfaces.
pub async fn read(endpoint: &Endpoint) -> Result<Ovs, sp_ovsdb::Error> {
    let client = Client::connect(endpoint, TIMEOUT).await?;
    let ops = [
        Operation::select(
            "Bridge",
            vec![],
            Some(&["name", "ports", "fail_mode", "datapath_type"]),
        ),
        Operation::select(
            "Port",
            vec![],
            Some(&["_uuid", "name", "interfaces", "tag"]),
        ),
        Operation::select(
            "Interface",
            vec![],
            Some(&[
                "_uuid",
                "name",
                "type",
                "options",
                "external_ids",
                "ofport",
                "error",
            ]),
        ),
    ];
    let mut results = client.transact(DB, &ops).await?.into_iter().map(|r| r.rows);
    let mut next = || results.next().unwrap_or_default();
    let (bridges, ports, ifaces) = (next(), next(), next());
    let ports: HashMap<&str, &Row> = ports.iter().map(|p| (p.uuid(), p)).collect();
    let ifaces: HashMap<&str, &Row> = ifaces.iter().map(|i| (i.uuid(), i)).collect();
    let mut out: Vec<OvsBridge> = bridges
        .iter()
        .map(|b| {
            let name = b.str("name").to_owned();
            let mut ports: Vec<OvsPort> = b
                .uuids("ports")
                .into_iter()
                .filter_map(|u| ports.get(u))
                .map(|p| {
                    let mut interfaces: Vec<OvsInterface> = p
                        .uuids("interfaces")
                        .into_iter()
                        .filter_map(|u| ifaces.get(u))
                        .map(|i| interface(i))
                        .collect();
                    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
                    OvsPort {
                        name: p.str("name").to_owned(),
                        bridge: name.clone(),
                        tag: p.int("tag").and_then(|t| u16::try_from(t).ok()),
                        interfaces,
                    }
                })
                .collect();
            ports.sort_by(|a, b| a.name.cmp(&b.name));
            OvsBridge {
                fail_mode: b.opt_str("fail_mode").map(str::to_owned),
                datapath_type: b
                    .opt_str("datapath_type")
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                ports,
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Ovs {
        db: endpoint.to_string(),
        bridges: out,
    })
}

/// Tells each link that is an OVS interface where it is plugged. An interface is known
/// by its name; where several namespaces hold a link of that name (a moved internal
/// port and a stray one), each is told.
pub fn attach(ovs: &Ovs, namespaces: &mut [Namespace]) {
    let by_name: HashMap<&str, (&OvsPort, &OvsInterface)> = ovs
        .bridges
        .iter()
        .flat_map(|b| &b.ports)
        .flat_map(|p| p.interfaces.iter().map(move |i| (i.name.as_str(), (p, i))))
        .collect();
    for link in namespaces.iter_mut().flat_map(|ns| ns.links.iter_mut()) {
        if let Some((p, i)) = by_name.get(link.name.as_str()) {
            link.ovs = Some(OvsAttachment {
                bridge: p.bridge.clone(),
                port: p.name.clone(),
                tag: p.tag,
                iface_type: if i.iface_type.is_empty() {
                    "system".into()
                } else {
                    i.iface_type.clone()
                },
                peer: i.peer.clone(),
                iface_id: i.iface_id.clone(),
                attached_mac: i.attached_mac.clone(),
                error: i.error.clone(),
            });
        }
    }
}

/// OVS's problems: interface errors, ports on the dead VLAN, Neutron internal ports left
/// where ovs-vswitchd made them (the namespace holding the bridges' own ports).
pub fn problems(ovs: &Ovs, namespaces: &[Namespace], out: &mut Vec<Problem>) {
    let home = namespaces.iter().find(|ns| {
        ns.links
            .iter()
            .any(|l| ovs.bridges.iter().any(|b| b.name == l.name) && l.ovs.is_some())
    });
    let home_label = home.map(|ns| ns.label.clone());
    for b in &ovs.bridges {
        for p in &b.ports {
            let namespace = namespaces
                .iter()
                .find(|ns| ns.links.iter().any(|l| l.name == p.name))
                .map(|ns| ns.label.clone())
                .or_else(|| home_label.clone())
                .unwrap_or_else(|| "root".into());
            for i in &p.interfaces {
                if let Some(err) = &i.error {
                    out.push(Problem {
                        severity: Severity::Error,
                        kind: ProblemKind::OvsInterfaceError,
                        namespace: namespace.clone(),
                        link: Some(i.name.clone()),
                        message: format!("OVS interface {} on {}: {err}", i.name, b.name),
                    });
                }
            }
            if p.tag == Some(4095) {
                out.push(Problem {
                    severity: Severity::Error,
                    kind: ProblemKind::OvsDeadVlan,
                    namespace: namespace.clone(),
                    link: Some(p.name.clone()),
                    message: format!(
                        "OVS port {} on {} has tag 4095, the agent's dead VLAN: it could not \
                         bind the port (no network, or its binding failed); nothing passes",
                        p.name, b.name
                    ),
                });
            }
            let neutron_in_ns = matches!(
                sp_neutron::classify_device(&p.name),
                Some(
                    sp_neutron::DeviceRole::Tap { .. }
                        | sp_neutron::DeviceRole::RouterInternal { .. }
                        | sp_neutron::DeviceRole::RouterGateway { .. }
                )
            );
            let internal = p.interfaces.iter().any(|i| i.iface_type == "internal");
            if let Some(home) = home {
                if internal && neutron_in_ns && home.links.iter().any(|l| l.name == p.name) {
                    out.push(Problem {
                        severity: Severity::Error,
                        kind: ProblemKind::OvsInternalPortNotMoved,
                        namespace: home.label.clone(),
                        link: Some(p.name.clone()),
                        message: format!(
                            "OVS internal port {} on {} is still in {}, where ovs-vswitchd \
                             made it, not in its qrouter-/qdhcp- namespace",
                            p.name, b.name, home.label
                        ),
                    });
                }
            }
        }
    }
}
