//! The planner: `plan(desired, current, owned) → actions`, pure. What `stackplumb plan`
//! prints is exactly what `apply` executes: apply runs the operation of each unit
//! ([`Unit`]) that has actions, and each operation changes exactly the attributes that
//! differ — the same comparisons as here (docs/reconciler.md lists them, and the
//! differences that are not changes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use sp_config::desired::{L2Entry, NetPlan, NodePlan, PortPlan};
use sp_kernel::attrs::KERNEL_VXLAN_PORT;
use sp_neutron::{tap_name, vxlan_name, PortKind};

use crate::current::{Current, FirewallView, LinkView, MetadataView, NatView, Space};
use crate::owned::Owned;

/// An object of a node's data plane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Object {
    Bridge {
        name: String,
    },
    Vxlan {
        name: String,
        vni: u32,
    },
    /// A NIC under a network's bridge, the NIC's addresses and routes on the bridge.
    Uplink {
        nic: String,
        bridge: String,
    },
    Namespace {
        name: String,
    },
    /// A port: a veth pair (`tap` on the bridge, `device` in the namespace), or a
    /// device moved into the namespace (OVS internal port; `tap` is `None`).
    Port {
        port_id: String,
        device: String,
        namespace: String,
        tap: Option<String>,
    },
    /// A link's attribute (`namespace` `None`: the node's own).
    Link {
        namespace: Option<String>,
        name: String,
    },
    Address {
        namespace: String,
        device: String,
        address: IpNet,
    },
    DefaultRoute {
        namespace: String,
        device: String,
        gateway: IpAddr,
    },
    /// `net.ipv4.ip_forward` of a namespace.
    Forwarding {
        namespace: String,
    },
    Fdb {
        device: String,
        mac: String,
        dst: IpAddr,
    },
    Neighbour {
        device: String,
        ip: IpAddr,
        mac: String,
    },
    Dnsmasq {
        network_id: String,
    },
    DhcpFile {
        network_id: String,
        file: String,
    },
    /// A router's NAT table.
    Nat {
        namespace: String,
    },
    /// The security groups' tables of the node (`bridge`/`inet neutron-linuxbri`).
    Firewall {
        ports: usize,
    },
    VolumeGroup {
        name: String,
    },
    /// An Open vSwitch object (bridge, uplink port, gateway port), typed as a change
    /// names it (`docs/json.md`); `said` is how the text output names it.
    Ovs {
        object: sp_kernel::Object,
        #[serde(skip)]
        said: String,
    },
    /// The node's metadata proxy (docs/metadata.md).
    MetadataProxy,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Bridge { name } => write!(f, "bridge {name}"),
            Object::Vxlan { name, vni } => write!(f, "vxlan {name} (vni {vni})"),
            Object::Uplink { nic, bridge } => write!(f, "uplink {nic} on {bridge}"),
            Object::Namespace { name } => write!(f, "namespace {name}"),
            Object::Port {
                device,
                namespace,
                tap: Some(tap),
                ..
            } => write!(f, "port {tap} - {device} in {namespace}"),
            Object::Port {
                device, namespace, ..
            } => write!(f, "port {device} in {namespace}"),
            Object::Link {
                namespace: Some(ns),
                name,
            } => write!(f, "link {name} in {ns}"),
            Object::Link { name, .. } => write!(f, "link {name}"),
            Object::Address {
                namespace,
                device,
                address,
            } => write!(f, "address {address} on {device} in {namespace}"),
            Object::DefaultRoute {
                namespace,
                device,
                gateway,
            } => write!(f, "default route via {gateway} dev {device} in {namespace}"),
            Object::Forwarding { namespace } => write!(f, "ip_forward in {namespace}"),
            Object::Fdb { device, mac, dst } => write!(f, "fdb {mac} dst {dst} on {device}"),
            Object::Neighbour { device, ip, mac } => {
                write!(f, "neighbour {ip} lladdr {mac} on {device}")
            }
            Object::Dnsmasq { network_id } => write!(f, "dnsmasq of {network_id}"),
            Object::DhcpFile { network_id, file } => {
                write!(f, "dhcp {file} file of {network_id}")
            }
            Object::Nat { namespace } => write!(f, "nat table in {namespace}"),
            Object::Firewall { ports } => {
                write!(
                    f,
                    "security groups of {ports} ports (table neutron-linuxbri)"
                )
            }
            Object::VolumeGroup { name } => write!(f, "volume group {name}"),
            Object::Ovs { said, .. } => f.write_str(said),
            Object::MetadataProxy => f.write_str("metadata proxy"),
        }
    }
}

/// What happens to an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Create,
    Change {
        attribute: String,
        #[serde(flatten)]
        values: Values,
    },
    Delete,
}

/// An attribute's value as found and as it will be, typed by what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Values {
    /// One value (`"1500"` → `"1450"`, `"down"` → `"up"`).
    One { old: String, new: String },
    /// A list of words: namespace names (those a proxy serves or listens in), or a
    /// command line.
    Names { old: Vec<String>, new: Vec<String> },
    /// A file's lines.
    Lines { old: Vec<String>, new: Vec<String> },
    /// Rules: each way the tables found differ from those wanted.
    Rules {
        differences: Vec<sp_nft::Difference>,
    },
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Values::One { old, new } => write!(f, "{old} -> {new}"),
            Values::Names { old, new } => write!(f, "{} -> {}", names(old), names(new)),
            Values::Lines { old, new } => write!(f, "{} lines -> {} lines", old.len(), new.len()),
            Values::Rules { differences } => {
                let said: Vec<String> = differences.iter().map(ToString::to_string).collect();
                write!(f, "{} -> as wanted", said.join("; "))
            }
        }
    }
}

/// Names for people: space-separated, `none` for none.
fn names(v: &[String]) -> String {
    match v.is_empty() {
        true => "none".into(),
        false => v.join(" "),
    }
}

/// The operation that carries an action out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// A network's bridge and VXLAN device (by network id).
    Network(String),
    /// A flat network's uplink move.
    Uplink(String),
    /// The Open vSwitch side.
    Ovs,
    /// The ports of one namespace, and the namespace.
    Ports(String),
    L2,
    Dhcp(String),
    Nat(String),
    /// The node's security groups.
    Firewall,
    Metadata,
    Cinder,
    /// Removal of something this node made and no longer wants.
    Prune,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    #[serde(flatten)]
    pub op: Op,
    pub object: Object,
    #[serde(skip)]
    pub unit: Unit,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Op::Create => write!(f, "+ {}", self.object),
            Op::Delete => write!(f, "- {}", self.object),
            Op::Change { attribute, values } => {
                write!(f, "~ {} {attribute} {values}", self.object)
            }
        }
    }
}

/// Something in the way that no action can fix: a device of ours exists as another
/// kind, an address we want is held by another device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub String);

/// The VXLAN overhead on an IPv4 / IPv6 underlay.
fn vxlan_overhead(local: IpAddr) -> u32 {
    match local {
        IpAddr::V4(_) => 50,
        IpAddr::V6(_) => 70,
    }
}

/// A port's MAC as octets.
fn port_mac(p: &PortPlan) -> Option<[u8; 6]> {
    Some(p.mac.octets())
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

struct Planner<'a> {
    want: &'a NodePlan,
    cur: &'a Current,
    owned: &'a Owned,
    /// The wanted networks by id, and each one's MTU (looked up per port).
    nets: HashMap<&'a str, (&'a NetPlan, u32)>,
    /// The bridge each wanted uplink NIC moves under, by the NIC's name (looked up per
    /// VXLAN device).
    uplinks: HashMap<&'a str, &'a str>,
    actions: Vec<Action>,
    conflicts: Vec<Conflict>,
}

