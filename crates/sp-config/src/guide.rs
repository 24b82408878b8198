//! The guide's configuration files, read from where the guide writes them (below a
//! configuration root, `/etc` by default) into typed values. Unknown keys are ignored;
//! a value that does not parse is an error naming the file and line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use sp_lvm::vg::VgName;
use sp_names::IfName;

use crate::ini::{ConfigError, Ini};
use crate::topology::Role;

/// Where each file lives below the configuration root.
pub const LINUXBRIDGE_AGENT: &str = "neutron/plugins/ml2/linuxbridge_agent.ini";
pub const ML2_CONF: &str = "neutron/plugins/ml2/ml2_conf.ini";
pub const L3_AGENT: &str = "neutron/l3_agent.ini";
pub const DHCP_AGENT: &str = "neutron/dhcp_agent.ini";
pub const CINDER_CONF: &str = "cinder/cinder.conf";

/// `linuxbridge_agent.ini`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinuxBridgeAgent {
    /// `[linux_bridge] physical_interface_mappings = public:eth0`.
    pub physical_interface_mappings: BTreeMap<String, IfName>,
    /// `[vxlan] enable_vxlan` (default True).
    pub enable_vxlan: bool,
    /// `[vxlan] local_ip`.
    pub local_ip: Option<IpAddr>,
    /// `[vxlan] l2_population` (default False).
    pub l2_population: bool,
    /// `[vxlan] vxlan_group` (multicast mode; default 224.0.0.1).
    pub vxlan_group: Option<String>,
    /// Security groups enforced on the node's instance ports: `[securitygroup]
    /// enable_security_group` (default True) with `firewall_driver` the
    /// `IptablesFirewallDriver` (`iptables`); Liberty's default driver, when none is
    /// set, is the `NoopFirewallDriver` (`noop`): nothing enforced.
    pub firewall: bool,
}

/// `ml2_conf.ini`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ml2 {
    pub type_drivers: Vec<String>,
    pub tenant_network_types: Vec<String>,
    pub mechanism_drivers: Vec<String>,
    /// `[ml2_type_flat] flat_networks` (`*` allows any).
    pub flat_networks: Vec<String>,
    /// `[ml2_type_vxlan] vni_ranges = 1:1000`.
    pub vni_ranges: Vec<RangeInclusive<u32>>,
}

/// `l3_agent.ini` `[DEFAULT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct L3Agent {
    pub interface_driver: Option<String>,
    /// Empty with the Linux bridge agent (the guide); `br-ex` with packstack's OVS.
    pub external_network_bridge: String,
    /// `metadata_proxy_socket`, as written (`$state_path/metadata_proxy` when unset):
    /// the metadata agent's socket the routers' proxy forwards to.
    pub metadata_proxy_socket: Option<String>,
}

/// `dhcp_agent.ini` `[DEFAULT]` and the dnsmasq file it names.
#[derive(Debug, Clone, PartialEq)]
pub struct DhcpAgent {
    pub interface_driver: Option<String>,
    pub enable_isolated_metadata: bool,
    /// `dnsmasq_config_file`, passed to dnsmasq as `--conf-file=` ('' when unset).
    pub dnsmasq_config_file: Option<PathBuf>,
    /// The MTU that file forces through DHCP option 26 (`dhcp-option-force=26,1450`).
    pub forced_mtu: Option<u32>,
    /// `metadata_proxy_socket`, as written: the isolated networks' proxy forwards there.
    pub metadata_proxy_socket: Option<String>,
}

/// `cinder.conf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cinder {
    /// `[lvm] volume_group` (or the older `[DEFAULT] volume_group`; default
    /// `cinder-volumes`), checked by lvm2's name rules.
    pub volume_group: VgName,
}

/// Everything the data plane needs from the guide's files. Each node reads its own:
/// `linuxbridge_agent.ini` always; the others when its roles need them
/// ([`GuideConfig::load_for`]) — `None` when a file is not needed and not there (the
/// guide's compute node has only `linuxbridge_agent.ini` and `neutron.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct GuideConfig {
    pub root: PathBuf,
    pub agent: LinuxBridgeAgent,
    /// `ml2_conf.ini` (the network role: the server's view of the networks).
    pub ml2: Option<Ml2>,
    /// `l3_agent.ini` (the network role).
    pub l3: Option<L3Agent>,
    /// `dhcp_agent.ini` (the network role).
    pub dhcp: Option<DhcpAgent>,
    /// `cinder.conf` (the volume role).
    pub cinder: Option<Cinder>,
}

/// The files a node of `roles` must have (below the root), beyond
/// `linuxbridge_agent.ini`, which every node has.
pub fn files_for(roles: &[Role]) -> Vec<&'static str> {
    let mut files = vec![LINUXBRIDGE_AGENT];
    if roles.contains(&Role::Network) {
        files.extend([ML2_CONF, L3_AGENT, DHCP_AGENT]);
    }
    if roles.contains(&Role::Volume) {
        files.push(CINDER_CONF);
    }
    files
}

