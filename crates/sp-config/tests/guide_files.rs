//! The guide's own files, as the guide writes them, and the topology checks.

use std::path::{Path, PathBuf};

use sp_config::topology::{Pool, Topology};
use sp_config::{validate, GuideConfig};

fn guide_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")
}

fn guide() -> GuideConfig {
    GuideConfig::load(&guide_root()).expect("the guide's files parse")
}

#[test]
fn the_guides_files_read_as_the_agents_read_them() {
    let c = guide();
    assert_eq!(
        c.agent
            .physical_interface_mappings
            .get("public")
            .map(|i| i.as_str()),
        Some("eth0")
    );
    assert!(c.agent.enable_vxlan && c.agent.l2_population);
    assert_eq!(c.agent.local_ip, Some("10.0.0.101".parse().unwrap()));
    assert_eq!(c.ml2.as_ref().unwrap().type_drivers, ["flat", "vxlan"]);
    assert_eq!(c.ml2.as_ref().unwrap().flat_networks, ["public"]);
    assert_eq!(c.ml2.as_ref().unwrap().vni_ranges, [1..=1000]);
    assert_eq!(c.l3.as_ref().unwrap().external_network_bridge, "");
    assert!(c.dhcp.as_ref().unwrap().enable_isolated_metadata);
    assert_eq!(
        c.dhcp.as_ref().unwrap().dnsmasq_config_file.as_deref(),
        Some(Path::new("/etc/neutron/dnsmasq-neutron.conf"))
    );
    assert_eq!(
        c.dhcp.as_ref().unwrap().forced_mtu,
        Some(1450),
        "dhcp-option-force=26,1450 read through --config-dir"
    );
    assert_eq!(
        c.cinder.as_ref().unwrap().volume_group.as_str(),
        "cinder-volumes"
    );
}

/// A copy of the guide's files with one file replaced; removed again once loaded (the
/// path is still returned for the errors to name).
fn with_file(rel: &str, text: &str) -> (PathBuf, Result<GuideConfig, sp_config::ConfigError>) {
    let dir = std::env::temp_dir().join(format!(
        "sp-config-{}-{}",
        std::process::id(),
        rel.replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    sp_config::guide::write_guide_files(&dir).unwrap();
    std::fs::write(dir.join(rel), text).unwrap();
    let res = GuideConfig::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    (dir, res)
}

#[test]
fn malformed_files_name_file_and_line() {
    let (dir, res) = with_file(
        "neutron/plugins/ml2/linuxbridge_agent.ini",
        "[linux_bridge]\nphysical_interface_mappings = public\n",
    );
    let e = res.unwrap_err();
    assert_eq!(
        e.file,
        dir.join("neutron/plugins/ml2/linuxbridge_agent.ini")
    );
    assert_eq!(e.line, 2);
    assert!(
        e.to_string()
            .contains("\"public\" is not PHYSNET:INTERFACE"),
        "{e}"
    );

    let (_, res) = with_file(
        "neutron/plugins/ml2/ml2_conf.ini",
        "[ml2_type_vxlan]\nvni_ranges = 1000:1\n",
    );
    assert!(res
        .unwrap_err()
        .to_string()
        .ends_with(":2: vni_ranges: \"1000:1\" is not MIN:MAX within 1–16777215"));

    let (_, res) = with_file(
        "neutron/dhcp_agent.ini",
        "[DEFAULT]\nenable_isolated_metadata = sure\n",
    );
    assert!(res
        .unwrap_err()
        .to_string()
        .contains(":2: DEFAULT.enable_isolated_metadata: \"sure\" is not a boolean"));

    let (_, res) = with_file(
        "neutron/plugins/ml2/linuxbridge_agent.ini",
        "[vxlan]\nlocal_ip = 10.0.0.300\n",
    );
    assert!(res
        .unwrap_err()
        .to_string()
        .contains(":2: vxlan.local_ip: \"10.0.0.300\" is not an IP address"));

    let (_, res) = with_file("neutron/dnsmasq-neutron.conf", "dhcp-option-force=26,big\n");
    assert!(res
        .unwrap_err()
        .to_string()
        .contains("dnsmasq-neutron.conf:1: DHCP option 26 (MTU) needs a number"));

    let (dir, res) = with_file("neutron/l3_agent.ini", "[DEFAULT\n");
    let e = res.unwrap_err();
    assert_eq!(
        (e.file.clone(), e.line),
        (dir.join("neutron/l3_agent.ini"), 1)
    );
}

#[test]
fn the_documented_topology_is_the_built_in_one() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/topology.toml"),
    )
    .unwrap();
    assert_eq!(
        Topology::parse(&text, "docs/topology.toml").unwrap(),
        Topology::guide()
    );
    assert_eq!(validate(&Topology::guide(), &guide()), Vec::<String>::new());
    let err = Topology::parse("[[nodes]]\nname = 1\n", "t.toml").unwrap_err();
    assert!(err.starts_with("t.toml:"), "{err}");
    let err = Topology::parse(
        &text.replace(
            "tunnel_ip = \"10.0.0.102\"",
            "tunnel_ip = \"10.0.0.102\"\ncolour = \"red\"",
        ),
        "t.toml",
    )
    .unwrap_err();
    assert!(err.contains("unknown field `colour`"), "{err}");
}

