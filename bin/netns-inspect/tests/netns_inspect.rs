//! netns-inspect against iproute2, on the guide's controller scene and on debris.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::guide::{self, DEMO_NET, QDHCP, QROUTER, ROUTER};
use sp_testenv::scene::{ip, netns_add, Parked};
use sp_testenv::{oracle, require, sandbox};

fn inspect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netns-inspect"))
        .args(args)
        .output()
        .expect("run netns-inspect")
}

fn inspect_json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = inspect(&all);
    assert!(
        out.status.success(),
        "netns-inspect {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Our namespace entry for a named namespace, or for the sandbox (`None`).
fn ns_of<'a>(report: &'a Value, name: Option<&str>) -> &'a Value {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ns| match name {
            Some(n) => ns["names"].as_array().unwrap().iter().any(|x| x == n),
            None => ns["current"] == true,
        })
        .unwrap_or_else(|| panic!("namespace {name:?} missing from report"))
}

fn s(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

/// Links as iproute2 sees them: name → (index, kind, mtu, mac, operstate, master, up).
/// A link as compared: (index, kind, mtu, mac, operstate, master, up).
type LinkKey = (u64, String, u64, String, String, String, bool);

fn ip_links(netns: Option<&str>) -> BTreeMap<String, LinkKey> {
    oracle::links(netns)
        .iter()
        .map(|l| {
            let kind = match l["linkinfo"]["info_kind"].as_str() {
                Some(k) => k.to_owned(),
                None if l["link_type"] == "loopback" => "loopback".into(),
                None => "device".into(),
            };
            let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
            (
                s(&l["ifname"]),
                (
                    l["ifindex"].as_u64().unwrap(),
                    kind,
                    l["mtu"].as_u64().unwrap(),
                    s(&l["address"]),
                    s(&l["operstate"]),
                    s(&l["master"]),
                    up,
                ),
            )
        })
        .collect()
}

fn our_links(ns: &Value) -> BTreeMap<String, LinkKey> {
    ns["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                s(&l["name"]),
                (
                    l["index"].as_u64().unwrap(),
                    s(&l["kind"]),
                    l["mtu"].as_u64().unwrap(),
                    s(&l["mac"]),
                    s(&l["operstate"]),
                    s(&l["master"]),
                    l["up"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

/// Addresses: (link, family, address, prefix, scope, broadcast).
type Addr = (String, String, String, u64, String, String);

fn ip_addrs(netns: Option<&str>) -> BTreeSet<Addr> {
    oracle::addrs(netns)
        .iter()
        .flat_map(|l| {
            let name = s(&l["ifname"]);
            l["addr_info"]
                .as_array()
                .unwrap()
                .clone()
                .into_iter()
                .map(move |a| {
                    (
                        name.clone(),
                        s(&a["family"]),
                        s(&a["local"]),
                        a["prefixlen"].as_u64().unwrap(),
                        s(&a["scope"]),
                        s(&a["broadcast"]),
                    )
                })
        })
        .collect()
}

fn our_addrs(ns: &Value) -> BTreeSet<Addr> {
    ns["links"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            let name = s(&l["name"]);
            l["addresses"]
                .as_array()
                .unwrap()
                .clone()
                .into_iter()
                .map(move |a| {
                    (
                        name.clone(),
                        s(&a["family"]),
                        s(&a["address"]),
                        a["prefix_len"].as_u64().unwrap(),
                        s(&a["scope"]),
                        s(&a["broadcast"]),
                    )
                })
        })
        .collect()
}

/// Routes: (destination with prefix, gateway, dev, protocol, scope, prefsrc, metric).
type RouteKey = (String, String, String, String, String, String, u64);

fn ip_routes(netns: Option<&str>) -> BTreeSet<RouteKey> {
    [false, true]
        .into_iter()
        .flat_map(|v6| {
            oracle::routes(netns, v6).into_iter().map(move |r| {
                let mut dst = s(&r["dst"]);
                if dst != "default" && !dst.contains('/') {
                    dst.push_str(if v6 { "/128" } else { "/32" });
                }
                let scope = r["scope"].as_str().unwrap_or("global").to_owned();
                (
                    dst,
                    s(&r["gateway"]),
                    s(&r["dev"]),
                    r["protocol"].as_str().unwrap_or("boot").to_owned(),
                    scope,
                    s(&r["prefsrc"]),
                    r["metric"].as_u64().unwrap_or(0),
                )
            })
        })
        .collect()
}

fn our_routes(ns: &Value) -> BTreeSet<RouteKey> {
    ns["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(&r["destination"]),
                s(&r["gateway"]),
                s(&r["dev"]),
                s(&r["protocol"]),
                s(&r["scope"]),
                s(&r["prefsrc"]),
                r["metric"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn ip_forward(netns: Option<&str>) -> bool {
    let out = match netns {
        Some(ns) => require::run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ])),
        None => std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
    };
    out.trim() == "1"
}

/// Everything iproute2 says about a namespace equals what netns-inspect says.
fn assert_agrees(report: &Value, netns: Option<&str>) {
    let ns = ns_of(report, netns);
    assert_eq!(our_links(ns), ip_links(netns), "links of {netns:?}");
    assert_eq!(our_addrs(ns), ip_addrs(netns), "addresses of {netns:?}");
    assert_eq!(our_routes(ns), ip_routes(netns), "routes of {netns:?}");
    assert_eq!(
        ns["ip_forward"].as_bool(),
        Some(ip_forward(netns)),
        "ip_forward of {netns:?}"
    );
    if let Some(name) = netns {
        let ours: BTreeSet<u64> = ns["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap())
            .collect();
        let theirs: BTreeSet<u64> = oracle::netns_pids(name)
            .into_iter()
            .map(u64::from)
            .collect();
        assert_eq!(ours, theirs, "processes of {name}");
    }
}

/// Where iproute2 says the peer of `link` (in `netns`) is: (namespace name or None for
/// the sandbox, peer ifname).
fn ip_peer(netns: Option<&str>, link: &str) -> (Option<String>, String) {
    let l = oracle::links(netns)
        .into_iter()
        .find(|l| l["ifname"] == link)
        .unwrap();
    let peer_index = l["link_index"].as_u64().expect("veth has link_index");
    let peer_ns = l["link_netnsid"].as_i64().map(|id| {
        // `ip netns list` (run in `netns`) names the namespaces that have an id there.
        let list = match netns {
            Some(n) => require::run(Command::new("ip").args(["-n", n, "-j", "netns", "list-id"])),
            None => require::run(Command::new("ip").args(["-j", "netns", "list-id"])),
        };
        let ids: Value = serde_json::from_str(&list).unwrap();
        ids.as_array()
            .unwrap()
            .iter()
            .find(|e| e["nsid"].as_i64() == Some(id))
            .and_then(|e| e["name"].as_str().map(str::to_owned))
    });
    // No name: the id stands for the (unnamed) sandbox namespace; the pairing is
    // then checked by the peer pointing back at this link.
    let peer_ns = peer_ns.flatten();
    let peer = oracle::links(peer_ns.as_deref())
        .into_iter()
        .find(|p| p["ifindex"].as_u64() == Some(peer_index))
        .unwrap();
    if peer_ns.is_none() && netns.is_some() {
        assert_eq!(
            peer["link_index"], l["ifindex"],
            "{link}'s peer points back"
        );
    }
    (peer_ns, s(&peer["ifname"]))
}

fn our_peer(report: &Value, netns: Option<&str>, link: &str) -> (Option<String>, String) {
    let ns = ns_of(report, netns);
    let l = ns["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == link)
        .unwrap();
    let peer = &l["peer"];
    assert!(peer.is_object(), "{link} has no peer in our report");
    let label = s(&peer["namespace"]);
    let current = s(&ns_of(report, None)["label"]);
    ((label != current).then_some(label), s(&peer["name"]))
}

/// Problems as (kind, namespace, link) — leaving out namespaces held by processes other
/// than `own_pids`: those are the sandboxes of tests running in parallel, whose named
/// namespaces live in mount namespaces invisible from here.
fn problems(report: &Value, own_pids: &[u32]) -> BTreeSet<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (s(&p["kind"]), s(&p["namespace"]), s(&p["link"])))
        .filter(|(_, ns, _)| match ns.strip_prefix("pid:") {
            Some(pid) => own_pids.iter().any(|p| p.to_string() == pid),
            None => true,
        })
        .collect()
}

#[test]
fn guide_scene_agrees_with_iproute2() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    let scene = guide::build();
    let report = inspect_json(&[]);
    assert_eq!(report["schema"], "stackplumb.netns-inspect/v2");

    // Every named namespace iproute2 lists is in the report, and agrees in detail.
    let listed = oracle::netns_list();
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&QDHCP.to_owned(), &QROUTER.to_owned()])
    );
    for name in &listed {
        assert_agrees(&report, Some(name));
    }
    assert_agrees(&report, None);

    // Neutron's view.
    let qr = ns_of(&report, Some(QROUTER));
    assert_eq!(qr["kind"], "qrouter");
    assert_eq!(qr["neutron_id"], ROUTER);
    assert_eq!(qr["ip_forward"], true);
    let qd = ns_of(&report, Some(QDHCP));
    assert_eq!(qd["kind"], "qdhcp");
    assert_eq!(qd["neutron_id"], DEMO_NET);
    assert!(qd["processes"].as_array().unwrap().iter().any(|p| {
        p["pid"].as_u64() == Some(scene.dnsmasq.pid().into()) && p["command"][0] == "dnsmasq"
    }));
    let default: Vec<&Value> = qr["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["default"] == true)
        .collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["gateway"], "10.0.0.1");
    assert_eq!(default[0]["dev"], format!("qg-{}", guide::QG_PORT));

    // Veth peers across namespaces, as iproute2 resolves them.
    for (ns, link) in [
        (Some(QROUTER), format!("qr-{}", guide::QR_PORT)),
        (Some(QROUTER), format!("qg-{}", guide::QG_PORT)),
        (Some(QDHCP), format!("ns-{}", guide::DHCP_PORT)),
        (None, format!("tap{}", guide::QR_PORT)),
        (None, format!("tap{}", guide::DHCP_PORT)),
    ] {
        assert_eq!(
            our_peer(&report, ns, &link),
            ip_peer(ns, &link),
            "peer of {link}"
        );
    }
    let qr_leg = qr["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == format!("qr-{}", guide::QR_PORT))
        .unwrap();
    assert_eq!(qr_leg["peer"]["master"], format!("brq{}", &DEMO_NET[..11]));
    assert_eq!(qr_leg["neutron"]["role"], "router-internal");

    // The guide's scene as Liberty builds it: taps at the VXLAN MTU (1450), the
    // namespace ends left at 1500 — the mismatch the guide papers over with DHCP
    // option 26 — and, the scene loading no NAT, the router's subnet without SNAT out
    // of its gateway.
    let expect: BTreeSet<(String, String, String)> = [
        (QROUTER.to_owned(), format!("qr-{}", guide::QR_PORT)),
        (QDHCP.to_owned(), format!("ns-{}", guide::DHCP_PORT)),
    ]
    .into_iter()
    .map(|(ns, link)| ("mtu-mismatch".to_owned(), ns, link))
    .chain([(
        "subnet-without-snat".to_owned(),
        QROUTER.to_owned(),
        String::new(),
    )])
    .collect();
    assert_eq!(problems(&report, &[]), expect);

    // The text view names the pairing the way an operator reads it.
    let text = String::from_utf8(inspect(&[QROUTER]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "↔ tap{} in current, on brq{}",
            guide::QR_PORT,
            &DEMO_NET[..11]
        )),
        "{text}"
    );
    assert!(text.contains("default via 10.0.0.1"), "{text}");
}

