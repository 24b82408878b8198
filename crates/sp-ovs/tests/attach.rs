//! The host NIC into br-ex (the packstack notes' `ifcfg-eno1` / `ifcfg-br-ex`) against a
//! real ovsdb-server + ovs-vswitchd (userspace datapath), in a sandbox where a veth plays
//! `eno1` (10.50.14.50/24, default via 10.50.14.1) and namespace `gw` plays the gateway.
//! iproute2 and ovs-vsctl read the results; the gateway pings the host through br-ex.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::Injected;
use sp_ovs::attach::{self, AttachOptions, Faults, HostChange};
use sp_ovs::{BridgeSpec, Error, Ovs};
use sp_testenv::ovs::Ovs as Daemons;
use sp_testenv::scene::{ip, nic_with_gateway};
use sp_testenv::{oracle, require, sandbox};

const BR: &str = "br-ex";
const NIC: &str = "eno1";

struct Scene {
    daemons: Daemons,
    rt: tokio::runtime::Runtime,
    nl: Netlink,
    ovs: Ovs,
}

/// The notes' host: eno1 with 10.50.14.50/24 and the default route via 10.50.14.1.
fn scene() -> Scene {
    sandbox::enter();
    require::program("ping", "iputils-ping");
    let daemons = Daemons::start();
    nic_with_gateway(NIC, "10.50.14.50/24", "10.50.14.1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (nl, ovs) = rt.block_on(async {
        let nl = Netlink::current().expect("netlink");
        let db = daemons.db().parse().unwrap();
        let ovs = Ovs::connect(&db, Duration::from_secs(10), true)
            .await
            .expect("connect");
        (nl, ovs)
    });
    Scene {
        daemons,
        rt,
        nl,
        ovs,
    }
}

impl Scene {
    /// Attaches (or detaches) eno1 to br-ex.
    fn run(
        &self,
        detach: bool,
        opts: &AttachOptions,
        faults: &mut Faults,
    ) -> Result<Vec<HostChange>, Error> {
        self.rt.block_on(async {
            match detach {
                true => attach::detach(&self.ovs, &self.nl, BR, NIC, opts, faults).await,
                false => attach::attach(&self.ovs, &self.nl, BR, NIC, opts, faults).await,
            }
        })
    }

