//! What each node of the guide's cloud should have, derived from the topology and the
//! guide's files.

use std::path::Path;

use sp_config::desired::{dhcp_port, plan, L2Entry};
use sp_config::{GuideConfig, Topology};
use sp_neutron::PortKind;

fn guide_plan() -> Vec<sp_config::desired::NodePlan> {
    let cfg =
        GuideConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")).unwrap();
    plan(&Topology::guide(), &cfg, Path::new("/var/lib/neutron")).unwrap()
}

#[test]
fn the_controller_gets_bridges_router_dhcp_and_cinder() {
    let plans = guide_plan();
    let c = &plans[0];
    assert_eq!(c.node, "controller");
    let bridges: Vec<&str> = c.networks.iter().map(|n| n.bridge.as_str()).collect();
    assert_eq!(bridges, ["brq78983ca2-77", "brq5b6a8b87-fd"]);
    assert_eq!(
        c.networks[0].uplink.as_deref(),
        Some("eth0"),
        "ext-net: public:eth0"
    );
    let vx = c.networks[1].vxlan.as_ref().unwrap();
    assert_eq!(
        (vx.vni, vx.local_ip.to_string(), vx.l2_population, vx.group),
        (1, "10.0.0.101".into(), true, None)
    );

    let qg = c
        .ports
        .iter()
        .find(|p| p.kind == PortKind::RouterGateway)
        .unwrap();
    assert_eq!(qg.namespace, "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165");
    let a: Vec<String> = qg
        .addresses
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        a,
        ["10.0.0.200/24", "10.0.0.201/32"],
        "the floating IP rides on qg-"
    );
    assert_eq!(qg.gateway, Some("10.0.0.1".parse().unwrap()));
    let qr = c
        .ports
        .iter()
        .find(|p| p.kind == PortKind::RouterInternal)
        .unwrap();
    assert_eq!(
        qr.addresses.as_ref().unwrap()[0].to_string(),
        "192.168.0.1/24"
    );

    let d = c.ports.iter().find(|p| p.kind == PortKind::Dhcp).unwrap();
    assert_eq!(d.namespace, "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c");
    let a: Vec<String> = d
        .addresses
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(a, ["192.168.0.2/24", "169.254.169.254/16"]);
    assert_eq!(c.dhcp.len(), 1, "ext-net has DHCP off");
    let dn = &c.dhcp[0];
    assert_eq!(dn.interface, PortKind::Dhcp.device(&d.port_id));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide");
    assert_eq!(
        dn.conf_file,
        Some(root.join("neutron/dnsmasq-neutron.conf")),
        "below --config-dir"
    );
    assert!(
        !dn.subnets[0].isolated,
        "demo-subnet has a router interface"
    );
    assert!(dn
        .hosts_file()
        .contains("fa:16:3e:5d:2c:01,host-192-168-0-3.openstacklocal.,192.168.0.3"));

    let r = &c.routers[0];
    assert_eq!(r.nat.gateway_device, "qg-9477c16b-e5");
    assert_eq!(r.nat.floating_ips.len(), 1);
    let cinder = c.cinder.as_ref().unwrap();
    assert_eq!(
        (
            cinder.volume_group.as_str(),
            cinder.size.to_string().as_str()
        ),
        ("cinder-volumes", "20G")
    );

    // l2population towards compute: its VTEP and vm1's port.
    assert_eq!(
        c.l2pop,
        [
            L2Entry::Flood {
                vni: 1,
                vtep: "10.0.0.102".parse().unwrap()
            },
            L2Entry::Port {
                vni: 1,
                mac: "fa:16:3e:5d:2c:01".parse().unwrap(),
                ip: "192.168.0.3".parse().unwrap(),
                vtep: "10.0.0.102".parse().unwrap()
            },
        ]
    );
}

