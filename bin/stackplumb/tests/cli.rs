//! stackplumb on the guide's two nodes (namespaces in a sandbox), each run inside its
//! node: plan, apply, a second apply, status, destroy; the lock; bad input.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sp_testenv::nodes::{link_names, two_nodes};
use sp_testenv::oracle;

/// The objects of a plan's (or status's) actions as `op type name-ish` words.
fn actions(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("actions: {v}"))
        .iter()
        .map(|a| {
            let o = match a["object"]["type"].as_str() {
                Some("ovs") => &a["object"]["object"],
                _ => &a["object"],
            };
            let name = ["name", "nic", "device", "network_id", "namespace"]
                .iter()
                .find_map(|k| o[*k].as_str())
                .unwrap_or("?");
            let extra = o["dst"]
                .as_str()
                .map(|d| format!(" dst {d}"))
                .unwrap_or_default();
            format!(
                "{} {} {name}{extra}",
                a["op"].as_str().unwrap(),
                o["type"].as_str().unwrap()
            )
        })
        .collect()
}

/// The run lock of `node`'s network namespace (one per node, whatever the state dir).
#[test]
fn plan_apply_status_destroy_converge() {
    let (cli, _cleanup) = two_nodes();
    let state = &cli.state;
    let plan = cli.json("controller", &["plan"]);
    assert_eq!(plan["schema"], 3);
    assert_eq!(
        plan["node"], "controller",
        "found by its tunnel_ip 10.0.0.101"
    );
    let to_create = actions(&plan["actions"]);
    for o in [
        "create volume_group cinder-volumes",
        "create bridge brq78983ca2-77",
        "create uplink eth0",
        "create namespace qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165",
        "create fdb vxlan-1 dst 10.0.0.102",
        "create dnsmasq 5b6a8b87-fd03-46b5-a968-72bac5091b7c",
        "create nat qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165",
    ] {
        assert!(
            to_create.iter().any(|a| a == o),
            "{o} missing from the plan: {to_create:#?}"
        );
    }
    // plan --detailed-exitcode: 4 while there is something to do.
    let out = cli.on("controller", &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(4));

    for node in ["controller", "compute"] {
        let planned = actions(&cli.json(node, &["plan"])["actions"]);
        let (code, lines) = cli.json_lines(node, &["apply"]);
        assert_eq!(code, Some(0), "{lines:?}");
        let (result, done) = lines.split_last().unwrap();
        assert_eq!(result["event"], "result");
        assert_eq!(result["left"], Value::Array(vec![]), "{node} converged");
        // apply did exactly what plan said, in that order.
        let done: Vec<Value> = done.iter().map(|l| l["action"].clone()).collect();
        assert_eq!(actions(&Value::Array(done)), planned, "{node}");
    }
    assert!(
        oracle::pings("extpc", "10.0.0.200"),
        "the router's gateway answers"
    );
    for node in ["controller", "compute"] {
        assert_eq!(
            cli.json(node, &["plan"])["actions"],
            Value::Array(vec![]),
            "{node}"
        );
        let out = cli.on(node, &["plan", "--detailed-exitcode"]);
        assert_eq!(out.status.code(), Some(0), "{node}: nothing to do");
        assert_eq!(cli.json(node, &["apply"])["done"], 0, "{node}");
        let out = cli.on(node, &["apply"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("node {node}: no change")
        );
        let status = cli.json(node, &["status"]);
        assert_eq!(status["converged"], true, "{status}");
    }

    // status names what netns-inspect finds wrong: none now; dnsmasq gone, it says so.
    assert_eq!(
        cli.json("controller", &["status"])["problems"],
        Value::Array(vec![])
    );
    let pid = std::fs::read_to_string(state.join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c/pid"))
        .unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (code, status) = cli.json_lines("controller", &["status"]);
    assert_eq!(code, Some(4), "a difference: {status:?}");
    let status = &status[0];
    let kinds: Vec<&str> = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["qdhcp-without-dnsmasq"], "{status}");
    assert_eq!(
        actions(&status["differences"]),
        ["change dnsmasq 5b6a8b87-fd03-46b5-a968-72bac5091b7c"],
        "{status}"
    );
    let again = cli.json("controller", &["apply"]);
    assert_eq!(again["done"], 1, "{again}");
    assert_eq!(cli.json("controller", &["status"])["converged"], true);

    // Another run holding the node's lock — from another mount namespace with a /run
    // of its own, as a container sharing the host's network has: the second waits,
    // then fails naming it.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        use nix::sched::{setns, unshare, CloneFlags};
        use std::os::linux::net::SocketAddrExt;
        let ns = std::fs::File::open("/run/netns/compute").unwrap();
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS).unwrap();
        nix::mount::mount(
            Some("none"),
            "/run",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(
            sp_orchestrate::supervise::LOCK_NAME,
        )
        .unwrap();
        let _held = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        held_tx.send(()).unwrap();
        let _ = end_rx.recv();
    });
    held_rx.recv().unwrap();
    let out = cli.on("compute", &["--lock-timeout", "0.3", "apply"]);
    end_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "another stackplumb run (pid {}, uid 0)",
            std::process::id()
        )),
        "{said}"
    );
    // Released with its holder: the next run takes it.
    assert_eq!(
        cli.json("compute", &["apply"])["left"],
        Value::Array(vec![])
    );

    for node in ["compute", "controller"] {
        cli.json(node, &["destroy"]);
    }
    // Cinder's files are kept without --purge; the loop devices are released.
    assert!(sp_testenv::lvm::bound_under(&state.join("cinder")).is_empty());
    assert!(state.join("cinder/cinder-volumes").exists());
    cli.json("controller", &["destroy", "--purge"]);
    assert!(!state.join("cinder/cinder-volumes").exists());
    let mut left = oracle::netns_list();
    left.sort();
    assert_eq!(left, ["compute", "controller", "extpc"]);
    assert_eq!(link_names("controller"), ["lo", "eth0"]);
    let (code, status) = cli.json_lines("controller", &["status"]);
    assert_eq!(code, Some(4));
    assert!(
        actions(&status[0]["differences"])
            .iter()
            .all(|a| a.starts_with("create ")),
        "{status:?}"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let (cli, _cleanup) = two_nodes();
    let state = &cli.state;
    let topo = state.join("bad.toml");
    std::fs::create_dir_all(state).unwrap();
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/topology.toml"),
    )
    .unwrap();
    std::fs::write(
        &topo,
        guide
            .replace("segmentation_id = 1", "segmentation_id = 5000")
            .replace(
                "floating_ip = \"10.0.0.201\"",
                "floating_ip = \"10.0.0.99\"",
            ),
    )
    .unwrap();
    let out = cli.on(
        "controller",
        &["--topology", topo.to_str().unwrap(), "apply"],
    );
    assert_eq!(out.status.code(), Some(2), "invalid input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        err.contains("VNI 5000 is outside vni_ranges (1:1000)"),
        "{err}"
    );
    assert!(err.contains("floating IP 10.0.0.99 is outside"), "{err}");
    assert_eq!(oracle::netns_list().len(), 3, "no namespace made");

    // A flat network whose NIC does not exist: refused before anything is made.
    let conf = state.join("etc");
    sp_config::guide::write_guide_files(&conf).unwrap();
    let agent = conf.join(sp_config::guide::LINUXBRIDGE_AGENT);
    let text = std::fs::read_to_string(&agent).unwrap();
    std::fs::write(&agent, text.replace("public:eth0", "public:eth9")).unwrap();
    let bad_nic = cli.with_config("controller", conf);
    let out = bad_nic.on("controller", &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uplink eth9 of network 78983ca2-77e3-4cdf-9747-ae1b34addeb7"),
        "{err}"
    );
    assert_eq!(link_names("controller"), ["lo", "eth0"], "nothing made");

    // The controller's files name the controller (local_ip), whose tunnel address this
    // host does not hold; with no local_ip, no node is found at all.
    let out = cli.on("extpc", &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface of node controller holds its tunnel address 10.0.0.101"),
        "{err}"
    );
    let conf = state.join("etc-no-local-ip");
    sp_config::guide::write_guide_files(&conf).unwrap();
    let agent = conf.join(sp_config::guide::LINUXBRIDGE_AGENT);
    let text = std::fs::read_to_string(&agent).unwrap();
    std::fs::write(&agent, text.replace("local_ip = 10.0.0.101\n", "")).unwrap();
    let out = cli.with_config("extpc", conf).on("extpc", &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface here holds a node's tunnel_ip"),
        "{err}"
    );
    let out = cli.on("controller", &["--node", "network1", "plan"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node \"network1\""));
    let out = Command::new(env!("CARGO_BIN_EXE_stackplumb"))
        .args(["--config-dir", "/nonexistent", "plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "invalid input");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/neutron/plugins/ml2/linuxbridge_agent.ini:0: cannot read"),
        "{out:?}"
    );
}