#[test]
fn debris_is_reported() {
    sandbox::enter();
    // A stale /run/netns entry: the file without a namespace on it.
    std::fs::File::create("/run/netns/qrouter-dead0000-0000-4000-8000-000000000000").unwrap();
    // A qdhcp namespace with a port but no dnsmasq — only some other process.
    let qdhcp = "qdhcp-11111111-2222-4333-8444-555555555555";
    netns_add(qdhcp);
    ip(&["link", "add", "br-test", "type", "bridge"]);
    guide::plug(
        "br-test",
        qdhcp,
        "ns-",
        "11111111-22",
        "fa:16:3e:00:00:01",
        1500,
    );
    let _sleeper = Parked::start(Some(qdhcp), &["sleep", "600"]);
    // An empty qrouter namespace: leaked after its router was deleted.
    let leaked = "qrouter-99999999-8888-4777-8666-555555555555";
    netns_add(leaked);
    // An orphan veth: its peer's namespace lost its name but is still pinned by a
    // descriptor of a process that lives elsewhere.
    netns_add("doomed");
    ip(&[
        "link", "add", "orphan0", "type", "veth", "peer", "name", "lost0", "netns", "doomed",
    ]);
    let pin = Parked::start(
        None,
        &["sh", "-c", "exec 3</run/netns/doomed; exec sleep 600"],
    );
    pin.wait_until("holds the namespace open", |pid| {
        std::fs::read_link(format!("/proc/{pid}/fd/3")).is_ok_and(|l| l.ends_with("doomed"))
    });
    ip(&["netns", "delete", "doomed"]);
    // A namespace held only by a process, with a veth into it whose MTU differs.
    let holder = Parked::start(None, &["unshare", "--net", "sleep", "600"]);
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    holder.wait_until("runs in a namespace of its own", |pid| {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l != ours)
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sleep")
    });
    let pid = holder.pid().to_string();
    ip(&[
        "link", "add", "vhold", "mtu", "1450", "type", "veth", "peer", "name", "inner", "netns",
        &pid,
    ]);

    let report = inspect_json(&[]);
    let held = format!("pid:{pid}");
    let got = problems(&report, &[holder.pid()]);
    let expect: BTreeSet<(String, String, String)> = [
        (
            "stale-netns-file",
            "qrouter-dead0000-0000-4000-8000-000000000000",
            "",
        ),
        ("qdhcp-without-dnsmasq", qdhcp, ""),
        ("empty-neutron-namespace", leaked, ""),
        ("orphan-veth", "current", "orphan0"),
        ("mtu-mismatch", &held, "inner"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.into(), b.into(), c.into()))
    .collect();
    assert_eq!(got, expect);

    // The process-held namespace is listed, with the peer resolved into it.
    let ns = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["label"] == held.as_str())
        .expect("process-held namespace listed");
    assert_eq!(ns["names"], Value::Array(vec![]));
    assert_eq!(
        our_peer(&report, None, "vhold"),
        (Some(held.clone()), "inner".into())
    );
    let stat = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        ns["inode"].as_u64(),
        Some(std::os::unix::fs::MetadataExt::ino(&stat))
    );

    // --check turns error-level problems into exit status 3.
    assert_eq!(inspect(&["--check"]).status.code(), Some(3));
    assert_eq!(
        inspect(&["--check", "--kind", "root"]).status.code(),
        Some(0)
    );
}

