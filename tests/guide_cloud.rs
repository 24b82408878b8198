//! The guide's two-node cloud realised in a sandbox from the guide's own files and the
//! built-in topology, then checked the way the guide checks it (10-4, 10-5): vm1 on the
//! compute node gets its address from dnsmasq on the controller across VXLAN with MTU
//! 1450, pings its router, reaches the external PC through NAT, and is reached on its
//! floating IP. Realising again changes nothing; taking down leaves nothing of ours.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sp_config::desired::{plan, NodePlan};
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;
use sp_orchestrate::{apply, take_down, Dirs};
use sp_testenv::scene::{self, ip};
use sp_testenv::{oracle, require, sandbox};

/// Ends the dnsmasq the state directory names, also when the test fails midway.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dev in sp_testenv::lvm::bound_under(&self.0) {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        for pid in glob_pids(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pids of dnsmasq and of the metadata proxies the state directory names.
fn glob_pids(state: &Path) -> Vec<String> {
    let dnsmasq = std::fs::read_dir(state.join("dhcp"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("pid")).ok());
    let proxies = std::fs::read_dir(state.join("stackplumb"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok());
    dnsmasq
        .chain(proxies)
        .map(|p| p.trim().to_owned())
        .collect()
}

fn node_plans(state: &Path) -> Vec<NodePlan> {
    let cfg = GuideConfig::load(&sp_testenv::guide_config_dir()).unwrap();
    plan(&Topology::guide(), &cfg, state).unwrap()
}

#[test]
fn the_guides_cloud_works_end_to_end() {
    sandbox::enter();
    for (prog, pkg) in [
        ("dnsmasq", "dnsmasq-base"),
        ("udhcpc", "udhcpc"),
        ("ping", "iputils-ping"),
    ] {
        require::program(prog, pkg);
    }
    // Two nodes and the external PC (the ext-net gateway 10.0.0.1) on one segment.
    scene::guide_hosts();
    let state = std::env::temp_dir().join(format!("sp-orchestrate-{}", std::process::id()));
    let _cleanup = Cleanup(state.clone());
    let plans = node_plans(&state);
    let mut dirs = Dirs::new(state.clone(), state.join("cinder"));
    // The metadata proxy is the stackplumb binary's, not this test's.
    dirs.program = sp_testenv::workspace_bin("stackplumb");
    let dirs = &dirs;
    let state = state.as_path();

    for p in &plans {
        let applied = Netlink::block_on_in(&p.node, async |nl| {
            apply(&nl, p, dirs, &mut |_| {}).await.unwrap()
        })
        .unwrap();
        assert!(!applied.done.is_empty(), "{} changed nothing", p.node);
        assert!(
            applied.left.is_empty(),
            "{}: left {:?}",
            p.node,
            applied.left
        );
    }
    // Cinder's volume group on loop files, as lvm2 sees it: 20G less the metadata area.
    let lvm = sp_testenv::lvm::Lvm::new(sp_testenv::lvm::bound_under(&state.join("cinder")));
    let vg = lvm.vgs("cinder-volumes");
    let size = sp_testenv::lvm::num(&vg, "vg_size");
    assert!(
        size <= 20 << 30 && size > (20 << 30) - (8 << 20),
        "vg_size {size}"
    );
    lvm.check("cinder-volumes").unwrap();

    // The controller's eth0 is ext-net's uplink now: its address moved to the bridge.
    let ext_br = oracle::link(Some("controller"), "brq78983ca2-77");
    assert_eq!(
        oracle::link(Some("controller"), "eth0")["master"],
        "brq78983ca2-77"
    );
    assert_eq!(ext_br["operstate"], "UP");

    // 10-5: vm1 asks DHCP — dnsmasq is on the controller, vm1 on compute.
    let lease = scene::dhcp_lease(state, "vm1", "eth0");
    assert_eq!(
        (
            lease.ip.as_str(),
            lease.mask.as_str(),
            lease.mtu.as_str(),
            lease.router.as_str()
        ),
        ("192.168.0.3", "24", "1450", "192.168.0.1"),
        "address, MTU 1450 (option 26), router"
    );
    // What vm1's DHCP client would configure.
    ip(&["-n", "vm1", "addr", "add", "192.168.0.3/24", "dev", "eth0"]);
    ip(&["-n", "vm1", "link", "set", "eth0", "mtu", "1450"]);
    ip(&["-n", "vm1", "route", "add", "default", "via", "192.168.0.1"]);
    assert!(
        oracle::pings("vm1", "192.168.0.1"),
        "vm1 reaches its router across VXLAN"
    );
    assert!(
        oracle::pings("vm1", "10.0.0.1"),
        "vm1 reaches the external PC through NAT"
    );
    assert!(
        oracle::pings("extpc", "10.0.0.201"),
        "the external PC reaches vm1 on its floating IP"
    );
    assert!(
        oracle::pings("extpc", "10.0.0.200"),
        "10-4: the router's gateway answers"
    );

    // Realising again changes nothing — by our own account, and by the kernel's: an
    // `ip monitor` in every namespace of ours sees no event while it runs. The
    // kernel's own delayed work from the first run (IPv6 DAD, link watch) is waited
    // out first: the monitors must have been quiet for 1.5 s.
    let mut watched = oracle::netns_list();
    watched.retain(|n| n != "extpc");
    let events: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut monitors = Vec::new();
    for ns in &watched {
        let mut child = Command::new("ip")
            .args([
                "-n", ns, "monitor", "link", "address", "route", "neigh", "netconf", "nsid",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (events, ns) = (events.clone(), ns.clone());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                events
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("{ns}: {line}")));
            }
        });
        monitors.push(child);
    }
    let started = Instant::now();
    loop {
        let last = events.lock().unwrap().last().map_or(started, |e| e.0);
        if last.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the namespaces never went quiet"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    for p in &plans {
        let again = Netlink::block_on_in(&p.node, async |nl| {
            apply(&nl, p, dirs, &mut |_| {}).await.unwrap()
        })
        .unwrap();
        assert!(again.done.is_empty(), "{}: {:?}", p.node, again.done);
    }
    std::thread::sleep(Duration::from_millis(300));
    for mut m in monitors {
        m.kill().unwrap();
        m.wait().unwrap();
    }
    let during: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.0 >= t0)
        .map(|e| e.1.clone())
        .collect();
    assert!(
        during.is_empty(),
        "kernel changes on a second realise:\n{}",
        during.join("\n")
    );

    // Taking down leaves nothing of ours: namespaces, links, dnsmasq.
    let pids = glob_pids(state);
    for p in plans.iter().rev() {
        Netlink::block_on_in(&p.node, async |nl| {
            take_down(&nl, p, dirs, true, &mut |_| {}).await.unwrap()
        })
        .unwrap();
    }
    let mut left = oracle::netns_list();
    left.sort();
    assert_eq!(left, ["compute", "controller", "extpc"]);
    for node in ["controller", "compute"] {
        let links: Vec<String> = oracle::links(Some(node))
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(links, ["lo", "eth0"], "{node}");
    }
    let addrs = oracle::addrs(Some("controller"));
    let eth0 = addrs.iter().find(|l| l["ifname"] == "eth0").unwrap();
    assert!(
        eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.0.0.101"),
        "uplink address back on eth0"
    );
    assert!(
        sp_testenv::lvm::bound_under(&state.join("cinder")).is_empty(),
        "loop devices released"
    );
    assert!(!state.join("cinder/cinder-volumes").exists(), "purged");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "dnsmasq {pid} still runs"
        );
    }
}
