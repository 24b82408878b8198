//! Transmit checksum offload read and set through `SIOCETHTOOL`, as `ethtool -k` shows
//! it, on veths of the sandbox — in the namespace the socket was opened in, whichever
//! thread asks.

use std::process::Command;

use sp_kernel::{ethtool, netns};
use sp_testenv::{require, sandbox, scene};

/// `ethtool -k DEV`'s `tx-checksumming` and `tx-checksum-ip-generic` (a veth's), in
/// namespace `ns` (`None`: the test's own).
fn oracle(ns: Option<&str>, dev: &str) -> (String, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ethtool", "-k", dev]);
            c
        }
        None => {
            let mut c = Command::new("ethtool");
            c.args(["-k", dev]);
            c
        }
    };
    let out = require::run(&mut cmd);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    (field("tx-checksumming"), field("tx-checksum-ip-generic"))
}

/// `ethtool -k DEV`'s feature lines (without the heading naming the device).
fn features(dev: &str) -> Vec<String> {
    let out = require::run(Command::new("ethtool").args(["-k", dev]));
    out.lines().skip(1).map(str::to_owned).collect()
}

fn on_off(s: (&str, &str)) -> (String, String) {
    (s.0.to_owned(), s.1.to_owned())
}

#[test]
fn tx_checksum_offload_reads_and_sets_as_ethtool_shows_it() {
    sandbox::enter();
    require::program("ethtool", "ethtool");
    scene::ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    let s = ethtool::Socket::open().unwrap();
    // A new veth offloads its checksums.
    assert_eq!(oracle(None, "v0"), on_off(("on", "on")));
    assert!(s.tx_checksum("v0").unwrap());

    s.set_tx_checksum("v0", false).unwrap();
    assert_eq!(oracle(None, "v0"), on_off(("off", "off")));
    assert!(!s.tx_checksum("v0").unwrap());
    // The peer is another device: untouched.
    assert_eq!(oracle(None, "v1"), on_off(("on", "on")));
    assert!(s.tx_checksum("v1").unwrap());
    // What `ethtool -K DEV tx off` does to the same kind of device, feature by feature
    // (TSO and the other offloads that need checksums follow).
    require::run(Command::new("ethtool").args(["-K", "v1", "tx", "off"]));
    assert_eq!(features("v0"), features("v1"));

    // As `ethtool -K v0 tx on` leaves it, read back.
    require::run(Command::new("ethtool").args(["-K", "v0", "tx", "on"]));
    assert!(s.tx_checksum("v0").unwrap());
    s.set_tx_checksum("v0", true).unwrap();
    assert_eq!(oracle(None, "v0"), on_off(("on", "on")));

    let e = s.tx_checksum("sp-missing").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(e.to_string().contains("sp-missing"), "{e}");
}

#[test]
fn a_socket_acts_in_the_namespace_it_was_opened_in() {
    sandbox::enter();
    require::program("ethtool", "ethtool");
    scene::netns_add("qdhcp-x");
    scene::ip(&[
        "-n", "qdhcp-x", "link", "add", "ns-x", "type", "veth", "peer", "name", "tap-x",
    ]);
    let fd = netns::open(&netns::named_path("qdhcp-x").unwrap()).unwrap();
    let inside = netns::run_in_each(&[fd], |_| ethtool::Socket::open())
        .pop()
        .unwrap()
        .unwrap();
    // Used from this thread, which is not in qdhcp-x (no ns-x here).
    let here = ethtool::Socket::open().unwrap();
    assert_eq!(
        here.tx_checksum("ns-x").unwrap_err().errno(),
        Some(libc::ENODEV)
    );
    assert!(inside.tx_checksum("ns-x").unwrap());
    inside.set_tx_checksum("ns-x", false).unwrap();
    assert_eq!(oracle(Some("qdhcp-x"), "ns-x"), on_off(("off", "off")));
    assert_eq!(oracle(Some("qdhcp-x"), "tap-x"), on_off(("on", "on")));
}