#[test]
fn the_compute_node_gets_the_tenant_network_and_vm1() {
    let plans = guide_plan();
    let c = &plans[1];
    assert_eq!(c.node, "compute");
    assert_eq!(c.networks.len(), 1, "only demo-net: no instance on ext-net");
    assert_eq!(
        c.networks[0].vxlan.as_ref().unwrap().local_ip.to_string(),
        "10.0.0.102"
    );
    assert_eq!(c.ports.len(), 1);
    assert_eq!(
        (c.ports[0].kind, c.ports[0].namespace.as_str()),
        (PortKind::Instance, "vm1")
    );
    assert_eq!(c.ports[0].addresses, None, "vm1 asks DHCP");
    assert!(c.dhcp.is_empty() && c.routers.is_empty() && c.cinder.is_none());
    let (dhcp_id, dhcp_mac) = dhcp_port("5b6a8b87-fd03-46b5-a968-72bac5091b7c");
    assert!(c.l2pop.contains(&L2Entry::Flood {
        vni: 1,
        vtep: "10.0.0.101".parse().unwrap()
    }));
    assert!(c.l2pop.contains(&L2Entry::Port {
        vni: 1,
        mac: dhcp_mac,
        ip: "192.168.0.2".parse().unwrap(),
        vtep: "10.0.0.101".parse().unwrap()
    }));
    assert!(c.l2pop.contains(&L2Entry::Port {
        vni: 1,
        mac: "fa:16:3e:a7:24:00".parse().unwrap(),
        ip: "192.168.0.1".parse().unwrap(),
        vtep: "10.0.0.101".parse().unwrap()
    }));
    assert_eq!(c.l2pop.len(), 3);
    assert_eq!(dhcp_id.len(), 36);
    assert!(dhcp_mac.to_string().starts_with("fa:16:3e:"));
    assert_eq!(
        dhcp_port("5b6a8b87-fd03-46b5-a968-72bac5091b7c"),
        (dhcp_id, dhcp_mac),
        "stable"
    );
}

#[test]
fn an_invalid_topology_plans_nothing() {
    let cfg =
        GuideConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")).unwrap();
    let mut t = Topology::guide();
    t.networks[1].segmentation_id = Some(4000);
    let errs = plan(&t, &cfg, Path::new("/var/lib/neutron")).unwrap_err();
    assert_eq!(errs, ["demo-net: VNI 4000 is outside vni_ranges (1:1000)"]);
}

/// Ids are cut to 11 characters for devices and lower-cased: two that make one name are
/// refused, as is an id used twice — they would share a bridge, a tap or a namespace.
#[test]
fn ids_that_would_share_a_device_or_namespace_are_refused() {
    let cfg = guide_config();
    let mut t = Topology::guide();
    // Same first 11 characters as demo-net's id.
    t.networks[0].id = "5b6a8b87-fd00-46b5-a968-000000000000".parse().unwrap();
    let errs = plan(&t, &cfg, Path::new("/var/lib/neutron")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("both make the bridge brq5b6a8b87-fd")),
        "{errs:?}"
    );
    let mut t = Topology::guide();
    // vm1 given the router leg's port id in upper case: one port after lower-casing.
    t.instances[0].port_id = "7337070D-45E1-4A2B-9C3D-1234567890AB".parse().unwrap();
    let errs = plan(&t, &cfg, Path::new("/var/lib/neutron")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("id 7337070d-45e1-4a2b-9c3d-1234567890ab is used twice")),
        "{errs:?}"
    );
}

fn guide_config() -> GuideConfig {
    GuideConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")).unwrap()
}

#[test]
fn external_network_bridge_puts_the_gateway_network_on_ovs_on_the_network_node_only() {
    let mut cfg = guide_config();
    cfg.l3.as_mut().unwrap().external_network_bridge = "br-ex".into();
    let plans = plan(&Topology::guide(), &cfg, Path::new("/var/lib/neutron")).unwrap();
    let c = &plans[0];
    let nets: Vec<(&str, bool, Option<&str>)> = c
        .networks
        .iter()
        .map(|n| (n.bridge.as_str(), n.ovs, n.uplink.as_deref()))
        .collect();
    assert_eq!(
        nets,
        [
            ("br-ex", true, Some("eth0")),
            ("brq5b6a8b87-fd", false, None)
        ],
        "ext-net is br-ex holding public:eth0; demo-net stays a Linux bridge"
    );
    // Everything else is as in the Linux bridge flavour.
    let linux = guide_plan();
    assert_eq!(c.ports, linux[0].ports);
    assert_eq!(c.routers, linux[0].routers);
    assert_eq!(plans[1], linux[1], "compute has no router: unchanged");
}