impl Planner<'_> {
    fn push(&mut self, unit: Unit, op: Op, object: Object) {
        self.actions.push(Action { op, object, unit });
    }

    fn change(&mut self, unit: Unit, object: Object, attribute: &str, old: String, new: String) {
        self.change_to(unit, object, attribute, Values::One { old, new });
    }

    fn change_to(&mut self, unit: Unit, object: Object, attribute: &str, values: Values) {
        let attribute = attribute.into();
        self.push(unit, Op::Change { attribute, values }, object);
    }

    /// The device that will hold `local_ip` once the uplinks have moved: a NIC that
    /// holds it now and is some flat network's uplink hands it to that bridge.
    fn local_holder(&self, ip: IpAddr) -> Option<String> {
        let holder = self.cur.root.holder(ip)?;
        Some(match self.uplinks.get(holder.name.as_str()) {
            Some(bridge) => bridge.to_string(),
            None => holder.name.clone(),
        })
    }

    fn link_state(&mut self, unit: &Unit, ns: Option<&str>, l: &LinkView) {
        if !l.up {
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: ns.map(str::to_owned),
                    name: l.name.clone(),
                },
                "state",
                "down".into(),
                "up".into(),
            );
        }
    }

    fn link_mtu(&mut self, unit: &Unit, ns: Option<&str>, l: &LinkView, mtu: u32) {
        if l.mtu != mtu {
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: ns.map(str::to_owned),
                    name: l.name.clone(),
                },
                "mtu",
                l.mtu.to_string(),
                mtu.to_string(),
            );
        }
    }

    fn link_master(&mut self, unit: &Unit, l: &LinkView, master: &LinkView) {
        if l.master != Some(master.index) {
            let old = l
                .master
                .and_then(|m| self.cur.root.by_index(m))
                .map_or("none".into(), |m| m.name.clone());
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: None,
                    name: l.name.clone(),
                },
                "master",
                old,
                master.name.clone(),
            );
        }
    }

    fn networks(&mut self) {
        let want = self.want;
        for n in want.networks.iter().filter(|n| !n.ovs) {
            let unit = Unit::Network(n.network_id.to_string());
            let root = &self.cur.root;
            let bridge = root.link(&n.bridge).cloned();
            match &bridge {
                None => self.push(
                    unit.clone(),
                    Op::Create,
                    Object::Bridge {
                        name: n.bridge.to_string(),
                    },
                ),
                Some(b) if b.bridge.is_none() => self.conflicts.push(Conflict(format!(
                    "{} exists as a {} device, not a bridge",
                    b.name, b.kind
                ))),
                Some(b) => {
                    let opts = b.bridge.clone().unwrap_or_default();
                    if opts.forward_delay != Some(0) || opts.stp_on() {
                        self.change(
                            unit.clone(),
                            Object::Bridge {
                                name: b.name.clone(),
                            },
                            "stp/forward_delay",
                            format!(
                                "{}/{}",
                                if opts.stp_on() { "on" } else { "off" },
                                opts.forward_delay.unwrap_or(0)
                            ),
                            "off/0".into(),
                        );
                    }
                    self.link_state(&unit, None, b);
                }
            }
            if let Some(v) = &n.vxlan {
                self.vxlan(n, v, &unit, bridge.as_ref());
            }
            if let Some(nic) = &n.uplink {
                self.uplink(n, nic, bridge.as_ref());
            }
        }
    }

    fn vxlan(
        &mut self,
        n: &NetPlan,
        v: &sp_config::desired::VxlanPlan,
        unit: &Unit,
        bridge: Option<&LinkView>,
    ) {
        let name = vxlan_name(v.vni);
        let object = Object::Vxlan {
            name: name.clone(),
            vni: v.vni,
        };
        let Some(have) = self.cur.root.link(&name).cloned() else {
            self.push(unit.clone(), Op::Create, object);
            return;
        };
        let Some(data) = &have.vxlan else {
            self.conflicts.push(Conflict(format!(
                "{name} exists as a {} device, not a VXLAN device",
                have.kind
            )));
            return;
        };
        let holder = self.local_holder(v.local_ip);
        let dev_name = data
            .dev
            .and_then(|d| self.cur.root.by_index(d))
            .map(|l| l.name.clone());
        if !dev_fits(&self.cur.root, dev_name.as_deref(), holder.as_deref()) {
            self.change(
                unit.clone(),
                object.clone(),
                "dev (recreated)",
                dev_name.unwrap_or_else(|| "none".into()),
                holder.unwrap_or_else(|| "the holder of local_ip".into()),
            );
        } else if data.vni != Some(v.vni)
            || data.proxy.unwrap_or(false) != v.l2_population
            || data.group != v.group
            || data.port_or_default() != KERNEL_VXLAN_PORT
        {
            let shape = |vni: Option<u32>, proxy: bool, group: Option<IpAddr>, port: u16| {
                format!(
                    "id {} proxy {} group {} port {port}",
                    vni.map_or("-".into(), |v| v.to_string()),
                    if proxy { "on" } else { "off" },
                    group.map_or("none".into(), |g| g.to_string()),
                )
            };
            self.change(
                unit.clone(),
                object.clone(),
                "options (recreated)",
                shape(
                    data.vni,
                    data.proxy.unwrap_or(false),
                    data.group,
                    data.port_or_default(),
                ),
                shape(Some(v.vni), v.l2_population, v.group, KERNEL_VXLAN_PORT),
            );
        } else {
            if let Some(b) = bridge {
                self.link_master(unit, &have, b);
            }
            self.link_mtu(unit, None, &have, network_mtu(&self.cur.root, n));
            self.link_state(unit, None, &have);
        }
    }

    fn uplink(&mut self, n: &NetPlan, nic: &str, bridge: Option<&LinkView>) {
        let object = Object::Uplink {
            nic: nic.to_owned(),
            bridge: n.bridge.to_string(),
        };
        let unit = Unit::Uplink(n.network_id.to_string());
        let Some(link) = self.cur.root.link(nic) else {
            // Preflight refuses a missing NIC.
            self.push(unit, Op::Create, object);
            return;
        };
        let enslaved = bridge.is_some_and(|b| link.master == Some(b.index));
        let left = self.cur.root.addresses_of(link.index).count();
        if !enslaved {
            self.push(unit, Op::Create, object);
            return;
        }
        // The bridge carries the NIC's MAC (set, so that ports coming and going never
        // change the host address's MAC).
        if let Some(b) = bridge.filter(|b| b.mac != link.mac) {
            let show = |m: &Option<[u8; 6]>| m.as_ref().map_or("none".into(), mac_str);
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: None,
                    name: b.name.clone(),
                },
                "mac",
                show(&b.mac),
                show(&link.mac),
            );
        }
        if left > 0 {
            self.change(
                unit,
                object,
                "addresses on the NIC",
                left.to_string(),
                "0 (moved to the bridge)".into(),
            );
        }
    }

    fn ports(&mut self) {
        let want = self.want;
        let mut by_ns: BTreeMap<&str, Vec<&PortPlan>> = BTreeMap::new();
        for p in &want.ports {
            by_ns.entry(p.namespace.as_str()).or_default().push(p);
        }
        for (ns, ports) in by_ns {
            let unit = Unit::Ports(ns.to_owned());
            let forward = ports.iter().any(|p| p.ip_forward);
            let Some(view) = self.cur.namespaces.get(ns) else {
                self.push(
                    unit.clone(),
                    Op::Create,
                    Object::Namespace { name: ns.into() },
                );
                if forward {
                    self.push(
                        unit.clone(),
                        Op::Create,
                        Object::Forwarding {
                            namespace: ns.into(),
                        },
                    );
                }
                for p in ports {
                    self.port(&unit, p, None);
                }
                continue;
            };
            let space = view.space.clone();
            if let Some(lo) = space.link("lo") {
                self.link_state(&unit, Some(ns), lo);
            }
            if forward && !space.forwarding {
                self.change(
                    unit.clone(),
                    Object::Forwarding {
                        namespace: ns.into(),
                    },
                    "value",
                    "0".into(),
                    "1".into(),
                );
            }
            if forward && space.forwarding6 == Some(false) {
                self.change(
                    unit.clone(),
                    Object::Forwarding {
                        namespace: ns.into(),
                    },
                    "ipv6",
                    "0".into(),
                    "1".into(),
                );
            }
            for p in ports {
                self.port(&unit, p, Some(&space));
            }
        }
    }

    fn port(&mut self, unit: &Unit, p: &PortPlan, space: Option<&Space>) {
        let (net, mtu) = match self.nets.get(p.network_id.as_str()) {
            Some((n, mtu)) => (Some(*n), *mtu),
            None => (None, 1500),
        };
        let ovs = net.is_some_and(|n| n.ovs);
        let inner_name = p.kind.device(&p.port_id);
        let tap_name = (!ovs).then(|| tap_name(&p.port_id));
        let object = Object::Port {
            port_id: p.port_id.to_string(),
            device: inner_name.clone(),
            namespace: p.namespace.to_string(),
            tap: tap_name.clone(),
        };
        let inner = space.and_then(|s| s.link(&inner_name)).cloned();
        let root = &self.cur.root;
        let tap = tap_name.as_deref().and_then(|t| root.link(t)).cloned();
        let paired = match (&tap, &inner) {
            (Some(t), Some(i)) => t.peer == Some(i.index) && i.peer == Some(t.index),
            _ => false,
        };
        let whole = if ovs { inner.is_some() } else { paired };
        if !whole {
            for stale in [&tap, &inner].into_iter().flatten().filter(|_| !ovs) {
                self.push(
                    unit.clone(),
                    Op::Delete,
                    Object::Link {
                        namespace: (Some(&stale.name) == inner.as_ref().map(|i| &i.name))
                            .then(|| p.namespace.to_string()),
                        // The half of a pair whose other end is gone or another's.
                        name: stale.name.clone(),
                    },
                );
            }
            self.push(unit.clone(), Op::Create, object);
            for a in p.addresses.iter().flatten() {
                self.push(
                    unit.clone(),
                    Op::Create,
                    Object::Address {
                        namespace: p.namespace.to_string(),
                        device: inner_name.clone(),
                        address: *a,
                    },
                );
            }
            if let Some(gw) = p.gateway {
                self.push(
                    unit.clone(),
                    Op::Create,
                    Object::DefaultRoute {
                        namespace: p.namespace.to_string(),
                        device: inner_name.clone(),
                        gateway: gw,
                    },
                );
            }
            return;
        }
        let inner = inner.expect("whole");
        let space = space.expect("an existing namespace holds the port");
        let ns = Some(p.namespace.as_str());
        if let (Some(t), Some(b)) = (&tap, net.and_then(|n| root.link(&n.bridge))) {
            let b = b.clone();
            self.link_master(unit, t, &b);
            self.link_mtu(unit, None, t, mtu);
            self.link_state(unit, None, t);
        }
        let mac = port_mac(p);
        if inner.mac != mac {
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: ns.map(str::to_owned),
                    name: inner.name.clone(),
                },
                "mac",
                inner.mac.as_ref().map_or("none".into(), mac_str),
                mac.as_ref().map_or("none".into(), mac_str),
            );
        }
        if !ovs {
            self.link_mtu(unit, ns, &inner, mtu);
        }
        self.link_state(unit, ns, &inner);
        // DHCP replies leave with complete UDP checksums (Liberty's CHECKSUM
        // --checksum-fill; docs/dhcp.md).
        if p.kind == PortKind::Dhcp && inner.tx_checksum == Some(true) {
            self.change(
                unit.clone(),
                Object::Link {
                    namespace: ns.map(str::to_owned),
                    name: inner.name.clone(),
                },
                "tx-checksum",
                "on".into(),
                "off".into(),
            );
        }
        if let Some(want) = &p.addresses {
            let have: Vec<IpNet> = space.addresses_of(inner.index).copied().collect();
            for a in have.iter().filter(|a| !want.contains(a)) {
                self.push(
                    unit.clone(),
                    Op::Delete,
                    Object::Address {
                        namespace: p.namespace.to_string(),
                        device: inner_name.clone(),
                        address: *a,
                    },
                );
            }
            for a in want.iter().filter(|a| !have.contains(a)) {
                self.push(
                    unit.clone(),
                    Op::Create,
                    Object::Address {
                        namespace: p.namespace.to_string(),
                        device: inner_name.clone(),
                        address: *a,
                    },
                );
            }
        }
        if let Some(gw) = p.gateway {
            let there = space
                .defaults
                .iter()
                .any(|r| r.gateway == Some(gw) && r.oif == Some(inner.index));
            if !there {
                self.push(
                    unit.clone(),
                    Op::Create,
                    Object::DefaultRoute {
                        namespace: p.namespace.to_string(),
                        device: inner_name,
                        gateway: gw,
                    },
                );
            }
        }
    }

    fn l2(&mut self) {
        let want = self.want;
        let mut wanted_fdb = BTreeSet::new();
        let mut wanted_neigh = BTreeSet::new();
        for e in &want.l2pop {
            let (vni, mac, vtep, ip) = match e {
                L2Entry::Flood { vni, vtep } => (*vni, "00:00:00:00:00:00".to_owned(), *vtep, None),
                L2Entry::Port { vni, mac, ip, vtep } => (*vni, mac.to_string(), *vtep, Some(*ip)),
            };
            let device = vxlan_name(vni);
            wanted_fdb.insert((device.clone(), mac.clone(), vtep));
            if !self
                .cur
                .l2
                .fdb
                .contains(&(device.clone(), mac.clone(), vtep))
            {
                self.push(
                    Unit::L2,
                    Op::Create,
                    Object::Fdb {
                        device: device.clone(),
                        mac: mac.clone(),
                        dst: vtep,
                    },
                );
            }
            if let Some(ip) = ip {
                wanted_neigh.insert((device.clone(), ip, mac.clone()));
                if !self
                    .cur
                    .l2
                    .neigh
                    .contains(&(device.clone(), ip, mac.clone()))
                {
                    self.push(Unit::L2, Op::Create, Object::Neighbour { device, ip, mac });
                }
            }
        }
        // Ours and no longer wanted, where its device stays.
        let wanted_vxlans = wanted_vxlans(want);
        let stays = |dev: &str| wanted_vxlans.contains(dev);
        for f in &self.owned.fdb {
            let key = (vxlan_name(f.vni), f.mac.clone(), f.dst);
            if !wanted_fdb.contains(&key) && stays(&key.0) && self.cur.l2.fdb.contains(&key) {
                self.actions.push(Action {
                    op: Op::Delete,
                    object: Object::Fdb {
                        device: key.0,
                        mac: key.1,
                        dst: key.2,
                    },
                    unit: Unit::Prune,
                });
            }
        }
        for n in &self.owned.neighbours {
            let key = (vxlan_name(n.vni), n.ip, n.mac.clone());
            if !wanted_neigh.contains(&key) && stays(&key.0) && self.cur.l2.neigh.contains(&key) {
                self.actions.push(Action {
                    op: Op::Delete,
                    object: Object::Neighbour {
                        device: key.0,
                        ip: key.1,
                        mac: key.2,
                    },
                    unit: Unit::Prune,
                });
            }
        }
    }

    fn dhcp(&mut self) {
        for d in &self.want.dhcp {
            let unit = Unit::Dhcp(d.network_id.to_string());
            let Some(view) = self.cur.dhcp.get(&d.network_id) else {
                // Not read (its namespace is still to be made): started with its files.
                self.push(
                    unit,
                    Op::Create,
                    Object::Dnsmasq {
                        network_id: d.network_id.to_string(),
                    },
                );
                continue;
            };
            for f in &view.stale_files {
                let op = match f.exists {
                    false => Op::Create,
                    true => Op::Change {
                        attribute: "content".into(),
                        values: Values::Lines {
                            old: f.found.clone(),
                            new: f.wanted.clone(),
                        },
                    },
                };
                self.push(
                    unit.clone(),
                    op,
                    Object::DhcpFile {
                        network_id: d.network_id.to_string(),
                        file: f.name.into(),
                    },
                );
            }
            if let Some((pid, file)) = &view.foreign {
                self.conflicts.push(Conflict(format!(
                    "network {} is served by another dnsmasq (pid {pid}, pid file {}) — started from another --state-dir: one state directory per node, or destroy with that one first",
                    d.network_id,
                    file.display()
                )));
                continue;
            }
            let object = Object::Dnsmasq {
                network_id: d.network_id.to_string(),
            };
            match view.state {
                sp_dhcp::State::Running(_) => {}
                sp_dhcp::State::Stopped => self.push(unit, Op::Create, object),
                sp_dhcp::State::Dead => {
                    self.change(unit, object, "process", "dead".into(), "running".into())
                }
            }
        }
    }

    fn nat(&mut self) {
        for r in &self.want.routers {
            let unit = Unit::Nat(r.namespace.to_string());
            let object = Object::Nat {
                namespace: r.namespace.to_string(),
            };
            match self.cur.nat.get(r.namespace.as_str()) {
                None | Some(NatView::Absent) => self.push(unit, Op::Create, object),
                Some(NatView::Matches) => {}
                Some(NatView::Differs(d)) => {
                    let differences = d.clone();
                    self.change_to(unit, object, "rules", Values::Rules { differences })
                }
            }
        }
    }

    fn firewall(&mut self) {
        let fw = &self.want.firewall;
        if fw.ports.is_empty() {
            return;
        }
        let object = Object::Firewall {
            ports: fw.ports.len(),
        };
        match &self.cur.firewall {
            FirewallView::Absent => self.push(Unit::Firewall, Op::Create, object),
            FirewallView::Matches => {}
            FirewallView::Differs(d) => {
                let differences = d.clone();
                self.change_to(
                    Unit::Firewall,
                    object,
                    "rules",
                    Values::Rules { differences },
                )
            }
        }
    }

    /// The proxy serving exactly the wanted namespaces, listening in each.
    fn metadata(&mut self) {
        if self.want.metadata.is_empty() {
            return;
        }
        let wanted: Vec<String> = self.want.metadata.iter().map(|s| s.namespace()).collect();
        let (unit, object) = (Unit::Metadata, Object::MetadataProxy);
        match &self.cur.metadata {
            None
            | Some(MetadataView {
                state: sp_metadata::State::Stopped,
                ..
            }) => self.push(unit, Op::Create, object),
            Some(MetadataView {
                state: sp_metadata::State::Dead,
                ..
            }) => self.change(unit, object, "process", "dead".into(), "running".into()),
            Some(MetadataView {
                state:
                    sp_metadata::State::Other {
                        found,
                        wanted: argv,
                        ..
                    },
                ..
            }) => match sp_metadata::namespaces_in(found) {
                serves if serves != wanted => {
                    let (old, new) = (serves, wanted);
                    self.change_to(unit, object, "namespaces", Values::Names { old, new })
                }
                // The same namespaces: another program, socket or option.
                _ => {
                    let (old, new) = (found.clone(), argv.clone());
                    self.change_to(unit, object, "command_line", Values::Names { old, new })
                }
            },
            Some(MetadataView { deaf, .. }) if !deaf.is_empty() => {
                let old = wanted
                    .iter()
                    .filter(|n| !deaf.contains(n))
                    .cloned()
                    .collect();
                let new = wanted;
                self.change_to(unit, object, "listening", Values::Names { old, new })
            }
            Some(_) => {}
        }
    }

    fn cinder(&mut self) {
        let Some(c) = &self.want.cinder else {
            return;
        };
        let object = Object::VolumeGroup {
            name: c.volume_group.to_string(),
        };
        match self.cur.vg {
            None => self.push(Unit::Cinder, Op::Create, object),
            Some(v) if !v.active => self.change(
                Unit::Cinder,
                object,
                "state",
                "inactive".into(),
                "active".into(),
            ),
            Some(_) => {}
        }
    }

    fn ovs(&mut self) {
        for (object, said, present) in &self.cur.ovs {
            if !present {
                let object = Object::Ovs {
                    object: object.clone(),
                    said: said.clone(),
                };
                self.push(Unit::Ovs, Op::Create, object);
            }
        }
    }

    /// What this node made and no longer wants, in the order it is taken away: dnsmasq,
    /// NAT, namespaces, uplinks, then ports, VXLAN devices and bridges (one kernel batch),
    /// the volume group.
    fn prune(&mut self) -> Vec<Action> {
        let (want, cur, owned) = (self.want, self.cur, self.owned);
        let mut out = Vec::new();
        let mut del = |object| {
            out.push(Action {
                op: Op::Delete,
                object,
                unit: Unit::Prune,
            })
        };
        let wanted_ns: BTreeSet<&str> = want.ports.iter().map(|p| p.namespace.as_str()).collect();
        let wanted_dhcp: HashSet<&str> = want.dhcp.iter().map(|d| d.network_id.as_str()).collect();
        for n in &owned.dnsmasq {
            if !wanted_dhcp.contains(n.as_str()) {
                del(Object::Dnsmasq {
                    network_id: n.clone(),
                });
            }
        }
        let proxy_there = cur
            .metadata
            .as_ref()
            .is_some_and(|m| m.state != sp_metadata::State::Stopped);
        if owned.metadata_proxy && want.metadata.is_empty() && proxy_there {
            del(Object::MetadataProxy);
        }
        let routers: HashSet<&str> = want.routers.iter().map(|r| r.namespace.as_str()).collect();
        for ns in &owned.nat {
            let kept_ns = wanted_ns.contains(ns.as_str());
            let wanted = routers.contains(ns.as_str());
            if kept_ns && !wanted && !matches!(cur.nat.get(ns), None | Some(NatView::Absent)) {
                del(Object::Nat {
                    namespace: ns.clone(),
                });
            }
        }
        if owned.firewall && want.firewall.ports.is_empty() && cur.firewall != FirewallView::Absent
        {
            del(Object::Firewall { ports: 0 });
        }
        // The namespaces this node made and no longer wants — only while they still
        // have the identity recorded.
        let doomed: BTreeSet<&str> = owned
            .namespaces
            .iter()
            .filter(|(ns, id)| {
                let ours = match (cur.live.get(*ns), id) {
                    (None, _) => false,
                    (Some(live), Some(rec)) => {
                        live.is_some_and(|l| l.dev == rec.dev && l.ino == rec.ino)
                    }
                    // Recorded before it was made, never confirmed: ours if it is there.
                    (Some(_), None) => true,
                };
                ours && !wanted_ns.contains(ns.as_str())
            })
            .map(|(ns, _)| ns.as_str())
            .collect();
        for u in &owned.uplinks {
            let wanted = want.networks.iter().any(|n| {
                n.bridge.as_str() == u.bridge && n.uplink.as_deref() == Some(u.nic.as_str())
            });
            let attached = match (cur.root.link(&u.nic), cur.root.link(&u.bridge)) {
                (Some(n), Some(b)) => n.master == Some(b.index),
                _ => false,
            };
            if !wanted && attached {
                del(Object::Uplink {
                    nic: u.nic.clone(),
                    bridge: u.bridge.clone(),
                });
            }
        }
        let wanted_ports: HashSet<&str> = want.ports.iter().map(|p| p.port_id.as_str()).collect();
        for (port_id, ns) in &owned.ports {
            let tap = tap_name(port_id);
            let wanted = wanted_ports.contains(port_id.as_str());
            // Also when its namespace goes: the pair goes in the batch, with its end
            // in the namespace, which is deleted after.
            if !wanted && cur.root.link(&tap).is_some() {
                del(Object::Port {
                    port_id: port_id.clone(),
                    device: "(its peer)".into(),
                    namespace: ns.clone(),
                    tap: Some(tap),
                });
            }
        }
        let wanted_vxlans = wanted_vxlans(want);
        for v in &owned.vxlans {
            let wanted = wanted_vxlans.contains(v);
            if let (false, Some(l)) = (wanted, cur.root.link(v)) {
                del(Object::Vxlan {
                    name: v.clone(),
                    vni: l.vxlan.as_ref().and_then(|x| x.vni).unwrap_or(0),
                });
            }
        }
        let wanted_bridges: HashSet<&str> = want
            .networks
            .iter()
            .filter(|n| !n.ovs)
            .map(|n| n.bridge.as_str())
            .collect();
        for b in &owned.bridges {
            let wanted = wanted_bridges.contains(b.as_str());
            if !wanted && cur.root.link(b).is_some() {
                del(Object::Bridge { name: b.clone() });
            }
        }
        // The namespaces last: their veths went with the taps in the batch above, so the
        // kernel frees them empty, in the background, and nothing after waits for that
        // (a batch after them would wait for the RTNL their teardown holds: 0.4 s for
        // 20 routers, measured with strace -T).
        for ns in &doomed {
            del(Object::Namespace {
                name: (*ns).to_owned(),
            });
        }
        if let Some(vg) = &owned.volume_group {
            let wanted = want
                .cinder
                .as_ref()
                .is_some_and(|c| c.volume_group.as_str() == vg);
            if !wanted && cur.vg.is_some_and(|v| v.active) {
                del(Object::VolumeGroup { name: vg.clone() });
            }
        }
        out
    }
}

