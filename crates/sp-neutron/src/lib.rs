//! Neutron's naming rules, as the Liberty agents apply them (see
//! `shared/reference/neutron-liberty-dataplane.md`): namespaces `qrouter-<router id>`,
//! `qdhcp-<network id>`, `snat-<router id>`, `fip-<external network id>`; devices
//! prefix + the first 11 characters of a port or network id, always within IFNAMSIZ.

pub mod dhcp;
pub mod l3;
pub mod metadata;
pub mod sg;

use serde::Serialize;
use sp_names::NeutronId;

/// `prefix` + the first 11 characters of `id` (all of it when shorter), as every
/// Neutron device name is made.
fn device(prefix: &str, id: &str) -> String {
    format!("{prefix}{}", id.chars().take(11).collect::<String>())
}

/// `brq<network id[:11]>`: the Linux bridge of a network.
pub fn bridge_name(network_id: &str) -> String {
    device("brq", network_id)
}

/// `tap<port id[:11]>`: a VM port, or the host end of a router/DHCP port.
pub fn tap_name(port_id: &str) -> String {
    device("tap", port_id)
}

/// `vxlan-<vni>`.
pub fn vxlan_name(vni: u32) -> String {
    format!("vxlan-{vni}")
}

/// The namespace end of a router or DHCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// `ns-…` in `qdhcp-<network>`.
    Dhcp,
    /// `qr-…` in `qrouter-<router>`.
    RouterInternal,
    /// `qg-…` in `qrouter-<router>`.
    RouterGateway,
    /// An instance in a sandbox: a namespace whose `eth0` is the VM tap's peer (what a
    /// VM's virtio NIC is on a real compute node).
    Instance,
}

impl PortKind {
    /// The device prefix inside the namespace.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Dhcp => "ns-",
            Self::RouterInternal => "qr-",
            Self::RouterGateway => "qg-",
            Self::Instance => "",
        }
    }

    /// Neutron's `device_owner` of such a port.
    pub fn device_owner(self) -> &'static str {
        match self {
            Self::Dhcp => "network:dhcp",
            Self::RouterInternal => "network:router_interface",
            Self::RouterGateway => "network:router_gateway",
            Self::Instance => "compute:nova",
        }
    }

    /// The device name inside the namespace for `port_id` (`eth0` for an instance).
    pub fn device(self, port_id: &str) -> String {
        match self {
            Self::Instance => "eth0".to_owned(),
            _ => device(self.prefix(), port_id),
        }
    }
}

/// `qrouter-<router id>`.
pub fn qrouter_namespace(router_id: &str) -> String {
    format!("qrouter-{router_id}")
}

/// `qdhcp-<network id>`.
pub fn qdhcp_namespace(network_id: &str) -> String {
    format!("qdhcp-{network_id}")
}

/// What a network namespace is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// The host's root namespace.
    Root,
    /// `qrouter-<router id>`: the L3 agent's router.
    Qrouter,
    /// `qdhcp-<network id>`: the DHCP agent's dnsmasq.
    Qdhcp,
    /// `snat-<router id>`: a DVR router's central SNAT.
    Snat,
    /// `fip-<external network id>`: a DVR node's floating-IP namespace.
    Fip,
    /// Anything else.
    Plain,
}

impl NamespaceKind {
    /// Every kind, in the order they are listed.
    pub const ALL: [NamespaceKind; 6] = [
        Self::Root,
        Self::Qrouter,
        Self::Qdhcp,
        Self::Snat,
        Self::Fip,
        Self::Plain,
    ];

    /// The lower-case word used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Qrouter => "qrouter",
            Self::Qdhcp => "qdhcp",
            Self::Snat => "snat",
            Self::Fip => "fip",
            Self::Plain => "plain",
        }
    }

    /// What the id in the name stands for.
    pub fn id_meaning(self) -> Option<&'static str> {
        match self {
            Self::Qrouter | Self::Snat => Some("router"),
            Self::Qdhcp => Some("network"),
            Self::Fip => Some("external network"),
            Self::Root | Self::Plain => None,
        }
    }

    /// True for the namespaces Neutron agents create.
    pub fn is_neutron(self) -> bool {
        self.id_meaning().is_some()
    }
}