#[test]
fn external_network_bridge_refuses_other_ports_on_the_gateway_network() {
    let mut cfg = guide_config();
    cfg.l3.as_mut().unwrap().external_network_bridge = "br-ex".into();
    let mut t = Topology::guide();
    t.networks[0].subnet.enable_dhcp = true;
    let errs = plan(&t, &cfg, Path::new("/var/lib/neutron")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "l3_agent.ini external_network_bridge = br-ex puts network ext-net on the Open vSwitch bridge br-ex on node controller, where it also has a network:dhcp port"
        ),
        "{}",
        errs[0]
    );
    cfg.l3.as_mut().unwrap().external_network_bridge = "br-ex/../x".into();
    let errs = plan(&Topology::guide(), &cfg, Path::new("/var/lib/neutron")).unwrap_err();
    assert!(errs[0].contains("is not a device name"), "{errs:?}");
}

fn compute_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide-compute")
}

/// The guide's compute node has `linuxbridge_agent.ini` alone: it is planned from that,
/// and what it gets of the other nodes (l2population entries for the controller's
/// router and DHCP ports) is what the controller's full set of files gives.
#[test]
fn each_node_reads_only_its_own_files_and_plans_the_same() {
    use sp_config::topology::Role;
    let t = Topology::guide();
    let state = Path::new("/var/lib/neutron");
    let compute_cfg = GuideConfig::load_for(&compute_root(), &[Role::Compute]).unwrap();
    assert!(compute_cfg.ml2.is_none() && compute_cfg.l3.is_none());
    assert!(compute_cfg.dhcp.is_none() && compute_cfg.cinder.is_none());
    let alone = sp_config::desired::plan_node(&t, &compute_cfg, state, "compute").unwrap();
    let all = guide_plan();
    assert_eq!(alone.l2pop, all[1].l2pop);
    assert_eq!(alone.l2pop.len(), 3, "{:?}", alone.l2pop);
    assert_eq!(alone, all[1], "the whole compute plan");
    // The controller from its own files: the same as planned for all nodes at once.
    let ctl = GuideConfig::load_for(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide"),
        &[Role::Network, Role::Volume],
    )
    .unwrap();
    assert_eq!(
        sp_config::desired::plan_node(&t, &ctl, state, "controller").unwrap(),
        all[0]
    );
    // A controller's roles need its files: a missing one is named.
    let e = GuideConfig::load_for(&compute_root(), &[Role::Network]).unwrap_err();
    assert!(e
        .to_string()
        .contains("neutron/plugins/ml2/ml2_conf.ini:0: cannot read"));
    assert!(
        e.to_string()
            .contains("a node with the roles network reads it"),
        "{e}"
    );
    let e = GuideConfig::load_for(&compute_root(), &[Role::Compute, Role::Volume]).unwrap_err();
    assert!(
        e.to_string().contains("cinder/cinder.conf:0: cannot read"),
        "{e}"
    );
    let e = GuideConfig::load_for(Path::new("/nonexistent"), &[Role::Compute]).unwrap_err();
    assert!(
        e.to_string()
            .contains("linuxbridge_agent.ini:0: cannot read"),
        "{e}"
    );
    assert!(e.to_string().contains("every node reads it"), "{e}");
}

/// `[vxlan] local_ip` is the address of the node it is on.
#[test]
fn local_ip_must_be_the_nodes_tunnel_ip() {
    let state = Path::new("/var/lib/neutron");
    let errs = sp_config::desired::plan_node(&Topology::guide(), &guide_config(), state, "compute")
        .unwrap_err();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide");
    assert_eq!(
        errs,
        [format!(
            "local_ip = 10.0.0.101 in {}, but node compute's tunnel_ip is 10.0.0.102",
            root.join("neutron/plugins/ml2/linuxbridge_agent.ini")
                .display()
        )]
    );
    let t = Topology::guide();
    let ip = guide_config().agent.local_ip.unwrap();
    assert_eq!(
        sp_config::desired::node_with_tunnel_ip(&t, ip)
            .unwrap()
            .name,
        "controller"
    );
    let errs = sp_config::desired::plan_node(&t, &guide_config(), state, "network9").unwrap_err();
    assert_eq!(errs, ["no node \"network9\" in the topology"]);
}