/// The MTU of the ports on network `n`: a VXLAN network's is its underlay's (the
/// device holding `local_ip`) less the overhead; a flat network's its uplink's; else
/// 1500.
pub fn network_mtu(root: &Space, n: &NetPlan) -> u32 {
    if let Some(v) = &n.vxlan {
        let lower = root.holder(v.local_ip).map_or(1500, |l| l.mtu);
        return lower.saturating_sub(vxlan_overhead(v.local_ip)).max(68);
    }
    n.uplink
        .as_deref()
        .and_then(|nic| root.link(nic))
        .map_or(1500, |l| l.mtu)
}

/// The VXLAN devices `want` has.
fn wanted_vxlans(want: &NodePlan) -> HashSet<String> {
    want.networks
        .iter()
        .filter_map(|n| n.vxlan.as_ref().map(|v| vxlan_name(v.vni)))
        .collect()
}

/// Whether a VXLAN device's `dev` serves `local_ip`: it is the device holding it, or a
/// port of that bridge (Liberty binds `vxlan-N` to the NIC that held `local_ip` when the
/// agent started — the NIC the flat network's uplink move put under the bridge).
fn dev_fits(root: &Space, dev: Option<&str>, holder: Option<&str>) -> bool {
    match (dev, holder) {
        (Some(d), Some(h)) if d == h => true,
        (Some(d), Some(h)) => match (root.link(d), root.link(h)) {
            (Some(dl), Some(hl)) => dl.master == Some(hl.index),
            // The holder is a bridge still to be made: the NIC moving under it fits.
            (Some(_), None) => false,
            _ => false,
        },
        _ => false,
    }
}