    /// Attaches (or detaches) on the netdev datapath; the changes as text lines.
    fn lines(&self, detach: bool) -> Vec<String> {
        self.run(detach, &netdev(), &mut Faults::none())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

fn netdev() -> AttachOptions {
    AttachOptions {
        datapath_type: "netdev".into(),
        gateway_timeout: Some(Duration::from_secs(5)),
        ..AttachOptions::default()
    }
}

/// Global addresses (kernel order), main-table routes, links (name, flags, master) as
/// iproute2 reports them, and the OVS bridges and ports as ovs-vsctl lists them.
#[derive(Debug, PartialEq, Eq)]
struct State {
    addrs: Vec<(String, String)>,
    routes: BTreeSet<String>,
    links: BTreeSet<String>,
    ovs: BTreeSet<String>,
}

fn state(d: &Daemons) -> State {
    let (addrs, routes) = (oracle::global_addrs(None), oracle::route_lines(None));
    let links = oracle::links(None)
        .iter()
        .map(|l| format!("{} {} {}", l["ifname"], l["flags"], l["master"]))
        .collect();
    let ovs = ["Bridge", "Port", "Interface"]
        .into_iter()
        .flat_map(|t| {
            d.list(t)
                .into_iter()
                .map(move |r| format!("{t} {}", r["name"]))
        })
        .collect();
    State {
        addrs,
        routes,
        links,
        ovs,
    }
}

/// The port rows' names on bridge `bridge`, from ovs-vsctl.
fn ports_on(d: &Daemons, bridge: &str) -> BTreeSet<String> {
    let br = d.row("Bridge", bridge).expect("bridge row");
    let uuids: Vec<String> = match &br["ports"] {
        Value::Array(a) if a[0] == "set" => a[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u[1].as_str().unwrap().to_owned())
            .collect(),
        Value::Array(a) => vec![a[1].as_str().unwrap().to_owned()],
        other => panic!("ports: {other}"),
    };
    d.list("Port")
        .into_iter()
        .filter(|p| uuids.iter().any(|u| p["_uuid"][1] == *u.as_str()))
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn addresses_of(dev: &str) -> Vec<String> {
    oracle::addrs(None)
        .iter()
        .filter(|l| l["ifname"] == dev)
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn default_route_dev() -> String {
    let routes = oracle::routes(None, false);
    let d = routes
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("a default route");
    assert_eq!(d["gateway"], "10.50.14.1");
    d["dev"].as_str().unwrap().to_owned()
}

/// The injected failure behind a rolled-back error.
fn injected(e: &Error) -> Option<usize> {
    match e {
        Error::RolledBack(r) => {
            assert!(r.rollback.is_empty(), "undo failed: {:?}", r.rollback);
            match r.cause {
                Error::Injected(Injected(n)) => Some(n),
                _ => None,
            }
        }
        _ => None,
    }
}

#[test]
fn attach_moves_the_ip_onto_br_ex_and_the_gateway_answers_then_detach_restores() {
    let s = scene();
    let before = state(&s.daemons);
    assert_eq!(
        s.lines(false),
        [
            "bridge br-ex: created",
            "link br-ex: set up",
            "address 10.50.14.50/24: moved eno1 → br-ex",
            "default via 10.50.14.1: moved eno1 → br-ex",
            "port eno1: added to bridge br-ex",
            "gateway 10.50.14.1: answers through br-ex",
            "address 10.50.14.50: announced on br-ex (gratuitous ARP)",
        ]
    );
    // ovs-vsctl: eno1 is a port (system interface) of br-ex, on the netdev datapath.
    assert_eq!(
        ports_on(&s.daemons, BR),
        BTreeSet::from(["br-ex".to_owned(), "eno1".to_owned()])
    );
    assert_eq!(
        s.daemons.row("Bridge", BR).unwrap()["datapath_type"],
        "netdev"
    );
    let iface = s.daemons.row("Interface", NIC).unwrap();
    assert_eq!(iface["type"], "");
    assert_eq!(iface["error"], serde_json::json!(["set", []]));
    // iproute2: the address and the default route are on br-ex, nothing left on eno1.
    assert_eq!(addresses_of(BR), ["10.50.14.50/24"]);
    assert!(addresses_of(NIC).is_empty());
    assert_eq!(default_route_dev(), BR);
    assert!(oracle::link(None, BR)["flags"]
        .as_array()
        .unwrap()
        .contains(&"UP".into()));
    // The gateway reaches the host through br-ex and eno1.
    assert!(oracle::pings("gw", "10.50.14.50"));

    // Idempotent: the second run changes nothing.
    assert!(s.lines(false).is_empty());

    assert_eq!(
        s.lines(true),
        [
            "port eno1: deleted from bridge br-ex",
            "address 10.50.14.50/24: moved br-ex → eno1",
            "default via 10.50.14.1: moved br-ex → eno1",
            "gateway 10.50.14.1: answers through eno1",
            "address 10.50.14.50: announced on eno1 (gratuitous ARP)",
        ]
    );
    let after = state(&s.daemons);
    assert_eq!(after.addrs, before.addrs, "addresses back on eno1");
    let not_br_ex: BTreeSet<String> = after
        .routes
        .iter()
        .filter(|r| !r.contains("\"br-ex\""))
        .cloned()
        .collect();
    assert_eq!(
        not_br_ex, before.routes,
        "routes back on eno1, same metric; br-ex keeps only its link-local route"
    );
    assert_eq!(
        ports_on(&s.daemons, BR),
        BTreeSet::from(["br-ex".to_owned()]),
        "br-ex stays, without eno1"
    );
    assert!(oracle::pings("gw", "10.50.14.50"));
    assert!(s.lines(true).is_empty());
}

/// Runs attach (or detach) failing before step 0, 1, 2… until it succeeds; after each
/// failure iproute2 and ovs-vsctl must report exactly the state before. Returns the
/// number of steps.
fn every_step_rolls_back(s: &Scene, detach: bool) -> usize {
    let before = state(&s.daemons);
    for k in 0.. {
        let mut faults = Faults::at(k);
        match s.run(detach, &netdev(), &mut faults) {
            Err(e) => {
                assert_eq!(injected(&e), Some(k), "step {k}: {e}");
                assert_eq!(
                    state(&s.daemons),
                    before,
                    "state after a failure before step {k}"
                );
            }
            Ok(changes) => {
                assert!(!changes.is_empty());
                return k;
            }
        }
    }
    unreachable!()
}

#[test]
fn a_failure_at_any_step_puts_everything_back_including_the_new_bridge() {
    let s = scene();
    // Bridge created (1), set up (1), address added (1), default route replaced (1),
    // old address deleted (1), port added (1), gateway checked (1).
    assert_eq!(every_step_rolls_back(&s, false), 7);
    assert_eq!(default_route_dev(), BR);
    assert!(oracle::pings("gw", "10.50.14.50"));
    // Port deleted, address added, route replaced, address deleted, gateway checked.
    assert_eq!(every_step_rolls_back(&s, true), 5);
    assert_eq!(default_route_dev(), NIC);
    assert!(oracle::pings("gw", "10.50.14.50"));
}

#[test]
fn a_failure_at_any_step_with_an_existing_bridge_keeps_it() {
    let s = scene();
    let spec = BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    };
    s.rt.block_on(s.ovs.add_br(BR, &spec)).unwrap();
    // The bridge device exists but is down: set up, address, route, address, port, check.
    assert_eq!(every_step_rolls_back(&s, false), 6);
    assert!(oracle::pings("gw", "10.50.14.50"));
}

/// An attach whose gateway does not answer within 500 ms fails and leaves `before`.
fn silent_gateway_rolls_back(s: &Scene, before: &State) {
    let opts = AttachOptions {
        gateway_timeout: Some(Duration::from_millis(500)),
        ..netdev()
    };
    let e = s
        .run(false, &opts, &mut Faults::none())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "gateway 10.50.14.1 did not answer ICMP echo through br-ex within 500ms; rolled back"
    );
    assert_eq!(&state(&s.daemons), before);
}

#[test]
fn a_silent_gateway_undoes_the_attach() {
    let s = scene();
    let before = state(&s.daemons);
    // The gateway's link stays up but it has lost its address: nobody answers.
    ip(&["-n", "gw", "addr", "del", "10.50.14.1/24", "dev", "gw0"]);
    silent_gateway_rolls_back(&s, &before);
    ip(&["-n", "gw", "addr", "add", "10.50.14.1/24", "dev", "gw0"]);
    assert!(oracle::pings("gw", "10.50.14.50"));
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let s = scene();
    let run = |bridge: &str, nic: &str, opts: &AttachOptions| {
        s.rt.block_on(attach::attach(
            &s.ovs,
            &s.nl,
            bridge,
            nic,
            opts,
            &mut Faults::none(),
        ))
        .unwrap_err()
        .to_string()
    };
    assert!(
        run("br-ex-external-1", NIC, &netdev()).contains("longer than 15 bytes"),
        "bridge name"
    );
    assert_eq!(run(BR, "eno9", &netdev()), "no network device named eno9");
    assert_eq!(
        run(NIC, NIC, &netdev()),
        "invalid name \"eno1\": the bridge and the NIC must be different devices"
    );
    ip(&[
        "link", "add", "eno2", "type", "veth", "peer", "name", "eno2p",
    ]);
    let before_eno2 = state(&s.daemons);
    assert!(run(BR, "eno2", &netdev()).starts_with("eno2 has no global address to move onto br-ex"));
    assert_eq!(state(&s.daemons), before_eno2);
    // eno1 already a port of another bridge: refused unless asked to move it.
    let spec = BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    };
    s.rt.block_on(s.ovs.add_br("br-other", &spec)).unwrap();
    s.rt.block_on(s.ovs.add_port("br-other", &sp_ovs::PortSpec::new(NIC, "")))
        .unwrap();
    assert_eq!(
        run(BR, NIC, &netdev()),
        "cannot add port eno1 to bridge br-ex: it is already on bridge br-other \
         (--move moves it, in one transaction)"
    );
    let moving = AttachOptions {
        move_from_other_bridge: true,
        ..netdev()
    };
    let changes = s.run(false, &moving, &mut Faults::none()).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.to_string() == "port eno1: moved to bridge br-ex from bridge br-other"),
        "{changes:?}"
    );
    assert!(ports_on(&s.daemons, "br-other").iter().all(|p| p != NIC));
}

