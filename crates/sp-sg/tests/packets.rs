//! sp-sg against the kernel, in a sandbox: a "compute node" (the sandbox's own
//! namespace) with a bridge, instances vm1…vm4 (namespaces) on taps, and a PC on the
//! same segment through a port that is no instance's. Packets are the oracle — pings,
//! TCP connections to Rust listeners inside the instances, a forged ARP reply from a
//! packet socket — and `nft` reads what we wrote.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use sp_neutron::sg::{
    Direction, EtherType, Firewall, MemberSet, PortFirewall, Protocol, Remote, Rule,
};
use sp_testenv::{oracle, require, sandbox, scene};

const DEFAULT: &str = "3b4f5e2a-8c1d-4f6e-9a7b-0c1d2e3f4a5b";

/// (namespace, port id, MAC, address).
const VMS: [(&str, &str, &str, &str); 4] = [
    (
        "vm1",
        "a7b1762b-3b4c-4d5e-8f90-123456789abc",
        "fa:16:3e:5d:2c:01",
        "192.168.0.3",
    ),
    (
        "vm2",
        "b2000000-0000-4000-8000-000000000002",
        "fa:16:3e:00:00:02",
        "192.168.0.4",
    ),
    (
        "vm3",
        "c3000000-0000-4000-8000-000000000003",
        "fa:16:3e:00:00:03",
        "192.168.0.5",
    ),
    (
        "vm4",
        "d4000000-0000-4000-8000-000000000004",
        "fa:16:3e:00:00:04",
        "192.168.0.6",
    ),
];
const PC: &str = "192.168.0.100";

fn tap(port_id: &str) -> String {
    sp_neutron::tap_name(port_id)
}

fn rule(
    direction: Direction,
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    remote: Remote,
) -> Rule {
    Rule {
        direction,
        ethertype: EtherType::Ipv4,
        protocol,
        ports,
        icmp_type: None,
        icmp_code: None,
        remote,
    }
}

/// vm1 and vm2 in `default` (egress; ingress from the group; with `icmp`, all ICMP;
/// tcp/22), vm3 in `web` (egress only), vm4 with port security off (absent).
fn firewall(icmp: bool) -> Firewall {
    let default_rules: Vec<Rule> = [
        Some(rule(Direction::Egress, Protocol::Any, None, Remote::Any)),
        Some(rule(
            Direction::Ingress,
            Protocol::Any,
            None,
            Remote::Group(DEFAULT.parse().unwrap()),
        )),
        icmp.then(|| rule(Direction::Ingress, Protocol::Icmp, None, Remote::Any)),
        Some(rule(
            Direction::Ingress,
            Protocol::Tcp,
            Some((22, 22)),
            Remote::Any,
        )),
    ]
    .into_iter()
    .flatten()
    .collect();
    let port = |i: usize, rules: Vec<Rule>| {
        let (_, id, mac, ip) = VMS[i];
        PortFirewall {
            port_id: id.parse().unwrap(),
            device: tap(id),
            mac: mac.parse().unwrap(),
            fixed_ips: vec![ip.parse().unwrap()],
            pairs: vec![],
            dhcp_servers: vec![],
            rules,
        }
    };
    Firewall {
        ports: vec![
            port(0, default_rules.clone()),
            port(1, default_rules),
            port(
                2,
                vec![rule(Direction::Egress, Protocol::Any, None, Remote::Any)],
            ),
        ],
        sets: vec![MemberSet {
            group_id: DEFAULT.parse().unwrap(),
            ethertype: EtherType::Ipv4,
            members: vec![
                format!("{}/32", VMS[0].3).parse().unwrap(),
                format!("{}/32", VMS[1].3).parse().unwrap(),
            ],
        }],
    }
}