impl std::str::FromStr for NamespaceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let words: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind {s:?} (one of: {})", words.join(", "))
            })
    }
}

/// Classifies a namespace name: the Neutron kind and its UUID, or `Plain`.
/// Neutron always puts a full UUID after the prefix; anything else is `Plain`.
pub fn classify_namespace(name: &str) -> (NamespaceKind, Option<&str>) {
    const PREFIXES: [(&str, NamespaceKind); 4] = [
        ("qrouter-", NamespaceKind::Qrouter),
        ("qdhcp-", NamespaceKind::Qdhcp),
        ("snat-", NamespaceKind::Snat),
        ("fip-", NamespaceKind::Fip),
    ];
    for (prefix, kind) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            if NeutronId::check(id).is_ok() {
                return (kind, Some(id));
            }
        }
    }
    (NamespaceKind::Plain, None)
}

/// What a device is in Neutron's scheme, judged by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum DeviceRole {
    /// `brq<network id[:11]>`: the Linux bridge agent's network bridge.
    NetworkBridge { network_id_prefix: String },
    /// `vxlan-<vni>`.
    Vxlan { vni: u32 },
    /// `tap<port id[:11]>`: a VM port, or the host end of a router/DHCP veth.
    Tap { port_id_prefix: String },
    /// `qr-<port id[:11]>`: a router's internal leg.
    RouterInternal { port_id_prefix: String },
    /// `qg-<port id[:11]>`: a router's gateway leg.
    RouterGateway { port_id_prefix: String },
    /// `ns-<port id[:11]>`: the DHCP port inside `qdhcp-`.
    DhcpPort { port_id_prefix: String },
    /// `qbr<port id[:11]>`: the Open vSwitch agent's hybrid plugging — a Linux bridge per
    /// instance port, where iptables filters it (`tap` on it).
    HybridBridge { port_id_prefix: String },
    /// `qvb<port id[:11]>`: the hybrid veth's end on the `qbr` bridge.
    HybridBridgeEnd { port_id_prefix: String },
    /// `qvo<port id[:11]>`: the hybrid veth's end on `br-int`.
    HybridOvsEnd { port_id_prefix: String },
}

impl DeviceRole {
    /// The Neutron port id prefix the name carries (none for `brq`, `vxlan-N`).
    pub fn port_id_prefix(&self) -> Option<&str> {
        match self {
            DeviceRole::NetworkBridge { .. } | DeviceRole::Vxlan { .. } => None,
            DeviceRole::Tap { port_id_prefix }
            | DeviceRole::RouterInternal { port_id_prefix }
            | DeviceRole::RouterGateway { port_id_prefix }
            | DeviceRole::DhcpPort { port_id_prefix }
            | DeviceRole::HybridBridge { port_id_prefix }
            | DeviceRole::HybridBridgeEnd { port_id_prefix }
            | DeviceRole::HybridOvsEnd { port_id_prefix } => Some(port_id_prefix),
        }
    }
}

