//! A failure injected before every single kernel write of an uplink attach or detach
//! leaves the host exactly as it was: same addresses (in the same order), same routes,
//! same masters — and the gateway still answers.

use std::time::Duration;

use std::collections::BTreeSet;

use sp_bridge::{network, uplink, Error};
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::{Faults, Injected};
use sp_testenv::scene::{self, ip};
use sp_testenv::{oracle, require, sandbox};

const BR: &str = "brq78983ca2-77";

/// (device, address) in kernel order; routes; (device, master) — as iproute2 reports them.
type State = (
    Vec<(String, String)>,
    BTreeSet<String>,
    Vec<(String, String)>,
);

fn state() -> State {
    let (addrs, routes) = (oracle::global_addrs(None), oracle::route_lines(None));
    let masters = oracle::links(None)
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_owned(),
                l["master"].to_string(),
            )
        })
        .collect();
    (addrs, routes, masters)
}

/// Builds the scene; the caller opens the handle inside its runtime.
fn scene() {
    sandbox::enter();
    require::program("ping", "iputils-ping");
    scene::nic_with_gateway("eth0", "10.0.0.101/24", "10.0.0.1");
    ip(&["addr", "add", "10.0.0.150/24", "dev", "eth0"]);
    ip(&["addr", "add", "2001:db8::101/64", "dev", "eth0", "nodad"]);
    ip(&["route", "del", "default"]);
    ip(&[
        "route", "add", "default", "via", "10.0.0.1", "dev", "eth0", "metric", "50",
    ]);
    ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        "10.0.0.1",
        "dev",
        "eth0",
    ]);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `op` with a failure before step 0, 1, 2… until it succeeds; after every
/// injected failure the state must equal `before`. Returns the number of steps.
fn every_step_rolls_back(rt: &tokio::runtime::Runtime, nl: &Netlink, attach: bool) -> usize {
    let before = state();
    for k in 0.. {
        let mut faults = Faults::at(k);
        let mut changes = vec![];
        let res = rt.block_on(async {
            if attach {
                uplink::attach(
                    nl,
                    BR,
                    "eth0",
                    Some(uplink::GATEWAY_TIMEOUT),
                    &mut faults,
                    &mut changes,
                )
                .await
            } else {
                uplink::detach(nl, BR, "eth0", &mut faults, &mut changes).await
            }
        });
        match res {
            Err(Error::RolledBack(r)) => {
                assert!(
                    matches!(r.cause, Error::Injected(Injected(n)) if n == k),
                    "step {k}: {}",
                    r.cause
                );
                assert!(
                    r.rollback.is_empty(),
                    "step {k}: undo failed: {:?}",
                    r.rollback
                );
                assert_eq!(state(), before, "state after a failure before step {k}");
                assert!(changes.is_empty());
            }
            Err(e) => panic!("step {k}: {e}"),
            Ok(()) => {
                assert!(!changes.is_empty());
                return k;
            }
        }
    }
    unreachable!()
}

#[test]
fn attach_and_detach_roll_back_at_every_step() {
    scene();
    let rt = runtime();
    let nl = rt.block_on(async { Netlink::current() }).expect("netlink");
    rt.block_on(network::ensure_network(
        &nl,
        "78983ca2-77e3-4cdf-9747-ae1b34addeb7",
        None,
        &mut vec![],
    ))
    .unwrap();
    let original = state();

    let steps = every_step_rolls_back(&rt, &nl, true);
    // IPv6 on for the bridge, 3 addresses + 2 routes added, 2 routes and 3 addresses
    // deleted, 1 enslave, the gateway pinged through the bridge.
    assert_eq!(steps, 13);
    let attached = state();
    assert!(attached.0.iter().all(|(dev, _)| dev == BR), "{attached:?}");
    assert_eq!(
        attached
            .0
            .iter()
            .map(|(_, a)| a.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["10.0.0.101/24", "10.0.0.150/24", "2001:db8::101/64"],
        "primary stays primary"
    );
    assert!(
        attached
            .1
            .iter()
            .any(|r| r.starts_with("\"default\" \"10.0.0.1\" \"brq78983ca2-77\" 49")),
        "{:?}",
        attached.1
    );
    assert!(
        attached
            .1
            .iter()
            .any(|r| r.starts_with("\"172.16.0.0/16\" \"10.0.0.1\" \"brq78983ca2-77\" 100")),
        "{:?}",
        attached.1
    );
    assert!(oracle::pings("gw", "10.0.0.101"));

    let steps = every_step_rolls_back(&rt, &nl, false);
    // Release, 3 addresses and 2 routes added, 2 routes and 3 addresses deleted, IPv6
    // off again on the bridge.
    assert_eq!(steps, 12);
    let detached = state();
    assert_eq!(
        detached, original,
        "addresses (in order), routes (metrics too), masters: as before the attach"
    );
    assert!(oracle::pings("gw", "10.0.0.101"));

    // A gateway that does not answer through the bridge undoes the whole move.
    ip(&["-n", "gw", "link", "set", "gw0", "down"]);
    let mut changes = vec![];
    let res = rt.block_on(uplink::attach(
        &nl,
        BR,
        "eth0",
        Some(Duration::from_millis(500)),
        &mut Faults::none(),
        &mut changes,
    ));
    match res {
        Err(Error::RolledBack(r)) => {
            assert!(
                matches!(r.cause, Error::GatewaySilent { .. }),
                "{}",
                r.cause
            );
            assert!(r.rollback.is_empty(), "{:?}", r.rollback);
        }
        other => panic!("a silent gateway: {other:?}"),
    }
    assert_eq!(state(), original, "the move undone");
    assert!(changes.is_empty());
}
