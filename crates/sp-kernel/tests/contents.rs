//! The blocking reader a namespace hop uses: what it reads is what `ip -j` shows, also
//! when the dump spans many reads.

use std::collections::BTreeSet;
use std::os::fd::AsFd;

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

    let sock = netlink::open_socket().unwrap();
    let c = netlink::Contents::read(sock.as_fd(), &[AddressFamily::Inet]).unwrap();
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
    // IPv4 routes, all tables: one per connected subnet in main, and the local table's.
    let main = c
        .routes
        .iter()
        .filter(|r| attrs::route_table(r) == 254)
        .count();
    assert_eq!(main, oracle::routes(None, false).len());
    assert!(c
        .routes
        .iter()
        .all(|r| r.header.address_family == AddressFamily::Inet));
}
