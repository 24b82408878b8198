//! The Liberty guide's controller as `ip netns` shows it in section 10-4, built with the
//! real tools inside a sandbox: the qrouter and qdhcp namespaces of demo-router and
//! demo-net, their veths onto `brq…` bridges, addresses, routes, a real dnsmasq — plus,
//! on request, the debris netns-inspect must point out.

use crate::scene::{ip, netns_add, Parked};

/// demo-net, the tenant network of the guide.
pub const DEMO_NET: &str = "5b6a8b87-fd03-46b5-a968-72bac5091b7c";
/// ext-net, the flat provider network.
pub const EXT_NET: &str = "78983ca2-77e3-4cdf-9747-ae1b34addeb7";
/// demo-router.
pub const ROUTER: &str = "006df4cc-6fb2-40e7-af58-dc68b6755165";
/// `qrouter-<demo-router>`.
pub const QROUTER: &str = "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165";
/// `qdhcp-<demo-net>`.
pub const QDHCP: &str = "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c";
/// The router's internal and gateway ports, and the DHCP port (ids from the guide).
pub const QR_PORT: &str = "7337070d-45";
pub const QG_PORT: &str = "9477c16b-e5";
pub const DHCP_PORT: &str = "b5cfa271-71";

/// The scene; dropping it ends the processes it started (namespaces and links go with
/// the sandbox).
pub struct GuideScene {
    pub dnsmasq: Parked,
}

/// Creates a veth `tap<port>` on the host, enslaved to `bridge`, whose peer
/// `<prefix><port>` is born inside `netns` with `mac`, both up.
pub fn plug(bridge: &str, netns: &str, prefix: &str, port: &str, mac: &str, mtu: u32) {
    let tap = format!("tap{port}");
    let inner = format!("{prefix}{port}");
    let mtu = mtu.to_string();
    ip(&[
        "link", "add", &tap, "mtu", &mtu, "master", bridge, "up", "type", "veth", "peer", "name",
        &inner, "netns", netns, "address", mac,
    ]);
    ip(&["-n", netns, "link", "set", &inner, "up"]);
}

/// Builds the controller of the guide: bridges, qrouter with qr-/qg- legs and its
/// default route, qdhcp with its port and a real dnsmasq.
pub fn build() -> GuideScene {
    let demo_br = format!("brq{}", &DEMO_NET[..11]);
    let ext_br = format!("brq{}", &EXT_NET[..11]);
    for br in [&demo_br, &ext_br] {
        ip(&[
            "link",
            "add",
            br,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ]);
        ip(&["link", "set", br, "up"]);
    }
    netns_add(QROUTER);
    ip(&[
        "netns",
        "exec",
        QROUTER,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    plug(&demo_br, QROUTER, "qr-", QR_PORT, "fa:16:3e:a7:24:00", 1450);
    plug(&ext_br, QROUTER, "qg-", QG_PORT, "fa:16:3e:b2:d8:f0", 1500);
    let qr = format!("qr-{QR_PORT}");
    let qg = format!("qg-{QG_PORT}");
    ip(&[
        "-n",
        QROUTER,
        "addr",
        "add",
        "192.168.0.1/24",
        "brd",
        "192.168.0.255",
        "dev",
        &qr,
    ]);
    ip(&[
        "-n",
        QROUTER,
        "addr",
        "add",
        "10.0.0.200/24",
        "brd",
        "10.0.0.255",
        "dev",
        &qg,
    ]);
    ip(&[
        "-n", QROUTER, "route", "replace", "default", "via", "10.0.0.1", "dev", &qg,
    ]);

    netns_add(QDHCP);
    plug(&demo_br, QDHCP, "ns-", DHCP_PORT, "fa:16:3e:90:58:fa", 1450);
    let ns_dev = format!("ns-{DHCP_PORT}");
    ip(&[
        "-n",
        QDHCP,
        "addr",
        "add",
        "192.168.0.2/24",
        "brd",
        "192.168.0.255",
        "dev",
        &ns_dev,
    ]);
    ip(&[
        "-n",
        QDHCP,
        "addr",
        "add",
        "169.254.169.254/16",
        "dev",
        &ns_dev,
    ]);
    ip(&[
        "-n",
        QDHCP,
        "route",
        "replace",
        "default",
        "via",
        "192.168.0.1",
        "dev",
        &ns_dev,
    ]);
    let iface = format!("--interface={ns_dev}");
    let dnsmasq = Parked::start(
        Some(QDHCP),
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-hosts",
            "--no-resolv",
            "--strict-order",
            "--except-interface=lo",
            "--bind-interfaces",
            &iface,
            "--port=0",
            "--user=root",
            "--group=root",
            "--pid-file",
            "--dhcp-leasefile=/dev/null",
            "--dhcp-range=set:tag0,192.168.0.0,static,86400s",
            "--dhcp-option-force=26,1450",
            "--domain=openstacklocal",
        ],
    );
    // Running dnsmasq (Parked::start waits for its exec), and serving once it holds UDP 67.
    dnsmasq.wait_until("holds UDP port 67", |pid| {
        std::fs::read_to_string(format!("/proc/{pid}/net/udp"))
            .is_ok_and(|t| t.lines().any(|l| l.contains(":0043 ")))
    });
    settle(&[&demo_br, &ext_br]);
    GuideScene { dnsmasq }
}

/// Waits (up to 5 s) until every bridge is operationally UP: a bridge reports UNKNOWN
/// until its ports' carrier settles, and comparisons against iproute2 must not race it.
pub fn settle(bridges: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for br in bridges {
        loop {
            let link = crate::oracle::ip_json(None, &["link", "show", br]);
            if link[0]["operstate"] == "UP" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "bridge {br} never came up: {link}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