#[test]
fn filters_by_name_prefix_and_kind() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    let _scene = guide::build();
    netns_add("blue");

    let by_prefix = inspect_json(&["qrouter-006df4cc"]);
    let labels: Vec<String> = by_prefix["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(&n["label"]))
        .collect();
    assert_eq!(labels, [QROUTER]);
    let ellipsis = inspect_json(&["qrouter-006df4cc…"]);
    assert_eq!(ellipsis["namespaces"].as_array().unwrap().len(), 1);

    let by_kind = inspect_json(&["--kind", "qdhcp"]);
    let labels: Vec<String> = by_kind["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(&n["label"]))
        .collect();
    assert_eq!(labels, [QDHCP]);
    let plain = inspect_json(&["--kind", "plain"]);
    assert!(plain["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["label"] == "blue"));
    assert!(plain["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["kind"] == "plain"));
    let both = inspect_json(&["blue", QDHCP]);
    assert_eq!(both["namespaces"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_refused_clearly() {
    sandbox::enter();
    let unknown = inspect(&["qrouter-00000000"]);
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no network namespace named \"qrouter-00000000\""),
        "{err}"
    );

    for bad in ["a/b", "..", "../../etc"] {
        let out = inspect(&[bad]);
        assert_eq!(out.status.code(), Some(2), "invalid input: {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid namespace name"), "{bad}: {err}");
    }
    let kind = inspect(&["--kind", "router"]);
    assert_eq!(kind.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&kind.stderr)
        .contains("one of: root, qrouter, qdhcp, snat, fip, plain"));
}

#[test]
fn without_root_it_says_so() {
    sandbox::enter();
    require::program("setpriv", "util-linux");
    netns_add("blue");
    // A copy nobody can execute, outside root-only directories.
    let dir = std::env::temp_dir().join(format!("netns-inspect-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("netns-inspect");
    std::fs::copy(env!("CARGO_BIN_EXE_netns-inspect"), &bin).unwrap();
    for p in [&dir, &bin] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(6), "needs root: the table's 6");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied — this needs root"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The NAT rules of `netns` as `nft -j list ruleset` reads them: (statement, match on
/// `ip daddr`, match on `ip saddr`, `oifname` matched, address or port translated to).
fn nft_nat(netns: &str) -> BTreeSet<(String, String, String, String, String)> {
    let out = require::run(
        Command::new("ip").args(["netns", "exec", netns, "nft", "-j", "list", "ruleset"]),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut found = BTreeSet::new();
    for item in v["nftables"].as_array().unwrap() {
        let Some(exprs) = item["rule"]["expr"].as_array() else {
            continue;
        };
        let (mut daddr, mut saddr, mut oif) = (String::new(), String::new(), String::new());
        for e in exprs {
            let m = &e["match"];
            match (&m["left"]["payload"]["field"], &m["left"]["meta"]["key"]) {
                (f, _) if f == "daddr" => daddr = s(&m["right"]),
                (f, _) if f == "saddr" => saddr = s(&m["right"]),
                (_, k) if k == "oifname" => oif = s(&m["right"]),
                _ => {}
            }
            for stmt in ["snat", "dnat", "redirect"] {
                if let Some(o) = e.get(stmt) {
                    let to = match stmt {
                        "redirect" => o["port"].to_string(),
                        _ => s(&o["addr"]),
                    };
                    found.insert((
                        stmt.to_owned(),
                        daddr.clone(),
                        saddr.clone(),
                        oif.clone(),
                        to,
                    ));
                }
            }
        }
    }
    found
}

/// The guide's router NAT (docs/nat.md) loaded with `nft`: SNAT of the tenant subnet
/// out of `qg-`, the floating IP both ways, the metadata redirect; then a second
/// floating IP with only its SNAT. netns-inspect's NAT view equals what `nft -j` reads,
/// and says which floating IP has no way in.
#[test]
fn router_nat_agrees_with_nft() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    require::program("nft", "nftables");
    let _scene = guide::build();
    let qg = format!("qg-{}", guide::QG_PORT);
    let rules = format!(
        "table ip neutron-l3-agent {{
  chain nat-PREROUTING {{ type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.0.0.201 dnat to 192.168.0.3
    ip daddr 169.254.169.254 iifname \"qr-*\" tcp dport 80 redirect to :9697
  }}
  chain nat-POSTROUTING {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.168.0.3 snat to 10.0.0.201
    ip saddr 192.168.0.4 snat to 10.0.0.202
    oifname \"{qg}\" snat to 10.0.0.200
  }}
}}
"
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", QROUTER, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft -f");

    let oracle = nft_nat(QROUTER);
    let report = inspect_json(&[QROUTER]);
    let nat = &ns_of(&report, Some(QROUTER))["nat"];
    assert_eq!(
        ns_of(&report, Some(QROUTER))["nft_tables"],
        serde_json::json!(["ip neutron-l3-agent"])
    );
    // Floating IPs: every DNAT and every host SNAT nft shows, as pairs.
    let mut theirs = BTreeSet::new();
    for (stmt, daddr, saddr, _, to) in &oracle {
        match stmt.as_str() {
            "dnat" => theirs.insert((daddr.clone(), to.clone(), "dnat")),
            "snat" if !saddr.is_empty() => theirs.insert((to.clone(), saddr.clone(), "snat")),
            _ => false,
        };
    }
    let mut ours = BTreeSet::new();
    for f in nat["floating"].as_array().unwrap() {
        for way in ["dnat", "snat"] {
            if f[way] == true {
                ours.insert((s(&f["floating"]), s(&f["fixed"]), way));
            }
        }
    }
    assert_eq!(ours, theirs);
    // The subnet's SNAT: the rule without a source host.
    let (_, _, _, oif, to) = oracle
        .iter()
        .find(|r| r.0 == "snat" && r.2.is_empty())
        .unwrap()
        .clone();
    let subnets = nat["subnets"].as_array().unwrap();
    assert_eq!(subnets.len(), 1);
    assert_eq!(subnets[0]["subnet"], "192.168.0.0/24");
    assert_eq!(subnets[0]["dev"], format!("qr-{}", guide::QR_PORT));
    assert_eq!(s(&subnets[0]["snat_to"]), to);
    assert_eq!(s(&subnets[0]["out_dev"]), oif);
    let redirect = oracle.iter().find(|r| r.0 == "redirect").unwrap();
    assert_eq!(nat["metadata"]["to_port"].to_string(), redirect.4);
    assert_eq!(redirect.1, "169.254.169.254");
    assert_eq!(nat["metadata"]["dport"], 80);

    let got = problems(&report, &[]);
    assert!(
        got.contains(&(
            "floating-ip-without-dnat".into(),
            QROUTER.into(),
            String::new()
        )),
        "{got:?}"
    );
    assert!(!got.iter().any(|p| p.0 == "subnet-without-snat"), "{got:?}");
    let text = String::from_utf8(inspect(&[QROUTER]).stdout).unwrap();
    assert!(
        text.contains("floating 10.0.0.201 ↔ 192.168.0.3\n"),
        "{text}"
    );
    assert!(
        text.contains("floating 10.0.0.202 ↔ 192.168.0.4  (no DNAT"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "subnet 192.168.0.0/24 on qr-{}: SNAT to 10.0.0.200 out {qg}",
            guide::QR_PORT
        )),
        "{text}"
    );
    assert!(
        text.contains("metadata 169.254.169.254:80 from qr-* → local port 9697"),
        "{text}"
    );

    // Without the SNAT rule the subnet is reported.
    require::run(Command::new("ip").args([
        "netns",
        "exec",
        QROUTER,
        "nft",
        "flush",
        "chain",
        "ip",
        "neutron-l3-agent",
        "nat-POSTROUTING",
    ]));
    let report = inspect_json(&[QROUTER]);
    let got = problems(&report, &[]);
    assert!(
        got.contains(&("subnet-without-snat".into(), QROUTER.into(), String::new())),
        "{got:?}"
    );
}

/// l2population's entries as Neutron's agents write them through iproute2 — FDB NUD
/// 0xc0 (`permanent|noarp`), permanent neighbours — and the VXLAN device's `local`,
/// port, learning and proxy, as netns-inspect reads them and as `ip -d -j link`,
/// `bridge -j fdb` and `ip -j neigh` do.
#[test]
fn vxlan_and_l2population_are_shown_whole() {
    sandbox::enter();
    ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ip(&["addr", "add", "10.0.0.101/24", "dev", "eth0"]);
    ip(&["link", "set", "eth0", "up"]);
    ip(&["link", "add", "brq5b6a8b87-fd", "type", "bridge"]);
    ip(&[
        "link",
        "add",
        "vxlan-1",
        "type",
        "vxlan",
        "id",
        "1",
        "local",
        "10.0.0.101",
        "dev",
        "eth0",
        "dstport",
        "8472",
        "nolearning",
        "proxy",
    ]);
    ip(&["link", "set", "vxlan-1", "master", "brq5b6a8b87-fd", "up"]);
    for args in [
        [
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vxlan-1",
            "dst",
            "10.0.0.102",
        ],
        [
            "fdb",
            "replace",
            "fa:16:3e:00:00:05",
            "dev",
            "vxlan-1",
            "dst",
            "10.0.0.102",
        ],
    ] {
        require::run(Command::new("bridge").args(args));
    }
    ip(&[
        "neigh",
        "replace",
        "192.168.0.5",
        "lladdr",
        "fa:16:3e:00:00:05",
        "dev",
        "vxlan-1",
        "nud",
        "permanent",
    ]);
    let report = inspect_json(&[]);
    let link = ns_of(&report, None)["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "vxlan-1")
        .unwrap()
        .clone();
    let v = &link["vxlan"];
    let data = &oracle::link(None, "vxlan-1")["linkinfo"]["info_data"];
    assert_eq!(v["local"], data["local"]);
    assert_eq!(v["port"], data["port"]);
    assert_eq!(v["learning"], data["learning"]);
    assert_eq!(v["proxy"], data["proxy"]);
    let theirs: BTreeSet<(String, String, String)> = oracle::fdb(None, "vxlan-1")
        .iter()
        .map(|e| (s(&e["mac"]), s(&e["dst"]), s(&e["state"])))
        .collect();
    let ours: BTreeSet<(String, String, String)> = v["fdb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            // iproute2 prints the state word "permanent" for NUD_PERMANENT, nothing
            // for NUD_NOARP alone.
            let state = if e["permanent"] == true {
                "permanent"
            } else {
                ""
            };
            (s(&e["mac"]), s(&e["dst"]), state.to_owned())
        })
        .collect();
    assert_eq!(ours, theirs);
    let agents = v["fdb"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == "fa:16:3e:00:00:05")
        .unwrap();
    assert_eq!(
        agents["state"],
        serde_json::json!(["noarp", "permanent"]),
        "0xc0"
    );
    assert_eq!(agents["permanent"], true);
    let theirs: BTreeSet<(String, String)> = oracle::neighbours(None, "vxlan-1")
        .iter()
        .filter(|n| {
            n["state"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "PERMANENT")
        })
        .map(|n| (s(&n["dst"]), s(&n["lladdr"])))
        .collect();
    let ours: BTreeSet<(String, String)> = v["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["permanent"] == true)
        .map(|n| (s(&n["ip"]), s(&n["mac"])))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 1);
    let text = String::from_utf8(inspect(&[]).stdout).unwrap();
    assert!(
        text.contains("vxlan id 1 local 10.0.0.101 dev eth0 port 8472 learning off proxy on"),
        "{text}"
    );
    assert!(
        text.contains("fdb fa:16:3e:00:00:05 dst 10.0.0.102 self noarp permanent"),
        "{text}"
    );
    assert!(
        text.contains("neigh 192.168.0.5 lladdr fa:16:3e:00:00:05 permanent"),
        "{text}"
    );
}

/// `--check` judges what an operator owns: an orphan veth in a namespace held only by
/// some other process (another user's container) does not fail it, unless `--all`; the
/// same in a named namespace does.
#[test]
fn check_counts_what_the_operator_owns() {
    sandbox::enter();
    let holder = Parked::start(None, &["unshare", "--net", "sleep", "600"]);
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    holder.wait_until("runs in a namespace of its own", |pid| {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l != ours)
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sleep")
    });
    let pid = holder.pid().to_string();
    // The peer's namespace: pinned by a descriptor only, so nobody can see it.
    netns_add("doomed");
    let pin = Parked::start(
        None,
        &["sh", "-c", "exec 3</run/netns/doomed; exec sleep 600"],
    );
    pin.wait_until("holds the namespace open", |p| {
        std::fs::read_link(format!("/proc/{p}/fd/3")).is_ok_and(|l| l.ends_with("doomed"))
    });
    ip(&[
        "link", "add", "held0", "netns", &pid, "type", "veth", "peer", "name", "lost0", "netns",
        "doomed",
    ]);
    ip(&["netns", "delete", "doomed"]);
    let report = inspect_json(&[]);
    let held = format!("pid:{pid}");
    let got = problems(&report, &[holder.pid()]);
    assert!(
        got.contains(&("orphan-veth".into(), held.clone(), "held0".into())),
        "{got:?}"
    );
    // Only problems of process-held namespaces: none of ours.
    assert!(got.iter().all(|p| p.1.starts_with("pid:")), "{got:?}");
    assert_eq!(inspect(&["--check"]).status.code(), Some(0));
    assert_eq!(inspect(&["--check", "--all"]).status.code(), Some(3));

    // The same debris in a named namespace is the operator's.
    netns_add("blue");
    netns_add("doomed");
    let pin2 = Parked::start(
        None,
        &["sh", "-c", "exec 3</run/netns/doomed; exec sleep 600"],
    );
    pin2.wait_until("holds the namespace open", |p| {
        std::fs::read_link(format!("/proc/{p}/fd/3")).is_ok_and(|l| l.ends_with("doomed"))
    });
    ip(&[
        "-n", "blue", "link", "add", "named0", "type", "veth", "peer", "name", "lost1", "netns",
        "doomed",
    ]);
    ip(&["netns", "delete", "doomed"]);
    assert_eq!(inspect(&["--check"]).status.code(), Some(3));
}

/// `--brief`: one line per namespace (like `ip -br`), with kind, id, processes,
/// problem count and the links with state and first address.
#[test]
fn brief_is_one_line_per_namespace() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    let scene = guide::build();
    for i in 0..20 {
        netns_add(&format!("qdhcp-{i:08}-0000-4000-8000-000000000000"));
    }
    let report = inspect_json(&[]);
    let out = inspect(&["--brief"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Namespaces held by processes come and go with the tests running beside this one.
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" pid:")).collect();
    let listed = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(&n["label"]))
        .filter(|l| !l.starts_with("pid:"))
        .collect::<Vec<_>>();
    assert_eq!(lines.len(), listed.len(), "{text}\n{listed:?}");
    let qdhcp = lines
        .iter()
        .find(|l| l.starts_with("qdhcp ") && l.contains(DEMO_NET))
        .unwrap();
    assert!(qdhcp.contains("procs 1 (dnsmasq)"), "{qdhcp}");
    assert!(
        qdhcp.contains(&format!("ns-{} UP 192.168.0.2/24", guide::DHCP_PORT)),
        "{qdhcp}"
    );
    let qr = lines.iter().find(|l| l.contains(ROUTER)).unwrap();
    assert!(qr.starts_with("qrouter "), "{qr}");
    assert!(
        qr.contains(&format!("qg-{} UP 10.0.0.200/24", guide::QG_PORT)),
        "{qr}"
    );
    // Each empty qdhcp namespace is one line with its problem counted.
    let empty: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("-0000-4000-8000-"))
        .collect();
    assert_eq!(empty.len(), 20);
    assert!(
        empty
            .iter()
            .all(|l| l.contains("problems 1") && l.ends_with(" -")),
        "{empty:?}"
    );
    drop(scene);
}