/// The DHCP port's address is searched in the pools' ranges, never over the subnet.
#[test]
fn the_dhcp_port_takes_the_first_free_pool_address_found_without_walking_the_subnet() {
    let mut t = Topology::guide();
    let net = &mut t.networks[1];
    net.subnet.cidr = "2001:db8::/64".parse().unwrap();
    net.subnet.gateway = Some("2001:db8::1".parse().unwrap());
    net.subnet.dns_nameservers = vec![];
    net.subnet.allocation_pools = vec![sp_config::topology::Pool {
        start: "2001:db8::ffff:ffff:ffff:fff0".parse().unwrap(),
        end: "2001:db8::ffff:ffff:ffff:fffe".parse().unwrap(),
    }];
    t.routers[0].interfaces[0].ip = "2001:db8::ffff:ffff:ffff:fff0".parse().unwrap();
    t.instances[0].ip = "2001:db8::ffff:ffff:ffff:fff1".parse().unwrap();
    t.instances[0].floating_ip = None;
    let started = std::time::Instant::now();
    let n = &t.networks[1];
    assert_eq!(
        sp_config::topology::dhcp_address(&t, &sp_config::topology::held_addresses(&t), n),
        Some("2001:db8::ffff:ffff:ffff:fff2".parse().unwrap())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

type Summary = (
    sp_neutron::sg::Direction,
    sp_neutron::sg::EtherType,
    sp_neutron::sg::Protocol,
    Option<(u16, u16)>,
    sp_neutron::sg::Remote,
);

/// The compute node's firewall: vm1's port (tap, MAC, fixed IP, the DHCP port's
/// address), the default group's rules with 12-4's ICMP and tcp/22, the member set of
/// `default` (IPv4: vm1; IPv6: empty). The controller has no instance: no firewall.
#[test]
fn vm1_gets_the_default_group_with_the_guides_rules() {
    use sp_neutron::sg::{Direction, EtherType, Protocol, Remote};
    let plans = guide_plan();
    assert!(plans[0].firewall.ports.is_empty());
    let fw = &plans[1].firewall;
    assert_eq!(fw.ports.len(), 1);
    let p = &fw.ports[0];
    assert_eq!(p.device, "tapa7b1762b-3b");
    assert_eq!(p.mac.to_string(), "fa:16:3e:5d:2c:01");
    assert_eq!(
        p.fixed_ips,
        ["192.168.0.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        p.dhcp_servers,
        ["192.168.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    let group: sp_names::NeutronId = "3b4f5e2a-8c1d-4f6e-9a7b-0c1d2e3f4a5b".parse().unwrap();
    let summary: Vec<Summary> = p
        .rules
        .iter()
        .map(|r| {
            (
                r.direction,
                r.ethertype,
                r.protocol,
                r.ports,
                r.remote.clone(),
            )
        })
        .collect();
    use Direction::*;
    use EtherType::*;
    assert_eq!(
        summary,
        [
            (Egress, Ipv4, Protocol::Any, None, Remote::Any),
            (
                Ingress,
                Ipv4,
                Protocol::Any,
                None,
                Remote::Group(group.clone())
            ),
            (Egress, Ipv6, Protocol::Any, None, Remote::Any),
            (
                Ingress,
                Ipv6,
                Protocol::Any,
                None,
                Remote::Group(group.clone())
            ),
            (Ingress, Ipv4, Protocol::Icmp, None, Remote::Any),
            (Ingress, Ipv4, Protocol::Tcp, Some((22, 22)), Remote::Any),
        ]
    );
    let sets: Vec<(String, Vec<String>)> = fw
        .sets
        .iter()
        .map(|s| (s.name(), s.members.iter().map(|m| m.to_string()).collect()))
        .collect();
    assert_eq!(
        sets,
        [
            (
                "NIPv43b4f5e2a-8c1d-4f6e-9a7b-".to_owned(),
                vec!["192.168.0.3/32".to_owned()]
            ),
            ("NIPv63b4f5e2a-8c1d-4f6e-9a7b-".to_owned(), vec![]),
        ]
    );
}

/// Port security off: no firewall for the port; allowed pairs join the port's sources
/// and its groups' member sets; a group without `default` declared gets Neutron's.
#[test]
fn port_security_pairs_and_the_implicit_default_group() {
    let cfg =
        GuideConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")).unwrap();
    let mut t = Topology::guide();
    t.security_groups.clear();
    let mut vm2 = t.instances[0].clone();
    vm2.name = "vm2".parse().unwrap();
    vm2.port_id = "b2000000-0000-4000-8000-000000000002".parse().unwrap();
    vm2.mac = "fa:16:3e:00:00:02".parse().unwrap();
    vm2.ip = "192.168.0.4".parse().unwrap();
    vm2.floating_ip = None;
    vm2.port_security_enabled = false;
    t.instances[0].allowed_address_pairs = vec![sp_config::topology::AllowedAddressPair {
        ip_address: sp_config::topology::HostOrNet("192.168.0.50/32".parse().unwrap()),
        mac_address: None,
    }];
    t.instances.push(vm2);
    let plans = plan(&t, &cfg, Path::new("/var/lib/neutron")).unwrap();
    let fw = &plans[1].firewall;
    assert_eq!(fw.ports.len(), 1, "vm2 has port security off");
    assert_eq!(fw.ports[0].pairs[0].mac, fw.ports[0].mac);
    assert_eq!(fw.ports[0].rules.len(), 4, "Neutron's default group");
    let members: Vec<String> = fw.sets[0].members.iter().map(|m| m.to_string()).collect();
    assert_eq!(members, ["192.168.0.3/32", "192.168.0.50/32"]);
}

/// Security group rules that cannot be are refused, each named.
#[test]
fn bad_security_group_rules_are_refused() {
    let cfg =
        GuideConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guide")).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/topology.toml"),
    )
    .unwrap();
    let tcp22 = "{ direction = \"ingress\", protocol = \"tcp\", port_range_min = 22, port_range_max = 22, remote_ip_prefix = \"0.0.0.0/0\" }";
    for (to, why) in [
        ("{ direction = \"ingress\", protocol = \"icmp\", port_range_min = 22 }", "a port range needs protocol tcp or udp"),
        ("{ direction = \"ingress\", protocol = \"tcp\", port_range_min = 30, port_range_max = 22 }", "port_range_min 30 above port_range_max 22"),
        ("{ direction = \"ingress\", protocol = \"tcp\", icmp_type = 8 }", "icmp_type/icmp_code need protocol icmp"),
        ("{ direction = \"ingress\", remote_ip_prefix = \"::/0\" }", "remote_ip_prefix ::/0 is not IPv4"),
        ("{ direction = \"ingress\", remote_group = \"web\" }", "no security group \"web\""),
    ] {
        let t = Topology::parse(&text.replace(tcp22, to), "t.toml").unwrap();
        let errs = sp_config::validate(&t, &cfg);
        assert!(errs.iter().any(|e| e.contains(why)), "{why}: {errs:?}");
    }
    let bad = text.replace(
        "security_groups = [\"default\"]",
        "security_groups = [\"web\"]",
    );
    let errs = sp_config::validate(&Topology::parse(&bad, "t.toml").unwrap(), &cfg);
    assert!(
        errs.iter()
            .any(|e| e.contains("instance vm1: no security group \"web\"")),
        "{errs:?}"
    );
    for (field, value) in [
        ("direction", "\"sideways\""),
        ("protocol", "\"sctp\""),
        ("ethertype", "\"IPv5\""),
    ] {
        let bad = text.replace(
            tcp22,
            &format!("{{ direction = \"ingress\", {field} = {value} }}")
                .replace("direction = \"ingress\", direction", "direction"),
        );
        let err = Topology::parse(&bad, "t.toml").unwrap_err();
        assert!(
            err.contains(field) || err.contains("unknown variant"),
            "{field}: {err}"
        );
    }
}
