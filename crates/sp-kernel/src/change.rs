//! What operations report: one [`Change`] per thing they changed (none on a second run).
//!
//! In JSON a change is `{"object":{"type":…,…},"action":VERB,…}`: the object typed as
//! `stackplumb plan` types its actions' objects (the same type and field names where the
//! two share an object), the action a verb, and the facts as typed fields — a value set
//! as `attribute` and `value` ([`Setting`]), the rest in [`Detail`]. The text output
//! (`OBJECT: WHAT`) is derived from the same typed parts.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// One change made to the system, as operations report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What was changed.
    pub object: Object,
    /// What was done, a verb: `created`, `deleted`, `set`, `moved`, `stopped`…
    pub action: &'static str,
    /// The attribute an action `set` set, and its value.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub setting: Option<Setting>,
    /// The other facts of the change.
    #[serde(flatten)]
    pub detail: Detail,
    /// How the text output says it, when not `action` and the facts ([`Change::saying`]).
    #[serde(skip)]
    pub said: Option<String>,
}

/// What a [`Change`] changed. In JSON `{"type":…}` with the fields below; the text
/// output names it as the comment of each says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Object {
    /// `bridge NAME`: a Linux bridge (an OVS bridge in ovs-attach's output).
    Bridge { name: String },
    /// `ovs bridge NAME`: an Open vSwitch bridge stackplumb made.
    OvsBridge { name: String },
    /// `vxlan NAME`.
    Vxlan { name: String },
    /// `link NAME`: a link's attributes (the namespace is the operation's).
    Link { name: String },
    /// `veth NAME`: a veth pair by its host end (its peer in [`Detail`]).
    Veth { name: String },
    /// `namespace NAME`.
    Namespace { name: String },
    /// `address ADDRESS[ on DEVICE]`: ADDRESS/PREFIX, or the bare IP an announcement
    /// names; `device` absent for a moved address (its links in `from`/`to`).
    Address {
        address: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
    },
    /// `default[ via GATEWAY]` / `route /PREFIX[ via GATEWAY]`: a moved route, `dst`
    /// as `ip -j route` gives it (`default` or ADDRESS/PREFIX).
    Route {
        dst: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        gateway: Option<IpAddr>,
    },
    /// `default route in namespace of DEVICE` (its gateway the [`Setting`]).
    DefaultRoute { device: String },
    /// `fdb MAC dst DST on DEVICE`.
    Fdb {
        device: String,
        mac: String,
        dst: IpAddr,
    },
    /// `neighbour IP on DEVICE` (its MAC the [`Setting`]).
    Neighbour { device: String, ip: IpAddr },
    /// `nat rules in NAMESPACE`: a router's NAT table.
    Nat { namespace: String },
    /// `dnsmasq of NETWORK_ID`.
    Dnsmasq { network_id: String },
    /// `dhcp FILE file of NETWORK_ID`.
    DhcpFile { network_id: String, file: String },
    /// `metadata proxy`: the node's metadata proxy.
    MetadataProxy,
    /// `security groups of PORTS ports`: the node's security-group tables.
    Firewall { ports: usize },
    /// `NAME`: a sysctl by its dotted name (`net.bridge.bridge-nf-call-iptables`).
    Sysctl { name: String },
    /// `gateway IP`: a gateway checked after a move.
    Gateway { ip: IpAddr },
    /// `port NIC`: a NIC as a port of an Open vSwitch bridge.
    Uplink { nic: String, bridge: String },
    /// `ovs port NAME`: an OVS internal port on `bridge` (`port_id` the Neutron port it
    /// is for, when it was made).
    OvsPort {
        name: String,
        bridge: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        port_id: Option<String>,
    },
}

impl Object {
    pub fn bridge(name: impl fmt::Display) -> Self {
        Object::Bridge {
            name: name.to_string(),
        }
    }

    pub fn link(name: impl fmt::Display) -> Self {
        Object::Link {
            name: name.to_string(),
        }
    }

    pub fn namespace(name: impl fmt::Display) -> Self {
        Object::Namespace {
            name: name.to_string(),
        }
    }

