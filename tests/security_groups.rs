//! Security groups on the guide's cloud, end to end (12-4, 12-8): the controller and
//! the compute node realised from the guide's files and the built-in topology (its
//! `default` group with all ICMP and tcp/22), plus vm2 in `default` and vm3 in a `web`
//! group on the compute node. vm1 leases its address across VXLAN through its
//! firewall; from the external PC its floating IP answers ICMP and tcp/22 and drops
//! tcp/8080; vm1's own connections out get their replies (stateful); vm2 (same group)
//! reaches vm1 on any port, vm3 does not. A second apply writes nothing; a rule deleted
//! by hand with `nft` is planned and put back; a topology without the ICMP rule drops
//! the pings; taking the cloud down leaves none of our tables.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sp_config::desired::{plan, NodePlan};
use sp_config::topology::{SecurityGroup, SecurityGroupRule};
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;
use sp_neutron::sg::{Direction, EtherType, Protocol};
use sp_orchestrate::{apply, take_down, Dirs};
use sp_testenv::scene::{self, ip};
use sp_testenv::{oracle, require, sandbox};

/// The guide's cloud without Cinder, with vm2 (default) and vm3 (web) on compute.
fn topology(icmp: bool) -> Topology {
    let mut t = Topology::guide();
    t.cinder = None;
    let vm = |name: &str, id: &str, mac: &str, ip: &str, group: &str| {
        let mut i = t.instances[0].clone();
        i.name = name.parse().unwrap();
        i.port_id = id.parse().unwrap();
        i.mac = mac.parse().unwrap();
        i.ip = ip.parse().unwrap();
        i.floating_ip = None;
        i.security_groups = vec![group.into()];
        i
    };
    let vm2 = vm(
        "vm2",
        "b2000000-0000-4000-8000-000000000002",
        "fa:16:3e:00:00:02",
        "192.168.0.4",
        "default",
    );
    let vm3 = vm(
        "vm3",
        "c3000000-0000-4000-8000-000000000003",
        "fa:16:3e:00:00:03",
        "192.168.0.5",
        "web",
    );
    t.instances.extend([vm2, vm3]);
    t.security_groups.push(SecurityGroup {
        name: "web".into(),
        id: "4c5a6f3b-9d2e-4a7f-8b8c-1d2e3f4a5b6c".parse().unwrap(),
        rules: vec![SecurityGroupRule {
            direction: Direction::Egress,
            ethertype: EtherType::Ipv4,
            protocol: Protocol::Any,
            port_range_min: None,
            port_range_max: None,
            icmp_type: None,
            icmp_code: None,
            remote_ip_prefix: None,
            remote_group: None,
        }],
    });
    if !icmp {
        t.security_groups[0]
            .rules
            .retain(|r| r.protocol != Protocol::Icmp);
    }
    t
}

fn node_plans(t: &Topology, state: &Path) -> Vec<NodePlan> {
    let cfg = GuideConfig::load(&sp_testenv::guide_config_dir()).unwrap();
    plan(t, &cfg, state).unwrap()
}

fn apply_all(plans: &[NodePlan], dirs: &Dirs) -> Vec<String> {
    let mut done = Vec::new();
    for p in plans {
        let applied = Netlink::block_on_in(&p.node, async |nl| {
            apply(&nl, p, dirs, &mut |_| {}).await.unwrap()
        })
        .unwrap();
        assert!(
            applied.left.is_empty(),
            "{}: left {:?}",
            p.node,
            applied.left
        );
        done.extend(applied.done.iter().map(|a| format!("{}: {a}", p.node)));
    }
    done
}

fn planned(p: &NodePlan, dirs: &Dirs) -> Vec<String> {
    Netlink::block_on_in(&p.node, async |nl| {
        let (cur, owned) = sp_orchestrate::read(&nl, p, dirs).await.unwrap();
        sp_orchestrate::plan(p, &cur, &owned).unwrap()
    })
    .unwrap()
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// Runs `f` on a thread inside named namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let fd = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we hold, changing only this thread.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A TCP listener on `port` in `ns` (a Rust TcpListener), for the test's life.
fn listen(ns: &str, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    drop(in_ns(ns, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        tx.send(()).unwrap();
        for s in l.incoming() {
            drop(s);
        }
    }));
    rx.recv().expect("listener up");
}

/// Whether a TCP connection from `ns` to `ip:port` is made within a second (two tries).
fn connects(ns: &str, ip: &str, port: u16) -> bool {
    let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_ns(ns, move || {
        (0..2).any(|_| TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok())
    })
    .join()
    .unwrap()
}

fn nft_compute(args: &[&str]) -> String {
    require::run(
        Command::new("ip")
            .args(["netns", "exec", "compute", "nft"])
            .args(args),
    )
}