/// Classifies a device name; `None` when it follows no Neutron pattern.
pub fn classify_device(name: &str) -> Option<DeviceRole> {
    fn port(rest: &str) -> Option<String> {
        (rest.len() == 11 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            .then(|| rest.to_owned())
    }
    if let Some(vni) = name.strip_prefix("vxlan-") {
        let vni: u32 = vni.parse().ok()?;
        return (vni < 1 << 24).then_some(DeviceRole::Vxlan { vni });
    }
    let (prefix, rest) = name.split_at(name.len().min(3));
    let p = port(rest)?;
    Some(match prefix {
        "brq" => DeviceRole::NetworkBridge {
            network_id_prefix: p,
        },
        "tap" => DeviceRole::Tap { port_id_prefix: p },
        "qr-" => DeviceRole::RouterInternal { port_id_prefix: p },
        "qg-" => DeviceRole::RouterGateway { port_id_prefix: p },
        "ns-" => DeviceRole::DhcpPort { port_id_prefix: p },
        "qbr" => DeviceRole::HybridBridge { port_id_prefix: p },
        "qvb" => DeviceRole::HybridBridgeEnd { port_id_prefix: p },
        "qvo" => DeviceRole::HybridOvsEnd { port_id_prefix: p },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_namespaces_are_recognised() {
        assert_eq!(
            classify_namespace("qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165"),
            (
                NamespaceKind::Qrouter,
                Some("006df4cc-6fb2-40e7-af58-dc68b6755165")
            )
        );
        assert_eq!(
            classify_namespace("qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c").0,
            NamespaceKind::Qdhcp
        );
        assert_eq!(
            classify_namespace("snat-006df4cc-6fb2-40e7-af58-dc68b6755165").0,
            NamespaceKind::Snat
        );
        assert_eq!(
            classify_namespace("fip-78983ca2-77e3-4cdf-9747-ae1b34addeb7").0,
            NamespaceKind::Fip
        );
        assert_eq!(
            classify_namespace("qrouter-x"),
            (NamespaceKind::Plain, None)
        );
        assert_eq!(classify_namespace("blue"), (NamespaceKind::Plain, None));
    }

    #[test]
    fn guide_devices_are_recognised() {
        assert_eq!(
            classify_device("qr-7337070d-45"),
            Some(DeviceRole::RouterInternal {
                port_id_prefix: "7337070d-45".into()
            })
        );
        assert_eq!(
            classify_device("brq5b6a8b87-fd"),
            Some(DeviceRole::NetworkBridge {
                network_id_prefix: "5b6a8b87-fd".into()
            })
        );
        assert_eq!(
            classify_device("vxlan-1"),
            Some(DeviceRole::Vxlan { vni: 1 })
        );
        assert_eq!(classify_device("vxlan-16777216"), None);
        // The Open vSwitch agent's hybrid plugging (packstack's host).
        for (name, role) in [
            ("qbra7b1762b-3b", "hybrid-bridge"),
            ("qvba7b1762b-3b", "hybrid-bridge-end"),
            ("qvoa7b1762b-3b", "hybrid-ovs-end"),
        ] {
            let r = classify_device(name).unwrap();
            assert_eq!(r.port_id_prefix(), Some("a7b1762b-3b"));
            assert_eq!(serde_json::to_value(&r).unwrap()["role"], role);
        }
        assert_eq!(classify_device("eth0"), None);
        assert_eq!(classify_device("tapb5cfa271-7"), None);
        let id = "7337070d-45e1-4a2b-9c3d-1234567890ab";
        for name in [
            bridge_name(id),
            tap_name(id),
            PortKind::RouterInternal.device(id),
            PortKind::RouterGateway.device(id),
            PortKind::Dhcp.device(id),
            vxlan_name(16_777_215),
        ] {
            sp_names::IfName::check(&name).unwrap();
        }
    }

    #[test]
    fn names_are_made_like_neutron_makes_them() {
        assert_eq!(
            bridge_name("5b6a8b87-fd03-46b5-a968-72bac5091b7c"),
            "brq5b6a8b87-fd"
        );
        assert_eq!(
            tap_name("7337070d-4567-4b1f-8d2f-0123456789ab"),
            "tap7337070d-45"
        );
        assert_eq!(
            PortKind::RouterInternal.device("7337070d-45ff"),
            "qr-7337070d-45"
        );
        assert_eq!(PortKind::Dhcp.device("b5cfa271-71aa"), "ns-b5cfa271-71");
        assert_eq!(vxlan_name(1), "vxlan-1");
        assert_eq!(bridge_name("short"), "brqshort");
        assert_eq!(
            classify_device(&PortKind::RouterGateway.device("9477c16b-e5ab")),
            Some(DeviceRole::RouterGateway {
                port_id_prefix: "9477c16b-e5".into()
            })
        );
    }

    #[test]
    fn kinds_parse_from_their_words() {
        for k in NamespaceKind::ALL {
            assert_eq!(k.as_str().parse::<NamespaceKind>().unwrap(), k);
        }
        assert!("router".parse::<NamespaceKind>().is_err());
    }
}