    /// An address ADDRESS/PREFIX (or a bare IP) on `device`, or moved (`None`).
    pub fn address(address: impl fmt::Display, device: Option<&str>) -> Self {
        Object::Address {
            address: address.to_string(),
            device: device.map(str::to_owned),
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Bridge { name } => write!(f, "bridge {name}"),
            Object::OvsBridge { name } => write!(f, "ovs bridge {name}"),
            Object::Vxlan { name } => write!(f, "vxlan {name}"),
            Object::Link { name } => write!(f, "link {name}"),
            Object::Veth { name } => write!(f, "veth {name}"),
            Object::Namespace { name } => write!(f, "namespace {name}"),
            Object::Address { address, device } => {
                write!(f, "address {address}")?;
                match device {
                    Some(d) => write!(f, " on {d}"),
                    None => Ok(()),
                }
            }
            Object::Route { dst, gateway } => {
                match dst.split_once('/') {
                    Some((_, prefix)) => write!(f, "route /{prefix}")?,
                    None => f.write_str(dst)?,
                }
                match gateway {
                    Some(gw) => write!(f, " via {gw}"),
                    None => Ok(()),
                }
            }
            Object::DefaultRoute { device } => {
                write!(f, "default route in namespace of {device}")
            }
            Object::Fdb { device, mac, dst } => write!(f, "fdb {mac} dst {dst} on {device}"),
            Object::Neighbour { device, ip } => write!(f, "neighbour {ip} on {device}"),
            Object::Nat { namespace } => write!(f, "nat rules in {namespace}"),
            Object::Dnsmasq { network_id } => write!(f, "dnsmasq of {network_id}"),
            Object::DhcpFile { network_id, file } => {
                write!(f, "dhcp {file} file of {network_id}")
            }
            Object::MetadataProxy => f.write_str("metadata proxy"),
            Object::Firewall { ports } => write!(f, "security groups of {ports} ports"),
            Object::Sysctl { name } => f.write_str(name),
            Object::Gateway { ip } => write!(f, "gateway {ip}"),
            Object::Uplink { nic, .. } => write!(f, "port {nic}"),
            Object::OvsPort { name, .. } => write!(f, "ovs port {name}"),
        }
    }
}

/// The attribute a change `set`, with its value: in JSON `"attribute"` and `"value"`
/// (the bridge options: `stp` and `forward_delay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "attribute", rename_all = "snake_case")]
pub enum Setting {
    /// `set up` (value `up`).
    State { value: &'static str },
    /// `mtu VALUE`.
    Mtu { value: u32 },
    /// `enslaved to VALUE`: the bridge the link is a port of.
    Master { value: String },
    /// `MAC set`, or `MAC of OF` when it is another link's.
    Mac {
        value: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        of: Option<String>,
    },
    /// A neighbour's MAC: `lladdr VALUE`.
    #[serde(rename = "mac")]
    Lladdr { value: String },
    /// `tx checksum offload VALUE` (`on`/`off`).
    #[serde(rename = "tx-checksum")]
    TxChecksum { value: &'static str },
    /// A namespace's `net.ipv4.ip_forward`: `ip_forward=VALUE`.
    IpForward { value: u8 },
    /// A namespace's `net.ipv6.conf.all.forwarding`: `ipv6 forwarding=VALUE`.
    Ipv6Forwarding { value: u8 },
    /// A sysctl's value: `set to VALUE`.
    Value { value: u8 },
    /// A default route's gateway: `via VALUE`.
    Gateway { value: IpAddr },
    /// A bridge's spanning tree and forward delay: `set forward_delay F, stp on|off`.
    #[serde(rename = "stp/forward_delay")]
    StpForwardDelay { stp: bool, forward_delay: u32 },
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::State { value } => write!(f, "set {value}"),
            Setting::Mtu { value } => write!(f, "mtu {value}"),
            Setting::Master { value } => write!(f, "enslaved to {value}"),
            Setting::Mac { of: Some(of), .. } => write!(f, "MAC of {of}"),
            Setting::Mac { of: None, .. } => f.write_str("MAC set"),
            Setting::Lladdr { value } => write!(f, "lladdr {value}"),
            Setting::TxChecksum { value } => write!(f, "tx checksum offload {value}"),
            Setting::IpForward { value } => write!(f, "ip_forward={value}"),
            Setting::Ipv6Forwarding { value } => write!(f, "ipv6 forwarding={value}"),
            Setting::Value { value } => write!(f, "set to {value}"),
            Setting::Gateway { value } => write!(f, "via {value}"),
            Setting::StpForwardDelay { stp, forward_delay } => write!(
                f,
                "set forward_delay {forward_delay}, stp {}",
                if *stp { "on" } else { "off" }
            ),
        }
    }
}