/// A column of `ovs-vsctl --format=json` that may be empty: `["set", []]` is none.
fn ovs_opt(v: &Value) -> Option<Value> {
    match v.as_array() {
        Some(a) if a.first() == Some(&Value::from("set")) => {
            a[1].as_array().unwrap().first().cloned()
        }
        _ => Some(v.clone()),
    }
}

/// A map column of `ovs-vsctl --format=json`: `["map", [[k, v]…]]`.
fn ovs_map(v: &Value) -> BTreeMap<String, String> {
    v[1].as_array()
        .unwrap()
        .iter()
        .map(|kv| (s(&kv[0]), s(&kv[1])))
        .collect()
}

/// Renders `dot` text with Graphviz and returns the SVG; saves the DOT source under
/// `$NETNS_INSPECT_DOT_DIR/NAME.dot` when set (how docs/ gets its pictures).
fn render_dot(name: &str, namespaces: &[&str]) -> String {
    require::program("dot", "graphviz");
    let mut args = vec!["--format", "dot"];
    args.extend_from_slice(namespaces);
    let out = inspect(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(dir) = std::env::var_os("NETNS_INSPECT_DOT_DIR") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.dot")),
            &out.stdout,
        )
        .unwrap();
    }
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    dot.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let done = dot.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        done.status.success() && err.trim().is_empty(),
        "dot -Tsvg: {err}"
    );
    // SVG writes `-` as `&#45;`.
    String::from_utf8(done.stdout)
        .unwrap()
        .replace("&#45;", "-")
}