/// What the two nodes hold, as the real tools report it: per namespace of ours its
/// links (name, kind, master, MTU, up) and global addresses, the FDB and neighbour
/// entries of each `vxlan-N`, whether dnsmasq runs, the volume group's size.
fn fingerprint(state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut namespaces = oracle::netns_list();
    namespaces.retain(|n| n != "extpc");
    namespaces.sort();
    for ns in &namespaces {
        for l in oracle::links(Some(ns)) {
            out.push(format!(
                "{ns} link {} {} master={} mtu={} flags={}",
                l["ifname"],
                l["linkinfo"]["info_kind"],
                l["master"],
                l["mtu"],
                l["flags"].as_array().unwrap().iter().any(|f| f == "UP")
            ));
        }
        for l in oracle::addrs(Some(ns)) {
            for a in l["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["scope"] == "global")
            {
                out.push(format!(
                    "{ns} addr {} {}/{}",
                    l["ifname"], a["local"], a["prefixlen"]
                ));
            }
        }
        for r in oracle::routes(Some(ns), false) {
            out.push(format!(
                "{ns} route {} via {} dev {} metric {}",
                r["dst"], r["gateway"], r["dev"], r["metric"]
            ));
        }
    }
    for node in ["controller", "compute"] {
        let mut fdb: Vec<String> = oracle::fdb(Some(node), "vxlan-1")
            .iter()
            // l2population's entries: towards other VTEPs, permanent (not the device's
            // own local entry, nor what it learned from traffic).
            .filter(|e| e["dst"].is_string() && e["state"] == "permanent")
            .map(|e| format!("{node} fdb {} {}", e["mac"], e["dst"]))
            .collect();
        fdb.sort();
        out.extend(fdb);
        let mut neigh: Vec<String> = oracle::neighbours(Some(node), "vxlan-1")
            .iter()
            .map(|n| format!("{node} neigh {} {}", n["dst"], n["lladdr"]))
            .collect();
        neigh.sort();
        out.extend(neigh);
    }
    let pid = std::fs::read_to_string(state.join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c/pid"))
        .unwrap_or_default();
    out.push(format!(
        "dnsmasq alive {}",
        std::path::Path::new(&format!("/proc/{}/cmdline", pid.trim())).exists()
    ));
    let lvm = sp_testenv::lvm::Lvm::new(sp_testenv::lvm::bound_under(&state.join("cinder")));
    out.push(format!(
        "vg {}",
        sp_testenv::lvm::num(&lvm.vgs("cinder-volumes"), "vg_size")
    ));
    out
}

#[test]
fn an_apply_killed_at_any_moment_is_finished_by_the_next() {
    let (cli, _cleanup) = two_nodes();
    let st = cli.state.as_path();
    // The reference: a clean apply of both nodes — the second one: the volume group's
    // files are made by the first and kept by destroy. Kill moments are spread over
    // the longer node's apply.
    for node in ["controller", "compute"] {
        cli.json(node, &["apply"]);
    }
    for node in ["compute", "controller"] {
        cli.json(node, &["destroy"]);
    }
    // Each node's clean apply, counted in completed actions: the kill moments.
    let mut actions = Vec::new();
    for node in ["controller", "compute"] {
        let (code, lines) = cli.json_lines(node, &["apply"]);
        assert_eq!(code, Some(0), "clean apply on {node}: {lines:?}");
        actions.push(lines.iter().filter(|l| l["event"] == "done").count());
    }
    let reference = fingerprint(st);
    for node in ["compute", "controller"] {
        cli.json(node, &["destroy"]);
    }
    // Rounds whose kill left work for the next apply.
    let mut interrupted = 0;
    // Ten moments spread over a clean run: after 0, 1, … of its actions.
    for round in 0..10 {
        let (node, all) = if round % 3 == 2 {
            ("compute", actions[1])
        } else {
            ("controller", actions[0])
        };
        let after = round * all / 10;
        let printed = cli.kill_apply_after(node, after);
        let moment = format!("action {after} of {all} ({} lines printed)", printed.len());
        for n in ["controller", "compute"] {
            let out = cli.on(n, &["--json", "apply"]);
            assert!(
                out.status.success(),
                "round {round}: apply on {n} after a kill of {node} at {moment}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let result: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            assert_eq!(
                result["left"],
                Value::Array(vec![]),
                "round {round}: {n} converged"
            );
            if n == node && result["done"].as_u64().unwrap() > 0 {
                interrupted += 1;
            }
        }
        let now = fingerprint(st);
        let extra: Vec<&String> = now.iter().filter(|l| !reference.contains(l)).collect();
        let missing: Vec<&String> = reference.iter().filter(|l| !now.contains(l)).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "round {round}: killed {node} at {moment}\nextra: {extra:#?}\nmissing: {missing:#?}"
        );
        for n in ["compute", "controller"] {
            cli.json(n, &["destroy"]);
        }
    }
    assert!(
        interrupted >= 8,
        "only {interrupted} of 10 kills interrupted an apply"
    );
    cli.json("controller", &["destroy", "--purge"]);
    // Nothing of ours is left: namespaces, links, processes, loop devices.
    let mut left = oracle::netns_list();
    left.sort();
    assert_eq!(left, ["compute", "controller", "extpc"]);
    for node in ["controller", "compute"] {
        assert_eq!(link_names(node), ["lo", "eth0"], "{node}");
    }
    assert!(sp_testenv::lvm::bound_under(st).is_empty());
}

#[test]
fn supervise_restarts_a_dead_dnsmasq_at_once_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let (cli, _cleanup) = two_nodes();
    cli.json("controller", &["apply"]);
    let pid_file = cli
        .state
        .join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c/pid");
    let first = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    // A long interval: only the pidfd can wake it in time.
    let mut sup = cli
        .cmd("controller", &["--json", "supervise", "--interval", "600"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = sup.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(sp_testenv::nodes::supervise_event(&line));
        }
    });
    // The metadata proxy's own events (tests/metadata.rs) are left out here.
    let next = || loop {
        let e = rx.recv_timeout(Duration::from_secs(5)).expect("an event");
        if e["event"] != "watching-proxy" {
            return e;
        }
    };
    assert_eq!(
        next(),
        serde_json::json!({"event": "watching", "network": "5b6a8b87-fd03-46b5-a968-72bac5091b7c", "pid": first.parse::<u32>().unwrap()})
    );
    let killed = Instant::now();
    Command::new("kill").args(["-9", &first]).status().unwrap();
    let restarted = next();
    assert_eq!(restarted["event"], "changed");
    assert_eq!(
        restarted["object"],
        serde_json::json!({"type": "dnsmasq", "network_id": "5b6a8b87-fd03-46b5-a968-72bac5091b7c"}),
        "{restarted}"
    );
    assert_eq!(restarted["action"], "restarted", "{restarted}");
    assert!(restarted["pid"].is_u64(), "{restarted}");
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    let second = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(next()["event"], "watching");
    // The restarted dnsmasq is what apply would have started: nothing to do.
    assert_eq!(cli.json("controller", &["apply"])["done"], 0);
    assert!(
        std::path::Path::new(&format!("/proc/{second}/cmdline")).exists(),
        "the new dnsmasq runs"
    );

    Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        next(),
        serde_json::json!({"event": "stopped", "signal": "SIGTERM"})
    );
    let status = sup.wait().unwrap();
    assert!(status.success(), "{status:?}");
    cli.json("controller", &["destroy"]);
}

