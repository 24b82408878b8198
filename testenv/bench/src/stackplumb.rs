//! The guide's topology scaled to N tenant networks with a router each, realised on the
//! controller by stackplumb's orchestration and, side by side, the same kernel objects
//! made by iproute2 (one process per command as the agents did, and `ip -batch`), with
//! the L3 agent's `iptables-restore` per router in every form; the `ip -batch` scene is
//! then taken down by one `ip link del group`, the kernel's own batch, beside our
//! destroy. Tenant networks have DHCP off here, so no dnsmasq runs: the comparison is
//! about the kernel objects.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sp_config::desired::{plan, NodePlan};
use sp_config::topology::{Network, NetworkType, Router, RouterPort, Subnet, Topology};
use sp_config::GuideConfig;
use sp_kernel::netlink::Netlink;
use sp_neutron::{bridge_name, qrouter_namespace, tap_name, PortKind};
use sp_orchestrate::{apply, take_down, Dirs};
use sp_testenv::require;
use sp_testenv::scene::{self, ip};

use sp_names::NeutronId;

use crate::netns_inspect::ip_batch;

/// A Neutron-style id whose first 11 characters (what device names keep) differ per
/// kind and index.
fn id(kind: u32, i: usize) -> NeutronId {
    NeutronId::new(format!("{kind:04x}{i:04x}-0000-4000-8000-000000000000")).expect("a UUID")
}

/// The first three octets of tenant network `i`'s /24 (172.16.0 … 172.31.255).
fn tenant(i: usize) -> String {
    format!("172.{}.{}", 16 + i / 256, i % 256)
}

/// Router `i`'s gateway address on ext-net (10.0.0.0/16, from 10.0.2.1 up).
fn external(i: usize) -> String {
    let k = 2 * 256 + i + 1;
    format!("10.0.{}.{}", k / 256, k % 256)
}