fn scene() {
    sandbox::enter();
    require::program("nft", "nftables");
    require::program("ping", "iputils-ping");
    scene::ip(&["link", "add", "br0", "type", "bridge"]);
    scene::ip(&["link", "set", "br0", "up"]);
    for (ns, id, mac, ip) in VMS {
        scene::netns_add(ns);
        let t = tap(id);
        scene::ip(&[
            "link", "add", &t, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        scene::ip(&["link", "set", &t, "master", "br0", "up"]);
        scene::ip(&["-n", ns, "link", "set", "eth0", "address", mac, "up"]);
        scene::ip(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    }
    scene::netns_add("pc");
    scene::ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", "pc",
    ]);
    scene::ip(&["link", "set", "uplink", "master", "br0", "up"]);
    scene::ip(&["-n", "pc", "link", "set", "eth0", "up"]);
    scene::ip(&[
        "-n",
        "pc",
        "addr",
        "add",
        &format!("{PC}/24"),
        "dev",
        "eth0",
    ]);
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

/// A TCP listener on `port` in `ns`, answering every connection (for the test's life).
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

fn load(fw: &Firewall) {
    let mut changes = Vec::new();
    sp_sg::load(fw, &mut changes).expect("load");
}

fn nft(args: &[&str]) -> String {
    require::run(Command::new("nft").args(args))
}

/// An ARP reply broadcast from `ns`'s eth0 saying `ip` is at `mac` (gratuitous: sender
/// and target address the same), written with a packet socket.
fn arp_reply(ns: &str, mac: [u8; 6], ip: std::net::Ipv4Addr) {
    in_ns(ns, move || {
        // SAFETY: plain socket calls on buffers that outlive them.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ARP as u16).to_be() as i32,
            );
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let index = libc::if_nametoindex(c"eth0".as_ptr());
            let mut frame = vec![0xff; 6];
            frame.extend(mac);
            frame.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
            frame.extend(mac);
            frame.extend(ip.octets());
            frame.extend([0xff; 6]);
            frame.extend(ip.octets());
            let mut to: libc::sockaddr_ll = std::mem::zeroed();
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
            let sent = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                sent,
                frame.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
            libc::close(fd);
        }
    })
    .join()
    .unwrap();
}

fn neighbour_known(ns: &str, ip: &str) -> bool {
    let out = scene::ip(&["-n", ns, "neigh", "show", ip]);
    out.contains("lladdr")
}