/// stackplumb raises its own soft descriptor limit (a run keeps three descriptors per
/// router namespace), and gives what it starts in a namespace — dnsmasq here — the
/// limit it was started with.
#[test]
fn dnsmasq_gets_the_descriptor_limit_stackplumb_was_started_with() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::os::unix::process::CommandExt;
    let (cli, _cleanup) = two_nodes();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard > 512,
        "a hard descriptor limit above 512 is needed: {hard}"
    );
    let mut apply = cli.cmd("controller", &["apply"]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        apply.pre_exec(move || Ok(setrlimit(Resource::RLIMIT_NOFILE, 512, hard)?));
    }
    let out = apply.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid = std::fs::read_to_string(
        cli.state
            .join("dhcp/5b6a8b87-fd03-46b5-a968-72bac5091b7c/pid"),
    )
    .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", pid.trim())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(open_files, ["512", hard.to_string().as_str()], "{limits}");
}

/// Hostile arguments, files and a hostile state directory: each refused with a clear
/// message (usage errors exit 2), or written around — never a panic, a hang, or a write
/// through a planted symlink.
#[test]
fn hostile_arguments_files_and_state_are_refused_or_written_around() {
    let (cli, _cleanup) = two_nodes();
    let state = &cli.state;
    std::fs::create_dir_all(state).unwrap();
    // Durations: out of range or not finite.
    for args in [
        ["--lock-timeout", "inf", "plan"].as_slice(),
        &["--lock-timeout", "1e300", "plan"],
        &["--lock-timeout=-1", "plan"],
        &["--lock-timeout", "NaN", "plan"],
        &["supervise", "--interval", "inf"],
        &["supervise", "--interval", "0"],
    ] {
        let out = cli.on("controller", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("seconds"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A FIFO as the topology or as a config file: refused at once, not waited on.
    let fifo = state.join("topology.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let t = std::time::Instant::now();
    let out = cli.on(
        "controller",
        &["--topology", fifo.to_str().unwrap(), "plan"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let conf = state.join("etc");
    sp_config::guide::write_guide_files(&conf).unwrap();
    let ml2 = conf.join(sp_config::guide::ML2_CONF);
    std::fs::remove_file(&ml2).unwrap();
    nix::unistd::mkfifo(&ml2, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo_conf = cli.with_config("controller", conf.clone());
    let out = fifo_conf.on("controller", &["plan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ml2_conf.ini:0: cannot read: not a regular file"),
        "{err}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "a FIFO hung a run"
    );
    // The MTU that dnsmasq would force, out of range: refused before any change.
    std::fs::remove_file(&ml2).unwrap();
    sp_config::guide::write_guide_files(&conf).unwrap();
    let dnsmasq_conf = std::fs::read_dir(conf.join("neutron"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("dnsmasq"))
        .expect("the guide's dnsmasq file");
    let text = std::fs::read_to_string(&dnsmasq_conf).unwrap();
    std::fs::write(&dnsmasq_conf, text.replace("26,1450", "26,99999")).unwrap();
    let out = fifo_conf.on("controller", &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("from 68 to 65535"), "{err}");
    assert_eq!(link_names("controller"), ["lo", "eth0"], "nothing made");

    // Symlinks planted in the state directory are not written through, and the files
    // made there get their modes whatever the umask.
    let victim = state.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let record = state.join("stackplumb/owned-controller.json");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &record).unwrap();
    let out = cli.on("controller", &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a symlink is not followed"), "{err}");
    assert_eq!(
        link_names("controller"),
        ["lo", "eth0"],
        "refused before any change"
    );
    std::fs::remove_file(&record).unwrap();
    let mut apply = cli.cmd("controller", &["apply"]);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut apply, || {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let out = apply.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious",
        "written through a symlink"
    );
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&record), 0o600);
    assert_eq!(mode(record.parent().unwrap()), 0o700);
    // NAT is read from the kernel: nothing of it is recorded.
    assert!(!state.join("l3").exists());
    let dhcp = state.join("dhcp");
    assert_eq!(mode(&dhcp), 0o755);
    for e in std::fs::read_dir(&dhcp).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o755, "{}", e.path().display());
        for f in ["host", "addn_hosts", "opts"] {
            assert_eq!(mode(&e.path().join(f)), 0o644, "{f}");
        }
    }

    // dnsmasq is the system's, started with a fixed environment: a `dnsmasq` first in the
    // caller's PATH is not run, and nothing of the caller's environment reaches it.
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(cli.on("controller", &["destroy"]));
    let fake = state.join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let marker = state.join("fake-ran");
    std::fs::write(
        fake.join("dnsmasq"),
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fake.join("dnsmasq"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ok(cli
        .cmd("controller", &["apply"])
        .env("PATH", path)
        .env("SP_SECRET", "from-the-caller")
        .output()
        .unwrap());
    assert!(!marker.exists(), "the caller's PATH chose dnsmasq");
    let net_dir = std::fs::read_dir(&dhcp)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let pid = std::fs::read_to_string(net_dir.join("pid"))
        .unwrap()
        .trim()
        .to_owned();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.is_absolute() && !exe.starts_with(&fake),
        "{}",
        exe.display()
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut env: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    env.sort();
    assert_eq!(
        env,
        [
            "LC_ALL=C".to_owned(),
            format!("PATH={}", sp_kernel::exec::CHILD_PATH)
        ],
        "dnsmasq's environment"
    );
    ok(cli.on("controller", &["destroy"]));

    // A symlink planted as the dhcp directory is refused; its target keeps its mode.
    let target = state.join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _ = std::fs::remove_dir_all(&dhcp);
    std::os::unix::fs::symlink(&target, &dhcp).unwrap();
    let out = cli.on("controller", &["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a symlink is not followed"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        link_names("controller"),
        ["lo", "eth0"],
        "refused before any change"
    );
    assert_eq!(mode(&target), 0o700);
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "written through"
    );
    ok(cli.on("controller", &["destroy"]));
}