/// Reads `rel` below `root`. A file that is not there is `None` when nobody needs it,
/// else an error saying who does (`needed_by`: "every node", "a node with the network
/// role").
fn load(root: &Path, rel: &str, needed_by: Option<&str>) -> Result<Option<Ini>, ConfigError> {
    let path = root.join(rel);
    let missing = |message| ConfigError {
        file: path.clone(),
        line: 0,
        message,
    };
    match sp_kernel::files::read_config(&path) {
        Ok(text) => Ini::parse(&text, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match needed_by {
            None => Ok(None),
            Some(who) => Err(missing(format!("cannot read: {e}; {who} reads it"))),
        },
        Err(e) => Err(missing(format!("cannot read: {e}"))),
    }
}

impl GuideConfig {
    /// Reads every file below `root` (`/etc` normally), each required: what a node of
    /// every role reads.
    pub fn load(root: &Path) -> Result<GuideConfig, ConfigError> {
        Self::load_for(root, &[Role::Network, Role::Volume, Role::Compute])
    }

    /// Reads what a node of `roles` reads: the files [`files_for`] names are required
    /// (a missing one is an error naming it), the others read when present.
    pub fn load_for(root: &Path, roles: &[Role]) -> Result<GuideConfig, ConfigError> {
        let needed = files_for(roles);
        let who = format!(
            "a node with the roles {}",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let read = |rel: &str| load(root, rel, needed.contains(&rel).then_some(who.as_str()));
        Ok(GuideConfig {
            root: root.to_owned(),
            agent: LinuxBridgeAgent::load(root)?,
            ml2: read(ML2_CONF)?.map(|i| Ml2::from_ini(&i)).transpose()?,
            l3: read(L3_AGENT)?.map(|i| L3Agent::from_ini(&i)),
            dhcp: read(DHCP_AGENT)?
                .map(|i| DhcpAgent::from_ini(&i, root))
                .transpose()?,
            cinder: read(CINDER_CONF)?
                .map(|i| Cinder::from_ini(&i))
                .transpose()?,
        })
    }
}

impl LinuxBridgeAgent {
    /// `linuxbridge_agent.ini` below `root`: every node has it (its `local_ip` names
    /// the node).
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let ini = load(root, LINUXBRIDGE_AGENT, Some("every node"))?.expect("needed");
        Self::from_ini(&ini)
    }

    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let mut mappings = BTreeMap::new();
        if let Some(v) = ini.get("linux_bridge", "physical_interface_mappings") {
            for item in v.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (phys, iface) = item
                    .split_once(':')
                    .filter(|(p, i)| !p.trim().is_empty() && !i.trim().is_empty())
                    .ok_or_else(|| {
                        ini.bad(
                            v,
                            format!(
                                "physical_interface_mappings: {item:?} is not PHYSNET:INTERFACE"
                            ),
                        )
                    })?;
                let iface = IfName::new(iface.trim())
                    .map_err(|e| ini.bad(v, format!("physical_interface_mappings: {e}")))?;
                mappings.insert(phys.trim().to_owned(), iface);
            }
        }
        Ok(LinuxBridgeAgent {
            physical_interface_mappings: mappings,
            enable_vxlan: ini.bool("vxlan", "enable_vxlan")?.unwrap_or(true),
            local_ip: ini.parsed("vxlan", "local_ip", "an IP address")?,
            l2_population: ini.bool("vxlan", "l2_population")?.unwrap_or(false),
            vxlan_group: ini.string("vxlan", "vxlan_group"),
            firewall: ini.bool("securitygroup", "enable_security_group")?.unwrap_or(true)
                && match ini.get("securitygroup", "firewall_driver") {
                    None => false,
                    Some(v) => match v.text.trim() {
                        "neutron.agent.linux.iptables_firewall.IptablesFirewallDriver"
                        | "iptables" => true,
                        "neutron.agent.firewall.NoopFirewallDriver" | "noop" => false,
                        other => {
                            return Err(ini.bad(
                                v,
                                format!(
                                    "firewall_driver: {other:?} is not the IptablesFirewallDriver (iptables) or the NoopFirewallDriver (noop)"
                                ),
                            ))
                        }
                    },
                },
        })
    }
}

impl Ml2 {
    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let mut vni_ranges = Vec::new();
        if let Some(v) = ini.get("ml2_type_vxlan", "vni_ranges") {
            for item in v.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let range = item
                    .split_once(':')
                    .and_then(|(a, b)| {
                        Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
                    })
                    .filter(|(a, b)| *a >= 1 && a <= b && *b < 1 << 24)
                    .ok_or_else(|| {
                        ini.bad(
                            v,
                            format!("vni_ranges: {item:?} is not MIN:MAX within 1–16777215"),
                        )
                    })?;
                vni_ranges.push(range.0..=range.1);
            }
        }
        let list = |s: &str, k: &str| ini.list(s, k).unwrap_or_default();
        Ok(Ml2 {
            type_drivers: list("ml2", "type_drivers"),
            tenant_network_types: list("ml2", "tenant_network_types"),
            mechanism_drivers: list("ml2", "mechanism_drivers"),
            flat_networks: list("ml2_type_flat", "flat_networks"),
            vni_ranges,
        })
    }
}

