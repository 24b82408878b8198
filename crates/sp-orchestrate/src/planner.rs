//! The planner: `plan(desired, current, owned) → actions`, pure. What `stackplumb plan`
//! prints is exactly what `apply` executes: apply runs the operation of each unit
//! ([`Unit`]) that has actions, and each operation changes exactly the attributes that
//! differ — the same comparisons as here (docs/reconciler.md lists them, and the
//! differences that are not changes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use sp_config::desired::{L2Entry, NetPlan, NodePlan, PortPlan};
use sp_kernel::attrs::KERNEL_VXLAN_PORT;
use sp_neutron::{tap_name, vxlan_name};

use crate::current::{Current, LinkView, NatView, Space};
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
    VolumeGroup {
        name: String,
    },
    /// An Open vSwitch object (bridge, uplink port, gateway port).
    Ovs {
        what: String,
    },
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
            Object::VolumeGroup { name } => write!(f, "volume group {name}"),
            Object::Ovs { what } => f.write_str(what),
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
        old: String,
        new: String,
    },
    Delete,
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
            Op::Change {
                attribute,
                old,
                new,
            } => write!(f, "~ {} {attribute} {old} -> {new}", self.object),
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
    sp_bridge::input::mac(&p.mac.to_string()).ok()
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
    actions: Vec<Action>,
    conflicts: Vec<Conflict>,
}

impl Planner<'_> {
    fn push(&mut self, unit: Unit, op: Op, object: Object) {
        self.actions.push(Action { op, object, unit });
    }

    fn change(&mut self, unit: Unit, object: Object, attribute: &str, old: String, new: String) {
        self.push(
            unit,
            Op::Change {
                attribute: attribute.into(),
                old,
                new,
            },
            object,
        );
    }

    /// The device that will hold `local_ip` once the uplinks have moved: a NIC that
    /// holds it now and is some flat network's uplink hands it to that bridge.
    fn local_holder(&self, ip: IpAddr) -> Option<String> {
        let holder = self.cur.root.holder(ip)?;
        let moved = self
            .want
            .networks
            .iter()
            .find(|n| !n.ovs && n.uplink.as_deref() == Some(holder.name.as_str()));
        Some(match moved {
            Some(n) => n.bridge.to_string(),
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
                                "stp {} forward_delay {}",
                                if opts.stp_on() { "on" } else { "off" },
                                opts.forward_delay.unwrap_or(0)
                            ),
                            "stp off forward_delay 0".into(),
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
        } else if left > 0 {
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
            for p in ports {
                self.port(&unit, p, Some(&space));
            }
        }
    }

    fn port(&mut self, unit: &Unit, p: &PortPlan, space: Option<&Space>) {
        let net = self
            .want
            .networks
            .iter()
            .find(|n| n.network_id == p.network_id);
        let ovs = net.is_some_and(|n| n.ovs);
        let inner_name = p.kind.device(&p.port_id);
        let tap_name = (!ovs).then(|| tap_name(&p.port_id));
        let object = Object::Port {
            port_id: p.port_id.to_string(),
            device: inner_name.clone(),
            namespace: p.namespace.to_string(),
            tap: tap_name.clone(),
        };
        let mtu = net.map_or(1500, |n| network_mtu(&self.cur.root, n));
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
                        name: format!("{} (stale half of a pair)", stale.name),
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
        let stays = |dev: &str| {
            want.networks
                .iter()
                .any(|n| n.vxlan.as_ref().is_some_and(|v| vxlan_name(v.vni) == dev))
        };
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
                continue;
            };
            for f in &view.stale_files {
                self.push(
                    unit.clone(),
                    Op::Change {
                        attribute: "content".into(),
                        old: "differs".into(),
                        new: "as wanted".into(),
                    },
                    Object::DhcpFile {
                        network_id: d.network_id.to_string(),
                        file: (*f).into(),
                    },
                );
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
                    self.change(unit, object, "rules", d.join("; "), "as wanted".into())
                }
            }
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
        for (what, present) in &self.cur.ovs {
            if !present {
                self.push(Unit::Ovs, Op::Create, Object::Ovs { what: what.clone() });
            }
        }
    }

    /// What this node made and no longer wants, in the order it is taken away: dnsmasq,
    /// NAT, ports, namespaces, uplinks, VXLAN devices, bridges, the volume group.
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
        for n in &owned.dnsmasq {
            if !want.dhcp.iter().any(|d| &d.network_id == n) {
                del(Object::Dnsmasq {
                    network_id: n.clone(),
                });
            }
        }
        for ns in &owned.nat {
            let kept_ns = wanted_ns.contains(ns.as_str());
            let wanted = want.routers.iter().any(|r| r.namespace.as_str() == ns);
            if kept_ns && !wanted && !matches!(cur.nat.get(ns), None | Some(NatView::Absent)) {
                del(Object::Nat {
                    namespace: ns.clone(),
                });
            }
        }
        for port_id in &owned.ports {
            let tap = tap_name(port_id);
            let wanted = want.ports.iter().any(|p| p.port_id.as_str() == port_id);
            if !wanted && cur.root.link(&tap).is_some() {
                del(Object::Port {
                    port_id: port_id.clone(),
                    device: "(its peer)".into(),
                    namespace: "-".into(),
                    tap: Some(tap),
                });
            }
        }
        for (ns, id) in &owned.namespaces {
            let ours = match (cur.live.get(ns), id) {
                (None, _) => false,
                (Some(live), Some(rec)) => {
                    live.is_some_and(|l| l.dev == rec.dev && l.ino == rec.ino)
                }
                // Recorded before it was made, never confirmed: ours if it is there.
                (Some(_), None) => true,
            };
            if ours && !wanted_ns.contains(ns.as_str()) {
                del(Object::Namespace { name: ns.clone() });
            }
        }
        for u in &owned.uplinks {
            let wanted = want
                .networks
                .iter()
                .any(|n| n.bridge.as_str() == u.bridge && n.uplink.as_deref() == Some(u.nic.as_str()));
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
        for v in &owned.vxlans {
            let wanted = want
                .networks
                .iter()
                .any(|n| n.vxlan.as_ref().is_some_and(|x| &vxlan_name(x.vni) == v));
            if let (false, Some(l)) = (wanted, cur.root.link(v)) {
                del(Object::Vxlan {
                    name: v.clone(),
                    vni: l.vxlan.as_ref().and_then(|x| x.vni).unwrap_or(0),
                });
            }
        }
        for b in &owned.bridges {
            let wanted = want.networks.iter().any(|n| !n.ovs && n.bridge.as_str() == b);
            if !wanted && cur.root.link(b).is_some() {
                del(Object::Bridge { name: b.clone() });
            }
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
    let mut p = Planner {
        want,
        cur,
        owned,
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
    let flat = |a: &Action| match &a.unit {
        Unit::Network(id) | Unit::Uplink(id) => want
            .networks
            .iter()
            .any(|n| n.network_id.as_str() == id && n.vxlan.is_none()),
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
        Unit::Cinder => 8,
    });
    out.extend(rest);
    Ok(out)
}
