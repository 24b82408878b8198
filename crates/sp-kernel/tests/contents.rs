//! The blocking reader a namespace hop uses: what it reads is what `ip -j` shows, also
//! when the dump spans many reads.

use std::collections::BTreeSet;

use netlink_packet_route::AddressFamily;
use sp_kernel::{attrs, netlink};
use sp_testenv::{oracle, sandbox, scene};

#[test]
fn contents_read_matches_ip_also_across_many_reads() {
    sandbox::enter();
    // 300 links at about 1.5 KiB each: many times what one read of a dump holds.
    let mut batch = String::new();
    for i in 0..150 {
        batch.push_str(&format!(
            "link add br{i} type bridge\nlink add v{i} type veth peer name p{i}\n"
        ));
        batch.push_str(&format!(
            "addr add 10.{}.{}.1/24 dev br{i}\nlink set br{i} up\n",
            i / 200,
            i % 200
        ));
    }
    let file = std::env::temp_dir().join(format!("sp-kernel-contents-{}", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    scene::ip(&["-batch", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();

    let c = netlink::open_reader()
        .unwrap()
        .contents(&[AddressFamily::Inet])
        .unwrap();
    let ours: BTreeSet<String> = c
        .links
        .iter()
        .map(|l| attrs::link_name(l).unwrap().to_owned())
        .collect();
    let theirs: BTreeSet<String> = oracle::links(None)
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours.len(), 451);
    assert_eq!(ours, theirs);
    let ours: BTreeSet<String> = c
        .addresses
        .iter()
        .filter_map(attrs::address_ip)
        .map(|a| a.to_string())
        .collect();
    let theirs: BTreeSet<String> = oracle::addrs(None)
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .map(|a| a["local"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains("10.0.149.1"));
    // IPv4 routes of the main table alone: one per connected subnet, none of the local
    // table's.
    assert!(c.routes.iter().all(|r| attrs::route_table(r) == 254));
    assert_eq!(c.routes.len(), oracle::routes(None, false).len());
    assert!(c
        .routes
        .iter()
        .all(|r| r.header.address_family == AddressFamily::Inet));
}

/// `ipv4_forwarding` (asked by RTM_GETNETCONF) is what `sysctl net.ipv4.ip_forward`
/// reads, both ways; the links keep what the reconcilers read: kind, master, MTU, MAC,
/// the veth peer, VXLAN settings.
#[test]
fn contents_forwarding_and_link_attributes_match_ip() {
    sandbox::enter();
    let forwarding = || {
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        netlink::open_reader()
            .unwrap()
            .contents(&[])
            .map(|c| (c.ipv4_forwarding, v.trim() == "1"))
            .unwrap()
    };
    assert_eq!(forwarding(), (false, false));
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    assert_eq!(forwarding(), (true, true));

    scene::ip(&["link", "add", "br0", "mtu", "1400", "type", "bridge"]);
    scene::ip(&["link", "add", "v0", "type", "veth", "peer", "name", "p0"]);
    scene::ip(&["link", "set", "v0", "master", "br0"]);
    scene::ip(&[
        "link",
        "add",
        "vx7",
        "type",
        "vxlan",
        "id",
        "7",
        "dstport",
        "8472",
        "local",
        "10.9.9.9",
        "nolearning",
    ]);
    let c = netlink::open_reader().unwrap().contents(&[]).unwrap();
    for theirs in oracle::links(None) {
        let name = theirs["ifname"].as_str().unwrap();
        let ours = c
            .links
            .iter()
            .find(|l| attrs::link_name(l) == Some(name))
            .unwrap_or_else(|| panic!("{name} not read"));
        assert_eq!(
            attrs::link_mtu(ours),
            theirs["mtu"].as_u64().map(|m| m as u32)
        );
        let mac = attrs::link_mac(ours).map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        });
        assert_eq!(mac.as_deref(), theirs["address"].as_str(), "{name}");
        let master = attrs::link_master(ours).and_then(|i| {
            c.links
                .iter()
                .find(|l| l.header.index == i)
                .and_then(attrs::link_name)
        });
        assert_eq!(master, theirs["master"].as_str(), "{name}");
        let kind = attrs::link_kind(ours).map(|k| k.to_string());
        let their_kind = theirs["linkinfo"]["info_kind"].as_str();
        assert_eq!(kind.as_deref(), their_kind, "{name}");
        if name == "v0" {
            let peer = attrs::link_peer(ours).0.and_then(|i| {
                c.links
                    .iter()
                    .find(|l| l.header.index == i)
                    .and_then(attrs::link_name)
            });
            assert_eq!(peer, Some("p0"));
            assert_eq!(theirs["link"].as_str(), Some("p0"));
        }
    }
    let vx = c
        .links
        .iter()
        .find(|l| attrs::link_name(l) == Some("vx7"))
        .unwrap();
    let Some(netlink_packet_route::link::InfoData::Vxlan(opts)) = attrs::link_data(vx) else {
        panic!("no VXLAN data kept: {vx:?}");
    };
    assert!(opts.contains(&netlink_packet_route::link::InfoVxlan::Id(7)));
    assert!(opts.contains(&netlink_packet_route::link::InfoVxlan::Learning(false)));
}

/// A namespace with no route yet has no IPv4 main table at all (the kernel makes it with
/// the first route), and a dump of that table answers ENOENT: the reader reads that as no
/// route, and reads the table once a route made it.
#[test]
fn a_namespace_without_routes_reads_as_none() {
    sandbox::enter();
    let both = [AddressFamily::Inet, AddressFamily::Inet6];
    let c = netlink::open_reader().unwrap().contents(&both).unwrap();
    assert_eq!(oracle::routes(None, false).len(), 0);
    assert!(c.routes.is_empty(), "{:?}", c.routes);
    scene::ip(&["link", "add", "d0", "type", "bridge"]);
    scene::ip(&["addr", "add", "10.1.2.3/24", "dev", "d0"]);
    scene::ip(&["link", "set", "d0", "up"]);
    let c = netlink::open_reader().unwrap().contents(&both).unwrap();
    let ours: Vec<_> = c
        .routes
        .iter()
        .filter(|r| r.header.address_family == AddressFamily::Inet)
        .collect();
    assert_eq!(ours.len(), oracle::routes(None, false).len());
    assert_eq!(ours.len(), 1, "the connected route of 10.1.2.0/24");
}