/// The actions that take `current` to `want`, given what this node made (`owned`):
/// deletions of what it made and no longer wants first, then creations and changes in
/// the agents' order. Conflicts — objects in the way that no action fixes — are
/// returned instead, and nothing may be applied.
pub fn plan(want: &NodePlan, cur: &Current, owned: &Owned) -> Result<Vec<Action>, Vec<Conflict>> {
    // The first network of a NIC, as a search of the networks would find it.
    let mut uplinks = HashMap::new();
    for n in want.networks.iter().filter(|n| !n.ovs) {
        if let Some(nic) = &n.uplink {
            uplinks.entry(nic.as_str()).or_insert(n.bridge.as_str());
        }
    }
    let mut p = Planner {
        want,
        cur,
        owned,
        nets: want
            .networks
            .iter()
            .map(|n| (n.network_id.as_str(), (n, network_mtu(&cur.root, n))))
            .collect(),
        uplinks,
        actions: Vec::new(),
        conflicts: Vec::new(),
    };
    let mut out = p.prune();
    p.networks();
    p.ovs();
    p.ports();
    p.l2();
    p.dhcp();
    p.nat();
    p.firewall();
    p.metadata();
    p.cinder();
    if !p.conflicts.is_empty() {
        return Err(p.conflicts);
    }
    // Prunes of l2 entries were pushed among the creations: deletions go first.
    let (prunes, rest): (Vec<_>, Vec<_>) =
        p.actions.into_iter().partition(|a| a.unit == Unit::Prune);
    out.extend(prunes);
    // Flat networks (and their uplinks) before tenant networks: a VXLAN device binds to
    // the device that holds local_ip after the move.
    let flat_ids: HashSet<&str> = want
        .networks
        .iter()
        .filter(|n| n.vxlan.is_none())
        .map(|n| n.network_id.as_str())
        .collect();
    let flat = |a: &Action| match &a.unit {
        Unit::Network(id) | Unit::Uplink(id) => flat_ids.contains(id.as_str()),
        _ => false,
    };
    // The units in the agents' order (a stable sort keeps each unit's own order).
    let mut rest = rest;
    rest.sort_by_key(|a| match &a.unit {
        Unit::Prune => 0,
        _ if flat(a) => 1,
        Unit::Ovs => 2,
        Unit::Network(_) | Unit::Uplink(_) => 3,
        Unit::Ports(_) => 4,
        Unit::L2 => 5,
        Unit::Dhcp(_) => 6,
        Unit::Nat(_) => 7,
        Unit::Firewall => 8,
        Unit::Metadata => 8,
        Unit::Cinder => 9,
    });
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Desired × current → actions, table-driven, no root: the guide's controller and
    //! compute as the planner would find them converged, then one thing changed at a
    //! time.
    use super::*;
    use crate::current::{AddrView, DhcpView, L2View, NsView, RouteView, VgView};
    use sp_kernel::attrs::{BridgeData, VxlanData};

    fn plans() -> Vec<NodePlan> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sp-config/tests/guide");
        let cfg = sp_config::GuideConfig::load(&dir).expect("the guide's files");
        sp_config::desired::plan(
            &sp_config::Topology::guide(),
            &cfg,
            "/var/lib/neutron".as_ref(),
        )
        .expect("the guide's cloud plans")
    }

    fn node(name: &str) -> NodePlan {
        plans()
            .into_iter()
            .find(|p| p.node == name)
            .expect("a node of the guide")
    }

    fn link(index: u32, name: &str, kind: &str, mtu: u32) -> LinkView {
        LinkView {
            name: name.into(),
            index,
            kind: kind.into(),
            mtu,
            up: true,
            ..Default::default()
        }
    }

    /// What apply leaves on `want`'s node.
    fn converged(want: &NodePlan) -> Current {
        let mut cur = Current::default();
        let root = &mut cur.root;
        let mut next = 10;
        let mut index = || {
            next += 1;
            next
        };
        root.links.push(link(1, "lo", "device", 65536));
        let eth0 = link(2, "eth0", "device", 1500);
        root.links.push(eth0);
        // The tunnel address: on eth0, or on the bridge eth0 went under.
        let mut tunnel_on = 2;
        for n in want.networks.iter().filter(|n| !n.ovs) {
            let mut b = link(index(), n.bridge.as_str(), "bridge", 1500);
            b.bridge = Some(BridgeData {
                forward_delay: Some(0),
                stp: Some(netlink_packet_route::link::BridgeStpState::Disabled),
            });
            if n.uplink.is_some() {
                root.links[1].master = Some(b.index);
                root.links[1].mac = Some([0x52, 0x54, 0, 0, 0, 1]);
                b.mac = root.links[1].mac;
                tunnel_on = b.index;
            }
            root.links.push(b);
        }
        root.addresses.push(AddrView {
            index: tunnel_on,
            net: IpNet::new(want.tunnel_ip, 24).expect("a prefix"),
        });
        for n in want.networks.iter().filter(|n| !n.ovs) {
            let b = root.link(n.bridge.as_str()).expect("made above").index;
            if let Some(v) = &n.vxlan {
                let mut l = link(index(), &vxlan_name(v.vni), "vxlan", 1450);
                l.master = Some(b);
                l.vxlan = Some(VxlanData {
                    vni: Some(v.vni),
                    dev: Some(tunnel_on),
                    proxy: Some(v.l2_population),
                    group: v.group,
                    ..Default::default()
                });
                root.links.push(l);
                root.links
                    .iter_mut()
                    .find(|l| l.index == b)
                    .expect("bridge")
                    .mtu = 1450;
            }
        }
        for p in &want.ports {
            let net = want
                .networks
                .iter()
                .find(|n| n.network_id == p.network_id)
                .expect("net");
            let mtu = network_mtu(&cur.root, net);
            let b = cur.root.link(net.bridge.as_str()).expect("bridge").index;
            let (t, i) = (index(), index());
            let mut tap = link(t, &tap_name(p.port_id.as_str()), "veth", mtu);
            tap.master = Some(b);
            tap.peer = Some(i);
            cur.root.links.push(tap);
            let ns = cur
                .namespaces
                .entry(p.namespace.to_string())
                .or_insert_with(|| NsView {
                    id: None,
                    space: Space {
                        links: vec![link(1, "lo", "device", 65536)],
                        ..Default::default()
                    },
                });
            let mut inner = link(i, &p.kind.device(p.port_id.as_str()), "veth", mtu);
            inner.peer = Some(t);
            inner.mac = Some(p.mac.octets());
            if p.kind == sp_neutron::PortKind::Dhcp {
                inner.tx_checksum = Some(false);
            }
            ns.space.links.push(inner);
            for a in p.addresses.iter().flatten() {
                ns.space.addresses.push(AddrView { index: i, net: *a });
            }
            if let Some(gw) = p.gateway {
                ns.space.defaults.push(RouteView {
                    gateway: Some(gw),
                    oif: Some(i),
                });
            }
            ns.space.forwarding |= p.ip_forward;
            cur.live.insert(p.namespace.to_string(), None);
        }
        let mut l2 = L2View::default();
        for e in &want.l2pop {
            match e {
                L2Entry::Flood { vni, vtep } => {
                    l2.fdb
                        .insert((vxlan_name(*vni), "00:00:00:00:00:00".into(), *vtep));
                }
                L2Entry::Port { vni, mac, ip, vtep } => {
                    l2.fdb.insert((vxlan_name(*vni), mac.to_string(), *vtep));
                    l2.neigh.insert((vxlan_name(*vni), *ip, mac.to_string()));
                }
            }
        }
        cur.l2 = l2;
        for d in &want.dhcp {
            cur.dhcp.insert(
                d.network_id.clone(),
                DhcpView {
                    state: sp_dhcp::State::Running(100),
                    stale_files: vec![],
                    foreign: None,
                },
            );
        }
        for r in &want.routers {
            cur.nat.insert(r.namespace.to_string(), NatView::Matches);
        }
        if !want.metadata.is_empty() {
            cur.metadata = Some(MetadataView {
                state: sp_metadata::State::Running(200),
                deaf: vec![],
            });
        }
        cur.vg = want.cinder.as_ref().map(|_| VgView { active: true });
        if !want.firewall.ports.is_empty() {
            cur.firewall = FirewallView::Matches;
        }
        cur
    }

    /// A rule missing from a chain of one of our tables.
    fn missing(family: &str, chain: &str) -> sp_nft::Difference {
        sp_nft::Difference::RuleMissing {
            family: family.into(),
            table: "t".into(),
            chain: chain.into(),
            rule: "counter accept".into(),
        }
    }

    #[test]
    fn changed_values_are_typed_in_json_and_said_in_text() {
        let object = Object::MetadataProxy;
        let action = |attribute: &str, values| Action {
            op: Op::Change {
                attribute: attribute.into(),
                values,
            },
            object: object.clone(),
            unit: Unit::Metadata,
        };
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let rows = [
            (
                action(
                    "mtu",
                    Values::One {
                        old: "9000".into(),
                        new: "1450".into(),
                    },
                ),
                serde_json::json!({"op": "change", "attribute": "mtu", "old": "9000", "new": "1450",
                       "object": {"type": "metadata_proxy"}}),
                "~ metadata proxy mtu 9000 -> 1450",
            ),
            (
                action(
                    "listening",
                    Values::Names {
                        old: names(&["qrouter-a"]),
                        new: names(&["qrouter-a", "qdhcp-b"]),
                    },
                ),
                serde_json::json!({"op": "change", "attribute": "listening", "old": ["qrouter-a"],
                       "new": ["qrouter-a", "qdhcp-b"], "object": {"type": "metadata_proxy"}}),
                "~ metadata proxy listening qrouter-a -> qrouter-a qdhcp-b",
            ),
            (
                action(
                    "content",
                    Values::Lines {
                        old: vec![],
                        new: names(&["x", "y"]),
                    },
                ),
                serde_json::json!({"op": "change", "attribute": "content", "old": [], "new": ["x", "y"],
                       "object": {"type": "metadata_proxy"}}),
                "~ metadata proxy content 0 lines -> 2 lines",
            ),
            (
                action(
                    "rules",
                    Values::Rules {
                        differences: vec![missing("ip", "c")],
                    },
                ),
                serde_json::json!({"op": "change", "attribute": "rules", "differences": [
                         {"kind": "rule_missing", "family": "ip", "table": "t", "chain": "c",
                          "rule": "counter accept"}],
                       "object": {"type": "metadata_proxy"}}),
                "~ metadata proxy rules rule missing in ip c: counter accept -> as wanted",
            ),
        ];
        for (a, json, text) in rows {
            assert_eq!(serde_json::to_value(&a).unwrap(), json);
            assert_eq!(a.to_string(), text);
        }
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| {
                let op = match &a.op {
                    Op::Create => "create".to_string(),
                    Op::Delete => "delete".to_string(),
                    Op::Change { attribute, .. } => format!("change {attribute}"),
                };
                let ty = serde_json::to_value(&a.object).expect("json")["type"]
                    .as_str()
                    .expect("a type")
                    .to_owned();
                format!("{op} {ty}")
            })
            .collect()
    }

    #[test]
    fn a_converged_node_plans_nothing() {
        for want in plans() {
            let cur = converged(&want);
            let actions = plan(&want, &cur, &Owned::default()).expect("no conflicts");
            assert!(actions.is_empty(), "{}: {actions:#?}", want.node);
        }
    }

    #[test]
    fn an_empty_node_plans_every_object_in_the_agents_order() {
        let want = node("controller");
        let cur = Current {
            root: Space {
                links: vec![
                    link(1, "lo", "device", 65536),
                    link(2, "eth0", "device", 1500),
                ],
                addresses: vec![AddrView {
                    index: 2,
                    net: IpNet::new(want.tunnel_ip, 24).expect("prefix"),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let actions = plan(&want, &cur, &Owned::default()).expect("no conflicts");
        let k = kinds(&actions);
        let first = |what: &str| {
            k.iter()
                .position(|x| x == what)
                .unwrap_or_else(|| panic!("{what} in {k:#?}"))
        };
        assert!(first("create bridge") < first("create uplink"));
        assert!(first("create uplink") < first("create vxlan"), "{k:#?}");
        assert!(first("create vxlan") < first("create namespace"));
        assert!(first("create port") < first("create dnsmasq"));
        assert!(first("create dnsmasq") < first("create nat"));
        // The proxy after the REDIRECT that sends to it, and after the namespaces.
        assert!(first("create nat") < first("create metadata_proxy"));
        assert!(first("create nat") < first("create volume_group"));
        // Every port, address, route of the controller.
        assert_eq!(
            k.iter().filter(|x| *x == "create port").count(),
            want.ports.len()
        );
        let addresses: usize = want
            .ports
            .iter()
            .map(|p| p.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            k.iter().filter(|x| *x == "create address").count(),
            addresses
        );
        assert!(actions.iter().all(|a| a.op == Op::Create), "{k:#?}");
    }

    type Drift = fn(&NodePlan, &mut Current);

    fn port_of(want: &NodePlan, kind: PortKindSel) -> &PortPlan {
        want.ports
            .iter()
            .find(|p| {
                matches!(
                    (kind, p.kind),
                    (PortKindSel::Qr, sp_neutron::PortKind::RouterInternal)
                        | (PortKindSel::Qg, sp_neutron::PortKind::RouterGateway)
                        | (PortKindSel::Ns, sp_neutron::PortKind::Dhcp)
                )
            })
            .expect("the router's or the DHCP port")
    }

    #[derive(Clone, Copy)]
    enum PortKindSel {
        Qr,
        Qg,
        Ns,
    }

    fn inner<'a>(cur: &'a mut Current, p: &PortPlan) -> &'a mut LinkView {
        let name = p.kind.device(p.port_id.as_str());
        cur.namespaces
            .get_mut(p.namespace.as_str())
            .expect("ns")
            .space
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .expect("inner")
    }

    fn root_link<'a>(cur: &'a mut Current, name: &str) -> &'a mut LinkView {
        cur.root
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .expect("link")
    }

    #[test]
    fn each_drift_is_one_action() {
        let rows: Vec<(&str, Drift, &str)> = vec![
            (
                "tap mtu",
                |w, c| {
                    root_link(c, &tap_name(port_of(w, PortKindSel::Qr).port_id.as_str())).mtu = 9000
                },
                "change mtu link",
            ),
            (
                "qr- mtu",
                |w, c| inner(c, port_of(w, PortKindSel::Qr)).mtu = 1500,
                "change mtu link",
            ),
            (
                "qr- mac",
                |w, c| inner(c, port_of(w, PortKindSel::Qr)).mac = Some([2, 0, 0, 0, 0, 1]),
                "change mac link",
            ),
            (
                "ns- tx checksum offload on",
                |w, c| inner(c, port_of(w, PortKindSel::Ns)).tx_checksum = Some(true),
                "change tx-checksum link",
            ),
            (
                "tap down",
                |w, c| {
                    root_link(c, &tap_name(port_of(w, PortKindSel::Qr).port_id.as_str())).up = false
                },
                "change state link",
            ),
            (
                "tap nomaster",
                |w, c| {
                    root_link(c, &tap_name(port_of(w, PortKindSel::Qr).port_id.as_str())).master =
                        None
                },
                "change master link",
            ),
            (
                "vxlan mtu",
                |_, c| root_link(c, "vxlan-1").mtu = 1400,
                "change mtu link",
            ),
            (
                "vxlan proxy",
                |_, c| root_link(c, "vxlan-1").vxlan.as_mut().expect("vxlan").proxy = Some(false),
                "change options (recreated) vxlan",
            ),
            (
                "bridge stp",
                |w, c| {
                    let b = &w.networks[0].bridge;
                    root_link(c, b.as_str())
                        .bridge
                        .as_mut()
                        .expect("bridge")
                        .stp = Some(netlink_packet_route::link::BridgeStpState::KernelStp)
                },
                "change stp/forward_delay bridge",
            ),
            (
                "address removed",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qr);
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .addresses
                        .retain(|a| Some(&a.net) != p.addresses.as_ref().and_then(|a| a.first()));
                },
                "create address",
            ),
            (
                "address added",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qg);
                    let index = inner(c, p).index;
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .addresses
                        .push(AddrView {
                            index,
                            net: "10.0.0.250/24".parse().expect("net"),
                        });
                },
                "delete address",
            ),
            (
                "default route",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qg);
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .defaults
                        .clear();
                },
                "create default_route",
            ),
            (
                "ip_forward",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qr);
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .forwarding = false;
                },
                "change value forwarding",
            ),
            (
                "ipv6 forwarding",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qr);
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .forwarding6 = Some(false);
                },
                "change ipv6 forwarding",
            ),
            (
                "lo down",
                |w, c| {
                    let p = port_of(w, PortKindSel::Qr);
                    c.namespaces
                        .get_mut(p.namespace.as_str())
                        .expect("ns")
                        .space
                        .links[0]
                        .up = false;
                },
                "change state link",
            ),
            (
                "nat flushed",
                |_, c| {
                    for v in c.nat.values_mut() {
                        *v = NatView::Absent;
                    }
                },
                "create nat",
            ),
            (
                "nat rule deleted",
                |_, c| {
                    for v in c.nat.values_mut() {
                        *v = NatView::Differs(vec![missing("ip", "float-snat")]);
                    }
                },
                "change rules nat",
            ),
            (
                "dnsmasq killed",
                |_, c| {
                    for v in c.dhcp.values_mut() {
                        v.state = sp_dhcp::State::Dead;
                    }
                },
                "change process dnsmasq",
            ),
            (
                "dnsmasq file edited",
                |_, c| {
                    for v in c.dhcp.values_mut() {
                        v.stale_files = vec![sp_dhcp::StaleFile {
                            name: "host",
                            exists: true,
                            found: vec![],
                            wanted: vec!["a line".into()],
                        }];
                    }
                },
                "change content dhcp_file",
            ),
            (
                "metadata proxy killed",
                |_, c| c.metadata.as_mut().expect("wanted").state = sp_metadata::State::Dead,
                "change process metadata_proxy",
            ),
            (
                "metadata proxy of another set of routers",
                |_, c| {
                    let argv = [
                        "/p",
                        "metadata-proxy",
                        "--router",
                        "7e57a11d-0000-4000-8000-000000000001",
                    ];
                    c.metadata.as_mut().expect("wanted").state = sp_metadata::State::Other {
                        pid: 7,
                        found: argv.map(String::from).to_vec(),
                        wanted: vec![],
                    }
                },
                "change namespaces metadata_proxy",
            ),
            (
                "metadata proxy of another program",
                |w, c| {
                    let mut argv = vec!["/old/stackplumb".to_string(), "metadata-proxy".into()];
                    for s in &w.metadata {
                        argv.extend(s.args());
                    }
                    c.metadata.as_mut().expect("wanted").state = sp_metadata::State::Other {
                        pid: 7,
                        found: argv,
                        wanted: vec!["/new/stackplumb".into()],
                    }
                },
                "change command_line metadata_proxy",
            ),
            (
                "metadata proxy not listening in a router",
                |w, c| {
                    c.metadata.as_mut().expect("wanted").deaf =
                        vec![w.routers[0].namespace.to_string()]
                },
                "change listening metadata_proxy",
            ),
            (
                "metadata proxy never started",
                |_, c| c.metadata = None,
                "create metadata_proxy",
            ),
            (
                "vg inactive",
                |_, c| c.vg = Some(VgView { active: false }),
                "change state volume_group",
            ),
            (
                "uplink released",
                |_, c| root_link(c, "eth0").master = None,
                "create uplink",
            ),
            (
                "uplink bridge's MAC",
                |w, c| {
                    let n = w
                        .networks
                        .iter()
                        .find(|n| n.uplink.is_some())
                        .expect("flat");
                    root_link(c, n.bridge.as_str()).mac = Some([2, 0, 0, 0, 0, 9]);
                },
                "change mac link",
            ),
        ];
        let want = node("controller");
        for (what, drift, expect) in rows {
            let mut cur = converged(&want);
            drift(&want, &mut cur);
            let actions = plan(&want, &cur, &Owned::default()).expect("no conflicts");
            assert_eq!(kinds(&actions), [expect], "{what}: {actions:#?}");
        }
        // On the compute node: the l2population entries towards the controller.
        let want = node("compute");
        let mut cur = converged(&want);
        let flood = cur
            .l2
            .fdb
            .iter()
            .find(|f| f.1 == "00:00:00:00:00:00")
            .cloned()
            .expect("flood");
        cur.l2.fdb.remove(&flood);
        let n = cur.l2.neigh.iter().next().cloned().expect("a neighbour");
        cur.l2.neigh.remove(&n);
        let actions = plan(&want, &cur, &Owned::default()).expect("no conflicts");
        assert_eq!(
            kinds(&actions),
            ["create fdb", "create neighbour"],
            "{actions:#?}"
        );
    }

    #[test]
    fn equivalences_are_not_changes() {
        let want = node("controller");
        // Liberty binds vxlan-N to eth0, the NIC under the bridge that holds local_ip.
        let mut cur = converged(&want);
        root_link(&mut cur, "vxlan-1")
            .vxlan
            .as_mut()
            .expect("vxlan")
            .dev = Some(2);
        assert_eq!(plan(&want, &cur, &Owned::default()).expect("plan"), []);
        // A device that does not serve local_ip is another matter.
        cur.root.links.push(link(99, "eth1", "device", 1500));
        root_link(&mut cur, "vxlan-1")
            .vxlan
            .as_mut()
            .expect("vxlan")
            .dev = Some(99);
        let k = kinds(&plan(&want, &cur, &Owned::default()).expect("plan"));
        assert_eq!(k, ["change dev (recreated) vxlan"]);
    }

    #[test]
    fn only_the_dhcp_ports_device_has_its_checksum_offload_managed() {
        let want = node("controller");
        let mut cur = converged(&want);
        // A router's legs offload as the kernel made them.
        inner(&mut cur, port_of(&want, PortKindSel::Qr)).tx_checksum = Some(true);
        assert_eq!(plan(&want, &cur, &Owned::default()).expect("plan"), []);
        let ns = port_of(&want, PortKindSel::Ns);
        inner(&mut cur, ns).tx_checksum = Some(true);
        let shown: Vec<String> = plan(&want, &cur, &Owned::default())
            .expect("plan")
            .iter()
            .map(|a| a.to_string())
            .collect();
        let dev = ns.kind.device(ns.port_id.as_str());
        assert_eq!(
            shown,
            [format!(
                "~ link {dev} in {} tx-checksum on -> off",
                ns.namespace
            )]
        );
    }

    #[test]
    fn what_this_node_made_and_no_longer_wants_is_deleted_first() {
        let want = node("controller");
        let cur = converged(&want);
        let mut owned = Owned::default();
        let router = want.routers[0].namespace.to_string();
        owned.namespaces.insert(router.clone(), None);
        owned.nat.insert(router.clone());
        // The same node without its router.
        let mut less = want.clone();
        less.routers.clear();
        less.ports.retain(|p| p.namespace.as_str() != router);
        let actions = plan(&less, &cur, &owned).expect("plan");
        let k = kinds(&actions);
        assert_eq!(k[0], "delete namespace", "{k:#?}");
        assert!(actions.iter().all(|a| a.op == Op::Delete), "{k:#?}");
        // Someone else's namespace of the same name (another identity) is left alone.
        let mut cur2 = cur.clone();
        cur2.live.insert(
            router.clone(),
            Some(sp_kernel::netns::NsId { dev: 1, ino: 2 }),
        );
        owned.namespaces.insert(
            router.clone(),
            Some(crate::owned::NsIdentity { dev: 1, ino: 3 }),
        );
        let k = kinds(&plan(&less, &cur2, &owned).expect("plan"));
        assert!(!k.contains(&"delete namespace".to_string()), "{k:#?}");
        // Nothing is deleted that this node did not make.
        assert_eq!(plan(&less, &cur, &Owned::default()).expect("plan"), []);
    }

    /// The compute node's security groups: created when missing, changed when they
    /// differ, left alone when they match; pruned only when this node made them and
    /// no instance port wants them any more.
    #[test]
    fn security_groups_are_planned_from_what_the_kernel_holds() {
        let want = node("compute");
        assert_eq!(want.firewall.ports.len(), 1, "vm1");
        let differs = || FirewallView::Differs(vec![missing("inet", "ia7b1762b-3")]);
        let owned = Owned {
            firewall: true,
            ..Default::default()
        };
        let none = Owned::default();
        let mut unwanted = want.clone();
        unwanted.firewall = Default::default();
        let rows: Vec<(&str, &NodePlan, FirewallView, &Owned, Vec<&str>)> = vec![
            ("converged", &want, FirewallView::Matches, &owned, vec![]),
            (
                "tables missing",
                &want,
                FirewallView::Absent,
                &none,
                vec!["create firewall"],
            ),
            (
                "rule deleted",
                &want,
                differs(),
                &owned,
                vec!["change rules firewall"],
            ),
            (
                "no port wants them, ours",
                &unwanted,
                FirewallView::Matches,
                &owned,
                vec!["delete firewall"],
            ),
            (
                "no port wants them, not ours",
                &unwanted,
                differs(),
                &none,
                vec![],
            ),
            (
                "no port wants them, gone",
                &unwanted,
                FirewallView::Absent,
                &owned,
                vec![],
            ),
        ];
        for (what, w, view, o, expect) in rows {
            let mut cur = converged(&want);
            cur.firewall = view;
            let actions = plan(w, &cur, o).expect("no conflicts");
            assert_eq!(kinds(&actions), expect, "{what}: {actions:#?}");
        }
        // After the ports and the NAT, before the volume group.
        let mut cur = converged(&want);
        cur.firewall = FirewallView::Absent;
        cur.l2 = Default::default();
        let k = kinds(&plan(&want, &cur, &none).expect("plan"));
        let at = |s: &str| {
            k.iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} in {k:?}"))
        };
        assert!(at("create fdb") < at("create firewall"), "{k:?}");
    }

    #[test]
    fn the_metadata_proxy_goes_when_nothing_is_served_and_only_if_ours() {
        let want = node("controller");
        assert_eq!(
            want.metadata
                .iter()
                .map(|s| s.namespace())
                .collect::<Vec<_>>(),
            [want.routers[0].namespace.to_string()],
            "the guide's router; demo-net has a router, so its DHCP namespace serves none"
        );
        let cur = converged(&want);
        let mut none = want.clone();
        none.metadata.clear();
        let owned = Owned {
            metadata_proxy: true,
            ..Default::default()
        };
        let k = kinds(&plan(&none, &cur, &owned).expect("plan"));
        assert_eq!(k, ["delete metadata_proxy"]);
        assert_eq!(plan(&none, &cur, &Owned::default()).expect("plan"), []);
        // Gone already: nothing to delete.
        let mut gone = cur.clone();
        gone.metadata.as_mut().expect("read").state = sp_metadata::State::Stopped;
        assert_eq!(plan(&none, &gone, &owned).expect("plan"), []);
    }

    #[test]
    fn a_device_of_ours_of_another_kind_is_a_conflict() {
        let want = node("controller");
        let mut cur = converged(&want);
        let b = want.networks[0].bridge.to_string();
        let l = root_link(&mut cur, &b);
        l.kind = "veth".into();
        l.bridge = None;
        let c = plan(&want, &cur, &Owned::default()).expect_err("a conflict");
        assert!(c[0].0.contains("not a bridge"), "{c:?}");
        // A dnsmasq of another state directory serving our network.
        let mut cur = converged(&want);
        for v in cur.dhcp.values_mut() {
            v.state = sp_dhcp::State::Stopped;
            v.foreign = Some((42, "/elsewhere/dhcp/x/pid".into()));
        }
        let c = plan(&want, &cur, &Owned::default()).expect_err("a conflict");
        assert!(c[0].0.contains("another dnsmasq (pid 42"), "{c:?}");
    }
}