impl L3Agent {
    pub fn from_ini(ini: &Ini) -> Self {
        L3Agent {
            interface_driver: ini.string("DEFAULT", "interface_driver"),
            // Liberty's default is br-ex; the guide sets it empty.
            external_network_bridge: ini
                .string("DEFAULT", "external_network_bridge")
                .unwrap_or_else(|| "br-ex".into()),
            metadata_proxy_socket: ini.string("DEFAULT", "metadata_proxy_socket"),
        }
    }
}

impl DhcpAgent {
    pub fn from_ini(ini: &Ini, root: &Path) -> Result<Self, ConfigError> {
        let conf = ini
            .string("DEFAULT", "dnsmasq_config_file")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let forced_mtu = match &conf {
            Some(path) => forced_mtu(&reroot(root, path))?,
            None => None,
        };
        Ok(DhcpAgent {
            interface_driver: ini.string("DEFAULT", "interface_driver"),
            enable_isolated_metadata: ini
                .bool("DEFAULT", "enable_isolated_metadata")?
                .unwrap_or(false),
            dnsmasq_config_file: conf,
            forced_mtu,
            metadata_proxy_socket: ini.string("DEFAULT", "metadata_proxy_socket"),
        })
    }
}

/// An absolute path from a config file (`/etc/neutron/dnsmasq-neutron.conf`) read below
/// another root (`--config-dir`): `/etc/` is replaced by the root.
pub fn reroot(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/etc") {
        Ok(rel) => root.join(rel),
        Err(_) => path.to_owned(),
    }
}

/// The MTUs an interface can have (IPv4's minimum to the largest IP packet).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// The MTU a dnsmasq configuration file forces with `dhcp-option-force=26,N` (or
/// `dhcp-option=26,N`, `option:mtu,N`).
fn forced_mtu(path: &Path) -> Result<Option<u32>, ConfigError> {
    let text = sp_kernel::files::read_config(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: 0,
        message: format!("cannot read (named by dnsmasq_config_file): {e}"),
    })?;
    let mut mtu = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(v) = line
            .strip_prefix("dhcp-option-force=")
            .or_else(|| line.strip_prefix("dhcp-option="))
        else {
            continue;
        };
        let fields: Vec<&str> = v.split(',').map(str::trim).collect();
        // Tags (`tag:x`, `set:x`) may come first.
        let opt = fields
            .iter()
            .position(|f| !f.starts_with("tag:") && !f.starts_with("set:"));
        if let Some(o) = opt {
            if fields[o] == "26" || fields[o] == "option:mtu" {
                let n = fields
                    .get(o + 1)
                    .and_then(|n| n.parse().ok())
                    .filter(|n| MTU_RANGE.contains(n))
                    .ok_or_else(|| ConfigError {
                        file: path.to_owned(),
                        line: i + 1,
                        message: format!(
                            "DHCP option 26 (MTU) needs a number from {} to {}: {line:?}",
                            MTU_RANGE.start(),
                            MTU_RANGE.end()
                        ),
                    })?;
                mtu = Some(n);
            }
        }
    }
    Ok(mtu)
}

impl Cinder {
    pub fn from_ini(ini: &Ini) -> Result<Self, ConfigError> {
        let key = ["lvm", "DEFAULT"]
            .into_iter()
            .find_map(|section| ini.get(section, "volume_group"));
        let volume_group = match key {
            None => VgName::new("cinder-volumes").expect("lvm2 takes the default"),
            Some(v) => VgName::new(v.text.as_str()).map_err(|why| {
                ini.bad(
                    v,
                    format!(
                        "volume_group = {:?} is not a volume group name: {why}",
                        v.text
                    ),
                )
            })?,
        };
        Ok(Cinder { volume_group })
    }
}

/// The guide's files as the Liberty guide leaves them on the controller (its
/// `linuxbridge_agent.ini`, `ml2_conf.ini`, `l3_agent.ini`, `dhcp_agent.ini`,
/// `dnsmasq-neutron.conf`, `cinder.conf`), written below `root` — for the demo, which
/// runs on machines that have none.
pub fn write_guide_files(root: &Path) -> std::io::Result<()> {
    let files: [(&str, &str); 6] = [
        (
            LINUXBRIDGE_AGENT,
            include_str!("../tests/guide/neutron/plugins/ml2/linuxbridge_agent.ini"),
        ),
        (
            ML2_CONF,
            include_str!("../tests/guide/neutron/plugins/ml2/ml2_conf.ini"),
        ),
        (
            L3_AGENT,
            include_str!("../tests/guide/neutron/l3_agent.ini"),
        ),
        (
            DHCP_AGENT,
            include_str!("../tests/guide/neutron/dhcp_agent.ini"),
        ),
        (
            "neutron/dnsmasq-neutron.conf",
            include_str!("../tests/guide/neutron/dnsmasq-neutron.conf"),
        ),
        (
            CINDER_CONF,
            include_str!("../tests/guide/cinder/cinder.conf"),
        ),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(path, text)?;
    }
    Ok(())
}