/// MACs, the Cinder size and instance names are typed when the topology is parsed: a bad
/// one is an error naming the field.
#[test]
fn topology_macs_sizes_and_names_are_checked_at_parse_time() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/topology.toml"),
    )
    .unwrap();
    for (from, to, field, why) in [
        (
            "\"fa:16:3e:a7:24:00\"",
            "\"fa:16:3e:a7:24\"",
            "mac",
            "six octets",
        ),
        (
            "\"fa:16:3e:a7:24:00\"",
            "\"01:00:5e:00:00:01\"",
            "mac",
            "multicast",
        ),
        (
            "\"fa:16:3e:5d:2c:01\"",
            "\"00:00:00:00:00:00\"",
            "mac",
            "all zero",
        ),
        ("\"20G\"", "\"20X\"", "size", "unknown unit"),
        ("\"vm1\"", "\"../vm1\"", "name", "'/'"),
    ] {
        assert!(text.contains(from), "{from}");
        let err = Topology::parse(&text.replacen(from, to, 1), "t.toml").unwrap_err();
        assert!(err.contains(why) && err.contains(field), "{to}: {err}");
    }
    let t = Topology::parse(&text.replace("fa:16:3e:5d:2c:01", "FA:16:3E:5D:2C:01"), "t").unwrap();
    assert_eq!(t.instances[0].mac.to_string(), "fa:16:3e:5d:2c:01");
}

#[test]
fn cinder_volume_group_and_uplink_names_are_checked_when_read() {
    let (dir, res) = with_file("cinder/cinder.conf", "[lvm]\nvolume_group = bad/x\n");
    let e = res.unwrap_err();
    assert_eq!(
        (e.file.clone(), e.line),
        (dir.join("cinder/cinder.conf"), 2)
    );
    assert!(
        e.to_string()
            .contains("volume_group = \"bad/x\" is not a volume group name: '/' is not allowed"),
        "{e}"
    );
    let (_, res) = with_file(
        "neutron/plugins/ml2/linuxbridge_agent.ini",
        "[linux_bridge]\nphysical_interface_mappings = public:eth0/x\n",
    );
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(":2: physical_interface_mappings: invalid name \"eth0/x\""),
        "{e}"
    );
}

/// The tunnel addresses must be the hosts' own unicast addresses, of one family.
#[test]
fn tunnel_ips_that_cannot_carry_vxlan_are_refused() {
    let ip = |s: &str| s.parse().unwrap();
    for (bad, why) in [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("239.1.1.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let errs = problems(|t| t.nodes[1].tunnel_ip = ip(bad));
        assert!(
            errs.iter().any(
                |e| e.starts_with(&format!("node compute: tunnel_ip {bad} is")) && e.contains(why)
            ),
            "{bad}: {errs:?}"
        );
    }
    assert_eq!(
        problems(|t| t.nodes[1].tunnel_ip = ip("2001:db8::102")),
        ["node compute: tunnel_ip 2001:db8::102 is not of the family of node controller's 10.0.0.101 (VXLAN tunnels join one family)"]
    );
}

/// A DHCP subnet must leave an address for the DHCP port.
#[test]
fn a_dhcp_subnet_without_room_for_its_port_is_refused() {
    let ip = |s: &str| s.parse().unwrap();
    let full = |t: &mut Topology, cidr: &str| {
        let s = &mut t.networks[1].subnet;
        s.cidr = cidr.parse().unwrap();
        s.dns_nameservers = vec![];
    };
    // A /30: .0 and .3 are the network and broadcast, the gateway (the router) .1, vm1 .2.
    let errs = problems(|t| {
        full(t, "192.168.0.0/30");
        t.networks[1].subnet.gateway = Some(ip("192.168.0.1"));
        t.routers[0].interfaces[0].ip = ip("192.168.0.1");
        t.instances[0].ip = ip("192.168.0.2");
    });
    assert!(
        errs.contains(&"demo-net: no free address in 192.168.0.0/30 for the DHCP port (the gateway, routers and instances hold every address of the subnet); widen it or set enable_dhcp = false".to_owned()),
        "{errs:?}"
    );
    for cidr in ["192.168.0.0/31", "192.168.0.0/32"] {
        let errs = problems(|t| {
            full(t, cidr);
            t.networks[1].subnet.gateway = None;
            t.routers[0].interfaces[0].ip = ip("192.168.0.0");
            t.instances[0].ip = ip("192.168.0.0");
        });
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("demo-net: no free address in {cidr}"))),
            "{cidr}: {errs:?}"
        );
    }
    // A pool that the ports fill.
    let errs = problems(|t| {
        t.networks[1].subnet.allocation_pools = vec![Pool {
            start: ip("192.168.0.3"),
            end: ip("192.168.0.3"),
        }]
    });
    assert!(
        errs.iter()
            .any(|e| e.contains("every address of its allocation pools")),
        "{errs:?}"
    );
    // With DHCP off there is nothing to find.
    assert!(!problems(|t| {
        full(t, "192.168.0.0/30");
        t.networks[1].subnet.enable_dhcp = false;
        t.networks[1].subnet.gateway = Some(ip("192.168.0.1"));
        t.routers[0].interfaces[0].ip = ip("192.168.0.1");
        t.instances[0].ip = ip("192.168.0.2");
    })
    .iter()
    .any(|e| e.contains("DHCP port")));
}

