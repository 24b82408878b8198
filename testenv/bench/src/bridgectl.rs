//! N Neutron-style networks, made and torn down by sp-bridge and by iproute2.
//!
//! One network = `brq…` bridge (forward delay 0, STP off) + `vxlan-N` (dev eth0,
//! proxy) on it + `qdhcp-…` namespace + veth `tap…` (on the bridge) ↔ `ns-…` (in the
//! namespace) + an address on `ns-…`.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use sp_bridge::network::{NetworkSpec, VxlanConfig};
use sp_bridge::port::{HostEnd, PortSpec};
use sp_bridge::{network, port, teardown};
use sp_kernel::netlink::Netlink;
use sp_neutron::{bridge_name, qdhcp_namespace, tap_name, PortKind};
use sp_testenv::require;
use sp_testenv::scene::ip;

use crate::netns_inspect::ip_batch;

fn net_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

fn port_id(i: usize) -> String {
    format!("{i:08x}-1111-4000-8000-000000000000")
}

fn addr(i: usize) -> String {
    format!("10.{}.{}.2/24", 100 + i / 250, i % 250)
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The tunnel endpoint: a veth playing eth0 with local_ip.
fn uplink() {
    ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ip(&["addr", "add", "10.0.0.101/24", "dev", "eth0"]);
    ip(&["link", "set", "eth0", "up"]);
    ip(&["link", "set", "eth0p", "up"]);
}

/// Everything but the tunnel endpoint is gone (the next round starts clean).
fn assert_clean() {
    let left = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(left.lines().count(), 3, "links left: {left}");
    let ns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(ns.trim().is_empty(), "namespaces left: {ns}");
}

fn ours(n: usize) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nl = Netlink::current().unwrap();
        let specs: Vec<NetworkSpec> = (0..n)
            .map(|i| NetworkSpec {
                network_id: net_id(i),
                vxlan: Some(VxlanConfig {
                    vni: i as u32 + 1,
                    local_ip: IpAddr::from([10, 0, 0, 101]),
                    l2_population: true,
                    group: None,
                    port: None,
                    mtu: None,
                }),
            })
            .collect();
        let ports: Vec<PortSpec> = (0..n)
            .map(|i| PortSpec {
                port_id: port_id(i),
                kind: PortKind::Dhcp,
                namespace: qdhcp_namespace(&net_id(i)),
                host: HostEnd::Bridge(bridge_name(&net_id(i))),
                mac: None,
                mtu: None,
                addresses: Some(vec![addr(i).parse().unwrap()]),
                gateway: None,
                ip_forward: false,
            })
            .collect();
        let t = Instant::now();
        let mut changes = Vec::new();
        network::ensure_networks(&nl, &specs, &mut changes)
            .await
            .unwrap();
        port::plug(&nl, &ports, &mut changes).await.unwrap();
        let apply = t.elapsed();
        let t = Instant::now();
        let ids: Vec<String> = (0..n).map(net_id).collect();
        teardown::delete_networks(&nl, &ids, &mut changes)
            .await
            .unwrap();
        (apply, t.elapsed())
    })
}

/// The host-side lines of one network for `ip -batch`; `in_place` creates the peer in
/// its namespace, else it is created here and moved.
fn batch_lines(i: usize, in_place: bool) -> String {
    let (br, ns, tap) = (
        bridge_name(&net_id(i)),
        qdhcp_namespace(&net_id(i)),
        tap_name(&port_id(i)),
    );
    let inner = PortKind::Dhcp.device(&port_id(i));
    let vx = format!("vxlan-{}", i + 1);
    let mut s = format!(
        "link add {br} type bridge forward_delay 0 stp_state 0\nlink set {br} up\n\
         link add {vx} type vxlan id {} dev eth0 dstport 0 proxy\nlink set {vx} master {br} up\n\
         netns add {ns}\n",
        i + 1
    );
    if in_place {
        s += &format!("link add {tap} master {br} up type veth peer name {inner} netns {ns}\n");
    } else {
        s += &format!("link add {tap} type veth peer name {inner}\nlink set {inner} netns {ns}\nlink set {tap} master {br} up\n");
    }
    s
}

/// Inside each namespace: up and address (one `ip -n NS -batch` each).
fn ns_lines(i: usize) -> (String, String) {
    let inner = PortKind::Dhcp.device(&port_id(i));
    (
        qdhcp_namespace(&net_id(i)),
        format!("link set {inner} up\naddr add {} dev {inner}\n", addr(i)),
    )
}

fn per_command(n: usize) -> Duration {
    timed(|| {
        for i in 0..n {
            for line in batch_lines(i, false).lines() {
                ip(&line.split(' ').collect::<Vec<_>>());
            }
            let (ns, lines) = ns_lines(i);
            for line in lines.lines() {
                let mut args = vec!["-n", &ns];
                args.extend(line.split(' '));
                ip(&args);
            }
        }
    })
}

fn batch(n: usize, in_place: bool) -> Duration {
    timed(|| {
        let host: String = (0..n).map(|i| batch_lines(i, in_place)).collect();
        ip_batch(None, &host);
        for i in 0..n {
            let (ns, lines) = ns_lines(i);
            ip_batch(Some(&ns), &lines);
        }
    })
}

/// Link by link, one process each (what a script or the agent does), namespaces last.
fn teardown_per_link(n: usize) -> Duration {
    timed(|| {
        for i in 0..n {
            ip(&["link", "del", &tap_name(&port_id(i))]);
            ip(&["link", "del", &format!("vxlan-{}", i + 1)]);
            ip(&["link", "del", &bridge_name(&net_id(i))]);
            ip(&["netns", "del", &qdhcp_namespace(&net_id(i))]);
        }
    })
}

/// Link by link in one `ip -batch` process.
fn teardown_batch(n: usize) -> Duration {
    timed(|| {
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "link del {}\nlink del vxlan-{}\nlink del {}\nnetns del {}\n",
                    tap_name(&port_id(i)),
                    i + 1,
                    bridge_name(&net_id(i)),
                    qdhcp_namespace(&net_id(i))
                )
            })
            .collect();
        ip_batch(None, &lines);
    })
}

pub fn run(n: usize, runs: usize) {
    if !crate::in_sandbox_child("bridgectl", n, runs) {
        return;
    }
    require::program("ip", "iproute2");
    uplink();
    let (mut a_ours, mut t_ours) = (Duration::MAX, Duration::MAX);
    let (mut a_cmd, mut a_move, mut a_place) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut t_link, mut t_batch) = (Duration::MAX, Duration::MAX);
    for _ in 0..runs.max(1) {
        let (a, t) = ours(n);
        a_ours = a_ours.min(a);
        t_ours = t_ours.min(t);
        assert_clean();
        a_cmd = a_cmd.min(per_command(n));
        t_link = t_link.min(teardown_per_link(n));
        assert_clean();
        a_move = a_move.min(batch(n, false));
        t_batch = t_batch.min(teardown_batch(n));
        assert_clean();
        a_place = a_place.min(batch(n, true));
        teardown_batch(n);
        assert_clean();
    }
    crate::report(
        &format!("apply {n} networks (bridge+vxlan+qdhcp ns+veth+address), best of {runs}"),
        a_ours,
        &[
            ("ip/cmd", a_cmd),
            ("batch mv", a_move),
            ("batch in", a_place),
        ],
    );
    crate::report(
        &format!("teardown {n} networks, best of {runs}"),
        t_ours,
        &[("ip/link", t_link), ("batch", t_batch)],
    );
}
