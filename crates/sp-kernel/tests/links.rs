//! Links made with the kernel's echo (`Netlink::create_link`), requests in few writes
//! (`Netlink::ack_each`) and links deleted in one kernel batch (`links::delete_links`),
//! read back with `ip -j`.

use std::collections::BTreeMap;

use netlink_packet_route::RouteNetlinkMessage;
use std::os::fd::AsRawFd;

use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde_json::Value;
use sp_kernel::netlink::Netlink;
use sp_kernel::{attrs, links};
use sp_testenv::{oracle, sandbox, scene};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `count` links named `prefix0…` of `kind` (`bridge`; `veth`: pairs, the peers named
/// `prefixp0…`), made by `ip -batch`. This kernel has no dummy links.
fn make(prefix: &str, kind: &str, count: usize) {
    let batch: String = (0..count)
        .map(|i| match kind {
            "veth" => format!("link add {prefix}{i} type veth peer name {prefix}p{i}\n"),
            _ => format!("link add {prefix}{i} type {kind}\n"),
        })
        .collect();
    let file = std::env::temp_dir().join(format!("sp-kernel-links-{}", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    scene::ip(&["-batch", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
}

/// `ip -j link`: name → the link.
fn by_name() -> BTreeMap<String, Value> {
    oracle::links(None)
        .into_iter()
        .map(|l| (l["ifname"].as_str().unwrap().to_owned(), l))
        .collect()
}

#[test]
fn create_link_returns_the_link_as_the_kernel_made_it() {
    sandbox::enter();
    scene::ip(&["netns", "add", "far"]);
    let far = sp_kernel::netns::open(&sp_kernel::netns::named_path("far").unwrap()).unwrap();
    let rt = runtime();
    let (bridge, tap) = rt.block_on(async {
        let nl = Netlink::current().unwrap();
        let msg = LinkMessageBuilder::<LinkBridge>::new("cbr")
            .mtu(1400)
            .build();
        let bridge = nl
            .create_link(msg, "cbr", || "create cbr".into())
            .await
            .unwrap();
        // A veth whose peer is born in another namespace, on the bridge.
        let peer = LinkUnspec::new_with_name("cin")
            .setns_by_fd(far.as_raw_fd())
            .build();
        // At the bridge's MTU: a bridge takes the least of its ports' MTUs.
        let msg = LinkVeth::new("ctap", "cin")
            .mtu(1400)
            .controller(bridge.header.index)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        let tap = nl
            .create_link(msg, "ctap", || "create ctap".into())
            .await
            .unwrap();
        // A second of the same name is refused, named by the context.
        let again = LinkMessageBuilder::<LinkBridge>::new("cbr").build();
        let e = nl
            .create_link(again, "cbr", || "create cbr again".into())
            .await
            .expect_err("cbr exists");
        assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
        assert!(e.to_string().contains("create cbr again"), "{e}");
        (bridge, tap)
    });
    let seen = by_name();
    assert_eq!(seen["cbr"]["ifindex"], bridge.header.index);
    assert_eq!(attrs::link_name(&bridge), Some("cbr"));
    assert_eq!(attrs::link_mtu(&bridge), Some(1400));
    assert_eq!(seen["cbr"]["mtu"], 1400);
    assert!(!attrs::link_is_up(&bridge));
    assert_eq!(seen["ctap"]["ifindex"], tap.header.index);
    assert_eq!(attrs::link_mtu(&tap), Some(1400));
    assert_eq!(seen["ctap"]["master"], "cbr");
    // The echo comes before the kernel enslaves it.
    assert_eq!(attrs::link_master(&tap), None);
    let inner = oracle::links(Some("far"))
        .into_iter()
        .find(|l| l["ifname"] == "cin")
        .expect("cin in far");
    assert_eq!(
        attrs::link_peer(&tap).0,
        inner["ifindex"].as_u64().map(|i| i as u32)
    );
}

#[test]
fn ack_each_answers_every_request_in_order_across_writes() {
    sandbox::enter();
    // More requests than one write carries, one of them for a link that is not there.
    make("m", "bridge", 150);
    let rt = runtime();
    rt.block_on(async {
        let nl = Netlink::current().unwrap();
        let index: BTreeMap<String, u32> = nl
            .links()
            .unwrap()
            .iter()
            .map(|l| (attrs::link_name(l).unwrap().to_owned(), l.header.index))
            .collect();
        let missing = 100;
        let requests = (0..150)
            .map(|i| {
                let idx = match i {
                    i if i == missing => 999_999,
                    i => index[&format!("m{i}")],
                };
                let mtu = 1000 + i as u32;
                RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(idx).mtu(mtu).build())
            })
            .collect();
        let answers = nl.ack_each(requests, |i| format!("request {i}")).unwrap();
        assert_eq!(answers.len(), 150);
        for (i, a) in answers.iter().enumerate() {
            match i == missing {
                true => {
                    let e = a.as_ref().expect_err("a link that is not there");
                    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
                    assert!(e.to_string().contains("request 100"), "{e}");
                }
                false => assert!(a.is_ok(), "request {i}: {a:?}"),
            }
        }
    });
    let seen = by_name();
    for i in (0..150).filter(|i| *i != 100) {
        assert_eq!(seen[&format!("m{i}")]["mtu"], 1000 + i, "m{i}");
    }
    assert_eq!(seen["m100"]["mtu"], 1500);
}

#[test]
fn delete_links_deletes_them_in_a_group_no_other_link_uses() {
    sandbox::enter();
    make("d", "veth", 100);
    make("keep", "bridge", 3);
    // keep0 holds the group the call tries first, keep1 the next: both must stay.
    let first = 0x5350_0000 | (std::process::id() & 0xffff);
    let second = first.wrapping_add(0x1_0000);
    scene::ip(&["link", "set", "keep0", "group", &first.to_string()]);
    scene::ip(&["link", "set", "keep1", "group", &second.to_string()]);
    let rt = runtime();
    rt.block_on(async {
        let nl = Netlink::current().unwrap();
        let all = nl.links().unwrap();
        let doomed: Vec<_> = all
            .iter()
            .filter(|l| attrs::link_name(l).is_some_and(|n| n.starts_with('d')))
            .cloned()
            .collect();
        assert_eq!(doomed.len(), 200);
        // A pair gone since the reading: both ends skipped.
        scene::ip(&["link", "del", "d7"]);
        links::delete_links(&nl, &doomed, &all).await.unwrap();
    });
    let seen = by_name();
    assert!(
        !seen.keys().any(|n| n.starts_with('d')),
        "{:?}",
        seen.keys()
    );
    assert_eq!(seen["keep0"]["group"], first.to_string());
    assert_eq!(seen["keep1"]["group"], second.to_string());
    assert_eq!(seen["keep2"]["group"], "default");
}