#[test]
fn security_groups_filter_bridged_packets_as_liberty_does() {
    scene();
    for (ns, ..) in VMS {
        listen(ns, 22);
        listen(ns, 8080);
    }
    listen("pc", 9000);
    // Before: everything passes.
    assert!(connects("pc", VMS[0].3, 8080), "no firewall yet");
    let fw = firewall(true);
    // Two ports first, then the third: the second load only adds (its chain, its
    // rules appended) and reads back as wanted.
    let mut two = fw.clone();
    two.ports.truncate(2);
    two.sets[0].members.truncate(1);
    load(&two);
    let mut changes = Vec::new();
    sp_sg::load(&fw, &mut changes).expect("load");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].to_string().contains("added to"), "{changes:?}");
    // br_netfilter was asked for in this namespace.
    assert_eq!(
        oracle::net_sysctl(None, "bridge/bridge-nf-call-iptables"),
        "1"
    );
    // From outside: ICMP and tcp/22 in, tcp/8080 not.
    assert!(
        oracle::pings("pc", VMS[0].3),
        "ICMP is allowed from 0.0.0.0/0"
    );
    assert!(connects("pc", VMS[0].3, 22), "tcp/22 is allowed");
    assert!(!connects("pc", VMS[0].3, 8080), "tcp/8080 is not");
    // Egress, and the replies by state (nothing lets tcp in from the PC otherwise).
    assert!(connects("vm1", PC, 9000), "egress and its replies");
    // The same group reaches any port; another group does not, but pings (ICMP from
    // anywhere).
    assert!(connects("vm2", VMS[0].3, 8080), "remote group default");
    assert!(
        !connects("vm3", VMS[0].3, 8080),
        "web is no member of default"
    );
    assert!(oracle::pings("vm3", VMS[0].3));
    // vm3 accepts nothing new; vm4 (port security off) everything.
    assert!(!connects("vm1", VMS[2].3, 22));
    assert!(connects("pc", VMS[3].3, 8080), "no firewall on vm4");

    // What we wrote reads back equal; nft sees both tables and their rules.
    let want = sp_sg::SgRules::of(&fw).unwrap();
    let cur = sp_sg::read().unwrap().expect("tables there");
    assert!(cur.matches(&want), "{:?}", cur.differences(&want));
    let mut changes = Vec::new();
    sp_sg::load(&fw, &mut changes).unwrap();
    assert!(changes.is_empty(), "nothing to do: {changes:?}");
    let json = nft(&["-j", "list", "ruleset"]);
    for table in [
        "\"family\": \"bridge\", \"name\": \"neutron-linuxbri\"",
        "\"family\": \"inet\", \"name\": \"neutron-linuxbri\"",
    ] {
        assert!(json.contains(table), "{table} not in {json}");
    }
    let text = nft(&["list", "table", "inet", "neutron-linuxbri"]);
    assert!(text.contains("tcp dport 22 return"), "{text}");
    assert!(
        text.contains("ip saddr @NIPv43b4f5e2a-8c1d-4f6e-9a7b- return"),
        "{text}"
    );
    let bridge = nft(&["list", "table", "bridge", "neutron-linuxbri"]);
    assert!(
        bridge.contains("ether saddr fa:16:3e:5d:2c:01 ip saddr 192.168.0.3 return"),
        "{bridge}"
    );

    // A rule deleted by hand is seen, and a load puts it back.
    let listed = nft(&[
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
        .expect("the tcp/22 rule and its handle")
        .trim()
        .to_owned();
    nft(&[
        "delete",
        "rule",
        "inet",
        "neutron-linuxbri",
        "ingress-1",
        "handle",
        &handle,
    ]);
    assert!(!connects("pc", VMS[0].3, 22), "the rule is gone");
    let cur = sp_sg::read().unwrap().unwrap();
    let d = cur.differences(&want);
    assert!(
        d.iter().any(
            |l| matches!(l, sp_nft::Difference::RuleMissing { family, chain, rule, .. }
                if family == "inet" && chain == "ingress-1" && rule.contains("tcp dport 22"))
        ),
        "{d:?}"
    );
    load(&fw);
    assert!(sp_sg::read().unwrap().unwrap().matches(&want));
    assert!(connects("pc", VMS[0].3, 22), "put back");

    // Without the ICMP rule, pings from outside drop; from the group they pass.
    load(&firewall(false));
    assert!(!oracle::pings("pc", VMS[0].3), "no ICMP rule");
    assert!(oracle::pings("vm2", VMS[0].3), "remote group");
    load(&fw);

    // Anti-spoofing. A forged source address (static neighbours: no ARP involved).
    let (vm1_mac, pc_mac) = (
        VMS[0].2,
        oracle::link(Some("pc"), "eth0")["address"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    scene::ip(&["-n", "vm1", "addr", "add", "192.168.0.50/32", "dev", "eth0"]);
    scene::ip(&[
        "-n",
        "vm1",
        "neigh",
        "replace",
        PC,
        "lladdr",
        &pc_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    scene::ip(&[
        "-n",
        "pc",
        "neigh",
        "replace",
        "192.168.0.50",
        "lladdr",
        vm1_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let ping_from = |src: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", "vm1", "ping", "-c1", "-W1", "-q", "-I", src, PC,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(ping_from(VMS[0].3), "its own address passes");
    assert!(
        !ping_from("192.168.0.50"),
        "a forged source address is dropped"
    );
    // A forged MAC.
    scene::ip(&[
        "-n",
        "pc",
        "neigh",
        "replace",
        VMS[0].3,
        "lladdr",
        "fa:16:3e:99:99:99",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    scene::ip(&[
        "-n",
        "vm1",
        "link",
        "set",
        "eth0",
        "address",
        "fa:16:3e:99:99:99",
    ]);
    assert!(!ping_from(VMS[0].3), "a forged MAC is dropped");
    scene::ip(&["-n", "vm1", "link", "set", "eth0", "address", vm1_mac]);
    scene::ip(&[
        "-n",
        "pc",
        "neigh",
        "replace",
        VMS[0].3,
        "lladdr",
        vm1_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    assert!(ping_from(VMS[0].3), "its own MAC again");
    // ARP: the PC learns from gratuitous replies (arp_accept); vm1's for its own address
    // arrives, the one for an address not its own does not.
    scene::ip(&[
        "netns",
        "exec",
        "pc",
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_accept",
    ]);
    let mac: sp_names::Mac = vm1_mac.parse().unwrap();
    arp_reply("vm1", mac.octets(), "192.168.0.99".parse().unwrap());
    arp_reply(
        "vm2",
        [0xfa, 0x16, 0x3e, 0, 0, 2],
        "192.168.0.4".parse().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        neighbour_known("pc", "192.168.0.4"),
        "an ARP reply for the port's own address passes"
    );
    assert!(
        !neighbour_known("pc", "192.168.0.99"),
        "an ARP reply for another address is dropped"
    );

    // Removed: everything passes again, and nothing of ours is left.
    assert!(sp_sg::remove().unwrap());
    assert!(sp_sg::read().unwrap().is_none());
    assert!(connects("pc", VMS[0].3, 8080));
    assert!(!sp_sg::remove().unwrap());
}