#[test]
fn security_groups_on_the_guides_cloud() {
    sandbox::enter();
    for (prog, pkg) in [
        ("dnsmasq", "dnsmasq-base"),
        ("udhcpc", "udhcpc"),
        ("ping", "iputils-ping"),
        ("nft", "nftables"),
    ] {
        require::program(prog, pkg);
    }
    scene::guide_hosts();
    let state = std::env::temp_dir().join(format!("sp-sg-{}", std::process::id()));
    let _cleanup = sp_testenv::nodes::Cleanup::new(state.clone());
    let mut dirs = Dirs::new(state.clone(), state.join("cinder"));
    // The metadata proxy is `stackplumb metadata-proxy`, not this test binary.
    dirs.program = sp_testenv::workspace_bin("stackplumb");
    let plans = node_plans(&topology(true), &state);
    let done = apply_all(&plans, &dirs);
    assert!(
        done.iter()
            .any(|a| a == "compute: + security groups of 3 ports (table neutron-linuxbri)"),
        "{done:#?}"
    );
    assert_eq!(
        oracle::net_sysctl(Some("compute"), "bridge/bridge-nf-call-iptables"),
        "1",
        "br_netfilter on in the compute node's namespace"
    );

    // 10-5 through the firewall: DHCP across VXLAN (the reply from the DHCP port let
    // in), then what the client would configure.
    let lease = scene::dhcp_lease(&state, "vm1", "eth0");
    assert_eq!(lease.ip, "192.168.0.3");
    for (vm, addr) in [
        ("vm1", "192.168.0.3"),
        ("vm2", "192.168.0.4"),
        ("vm3", "192.168.0.5"),
    ] {
        ip(&[
            "-n",
            vm,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", vm, "link", "set", "eth0", "mtu", "1450"]);
        ip(&["-n", vm, "route", "add", "default", "via", "192.168.0.1"]);
        listen(vm, 22);
        listen(vm, 8080);
    }
    listen("extpc", 9000);

    // From the external PC: ICMP and tcp/22 on the floating IP, tcp/8080 dropped.
    assert!(
        oracle::pings("extpc", "10.0.0.201"),
        "12-4: ICMP from 0.0.0.0/0"
    );
    assert!(
        connects("extpc", "10.0.0.201", 22),
        "12-4: tcp/22 from 0.0.0.0/0"
    );
    assert!(
        !connects("extpc", "10.0.0.201", 8080),
        "no rule lets tcp/8080 in"
    );
    // vm1's egress through NAT, replies back by state.
    assert!(connects("vm1", "10.0.0.1", 9000), "egress, and its replies");
    // Remote group: vm2 (default) reaches any port of vm1, vm3 (web) does not.
    assert!(connects("vm2", "192.168.0.3", 8080), "same group");
    assert!(!connects("vm3", "192.168.0.3", 8080), "another group");

    // A second apply writes nothing.
    assert_eq!(apply_all(&plans, &dirs), Vec::<String>::new());

    // A rule deleted by hand: seen by plan, put back by apply.
    let compute = plans.iter().find(|p| p.node == "compute").unwrap();
    let listed = nft_compute(&[
        "-a",
        "list",
        "chain",
        "inet",
        "neutron-linuxbri",
        "ingress-1",
    ]);
    let handle = listed
        .lines()
        .find(|l| l.contains("tcp dport 22"))
        .and_then(|l| l.rsplit("# handle ").next())
        .expect("vm1's tcp/22 rule")
        .trim()
        .to_owned();
    nft_compute(&[
        "delete",
        "rule",
        "inet",
        "neutron-linuxbri",
        "ingress-1",
        "handle",
        &handle,
    ]);
    assert!(!connects("extpc", "10.0.0.201", 22), "the rule is gone");
    let p = planned(compute, &dirs);
    assert!(
        p.len() == 1
            && p[0].contains("rule missing in inet ingress-1: ")
            && p[0].contains("tcp dport 22"),
        "{p:#?}"
    );
    let done = apply_all(&plans, &dirs);
    assert_eq!(done.len(), 1, "{done:#?}");
    assert!(connects("extpc", "10.0.0.201", 22), "put back");

    // Without the ICMP rule, the floating IP does not answer pings.
    let no_icmp = node_plans(&topology(false), &state);
    apply_all(&no_icmp, &dirs);
    assert!(!oracle::pings("extpc", "10.0.0.201"), "no ICMP rule");
    assert!(oracle::pings("vm2", "192.168.0.3"), "the group still pings");

    // Taking down leaves none of our tables.
    for p in no_icmp.iter().rev() {
        Netlink::block_on_in(&p.node, async |nl| {
            take_down(&nl, p, &dirs, true, &mut |_| {}).await.unwrap()
        })
        .unwrap();
    }
    let left = nft_compute(&["list", "tables"]);
    assert!(!left.contains("neutron-linuxbri"), "{left}");
}