/// The typed facts of a [`Change`]; each absent from the JSON when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// The process started, reloaded or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process a restart replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_pid: Option<u32>,
    /// Where a moved address or route, a port or a released link was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Where it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A veth's other end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The namespace the other end (or the moved link) is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The link it was done on or through (a gateway answering, an address announced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Why a best-effort step did not happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Change {
    pub fn new(object: Object, action: &'static str) -> Self {
        Change {
            object,
            action,
            setting: None,
            detail: Detail::default(),
            said: None,
        }
    }

    /// `object`'s attribute set: action `set`.
    pub fn set(object: Object, setting: Setting) -> Self {
        Change {
            setting: Some(setting),
            ..Change::new(object, "set")
        }
    }

    /// A change whose facts are `detail`, said in the text output as `said`.
    pub fn saying(
        object: Object,
        action: &'static str,
        detail: Detail,
        said: impl Into<String>,
    ) -> Self {
        Change {
            detail,
            said: Some(said.into()),
            ..Change::new(object, action)
        }
    }

    /// A process `action` (`started`, `reloaded`, `stopped`): `pid`.
    pub fn process(object: Object, action: &'static str, pid: u32) -> Self {
        let mut c = Change::new(object, action);
        c.detail.pid = Some(pid);
        c
    }

    /// A process restarted: `old` replaced by `pid`.
    pub fn restarted(object: Object, old: u32, pid: u32) -> Self {
        let mut c = Change::process(object, "restarted", pid);
        c.detail.old_pid = Some(old);
        c
    }

    /// An address or route moved from one link to another.
    pub fn moved(object: Object, from: &str, to: &str) -> Self {
        let mut c = Change::new(object, "moved");
        c.detail.from = Some(from.into());
        c.detail.to = Some(to.into());
        c
    }

    /// A link no longer a port of bridge `from`.
    pub fn released(object: Object, from: &str) -> Self {
        let mut c = Change::new(object, "released");
        c.detail.from = Some(from.into());
        c
    }

    /// A veth created, its `peer` end in `namespace`.
    pub fn veth(tap: &str, peer: &str, namespace: &str) -> Self {
        let mut c = Change::new(Object::Veth { name: tap.into() }, "created");
        c.detail.peer = Some(peer.into());
        c.detail.namespace = Some(namespace.into());
        c
    }

    /// A link moved into `namespace`.
    pub fn moved_into(object: Object, namespace: &str) -> Self {
        let mut c = Change::new(object, "moved");
        c.detail.namespace = Some(namespace.into());
        c
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.object)?;
        if let Some(said) = &self.said {
            return f.write_str(said);
        }
        if let Some(setting) = &self.setting {
            return write!(f, "{setting}");
        }
        f.write_str(self.action)?;
        let d = &self.detail;
        match (&d.from, &d.to) {
            (Some(from), Some(to)) => write!(f, " {from} → {to}")?,
            (Some(from), None) => write!(f, " from {from}")?,
            _ => {}
        }
        match (&d.peer, &d.namespace) {
            (Some(peer), Some(ns)) => write!(f, ", peer {peer} in {ns}")?,
            (None, Some(ns)) => write!(f, " into {ns}")?,
            _ => {}
        }
        match (d.old_pid, d.pid) {
            (Some(old), Some(pid)) => write!(f, " (pid {old} -> {pid})"),
            (None, Some(pid)) => write!(f, " (pid {pid})"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn link(name: &str) -> Object {
        Object::link(name)
    }

    /// The text of every kind of change, as the operations said it before the objects
    /// were typed.
    #[test]
    fn text_is_the_words_operators_read() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (
                Change::new(Object::bridge("brq5b6a8b87-fd"), "created"),
                "bridge brq5b6a8b87-fd: created",
            ),
            (
                Change::new(
                    Object::OvsBridge {
                        name: "br-ex".into(),
                    },
                    "deleted",
                ),
                "ovs bridge br-ex: deleted",
            ),
            (
                Change::new(
                    Object::Vxlan {
                        name: "vxlan-1".into(),
                    },
                    "created",
                ),
                "vxlan vxlan-1: created",
            ),
            (
                Change::set(link("tap1"), Setting::State { value: "up" }),
                "link tap1: set up",
            ),
            (
                Change::set(link("tap1"), Setting::Mtu { value: 1450 }),
                "link tap1: mtu 1450",
            ),
            (
                Change::set(
                    link("eth0"),
                    Setting::Master {
                        value: "brq1".into(),
                    },
                ),
                "link eth0: enslaved to brq1",
            ),
            (
                Change::released(link("eth0"), "brq1"),
                "link eth0: released from brq1",
            ),
            (
                Change::set(
                    link("qr-1"),
                    Setting::Mac {
                        value: "fa:16:3e:a7:24:00".into(),
                        of: None,
                    },
                ),
                "link qr-1: MAC set",
            ),
            (
                Change::set(
                    link("brq1"),
                    Setting::Mac {
                        value: "52:54:00:00:00:01".into(),
                        of: Some("eth0".into()),
                    },
                ),
                "link brq1: MAC of eth0",
            ),
            (
                Change::set(link("ns-1"), Setting::TxChecksum { value: "off" }),
                "link ns-1: tx checksum offload off",
            ),
            (
                Change::moved_into(link("qg-1"), "qrouter-1"),
                "link qg-1: moved into qrouter-1",
            ),
            (
                Change::veth("tap1", "qr-1", "qrouter-1"),
                "veth tap1: created, peer qr-1 in qrouter-1",
            ),
            (
                Change::new(Object::namespace("qrouter-1"), "created"),
                "namespace qrouter-1: created",
            ),
            (
                Change::set(
                    Object::namespace("qrouter-1"),
                    Setting::IpForward { value: 1 },
                ),
                "namespace qrouter-1: ip_forward=1",
            ),
            (
                Change::set(
                    Object::namespace("qrouter-1"),
                    Setting::Ipv6Forwarding { value: 1 },
                ),
                "namespace qrouter-1: ipv6 forwarding=1",
            ),
            (
                Change::new(Object::address("192.168.0.1/24", Some("qr-1")), "added"),
                "address 192.168.0.1/24 on qr-1: added",
            ),
            (
                Change::moved(Object::address("10.50.14.50/24", None), "eno1", "br-ex"),
                "address 10.50.14.50/24: moved eno1 → br-ex",
            ),
            (
                Change::moved(
                    Object::Route {
                        dst: "default".into(),
                        gateway: Some(ip("10.50.14.1")),
                    },
                    "eno1",
                    "br-ex",
                ),
                "default via 10.50.14.1: moved eno1 → br-ex",
            ),
            (
                Change::moved(
                    Object::Route {
                        dst: "10.60.0.0/16".into(),
                        gateway: None,
                    },
                    "eno1",
                    "br-ex",
                ),
                "route /16: moved eno1 → br-ex",
            ),
            (
                Change::set(
                    Object::DefaultRoute {
                        device: "ns-1".into(),
                    },
                    Setting::Gateway {
                        value: ip("192.168.0.1"),
                    },
                ),
                "default route in namespace of ns-1: via 192.168.0.1",
            ),
            (
                Change::new(
                    Object::Fdb {
                        device: "vxlan-1".into(),
                        mac: "00:00:00:00:00:00".into(),
                        dst: ip("10.0.0.102"),
                    },
                    "appended",
                ),
                "fdb 00:00:00:00:00:00 dst 10.0.0.102 on vxlan-1: appended",
            ),
            (
                Change::set(
                    Object::Neighbour {
                        device: "vxlan-1".into(),
                        ip: ip("192.168.0.5"),
                    },
                    Setting::Lladdr {
                        value: "fa:16:3e:00:00:05".into(),
                    },
                ),
                "neighbour 192.168.0.5 on vxlan-1: lladdr fa:16:3e:00:00:05",
            ),
            (
                Change::new(
                    Object::Nat {
                        namespace: "qrouter-1".into(),
                    },
                    "loaded",
                ),
                "nat rules in qrouter-1: loaded",
            ),
            (
                Change::process(
                    Object::Dnsmasq {
                        network_id: "n1".into(),
                    },
                    "started",
                    42,
                ),
                "dnsmasq of n1: started (pid 42)",
            ),
            (
                Change::new(
                    Object::DhcpFile {
                        network_id: "n1".into(),
                        file: "host".into(),
                    },
                    "written",
                ),
                "dhcp host file of n1: written",
            ),
            (
                Change::restarted(Object::MetadataProxy, 41, 42),
                "metadata proxy: restarted (pid 41 -> 42)",
            ),
            (
                Change::new(Object::Firewall { ports: 3 }, "loaded"),
                "security groups of 3 ports: loaded",
            ),
            (
                Change::set(
                    Object::Sysctl {
                        name: "net.bridge.bridge-nf-call-iptables".into(),
                    },
                    Setting::Value { value: 1 },
                ),
                "net.bridge.bridge-nf-call-iptables: set to 1",
            ),
            (
                Change::set(
                    Object::bridge("brq1"),
                    Setting::StpForwardDelay {
                        stp: false,
                        forward_delay: 0,
                    },
                ),
                "bridge brq1: set forward_delay 0, stp off",
            ),
            (
                Change::saying(
                    Object::Gateway {
                        ip: ip("10.50.14.1"),
                    },
                    "answers",
                    Detail::default(),
                    "answers through br-ex",
                ),
                "gateway 10.50.14.1: answers through br-ex",
            ),
            (
                Change::saying(
                    Object::Uplink {
                        nic: "eno1".into(),
                        bridge: "br-ex".into(),
                    },
                    "added",
                    Detail::default(),
                    "added to bridge br-ex",
                ),
                "port eno1: added to bridge br-ex",
            ),
            (
                Change::saying(
                    Object::OvsPort {
                        name: "qg-1".into(),
                        bridge: "br-ex".into(),
                        port_id: None,
                    },
                    "deleted",
                    Detail::default(),
                    "deleted from br-ex",
                ),
                "ovs port qg-1: deleted from br-ex",
            ),
        ];
        for (change, text) in cases {
            assert_eq!(change.to_string(), text);
        }
    }

    /// In JSON: the object typed, the action a verb, a value set as attribute and value.
    #[test]
    fn json_is_typed_members() {
        let j = |c: &Change| serde_json::to_value(c).unwrap();
        assert_eq!(
            j(&Change::set(link("tap1"), Setting::Mtu { value: 1450 })),
            json!({"object": {"type": "link", "name": "tap1"}, "action": "set",
                "attribute": "mtu", "value": 1450})
        );
        assert_eq!(
            j(&Change::set(
                Object::namespace("qrouter-1"),
                Setting::IpForward { value: 1 }
            )),
            json!({"object": {"type": "namespace", "name": "qrouter-1"}, "action": "set",
                "attribute": "ip_forward", "value": 1})
        );
        assert_eq!(
            j(&Change::set(
                link("brq1"),
                Setting::Mac {
                    value: "52:54:00:00:00:01".into(),
                    of: Some("eth0".into())
                }
            )),
            json!({"object": {"type": "link", "name": "brq1"}, "action": "set",
                "attribute": "mac", "value": "52:54:00:00:00:01", "of": "eth0"})
        );
        assert_eq!(
            j(&Change::set(
                Object::bridge("brq1"),
                Setting::StpForwardDelay {
                    stp: false,
                    forward_delay: 0
                }
            )),
            json!({"object": {"type": "bridge", "name": "brq1"}, "action": "set",
                "attribute": "stp/forward_delay", "stp": false, "forward_delay": 0})
        );
        assert_eq!(
            j(&Change::new(
                Object::address("192.168.0.1/24", Some("qr-1")),
                "added"
            )),
            json!({"object": {"type": "address", "address": "192.168.0.1/24", "device": "qr-1"},
                "action": "added"})
        );
        assert_eq!(
            j(&Change::moved(
                Object::Route {
                    dst: "default".into(),
                    gateway: Some("10.50.14.1".parse().unwrap())
                },
                "eno1",
                "br-ex"
            )),
            json!({"object": {"type": "route", "dst": "default", "gateway": "10.50.14.1"},
                "action": "moved", "from": "eno1", "to": "br-ex"})
        );
        assert_eq!(
            j(&Change::veth("tap1", "qr-1", "qrouter-1")),
            json!({"object": {"type": "veth", "name": "tap1"}, "action": "created",
                "peer": "qr-1", "namespace": "qrouter-1"})
        );
        assert_eq!(
            j(&Change::restarted(Object::MetadataProxy, 41, 42)),
            json!({"object": {"type": "metadata_proxy"}, "action": "restarted",
                "pid": 42, "old_pid": 41})
        );
        // Words that are not the action stay out of the JSON.
        assert_eq!(
            j(&Change::saying(
                Object::Firewall { ports: 3 },
                "added",
                Detail::default(),
                "added to"
            )),
            json!({"object": {"type": "firewall", "ports": 3}, "action": "added"})
        );
    }
}