/// The guide's controller drawn: the picture renders, with both Neutron namespaces as
/// clusters and the veth pairs between them.
#[test]
fn guide_scene_is_drawn() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    let _scene = guide::build();
    let svg = render_dot("guide-controller", &["current", QROUTER, QDHCP]);
    assert!(svg.contains("<svg"), "{svg}");
    for label in [
        format!("qrouter {}", &ROUTER[..8]),
        format!("router {ROUTER}"),
        format!("network {DEMO_NET}"),
        format!("qr-{}", guide::QR_PORT),
        "veth".to_owned(),
        "dnsmasq".to_owned(),
    ] {
        assert!(svg.contains(&label), "{label} not drawn");
    }
}

const DHCP_PORT_ID: &str = "b5cfa271-71aa-4bbb-8ccc-1234567890ab";
const QR_PORT_ID: &str = "7337070d-45e1-4a2b-9c3d-1234567890ab";
const QG_PORT_ID: &str = "9477c16b-e5d4-4c3b-8a29-1234567890ab";
const VM_PORT_ID: &str = "a7b1762b-3b4c-4d5e-8f60-1234567890ab";

/// The packstack host (seed 002) as Neutron's Open vSwitch agent builds it, on a private
/// ovsdb-server + ovs-vswitchd (userspace datapath): br-int with tagged internal ports
/// moved into qdhcp/qrouter, br-tun joined by patch ports with a VXLAN port, br-ex with
/// `qg-`, a hybrid `qbr`/`qvb`/`qvo` instance port; then debris — a port on the dead
/// VLAN left where ovs-vswitchd made it, an interface with an error. netns-inspect reads
/// it as `ovs-vsctl --format=json list` and `ip -j` do.
#[test]
fn open_vswitch_host_reads_right() {
    sandbox::enter();
    let ovs = sp_testenv::ovs::Ovs::start();
    netns_add(QDHCP);
    netns_add(QROUTER);
    netns_add("vm1");
    for br in ["br-int", "br-tun"] {
        ovs.vsctl(&[
            "add-br",
            br,
            "--",
            "set",
            "bridge",
            br,
            "datapath_type=netdev",
            "fail_mode=secure",
        ]);
    }
    ovs.vsctl(&[
        "add-br",
        "br-ex",
        "--",
        "set",
        "bridge",
        "br-ex",
        "datapath_type=netdev",
    ]);
    for (br, port, peer) in [
        ("br-int", "patch-tun", "patch-int"),
        ("br-tun", "patch-int", "patch-tun"),
    ] {
        ovs.vsctl(&[
            "add-port",
            br,
            port,
            "--",
            "set",
            "interface",
            port,
            "type=patch",
            &format!("options:peer={peer}"),
        ]);
    }
    ovs.vsctl(&[
        "add-port",
        "br-tun",
        "vxlan-0a000066",
        "--",
        "set",
        "interface",
        "vxlan-0a000066",
        "type=vxlan",
        "options:remote_ip=10.0.0.102",
        "options:local_ip=10.0.0.101",
        "options:in_key=flow",
        "options:out_key=flow",
    ]);
    let internal = |br: &str, dev: &str, tag: Option<&str>, id: &str, mac: &str| {
        let mut args = vec!["add-port".to_owned(), br.to_owned(), dev.to_owned()];
        args.extend(tag.map(|t| format!("tag={t}")));
        for a in ["--", "set", "interface", dev, "type=internal"] {
            args.push(a.to_owned());
        }
        args.push(format!("external_ids:iface-id={id}"));
        args.push(format!("external_ids:attached-mac={mac}"));
        args.push("external_ids:iface-status=active".to_owned());
        ovs.vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let tap = format!("tap{}", guide::DHCP_PORT);
    let qr = format!("qr-{}", guide::QR_PORT);
    let qg = format!("qg-{}", guide::QG_PORT);
    internal("br-int", &tap, Some("1"), DHCP_PORT_ID, "fa:16:3e:90:58:fa");
    internal("br-int", &qr, Some("1"), QR_PORT_ID, "fa:16:3e:a7:24:00");
    internal("br-ex", &qg, None, QG_PORT_ID, "fa:16:3e:b2:d8:f0");
    for (dev, ns) in [(&tap, QDHCP), (&qr, QROUTER), (&qg, QROUTER)] {
        ip(&["link", "set", dev, "netns", ns]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", QDHCP, "addr", "add", "192.168.0.2/24", "dev", &tap]);
    ip(&["-n", QROUTER, "addr", "add", "192.168.0.1/24", "dev", &qr]);
    ip(&["-n", QROUTER, "addr", "add", "10.0.0.200/24", "dev", &qg]);
    // The hybrid plugging of an instance port: tap on qbr, qvb–qvo veth, qvo on br-int.
    let p = &VM_PORT_ID[..11];
    let (qbr, qvb, qvo, vm_tap) = (
        format!("qbr{p}"),
        format!("qvb{p}"),
        format!("qvo{p}"),
        format!("tap{p}"),
    );
    ip(&["link", "add", &qbr, "type", "bridge"]);
    ip(&["link", "set", &qbr, "up"]);
    ip(&[
        "link", "add", &qvb, "master", &qbr, "up", "type", "veth", "peer", "name", &qvo,
    ]);
    ip(&["link", "set", &qvo, "up"]);
    ip(&[
        "link", "add", &vm_tap, "master", &qbr, "up", "type", "veth", "peer", "name", "eth0",
        "netns", "vm1",
    ]);
    ovs.vsctl(&[
        "add-port",
        "br-int",
        &qvo,
        "tag=1",
        "--",
        "set",
        "interface",
        &qvo,
        &format!("external_ids:iface-id={VM_PORT_ID}"),
        "external_ids:attached-mac=fa:16:3e:5d:2c:01",
    ]);
    // Debris: an internal port on the dead VLAN never moved; a device that is not there.
    internal(
        "br-int",
        "tapdead0000-00",
        Some("4095"),
        "dead0000-0000-4000-8000-000000000000",
        "fa:16:3e:00:00:99",
    );
    ovs.vsctl(&["--no-wait", "add-port", "br-int", "nosuchdev0"]);
    // ovs-vswitchd records the error when it reconfigures.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ovs_opt(&ovs.row("Interface", "nosuchdev0").unwrap()["error"]).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no error recorded for nosuchdev0"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Read through the default address, OVS_RUNDIR honoured as ovs-vsctl does.
    let out = Command::new(env!("CARGO_BIN_EXE_netns-inspect"))
        .arg("--json")
        .env("OVS_RUNDIR", ovs.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &report["ovs"];
    assert_eq!(o["db"], ovs.db());

    // Bridges, ports, interfaces: as ovs-vsctl lists them.
    let ours_ports: BTreeMap<String, &Value> = o["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["ports"].as_array().unwrap())
        .map(|p| (s(&p["name"]), p))
        .collect();
    let port_rows = ovs.list("Port");
    assert_eq!(ours_ports.len(), port_rows.len());
    for row in &port_rows {
        let ours = ours_ports[&s(&row["name"])];
        assert_eq!(
            ours["tag"].as_i64(),
            ovs_opt(&row["tag"]).and_then(|t| t.as_i64()),
            "tag of {}",
            row["name"]
        );
    }
    for b in ovs.list("Bridge") {
        let ours = o["bridges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == b["name"])
            .unwrap();
        assert_eq!(
            ours["fail_mode"],
            ovs_opt(&b["fail_mode"]).unwrap_or(Value::Null)
        );
        assert_eq!(ours["datapath_type"], b["datapath_type"]);
        let count = match b["ports"].as_array() {
            Some(a) if a[0] == "set" => a[1].as_array().unwrap().len(),
            _ => 1,
        };
        assert_eq!(ours["ports"].as_array().unwrap().len(), count);
    }
    let ours_ifaces: BTreeMap<String, &Value> = ours_ports
        .values()
        .flat_map(|p| p["interfaces"].as_array().unwrap())
        .map(|i| (s(&i["name"]), i))
        .collect();
    for row in ovs.list("Interface") {
        let ours = ours_ifaces[&s(&row["name"])];
        assert_eq!(ours["type"], row["type"]);
        let options = ovs_map(&row["options"]);
        assert_eq!(
            ours["peer"].as_str(),
            options.get("peer").map(String::as_str)
        );
        assert_eq!(
            ours["remote_ip"].as_str(),
            options.get("remote_ip").map(String::as_str)
        );
        let ids = ovs_map(&row["external_ids"]);
        assert_eq!(
            ours["iface_id"].as_str(),
            ids.get("iface-id").map(String::as_str)
        );
        assert_eq!(
            ours["attached_mac"].as_str(),
            ids.get("attached-mac").map(String::as_str)
        );
        assert_eq!(
            ours["error"],
            ovs_opt(&row["error"]).unwrap_or(Value::Null),
            "error of {}",
            row["name"]
        );
    }

    // The links inside the namespaces know where they are plugged; kinds as ip -j says.
    let link_of = |ns: Option<&str>, name: &str| {
        ns_of(&report, ns)["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    for (ns, dev, br, id) in [
        (Some(QDHCP), &tap, "br-int", Some(DHCP_PORT_ID)),
        (Some(QROUTER), &qr, "br-int", Some(QR_PORT_ID)),
        (Some(QROUTER), &qg, "br-ex", Some(QG_PORT_ID)),
        (None, &qvo, "br-int", Some(VM_PORT_ID)),
    ] {
        let l = link_of(ns, dev);
        assert_eq!(l["kind"], ip_links(ns)[dev.as_str()].1, "kind of {dev}");
        assert_eq!(l["ovs"]["bridge"], br, "{dev}");
        assert_eq!(l["ovs"]["iface_id"].as_str(), id, "{dev}");
        let tag = ovs_opt(&ovs.row("Port", dev).unwrap()["tag"]).and_then(|t| t.as_i64());
        assert_eq!(l["ovs"]["tag"].as_i64(), tag, "{dev}");
    }
    assert_eq!(link_of(None, &qvb)["neutron"]["role"], "hybrid-bridge-end");
    assert_eq!(link_of(None, &qbr)["neutron"]["role"], "hybrid-bridge");
    assert_eq!(link_of(None, &qvo)["neutron"]["role"], "hybrid-ovs-end");
    assert_eq!(link_of(None, &qvb)["peer"]["name"], qvo.as_str());

    let got = problems(&report, &[]);
    for p in [
        ("ovs-dead-vlan", "current", "tapdead0000-00"),
        ("ovs-internal-port-not-moved", "current", "tapdead0000-00"),
        ("ovs-interface-error", "current", "nosuchdev0"),
    ] {
        assert!(
            got.contains(&(p.0.into(), p.1.into(), p.2.into())),
            "{p:?} not in {got:?}"
        );
    }
    assert!(
        !got.iter()
            .any(|p| p.0.starts_with("ovs-") && p.2 != "tapdead0000-00" && p.2 != "nosuchdev0"),
        "{got:?}"
    );

    // The text view, as the issue asks for it.
    let out = inspect(&["--ovsdb", &ovs.db(), QDHCP]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "{tap}: OVS internal port on br-int, tag 1, Neutron port {DHCP_PORT_ID}"
        )),
        "{text}"
    );
    assert!(
        text.contains("br-int  fail_mode secure  datapath netdev"),
        "{text}"
    );
    assert!(
        text.contains("patch-tun        patch     peer patch-int"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_netns-inspect"))
        .args(["--format", "dot"])
        .env("OVS_RUNDIR", ovs.dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.contains("label=\"patch\""), "{dot}");
    assert!(dot.contains("\"VTEP 10.0.0.102\""), "{dot}");
    // The saved picture reads OVS through the same default.
    std::env::set_var("OVS_RUNDIR", ovs.dir());
    let svg = render_dot("packstack-host", &["current", QROUTER, QDHCP, "vm1"]);
    assert!(
        svg.contains(&format!("Neutron port {DHCP_PORT_ID}")),
        "{svg}"
    );

    // No ovsdb-server at the default address: nothing said about OVS, nothing fails.
    let empty = std::env::temp_dir().join(format!("no-ovs-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netns-inspect"))
        .args(["--json", "--check"])
        .env("OVS_RUNDIR", &empty)
        .output()
        .unwrap();
    std::fs::remove_dir(&empty).unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ovs"], Value::Null);
    assert!(!problems(&report, &[])
        .iter()
        .any(|p| p.0.starts_with("ovs")));
    // An ovsdb-server named with --ovsdb that is not there fails.
    let out = inspect(&["--ovsdb", "unix:/nonexistent/db.sock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/db.sock"));
}

/// A Neutron host's rules as iptables-nft writes them — Liberty's `-j DNAT`, `-j SNAT`,
/// `-j REDIRECT` in the router, `-m physdev` for an instance port with the Linux bridge
/// agent's `neutron-linuxbri-*` chains — read through their xtables extensions; the
/// oracle is `iptables-nft -S`, the writer's own reading.
#[test]
fn iptables_nft_rules_read_right() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    require::program("iptables-nft", "iptables");
    let _scene = guide::build();
    let qg = format!("qg-{}", guide::QG_PORT);
    let ipt = |ns: &str, args: &[&str]| {
        require::run(
            Command::new("ip")
                .args(["netns", "exec", ns, "iptables-nft"])
                .args(args),
        )
    };
    let ipt_here = |args: &[&str]| require::run(Command::new("iptables-nft").args(args));
    for rule in [
        vec![
            "-A",
            "PREROUTING",
            "-d",
            "10.0.0.201/32",
            "-j",
            "DNAT",
            "--to-destination",
            "192.168.0.3",
        ],
        vec![
            "-A",
            "PREROUTING",
            "-d",
            "169.254.169.254/32",
            "-i",
            "qr-+",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-j",
            "REDIRECT",
            "--to-ports",
            "9697",
        ],
        vec![
            "-A",
            "POSTROUTING",
            "-s",
            "192.168.0.3/32",
            "-j",
            "SNAT",
            "--to-source",
            "10.0.0.201",
        ],
        vec![
            "-A",
            "POSTROUTING",
            "-o",
            &qg,
            "-j",
            "SNAT",
            "--to-source",
            "10.0.0.200",
        ],
    ] {
        let mut args = vec!["-t", "nat"];
        args.extend(rule);
        ipt(QROUTER, &args);
    }
    // The oracle: iptables-nft's own listing.
    let listing = ipt(QROUTER, &["-t", "nat", "-S"]);
    let word = |line: &str, flag: &str| {
        let w: Vec<&str> = line.split_whitespace().collect();
        w.iter()
            .position(|x| *x == flag)
            .map(|i| w[i + 1].trim_end_matches("/32").to_owned())
    };
    let report = inspect_json(&[QROUTER]);
    let nat = &ns_of(&report, Some(QROUTER))["nat"];
    let has_floating = |fip: &str, fixed: &str, way: &str| {
        nat["floating"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["floating"] == fip && f["fixed"] == fixed && f[way] == true)
    };
    for line in listing.lines().filter(|l| l.starts_with("-A ")) {
        if let Some(to) = word(line, "--to-destination") {
            let fip = word(line, "-d").unwrap();
            assert!(has_floating(&fip, &to, "dnat"), "{line} not in {nat}");
        } else if let Some(to) = word(line, "--to-source") {
            match word(line, "-s") {
                Some(fixed) => {
                    assert!(has_floating(&to, &fixed, "snat"), "{line} not in {nat}")
                }
                None => {
                    assert_eq!(nat["subnets"][0]["snat_to"], to.as_str(), "{line}");
                    assert_eq!(
                        nat["subnets"][0]["out_dev"].as_str(),
                        word(line, "-o").as_deref(),
                        "{line}"
                    );
                }
            }
        } else if let Some(port) = word(line, "--to-ports") {
            assert_eq!(nat["metadata"]["to_port"].to_string(), port, "{line}");
            assert_eq!(nat["metadata"]["from"], "qr-*", "{line}");
            assert_eq!(nat["metadata"]["dport"], 80, "{line}");
        }
    }
    assert_eq!(nat["floating"].as_array().unwrap().len(), 1, "{nat}");
    let got = problems(&report, &[]);
    assert!(
        !got.iter()
            .any(|p| p.0.contains("snat") || p.0.contains("dnat")),
        "{got:?}"
    );

    // An instance port filtered by the Linux bridge agent's chains through physdev, and
    // one left without a rule.
    netns_add("vm1");
    let demo_br = format!("brq{}", &DEMO_NET[..11]);
    for (tap, peer) in [("tapa7b1762b-3b", "eth0"), ("tapc3d2e1f0-12", "eth1")] {
        ip(&[
            "link", "add", tap, "master", &demo_br, "up", "type", "veth", "peer", "name", peer,
            "netns", "vm1",
        ]);
    }
    for chain in [
        "neutron-linuxbri-sg-chain",
        "neutron-linuxbri-ia7b1762b-3",
        "neutron-linuxbri-oa7b1762b-3",
    ] {
        ipt_here(&["-N", chain]);
    }
    for rule in [
        vec![
            "-A",
            "FORWARD",
            "-m",
            "physdev",
            "--physdev-out",
            "tapa7b1762b-3b",
            "--physdev-is-bridged",
            "-j",
            "neutron-linuxbri-sg-chain",
        ],
        vec![
            "-A",
            "FORWARD",
            "-m",
            "physdev",
            "--physdev-in",
            "tapa7b1762b-3b",
            "--physdev-is-bridged",
            "-j",
            "neutron-linuxbri-sg-chain",
        ],
        vec![
            "-A",
            "neutron-linuxbri-sg-chain",
            "-m",
            "physdev",
            "--physdev-out",
            "tapa7b1762b-3b",
            "--physdev-is-bridged",
            "-j",
            "neutron-linuxbri-ia7b1762b-3",
        ],
        vec![
            "-A",
            "neutron-linuxbri-sg-chain",
            "-m",
            "physdev",
            "--physdev-in",
            "tapa7b1762b-3b",
            "--physdev-is-bridged",
            "-j",
            "neutron-linuxbri-oa7b1762b-3",
        ],
        vec![
            "-A",
            "neutron-linuxbri-ia7b1762b-3",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "22",
            "-j",
            "RETURN",
        ],
        vec!["-A", "neutron-linuxbri-ia7b1762b-3", "-j", "DROP"],
        vec!["-A", "neutron-linuxbri-oa7b1762b-3", "-j", "RETURN"],
    ] {
        ipt_here(&rule);
    }
    let report = inspect_json(&[]);
    let here = ns_of(&report, None);
    assert_eq!(here["security_groups"], true);
    let filter = |tap: &str| {
        here["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == tap)
            .unwrap()["filter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", s(&r["chain"]), s(&r["rule"])))
            .collect::<Vec<_>>()
    };
    let rules = filter("tapa7b1762b-3b");
    // The rules naming the port, and both of its chains whole (3 rules): 7, as iptables
    // lists them.
    let listed = ipt_here(&["-S"])
        .lines()
        .filter(|l| l.starts_with("-A "))
        .count();
    assert_eq!(rules.len(), listed, "{rules:#?}");
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("neutron-linuxbri-ia7b1762b-3 ") && r.contains("drop")),
        "{rules:#?}"
    );
    assert!(filter("tapc3d2e1f0-12").is_empty());
    let got = problems(&report, &[]);
    assert!(
        got.contains(&(
            "port-without-filter".into(),
            s(&here["label"]),
            "tapc3d2e1f0-12".into()
        )),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|p| p.0 == "port-without-filter" && p.2 == "tapa7b1762b-3b"),
        "{got:?}"
    );
}

/// The router NAT stackplumb writes (`sp-l3`, Liberty's rules as nf_tables objects in
/// table `ip neutron-l3-agent`) reads as the L3 agent means it: SNAT of the subnet to
/// the gateway address, the floating IP both ways, the metadata redirect — and `nft -j`
/// agrees on every translation.
#[test]
fn router_nat_written_by_stackplumb_reads_right() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    require::program("nft", "nftables");
    let _scene = guide::build();
    let nat = sp_neutron::l3::RouterNat {
        gateway_device: format!("qg-{}", guide::QG_PORT),
        gateway_ip: Some("10.0.0.200".parse().unwrap()),
        enable_snat: true,
        floating_ips: vec![sp_neutron::l3::FloatingIp {
            floating: "10.0.0.201".parse().unwrap(),
            fixed: "192.168.0.3".parse().unwrap(),
        }],
    };
    sp_l3::load_each(&[(QROUTER, &nat)], &mut vec![]).unwrap();
    let oracle = nft_nat(QROUTER);
    let report = inspect_json(&[QROUTER]);
    let ours = &ns_of(&report, Some(QROUTER))["nat"];
    assert_eq!(
        ours["floating"],
        serde_json::json!([{"floating": "10.0.0.201", "fixed": "192.168.0.3", "dnat": true, "snat": true}])
    );
    for f in ours["floating"].as_array().unwrap() {
        assert!(
            oracle
                .iter()
                .any(|r| r.0 == "dnat" && r.1 == s(&f["floating"]) && r.4 == s(&f["fixed"])),
            "{oracle:?}"
        );
        assert!(
            oracle
                .iter()
                .any(|r| r.0 == "snat" && r.2 == s(&f["fixed"]) && r.4 == s(&f["floating"])),
            "{oracle:?}"
        );
    }
    assert_eq!(ours["subnets"][0]["subnet"], "192.168.0.0/24");
    assert_eq!(ours["subnets"][0]["snat_to"], "10.0.0.200");
    assert!(
        oracle.iter().any(|r| r.0 == "snat"
            && r.2.is_empty()
            && r.3 == s(&ours["subnets"][0]["out_dev"])
            && r.4 == "10.0.0.200"),
        "{oracle:?} {ours}"
    );
    assert_eq!(ours["metadata"]["to_port"], 9697);
    assert!(
        oracle
            .iter()
            .any(|r| r.0 == "redirect" && r.1 == "169.254.169.254" && r.4 == "9697"),
        "{oracle:?}"
    );
    let got = problems(&report, &[]);
    assert!(
        !got.iter()
            .any(|p| p.0.contains("snat") || p.0.contains("dnat")),
        "{got:?}"
    );
}
