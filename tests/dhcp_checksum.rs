//! The DHCP replies an instance receives carry complete UDP checksums — what Liberty's
//! `CHECKSUM --checksum-fill` rule in `qdhcp-` is for (a virtio guest drops the partial
//! ones a veth leaves): stackplumb turns the `ns-` device's transmit checksum offload
//! off. Seen on the wire by a packet socket in the instance's namespace: vm2, an
//! instance added on the controller beside dnsmasq (the same bridge: nothing on the
//! way completes a checksum), and the guide's vm1 on the compute node, whose lease
//! crosses VXLAN. With the offload turned back on by hand (`ethtool -K ns-… tx on`)
//! vm2's replies arrive with a partial checksum (the pseudo header's sum only), `apply`
//! undoes exactly that drift, and a second apply does nothing.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use sp_config::desired::{plan, NodePlan};
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;
use sp_orchestrate::{apply, Dirs};
use sp_testenv::{require, sandbox, scene};

/// The guide's nodes' plans with vm2 on the controller, without Cinder's volume group
/// (no loop devices here).
fn node_plans(state: &Path) -> Vec<NodePlan> {
    let cfg = GuideConfig::load(&sp_testenv::guide_config_dir()).unwrap();
    let mut topology = Topology::guide();
    let vm1 = topology.instances[0].clone();
    topology.instances.push(sp_config::topology::Instance {
        name: "vm2".parse().unwrap(),
        node: "controller".into(),
        port_id: "c3d2e1f0-1234-4abc-8def-0123456789ab".parse().unwrap(),
        mac: "fa:16:3e:5d:2c:02".parse().unwrap(),
        ip: "192.168.0.4".parse().unwrap(),
        floating_ip: None,
        ..vm1
    });
    let mut plans = plan(&topology, &cfg, state).unwrap();
    for p in &mut plans {
        p.cinder = None;
    }
    plans
}

/// The DHCP port's device and namespace: (`ns-…`, `qdhcp-…`).
fn dhcp_port(controller: &NodePlan) -> (String, String) {
    let p = controller
        .ports
        .iter()
        .find(|p| p.kind == sp_neutron::PortKind::Dhcp)
        .expect("the controller's DHCP port");
    (p.kind.device(p.port_id.as_str()), p.namespace.to_string())
}