/// A run killed midway leaves a state the next run finishes: after the address was added
/// to br-ex (it is on both), and after the move but before the port.
#[test]
fn a_run_killed_midway_is_finished_by_the_next() {
    let s = scene();
    let spec = BridgeSpec {
        datapath_type: "netdev".into(),
        ..BridgeSpec::default()
    };
    s.rt.block_on(s.ovs.add_br(BR, &spec)).unwrap();
    ip(&["link", "set", BR, "up"]);
    ip(&["addr", "add", "10.50.14.50/24", "dev", BR]);
    assert_eq!(
        s.lines(false),
        [
            "address 10.50.14.50/24: moved eno1 → br-ex",
            "default via 10.50.14.1: moved eno1 → br-ex",
            "port eno1: added to bridge br-ex",
            "gateway 10.50.14.1: answers through br-ex",
            "address 10.50.14.50: announced on br-ex (gratuitous ARP)",
        ]
    );
    assert_eq!(addresses_of(BR), ["10.50.14.50/24"]);
    assert!(addresses_of(NIC).is_empty());
    assert_eq!(default_route_dev(), BR);
    assert!(oracle::pings("gw", "10.50.14.50"));

    // Killed after the move, before the port: only the port and the check are left.
    s.rt.block_on(s.ovs.del_port(Some(BR), NIC, false)).unwrap();
    assert_eq!(
        s.lines(false),
        [
            "port eno1: added to bridge br-ex",
            "gateway 10.50.14.1: answers through br-ex",
        ]
    );
    assert!(ports_on(&s.daemons, BR).contains(NIC));
    assert!(s.lines(false).is_empty());
}