/// The guide's cloud with `n` tenant networks (`tenant(i)`.0/24, VNI i+1), each behind a
/// router of its own whose gateway sits on ext-net (10.0.0.0/16 here, to fit n routers).
fn topology(n: usize) -> Topology {
    let mut t = Topology::guide();
    t.instances.clear();
    t.cinder = None;
    t.networks[0].subnet.cidr = "10.0.0.0/16".parse().unwrap();
    t.networks.truncate(1);
    t.routers.clear();
    for i in 0..n {
        let net = format!("net{i}");
        t.networks.push(Network {
            name: net.clone(),
            id: id(1, i),
            network_type: NetworkType::Vxlan,
            physical_network: None,
            segmentation_id: Some(i as u32 + 1),
            external: false,
            subnet: Subnet {
                cidr: format!("{}.0/24", tenant(i)).parse().unwrap(),
                gateway: Some(format!("{}.1", tenant(i)).parse().unwrap()),
                enable_dhcp: false,
                dns_nameservers: vec![],
                allocation_pools: vec![],
            },
        });
        t.routers.push(Router {
            name: format!("router{i}"),
            id: id(2, i),
            gateway: Some(RouterPort {
                network: "ext-net".into(),
                ip: external(i).parse().unwrap(),
                port_id: id(3, i),
                mac: None,
            }),
            interfaces: vec![RouterPort {
                network: net,
                ip: format!("{}.1", tenant(i)).parse().unwrap(),
                port_id: id(4, i),
                mac: None,
            }],
        });
    }
    t
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The same kernel objects as ours on the controller, as `ip` command lines: the
/// namespaces to add (run without `-n`: `ip -n X netns add` would mount the new
/// namespace in a private mount namespace of its own), the host's lines (run with
/// `-n controller`), and per router its namespace's lines.
type IpLines = (Vec<String>, Vec<String>, Vec<(String, Vec<String>)>);

/// The external network's bridge in the iproute2 scenes (`bridge_name` of ext-net's id).
const EXT_BR: &str = "brq78983ca2-77";

fn ip_lines(n: usize, in_place: bool) -> IpLines {
    let ext_br = EXT_BR;
    let mut host = vec![
        format!("link add {ext_br} type bridge forward_delay 0 stp_state 0"),
        format!("link set {ext_br} up"),
        format!("addr add 10.0.0.101/16 dev {ext_br}"),
        format!("route replace default via 10.0.0.1 dev {ext_br} metric 100"),
        "route del default via 10.0.0.1 dev eth0".to_owned(),
        "addr del 10.0.0.101/16 dev eth0".to_owned(),
        format!("link set eth0 master {ext_br}"),
    ];
    let mut inside = Vec::new();
    let mut namespaces = Vec::new();
    for i in 0..n {
        let br = bridge_name(&id(1, i));
        let ns = qrouter_namespace(&id(2, i));
        let vx = format!("vxlan-{}", i + 1);
        host.push(format!(
            "link add {br} type bridge forward_delay 0 stp_state 0"
        ));
        host.push(format!("link set {br} up"));
        host.push(format!(
            "link add {vx} type vxlan id {} dev {ext_br} dstport 0 proxy",
            i + 1
        ));
        host.push(format!("link set {vx} master {br} up"));
        namespaces.push(format!("netns add {ns}"));
        for (port, kind, bridge) in [
            (id(4, i), PortKind::RouterInternal, &br),
            (id(3, i), PortKind::RouterGateway, &ext_br.to_owned()),
        ] {
            let (tap, dev) = (tap_name(&port), kind.device(&port));
            if in_place {
                host.push(format!(
                    "link add {tap} master {bridge} up type veth peer name {dev} netns {ns}"
                ));
            } else {
                host.push(format!("link add {tap} type veth peer name {dev}"));
                host.push(format!("link set {dev} netns {ns}"));
                host.push(format!("link set {tap} master {bridge} up"));
            }
        }
        let (qr, qg) = (
            PortKind::RouterInternal.device(&id(4, i)),
            PortKind::RouterGateway.device(&id(3, i)),
        );
        inside.push((
            ns,
            vec![
                "link set lo up".to_owned(),
                format!("link set {qr} up"),
                format!("link set {qg} up"),
                format!("addr add {}.1/24 dev {qr}", tenant(i)),
                format!("addr add {}/16 dev {qg}", external(i)),
                format!("route replace default via 10.0.0.1 dev {qg}"),
            ],
        ));
    }
    (namespaces, host, inside)
}

/// What the L3 agent adds per router besides `ip`: ip_forward and the NAT rules.
fn router_extras(plans: &NodePlan) {
    for r in &plans.routers {
        let rules = r.nat.iptables_restore();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &r.namespace,
                "sh",
                "-c",
                "sysctl -qw net.ipv4.ip_forward=1 && iptables-restore",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
}

fn per_command(n: usize, plan: &NodePlan) -> Duration {
    let (namespaces, host, inside) = ip_lines(n, false);
    timed(|| {
        for l in &namespaces {
            ip(&l.split(' ').collect::<Vec<_>>());
        }
        for l in &host {
            let mut args = vec!["-n", "controller"];
            args.extend(l.split(' '));
            ip(&args);
        }
        for (ns, lines) in &inside {
            for l in lines {
                let mut args = vec!["-n", ns.as_str()];
                args.extend(l.split(' '));
                ip(&args);
            }
        }
        router_extras(plan);
    })
}

fn batch(n: usize, plan: &NodePlan, in_place: bool) -> Duration {
    let (namespaces, host, inside) = ip_lines(n, in_place);
    timed(|| {
        ip_batch(None, &(namespaces.join("\n") + "\n"));
        ip_batch(Some("controller"), &(host.join("\n") + "\n"));
        for (ns, lines) in &inside {
            ip_batch(Some(ns), &(lines.join("\n") + "\n"));
        }
        router_extras(plan);
    })
}

/// Back to the scene: namespaces of ours gone, the controller's links and eth0's
/// address and default route as before.
fn reset(n: usize) {
    for i in 0..n {
        let _ = Command::new("ip")
            .args(["netns", "del", &qrouter_namespace(&id(2, i))])
            .stderr(Stdio::null())
            .status();
    }
    let mut lines = vec!["link set eth0 nomaster".to_owned()];
    for i in 0..n {
        lines.push(format!("link del {}", bridge_name(&id(1, i))));
        lines.push(format!("link del vxlan-{}", i + 1));
    }
    lines.push(format!("link del {EXT_BR}"));
    let _ = Command::new("ip")
        .args(["-n", "controller", "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all((lines.join("\n") + "\n").as_bytes())?;
            c.wait()
        });
    let _ = Command::new("ip")
        .args([
            "-n",
            "controller",
            "addr",
            "replace",
            "10.0.0.101/16",
            "dev",
            "eth0",
        ])
        .status();
    let _ = Command::new("ip")
        .args([
            "-n",
            "controller",
            "route",
            "replace",
            "default",
            "via",
            "10.0.0.1",
            "dev",
            "eth0",
        ])
        .status();
}

/// The `ip -batch` scene taken down the fastest way iproute2 has: eth0 given back its
/// address and route, every link of ours marked with one group, one `ip link del group`,
/// the namespaces deleted — the same kernel work as our destroy. Returns the whole and
/// the `ip link del group` alone: the kernel's one RTM_DELLINK of those links, most of
/// any destroy here (every bridge unregistered waits out an RCU grace period).
fn teardown_group(n: usize) -> (Duration, Duration) {
    let mut marks = vec![
        "link set eth0 nomaster".to_owned(),
        "addr replace 10.0.0.101/16 dev eth0".to_owned(),
        "route replace default via 10.0.0.1 dev eth0".to_owned(),
        format!("link set {EXT_BR} group 99"),
    ];
    for i in 0..n {
        for link in [
            bridge_name(&id(1, i)),
            format!("vxlan-{}", i + 1),
            tap_name(&id(4, i)),
            tap_name(&id(3, i)),
        ] {
            marks.push(format!("link set {link} group 99"));
        }
    }
    let namespaces: Vec<String> = (0..n)
        .map(|i| format!("netns del {}", qrouter_namespace(&id(2, i))))
        .collect();
    let mut dellink = Duration::ZERO;
    let all = timed(|| {
        ip_batch(Some("controller"), &(marks.join("\n") + "\n"));
        dellink = timed(|| {
            ip(&["-n", "controller", "link", "del", "group", "99"]);
        });
        ip_batch(None, &(namespaces.join("\n") + "\n"));
    });
    (all, dellink)
}

fn teardown_per_command(n: usize) -> Duration {
    timed(|| {
        for i in 0..n {
            ip(&["-n", "controller", "link", "del", &tap_name(&id(4, i))]);
            ip(&["-n", "controller", "link", "del", &tap_name(&id(3, i))]);
            ip(&[
                "-n",
                "controller",
                "link",
                "del",
                &format!("vxlan-{}", i + 1),
            ]);
            ip(&["-n", "controller", "link", "del", &bridge_name(&id(1, i))]);
            ip(&["netns", "del", &qrouter_namespace(&id(2, i))]);
        }
    })
}

pub fn run(n: usize, runs: usize) {
    if !crate::in_sandbox_child("stackplumb", n, runs) {
        return;
    }
    require::program("iptables-restore", "iptables");
    scene::nodes_on_segment(&[
        ("controller", "10.0.0.101/16"),
        ("compute", "10.0.0.102/16"),
        ("extpc", "10.0.0.1/16"),
    ]);
    ip(&[
        "-n",
        "controller",
        "route",
        "add",
        "default",
        "via",
        "10.0.0.1",
    ]);
    let work = std::env::temp_dir().join(format!("sp-bench-stackplumb-{}", std::process::id()));
    sp_config::guide::write_guide_files(&work.join("etc")).unwrap();
    let cfg = GuideConfig::load(&work.join("etc")).unwrap();
    // The stackplumb binary beside this bench: the operator's re-apply below, and
    // the metadata proxy (not this bench's executable).
    let cli = crate::sibling_bin("stackplumb");
    let mut dirs = Dirs::new(work.join("state"), work.join("cinder"));
    dirs.program = cli.clone();
    let plans = plan(&topology(n), &cfg, &dirs.state).unwrap();
    let controller = plans.iter().find(|p| p.node == "controller").unwrap();

    // The same re-apply as an operator runs it: the stackplumb binary, a new process,
    // reading the files and the topology.
    let topo = work.join("topology.toml");
    std::fs::write(&topo, toml::to_string(&topology(n)).unwrap()).unwrap();
    // Called on the thread `block_on_in` moved into the controller's namespace: a child
    // starts in its parent thread's namespaces, so the binary runs there without
    // `nsenter` (1.4 ms of its own exec) and std still spawns it with vfork (entering
    // between fork and exec, `netns::command_in`, makes std fork this 200 MB process:
    // 9.1 against 1.4 ms for /bin/true).
    let ours = Binary {
        program: cli.clone(),
        config: work.join("etc"),
        topology: topo.clone(),
        state: dirs.state.clone(),
        cinder: dirs.cinder.clone(),
    };
    let cli_reapply = || ours.run("apply", Some("node controller: no change"));
    let cli_plan = || ours.run("plan", Some("node controller: nothing to do"));
    // The code the issues measured their targets on, on the same scene between our
    // rounds: its own state, and the topology without what it did not know (security
    // groups).
    let issue = issue_code(&work, n);

    let (apply, reapply, cli_times, destroy, theirs) =
        Netlink::block_on_in("controller", async |nl| {
            let t = Instant::now();
            apply(&nl, controller, &dirs, &mut |_| {}).await.unwrap();
            let applied = t.elapsed();
            let cli_first = cli_reapply();
            // The first re-apply right after the apply, then nine more.
            let mut reapply = Vec::new();
            for _ in 0..10 {
                let t = Instant::now();
                let again = apply(&nl, controller, &dirs, &mut |_| {}).await.unwrap();
                reapply.push(t.elapsed());
                assert!(again.done.is_empty(), "{:?}", again.done);
            }
            let mut cli_times = vec![cli_first];
            cli_times.extend((0..9).map(|_| cli_reapply()));
            let plan_times: Vec<Duration> = (0..10).map(|_| cli_plan()).collect();
            let plan_median = median(&plan_times);
            let t = Instant::now();
            take_down(&nl, controller, &dirs, true, &mut |_| {})
                .await
                .unwrap();
            let mut applies = vec![applied];
            let mut destroys = vec![t.elapsed()];
            let mut theirs = IssueTimes::default();
            // More rounds of apply and destroy on the same scene, each followed by one of the
            // issue's code: one sample of this kernel work spreads by a third from run to run
            // here, and the machine's speed from hour to hour.
            settle();
            theirs.round(&issue, true);
            for _ in 1..ROUNDS {
                settle();
                let t = Instant::now();
                apply(&nl, controller, &dirs, &mut |_| {}).await.unwrap();
                applies.push(t.elapsed());
                let t = Instant::now();
                take_down(&nl, controller, &dirs, true, &mut |_| {})
                    .await
                    .unwrap();
                destroys.push(t.elapsed());
                settle();
                theirs.round(&issue, false);
            }
            (applies, reapply, (cli_times, plan_median), destroys, theirs)
        })
        .expect("the bench scene's controller namespace");
    let cmd = per_command(n, controller);
    let cmd_down = teardown_per_command(n);
    reset(n);
    let mv = batch(n, controller, false);
    reset(n);
    let inplace = batch(n, controller, true);
    let (group_down, dellink) = teardown_group(n);
    reset(n);
    crate::report(
        &format!(
            "stackplumb apply: {n} tenant networks with a router each (controller), median of {ROUNDS}: {}",
            all_values(&apply)
        ),
        median(&apply),
        &[("ip/cmd", cmd), ("batch mv", mv), ("batch in", inplace)],
    );
    println!(
        "  re-apply, no change (target < 50 ms): {}",
        first_then_median(&reapply)
    );
    let (cli_times, plan_median) = cli_times;
    println!(
        "  the same by `stackplumb apply` (a new process, files and topology read; target ≤ 25 ms at 100): {}",
        first_then_median(&cli_times)
    );
    println!(
        "  `stackplumb plan` (a new process, nothing to do): median {:.1} ms of 10",
        plan_median.as_secs_f64() * 1e3
    );
    crate::record_scale(
        n,
        &[("plan", plan_median), ("re-apply", median(&cli_times[1..]))],
    );
    crate::report(
        &format!(
            "stackplumb destroy: {n} networks, median of {ROUNDS}: {}",
            all_values(&destroy)
        ),
        median(&destroy),
        &[("ip/cmd", cmd_down), ("ip group", group_down)],
    );
    println!(
        "  of `ip group`, the one `ip link del group` (the kernel's one RTM_DELLINK of those links): {:.1} ms; ours is {:.2}x of it",
        dellink.as_secs_f64() * 1e3,
        median(&destroy).as_secs_f64() / dellink.as_secs_f64()
    );
    let (theirs_reapply, ms) = (median(&theirs.reapplies[1..]), |d: Duration| {
        d.as_secs_f64() * 1e3
    });
    println!(
        "the issues' code (3952bd7), on the same scene after each of our rounds (targets at 100):"
    );
    println!(
        "  apply, median of {ROUNDS}: {:.1} ms ({}); ours is {:.1}x faster (issue 17: >= 5x; issue 12: no slower)",
        ms(median(&theirs.applies)),
        all_values(&theirs.applies),
        ms(median(&theirs.applies)) / ms(median(&apply))
    );
    println!(
        "  destroy, median of {ROUNDS}: {:.1} ms ({}); ours takes {:.2}x of it (issue 12: no slower, <= 1.00x)",
        ms(median(&theirs.destroys)),
        all_values(&theirs.destroys),
        ms(median(&destroy)) / ms(median(&theirs.destroys))
    );
    println!(
        "  re-apply by its binary: {}; the issue's 25 ms, set when this took {ISSUE_REAPPLY_MS} ms, is {:.1} ms at this run's speed (ours: re-apply {:.1}, plan {:.1} ms)",
        first_then_median(&theirs.reapplies),
        25.0 * ms(theirs_reapply) / ISSUE_REAPPLY_MS,
        ms(median(&cli_times[1..])),
        ms(plan_median)
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// A stackplumb binary with its files, run on the controller as an operator runs it.
struct Binary {
    program: PathBuf,
    config: PathBuf,
    topology: PathBuf,
    state: PathBuf,
    cinder: PathBuf,
}

impl Binary {
    /// Runs `verb` and returns how long it took; it must succeed, and print `quiet`
    /// when given. Called on the thread `block_on_in` moved into the controller's
    /// namespace: a child starts in its parent thread's namespaces, so the binary runs
    /// there without `nsenter` (1.4 ms of its own exec) and std still spawns it with
    /// vfork (entering between fork and exec, `netns::command_in`, makes std fork this
    /// 200 MB process: 9.1 against 1.4 ms for /bin/true).
    fn run(&self, verb: &str, quiet: Option<&str>) -> Duration {
        let t = Instant::now();
        let out = Command::new(&self.program)
            .arg("--config-dir")
            .arg(&self.config)
            .arg("--topology")
            .arg(&self.topology)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--cinder-dir")
            .arg(&self.cinder)
            .args(["--node", "controller"])
            .args(verb.split(' '))
            .output()
            .unwrap();
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && quiet.is_none_or(|q| text.trim() == q),
            "{} {verb}: {text}{}",
            self.program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }
}

/// The environment variable naming the issue's code's binary (`testenv/issue-code.sh`).
const ISSUE_CODE: &str = "SP_BENCH_ISSUE_CODE";

/// What the issues' targets were measured on: its apply 1.64 s and destroy 1.82 s of 100
/// routers, its re-apply through the binary 19 ms.
const ISSUE_REAPPLY_MS: f64 = 19.0;

/// stackplumb as of the issues (3952bd7), set up beside ours in `work`.
fn issue_code(work: &Path, n: usize) -> Binary {
    let program = PathBuf::from(std::env::var_os(ISSUE_CODE).unwrap_or_else(|| {
        panic!("{ISSUE_CODE} unset: the issues' code, 3952bd7, runs beside ours; run through testenv/bench.sh stackplumb")
    }));
    assert!(
        program.is_file(),
        "{}: not built (testenv/issue-code.sh)",
        program.display()
    );
    let mut text: toml::Table = toml::from_str(&toml::to_string(&topology(n)).unwrap()).unwrap();
    text.remove("security_groups");
    let topology = work.join("issue-topology.toml");
    std::fs::write(&topology, toml::to_string(&text).unwrap()).unwrap();
    Binary {
        program,
        config: work.join("etc"),
        topology,
        state: work.join("issue-state"),
        cinder: work.join("issue-cinder"),
    }
}

/// The issue's code's timings on the scene.
#[derive(Default)]
struct IssueTimes {
    applies: Vec<Duration>,
    reapplies: Vec<Duration>,
    destroys: Vec<Duration>,
}

impl IssueTimes {
    /// One apply and destroy of `code`, with ten re-applies between them when `reapply`.
    fn round(&mut self, code: &Binary, reapply: bool) {
        self.applies.push(code.run("apply", None));
        if reapply {
            self.reapplies
                .extend((0..10).map(|_| code.run("apply", Some("node controller: no change"))));
        }
        self.destroys.push(code.run("destroy --purge", None));
    }
}

/// Apply and destroy rounds on one scene: five, as a median of three still moved by
/// a fifth between two runs an hour apart here (442 and 348 ms at 100).
const ROUNDS: usize = 5;

/// Waits until the kernel has freed the namespaces a destroy deleted: `cleanup_net`
/// runs in the background under the RTNL, and an apply started while it runs competes
/// with it. Done when /proc/slabinfo's count of `net_namespace` objects has not fallen
/// for three readings 0.5 s apart (at most 60 s).
fn settle() {
    let count = || {
        let text = std::fs::read_to_string("/proc/slabinfo").expect("/proc/slabinfo (root)");
        text.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("net_namespace")).then(|| f.next()?.parse::<u64>().ok())?
            })
            .expect("a net_namespace line in /proc/slabinfo")
    };
    let (mut last, mut same) = (count(), 0);
    for _ in 0..120 {
        std::thread::sleep(Duration::from_millis(500));
        let now = count();
        same = if now < last { 0 } else { same + 1 };
        last = now;
        if same >= 3 {
            return;
        }
    }
}

/// The middle of `times`.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// "(A, B, C ms)": every value, in the order taken.
fn all_values(times: &[Duration]) -> String {
    let ms: Vec<String> = times
        .iter()
        .map(|t| format!("{:.1}", t.as_secs_f64() * 1e3))
        .collect();
    format!("{} ms", ms.join(", "))
}

/// "first X ms right after the apply, then median Y ms (min, max) of N" for timings
/// whose first was taken right after the apply.
fn first_then_median(times: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rest = &times[1..];
    let (min, max) = (rest.iter().min(), rest.iter().max());
    format!(
        "first {:.1} ms right after the apply, then median {:.1} ms (min {:.1}, max {:.1}) of {}",
        ms(times[0]),
        ms(median(rest)),
        ms(*min.expect("timings")),
        ms(*max.expect("timings")),
        rest.len()
    )
}
