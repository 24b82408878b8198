//! A real dnsmasq, run by sp-dhcp in the controller's qdhcp namespace, hands vm1 on the
//! compute node its address across VXLAN, with the MTU 1450 of the guide's
//! `dhcp-option-force=26,1450`; reloads on change, comes back after it died, stops.

use std::path::PathBuf;
use std::process::Command;

use sp_dhcp::{ensure, status, stop, State};
use sp_neutron::dhcp::{DhcpHost, DhcpSubnet, Dnsmasq};
use sp_testenv::scene::{self, ip, netns_add};
use sp_testenv::{require, sandbox};

const QDHCP: &str = "qdhcp-5b6a8b87-fd03-46b5-a968-72bac5091b7c";
const BR: &str = "brq5b6a8b87-fd";

/// Two nodes on one segment, each with the network's bridge and vxlan-1 flooding to
/// the other; the controller's qdhcp port and the compute node's vm1.
fn two_nodes() {
    scene::nodes_on_segment(&[
        ("controller", "10.0.0.101/24"),
        ("compute", "10.0.0.102/24"),
    ]);
    for (node, other) in [("controller", "10.0.0.102"), ("compute", "10.0.0.101")] {
        ip(&[
            "-n",
            node,
            "link",
            "add",
            BR,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&[
            "-n", node, "link", "add", "vxlan-1", "type", "vxlan", "id", "1", "dev", "eth0",
            "dstport", "0",
        ]);
        ip(&["-n", node, "link", "set", "vxlan-1", "master", BR, "up"]);
        ip(&["-n", node, "link", "set", BR, "up"]);
        require::run(Command::new("bridge").args([
            "-n",
            node,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vxlan-1",
            "dst",
            other,
        ]));
    }
    netns_add(QDHCP);
    ip(&[
        "-n",
        "controller",
        "link",
        "add",
        "tapb5cfa271-71",
        "mtu",
        "1450",
        "master",
        BR,
        "up",
        "type",
        "veth",
        "peer",
        "name",
        "ns-b5cfa271-71",
        "netns",
        QDHCP,
        "mtu",
        "1450",
    ]);
    ip(&[
        "-n",
        QDHCP,
        "addr",
        "add",
        "192.168.0.2/24",
        "dev",
        "ns-b5cfa271-71",
    ]);
    ip(&["-n", QDHCP, "link", "set", "ns-b5cfa271-71", "up"]);
    netns_add("vm1");
    ip(&[
        "-n",
        "compute",
        "link",
        "add",
        "tapa7b1762b-3b",
        "mtu",
        "1450",
        "master",
        BR,
        "up",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        "vm1",
        "address",
        "fa:16:3e:5d:2c:01",
    ]);
    ip(&["-n", "vm1", "link", "set", "eth0", "up"]);
}

fn dnsmasq(dir: &std::path::Path, conf: PathBuf, hosts: Vec<DhcpHost>) -> Dnsmasq {
    Dnsmasq {
        network_id: "5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
        dir: dir.join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c"),
        interface: "ns-b5cfa271-71".into(),
        subnets: vec![DhcpSubnet {
            cidr: "192.168.0.0/24".parse().unwrap(),
            gateway: Some("192.168.0.1".parse().unwrap()),
            dns_nameservers: vec!["8.8.8.8".parse().unwrap()],
            isolated: false,
            dhcp_ip: "192.168.0.2".parse().unwrap(),
        }],
        hosts,
        conf_file: Some(conf),
        isolated_metadata: true,
    }
}

/// Ends whatever dnsmasq the test's state directory names and removes the directory,
/// also when the test fails midway (a dnsmasq left running would pin the sandbox).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pid_file = self.0.join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c/pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What udhcpc in vm1 was offered: "ip mtu router dns".
fn lease(dir: &std::path::Path) -> String {
    let l = scene::dhcp_lease(dir, "vm1", "eth0");
    format!("{} {} {} {}", l.ip, l.mtu, l.router, l.dns)
}

#[test]
fn vm1_gets_its_lease_across_vxlan_with_mtu_1450() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    require::program("udhcpc", "udhcpc");
    two_nodes();
    let dir = std::env::temp_dir().join(format!("sp-dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let conf = dir.join("dnsmasq-neutron.conf");
    std::fs::write(&conf, "dhcp-option-force=26,1450\n").unwrap();
    let vm1 = DhcpHost {
        mac: "fa:16:3e:5d:2c:01".into(),
        ip: "192.168.0.3".parse().unwrap(),
    };
    let d = dnsmasq(&dir, conf.clone(), vec![vm1.clone()]);

    let mut changes = vec![];
    let pid = ensure(&d, QDHCP, &mut changes).unwrap();
    assert!(
        changes.iter().any(|c| c.action.starts_with("started")),
        "{changes:?}"
    );
    assert_eq!(status(&d, QDHCP).unwrap(), State::Running(pid));
    let ns_of = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(
        ns_of(&format!("/proc/{pid}/ns/net")),
        ns_of(&format!("/run/netns/{QDHCP}")),
        "dnsmasq runs in qdhcp"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert_eq!(cmdline.trim(), d.argv().join(" "));

    assert_eq!(lease(&dir), "192.168.0.3 1450 192.168.0.1 8.8.8.8");

    // Same configuration: nothing to do.
    let mut again = vec![];
    assert_eq!(ensure(&d, QDHCP, &mut again).unwrap(), pid);
    assert!(again.is_empty(), "{again:?}");

    // vm1's port gets another address: files rewritten, dnsmasq reloaded (same pid).
    let moved = dnsmasq(
        &dir,
        conf.clone(),
        vec![DhcpHost {
            ip: "192.168.0.7".parse().unwrap(),
            ..vm1.clone()
        }],
    );
    let mut reload = vec![];
    assert_eq!(ensure(&moved, QDHCP, &mut reload).unwrap(), pid);
    assert!(
        reload.iter().any(|c| c.action.starts_with("reloaded")),
        "{reload:?}"
    );
    assert_eq!(lease(&dir).split(' ').next(), Some("192.168.0.7"));

    // It dies: the next ensure starts it again.
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(status(&moved, QDHCP).unwrap(), State::Dead);
    let mut restart = vec![];
    let pid2 = ensure(&moved, QDHCP, &mut restart).unwrap();
    assert_ne!(pid2, pid);
    assert!(
        restart.iter().any(|c| c.action.starts_with("restarted")),
        "{restart:?}"
    );
    assert_eq!(lease(&dir).split(' ').next(), Some("192.168.0.7"));

    let mut stopped = vec![];
    stop(&moved, QDHCP, &mut stopped).unwrap();
    assert!(
        !PathBuf::from(format!("/proc/{pid2}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid2}/stat"))
                .unwrap()
                .contains(") Z")
    );
    assert!(!moved.dir.exists());
}

#[test]
fn a_bad_configuration_says_why_dnsmasq_did_not_start() {
    sandbox::enter();
    require::program("dnsmasq", "dnsmasq-base");
    netns_add(QDHCP);
    let dir = std::env::temp_dir().join(format!("sp-dhcp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    // No ns- device in the namespace: dnsmasq cannot bind.
    let d = dnsmasq(&dir, dir.join("missing.conf"), vec![]);
    let err = ensure(&d, QDHCP, &mut vec![]).unwrap_err().to_string();
    assert!(
        err.starts_with("dnsmasq for network 5b6a8b87-fd03-46b5-a968-72bac5091b7c did not start: "),
        "{err}"
    );
    assert!(
        err.contains("missing.conf"),
        "dnsmasq's own reason is passed on: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