/// A NIC without carrier (its peer is down): the kernel marks its routes `linkdown`, a
/// flag it refuses in a request; the move and its undo must drop it. The gateway cannot
/// answer, so the attach is undone and the linkdown default route is back on eno1.
#[test]
fn a_nic_without_carrier_is_moved_and_put_back() {
    let s = scene();
    ip(&["-n", "gw", "link", "set", "gw0", "down"]);
    let before = state(&s.daemons);
    assert!(
        before.routes.iter().any(|r| r.starts_with("\"default\"")),
        "{before:?}"
    );
    silent_gateway_rolls_back(&s, &before);
    let opts = AttachOptions {
        gateway_timeout: None,
        ..netdev()
    };
    s.run(false, &opts, &mut Faults::none()).unwrap();
    assert_eq!(default_route_dev(), BR);
}

/// Without the gateway check nothing makes the gateway ask again, yet its neighbour entry
/// for the host moves to br-ex's MAC at once (gratuitous ARP), and back on detach.
#[test]
fn neighbours_learn_the_new_mac_at_once() {
    let s = scene();
    let gw_entry = || {
        oracle::neighbours(Some("gw"), "gw0")
            .into_iter()
            .find(|n| n["dst"] == "10.50.14.50")
            .map(|n| n["lladdr"].as_str().unwrap().to_owned())
    };
    let mac = |dev: &str| {
        oracle::link(None, dev)["address"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(oracle::pings("gw", "10.50.14.50"));
    assert_eq!(gw_entry(), Some(mac(NIC)));
    let quiet = AttachOptions {
        gateway_timeout: None,
        ..netdev()
    };
    s.run(false, &quiet, &mut Faults::none()).unwrap();
    assert_ne!(mac(BR), mac(NIC));
    assert_eq!(gw_entry(), Some(mac(BR)));
    s.run(true, &quiet, &mut Faults::none()).unwrap();
    assert_eq!(gw_entry(), Some(mac(NIC)));
}

/// A dual-stack host: the IPv6 address and default route move too, and the IPv6 gateway
/// is asked as well (ICMPv6 echo through br-ex), then everything goes back.
#[test]
fn an_ipv6_address_and_gateway_move_and_are_checked() {
    let s = scene();
    ip(&[
        "-n",
        "gw",
        "addr",
        "add",
        "2001:db8::1/64",
        "dev",
        "gw0",
        "nodad",
    ]);
    ip(&["addr", "add", "2001:db8::50/64", "dev", NIC, "nodad"]);
    ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8::1",
        "dev",
        NIC,
    ]);
    let before = state(&s.daemons);
    let lines = s.lines(false);
    for line in [
        "address 2001:db8::50/64: moved eno1 → br-ex",
        "default via 2001:db8::1: moved eno1 → br-ex",
        "gateway 10.50.14.1: answers through br-ex",
        "gateway 2001:db8::1: answers through br-ex",
    ] {
        assert!(lines.iter().any(|l| l == line), "{line:?} not in {lines:?}");
    }
    let v6 = oracle::routes(None, true);
    let default = v6
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("v6 default");
    assert_eq!(default["dev"], BR);
    let lines = s.lines(true);
    assert!(
        lines
            .iter()
            .any(|l| l == "gateway 2001:db8::1: answers through eno1"),
        "{lines:?}"
    );
    assert_eq!(state(&s.daemons).addrs, before.addrs);
}