fn problems(edit: impl FnOnce(&mut Topology)) -> Vec<String> {
    let mut t = Topology::guide();
    edit(&mut t);
    validate(&t, &guide())
}

#[test]
fn bad_topologies_are_refused_before_any_change() {
    let ip = |s: &str| s.parse().unwrap();
    assert_eq!(
        problems(|t| t.networks[1].subnet.cidr = "10.0.0.128/25".parse().unwrap()),
        [
            "subnets of ext-net (10.0.0.0/24) and demo-net (10.0.0.128/25) overlap",
            "demo-net: gateway 192.168.0.1 is not a host address of 10.0.0.128/25",
            "router demo-router: 192.168.0.1 is outside demo-net (10.0.0.128/25)",
            "instance vm1: 192.168.0.3 is outside demo-net (10.0.0.128/25)",
        ]
    );
    assert_eq!(
        problems(|t| t.networks[1].subnet.gateway = Some(ip("192.168.1.1"))),
        ["demo-net: gateway 192.168.1.1 is not a host address of 192.168.0.0/24"]
    );
    assert_eq!(
        problems(|t| t.networks[0].subnet.allocation_pools = vec![Pool {
            start: ip("10.0.0.200"),
            end: ip("10.0.1.250")
        }]),
        ["ext-net: pool 10.0.0.200–10.0.1.250 is not within 10.0.0.0/24"]
    );
    assert_eq!(
        problems(|t| t.networks[1].segmentation_id = Some(5000)),
        ["demo-net: VNI 5000 is outside vni_ranges (1:1000)"]
    );
    assert_eq!(
        problems(|t| t.networks[0].physical_network = Some("provider".into())),
        [
            "ext-net: physical network \"provider\" has no mapping in physical_interface_mappings",
            "ext-net: physical network \"provider\" is not in flat_networks",
        ]
    );
    assert_eq!(
        problems(|t| t.instances[0].floating_ip = Some(ip("10.0.0.100"))),
        ["instance vm1: floating IP 10.0.0.100 is outside every external network's allocation pool"]
    );
    assert_eq!(
        problems(|t| t.instances[0].floating_ip = Some(ip("10.0.0.200"))),
        ["instance vm1: address 10.0.0.200 on ext-net is used twice"]
    );
    assert_eq!(
        problems(|t| t.instances[0].node = "compute2".into()),
        ["instance vm1: no node \"compute2\""]
    );
    assert_eq!(
        problems(|t| t.routers[0].gateway.as_mut().unwrap().network = "demo-net".into()),
        [
            "router demo-router: gateway network demo-net is not external",
            "router demo-router: 10.0.0.200 is outside demo-net (192.168.0.0/24)",
        ]
    );
}

#[test]
fn overlapping_subnets_are_every_pair_that_overlaps() {
    // Nested, equal, adjacent and disjoint blocks of both families, in no order: the
    // messages are every overlapping pair, found by comparing every pair here.
    let cidrs = [
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.2.0.0/24",
        "10.1.2.128/25",
        "10.2.1.0/24",
        "10.2.0.0/24",
        "fd00::/64",
        "10.0.0.0/8",
        "fd00::/48",
        "fd01::/64",
        "192.168.0.0/24",
        "10.1.3.0/24",
    ];
    let mut t = Topology::guide();
    let template = t.networks[1].clone();
    t.networks = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut n = template.clone();
            n.name = format!("net{i}");
            n.id = format!("{i:08x}-0000-4000-8000-000000000000")
                .parse()
                .unwrap();
            n.subnet.cidr = c.parse().unwrap();
            n
        })
        .collect();
    let mut expected = Vec::new();
    for (i, a) in t.networks.iter().enumerate() {
        for b in &t.networks[i + 1..] {
            let (x, y) = (a.subnet.cidr, b.subnet.cidr);
            if x.contains(&y.network()) || y.contains(&x.network()) {
                expected.push(format!(
                    "subnets of {} ({x}) and {} ({y}) overlap",
                    a.name, b.name
                ));
            }
        }
    }
    let found: Vec<String> = validate(&t, &guide())
        .into_iter()
        .filter(|e| e.ends_with(") overlap"))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(expected.len(), 13, "{expected:#?}");
}