/// `ethtool -k DEV` in namespace `ns`: `tx-checksumming`.
fn tx_checksumming((dev, ns): &(String, String)) -> String {
    let out = require::run(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-k", dev]));
    out.lines()
        .find_map(|l| l.strip_prefix("tx-checksumming: "))
        .unwrap_or_else(|| panic!("tx-checksumming in {out}"))
        .trim()
        .to_owned()
}

/// One's complement sum of `data` as big-endian 16-bit words, folded.
fn fold(mut sum: u32, data: &[u8]) -> u16 {
    for w in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A DHCP reply as it arrived: the UDP checksum field, the folded sum of the pseudo
/// header alone, and the folded sum over pseudo header and datagram (0xffff when the
/// checksum is complete and right).
#[derive(Debug)]
struct Reply {
    check: u16,
    pseudo: u16,
    total: u16,
}

impl Reply {
    /// An IPv4 frame from a packet socket, if it is UDP 67 → 68.
    fn of(frame: &[u8]) -> Option<Reply> {
        let ip = frame.get(14..)?;
        if frame[12..14] != [0x08, 0x00] || ip[0] >> 4 != 4 || ip[9] != 17 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let udp = ip.get(ihl..total_len)?;
        if udp.len() < 8 || udp[0..2] != 67u16.to_be_bytes() || udp[2..4] != 68u16.to_be_bytes() {
            return None;
        }
        let mut pseudo = Vec::from(&ip[12..20]);
        pseudo.extend([0, 17]);
        pseudo.extend((udp.len() as u16).to_be_bytes());
        let pseudo_sum = fold(0, &pseudo);
        Some(Reply {
            check: u16::from_be_bytes([udp[6], udp[7]]),
            pseudo: pseudo_sum,
            total: fold(u32::from(pseudo_sum), udp),
        })
    }

    fn complete(&self) -> bool {
        self.check != 0 && self.total == 0xffff
    }

    /// What a transmit checksum offload leaves for the NIC: the pseudo header's sum.
    fn partial(&self) -> bool {
        self.check == self.pseudo && self.total != 0xffff
    }
}

/// A packet socket for every frame, opened in namespace `vm`.
fn capture_in(vm: &str) -> OwnedFd {
    let ns = netns::open(&netns::named_path(vm).unwrap()).unwrap();
    netns::run_in_each(&[ns], |_| {
        let proto = i32::from((libc::ETH_P_ALL as u16).to_be());
        // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(sp_kernel::Error::io(
                format!("packet socket in {vm}"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .pop()
    .unwrap()
    .unwrap()
}

/// Instance `vm` asks for its lease (udhcpc) and gets address `ip` with MTU 1450; the
/// DHCP replies that reached its eth0 meanwhile.
fn lease_and_replies(state: &Path, vm: &str, ip: &str) -> Vec<Reply> {
    let sock = capture_in(vm);
    let lease = scene::dhcp_lease(state, vm, "eth0");
    assert_eq!(
        (lease.ip.as_str(), lease.mtu.as_str()),
        (ip, "1450"),
        "{vm}'s lease"
    );
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: `buf` is writable for its length for the call.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
            break;
        }
        replies.extend(Reply::of(&buf[..n as usize]));
    }
    // OFFER and ACK at least.
    assert!(replies.len() >= 2, "DHCP replies seen in {vm}: {replies:?}");
    replies
}

fn apply_on(p: &NodePlan, dirs: &Dirs) -> Vec<String> {
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
    applied.done.iter().map(|a| a.to_string()).collect()
}

#[test]
fn dhcp_replies_reach_the_instance_with_complete_udp_checksums() {
    sandbox::enter();
    for (prog, pkg) in [
        ("dnsmasq", "dnsmasq-base"),
        ("udhcpc", "udhcpc"),
        ("ethtool", "ethtool"),
    ] {
        require::program(prog, pkg);
    }
    scene::guide_hosts();
    let state = std::env::temp_dir().join(format!("sp-dhcp-checksum-{}", std::process::id()));
    let _cleanup = sp_testenv::nodes::Cleanup::new(state.clone());
    let plans = node_plans(&state);
    let mut dirs = Dirs::new(state.clone(), state.join("cinder"));
    // The metadata proxy is `stackplumb metadata-proxy`, not this test binary.
    dirs.program = sp_testenv::workspace_bin("stackplumb");
    for p in &plans {
        apply_on(p, &dirs);
    }
    let controller = plans.iter().find(|p| p.node == "controller").unwrap();
    let port = dhcp_port(controller);
    let (dev, ns) = &port;

    // Applied: the offload is off, and every reply an instance sees is complete and
    // right — beside dnsmasq and across VXLAN.
    assert_eq!(tx_checksumming(&port), "off");
    let replies = lease_and_replies(&state, "vm2", "192.168.0.4");
    assert!(replies.iter().all(Reply::complete), "{replies:#x?}");
    let replies = lease_and_replies(&state, "vm1", "192.168.0.3");
    assert!(replies.iter().all(Reply::complete), "{replies:#x?}");

    // By hand, as the kernel makes a veth: the replies arrive partial.
    require::run(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", dev, "tx", "on"]));
    assert_eq!(tx_checksumming(&port), "on");
    let replies = lease_and_replies(&state, "vm2", "192.168.0.4");
    assert!(replies.iter().all(Reply::partial), "{replies:#x?}");

    // The drift is one action, and apply undoes exactly it; then nothing is left to do.
    let done = apply_on(controller, &dirs);
    assert_eq!(
        done,
        [format!("~ link {dev} in {ns} tx-checksum on -> off")]
    );
    assert_eq!(tx_checksumming(&port), "off");
    let replies = lease_and_replies(&state, "vm2", "192.168.0.4");
    assert!(replies.iter().all(Reply::complete), "{replies:#x?}");
    assert_eq!(apply_on(controller, &dirs), Vec::<String>::new());
}
