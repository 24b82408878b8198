//! No input can fail an apply half-way: every bad input below is refused by
//! `stackplumb apply` before anything is made — on the guide's two nodes in a sandbox,
//! the links, addresses, routes (both families) and named namespaces of every node and
//! the files under the state directory are the same after the run as before; the run
//! exits non-zero and says what is wrong on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

use sp_testenv::nodes::{two_nodes, Cli};
use sp_testenv::oracle;

const NODES: [&str; 3] = ["controller", "compute", "extpc"];

/// What the sandbox holds, as `ip -j` and the file system report it.
fn snapshot(state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for node in NODES {
        let n = Some(node);
        for (what, v) in [
            ("links", oracle::links(n)),
            ("addresses", oracle::addrs(n)),
            ("routes", oracle::routes(n, false)),
            ("routes6", oracle::routes(n, true)),
        ] {
            out.push(format!("{node} {what}: {}", serde_json::Value::Array(v)));
        }
    }
    out.push(format!("namespaces: {:?}", oracle::netns_list()));
    let mut files = Vec::new();
    walk(state, &mut files);
    files.sort();
    out.extend(files);
    out
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let md = std::fs::symlink_metadata(&path).unwrap();
        let body = match md.is_file() {
            true => std::fs::read(&path).unwrap_or_default(),
            false => vec![],
        };
        out.push(format!(
            "file {} {:?} {body:?}",
            path.display(),
            md.file_type()
        ));
        if md.is_dir() {
            walk(&path, out);
        }
    }
}

/// Runs `stackplumb ARGS` on `node` and checks it changed nothing, exited with `code`
/// (2: input refused; 1: a preflight failure — docs/exit-codes.md) and named `problem`
/// on stderr.
fn refused(cli: &Cli, node: &str, args: &[&str], code: i32, problem: &str) {
    let before = snapshot(&cli.state);
    let out = cli.on(node, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?} on {node}: {err}");
    assert!(
        err.contains(problem),
        "{args:?} on {node}: {problem:?} not in: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let after = snapshot(&cli.state);
    if before != after {
        let changed: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
        let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
        panic!("{args:?} on {node} changed the sandbox: new {changed:#?}, gone {gone:#?}");
    }
}

fn guide_topology() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/topology.toml"))
        .unwrap()
}

/// A topology file in the state directory: the guide's with `from` replaced by `to`.
fn topology(state: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = guide_topology();
    assert!(text.contains(from), "{from}");
    let path = state.join(format!("{name}.toml"));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

/// A copy of the guide's files (the controller's) with `rel` rewritten by `edit`.
fn config(state: &Path, name: &str, rel: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = state.join(name);
    sp_config::guide::write_guide_files(&dir).unwrap();
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(&text)).unwrap();
    dir
}

const ROUTER: &str = "006df4cc-6fb2-40e7-af58-dc68b6755165";
const QR_PORT: &str = "7337070d-45e1-4a2b-9c3d-1234567890ab";
const VM_PORT: &str = "a7b1762b-3b4c-4d5e-8f90-123456789abc";
const NET: &str = "5b6a8b87-fd03-46b5-a968-72bac5091b7c";

#[test]
fn bad_inputs_are_refused_before_anything_changes() {
    let (cli, _cleanup) = two_nodes();
    let state = cli.state.clone();
    std::fs::create_dir_all(&state).unwrap();
    // The kernel's own change first: IPv6 duplicate address detection on the new eth0s
    // (their link-local addresses are `tentative` for a second or two).
    let settled = std::time::Instant::now();
    while snapshot(&state).iter().any(|l| l.contains("\"tentative\"")) {
        assert!(
            settled.elapsed() < std::time::Duration::from_secs(10),
            "IPv6 addresses still tentative"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The topology: every case through --topology, on the controller.
    let ext_pool = "enable_dhcp = false\nallocation_pools = [{ start = \"10.0.0.200\", end = \"10.0.0.250\" }]";
    let demo_subnet = "cidr = \"192.168.0.0/24\"           #   --gateway 192.168.0.1 --dns-nameserver 8.8.8.8\ngateway = \"192.168.0.1\"\n";
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "mac-multicast",
            "mac = \"fa:16:3e:a7:24:00\"".into(),
            "mac = \"01:00:5e:00:00:01\"".into(),
            "multicast",
        ),
        (
            "mac-short",
            "mac = \"fa:16:3e:a7:24:00\"".into(),
            "mac = \"fa:16:3e:a7:24\"".into(),
            "mac",
        ),
        (
            "mac-zero",
            "mac = \"fa:16:3e:a7:24:00\"".into(),
            "mac = \"00:00:00:00:00:00\"".into(),
            "all zero",
        ),
        (
            "router-id-path",
            ROUTER.into(),
            format!("{ROUTER}/../../x"),
            "expected a UUID",
        ),
        (
            "net-id-slash",
            NET.into(),
            "5b6a8b87/fd03-46b5-a968-72bac5091b7c".into(),
            "expected a UUID",
        ),
        (
            "port-id-space",
            QR_PORT.into(),
            "7337070d-45e1-4a2b-9c3d 1234567890ab".into(),
            "expected a UUID",
        ),
        (
            "port-id-nul",
            VM_PORT.into(),
            "a7b1762b-3b4c-4d5e-8f90-12345678\\u0000abc".into(),
            "expected a UUID",
        ),
        (
            "port-id-long",
            VM_PORT.into(),
            format!("{VM_PORT}-and-more"),
            "expected a UUID",
        ),
        (
            "size",
            "size = \"20G\"".into(),
            "size = \"20X\"".into(),
            "unknown unit",
        ),
        (
            "tunnel-unspecified",
            "tunnel_ip = \"10.0.0.102\"".into(),
            "tunnel_ip = \"::\"".into(),
            "tunnel_ip :: is unspecified",
        ),
        (
            "tunnel-multicast",
            "tunnel_ip = \"10.0.0.102\"".into(),
            "tunnel_ip = \"239.0.0.1\"".into(),
            "is a multicast address",
        ),
        (
            "tunnel-loopback",
            "tunnel_ip = \"10.0.0.102\"".into(),
            "tunnel_ip = \"127.0.0.1\"".into(),
            "is a loopback address",
        ),
        (
            "tunnel-family",
            "tunnel_ip = \"10.0.0.102\"".into(),
            "tunnel_ip = \"2001:db8::102\"".into(),
            "is not of the family",
        ),
        // demo-net as a /30 its gateway (the router) and vm1 fill.
        (
            "dhcp-full-30",
            demo_subnet.into(),
            "cidr = \"192.168.0.0/30\"\ngateway = \"192.168.0.1\"\n".into(),
            "no free address in 192.168.0.0/30",
        ),
        (
            "dhcp-31",
            demo_subnet.into(),
            "cidr = \"192.168.0.0/31\"\n".into(),
            "no free address in 192.168.0.0/31",
        ),
        (
            "dhcp-32",
            demo_subnet.into(),
            "cidr = \"192.168.0.0/32\"\n".into(),
            "no free address in 192.168.0.0/32",
        ),
        // DHCP on ext-net, whose pool the router's gateway and vm1's floating IP fill.
        (
            "ext-dhcp-full-pool",
            ext_pool.into(),
            "allocation_pools = [{ start = \"10.0.0.200\", end = \"10.0.0.201\" }]".into(),
            "no free address in 10.0.0.0/24",
        ),
    ];
    for (name, from, to, problem) in &cases {
        let t = topology(&state, name, from, to);
        // The /30's and /31's other addresses: vm1 on .2 (or .0) too.
        let t = match *name {
            "dhcp-full-30" => rewrite(&t, "ip = \"192.168.0.3\"", "ip = \"192.168.0.2\""),
            "dhcp-31" | "dhcp-32" => rewrite(
                &rewrite(&t, "ip = \"192.168.0.3\"", "ip = \"192.168.0.0\""),
                "ip = \"192.168.0.1\"",
                "ip = \"192.168.0.0\"",
            ),
            _ => t,
        };
        refused(
            &cli,
            "controller",
            &["--topology", t.to_str().unwrap(), "apply"],
            2,
            problem,
        );
    }

    // The guide's files.
    let bad_vg = config(&state, "etc-vg", sp_config::guide::CINDER_CONF, |t| {
        format!("{t}\n[lvm]\nvolume_group = bad/x\n")
    });
    refused(
        &cli.with_config("controller", bad_vg),
        "controller",
        &["apply"],
        2,
        "volume_group = \"bad/x\" is not a volume group name",
    );
    let fifo = config(
        &state,
        "etc-fifo",
        sp_config::guide::ML2_CONF,
        str::to_owned,
    );
    let ml2 = fifo.join(sp_config::guide::ML2_CONF);
    std::fs::remove_file(&ml2).unwrap();
    nix::unistd::mkfifo(&ml2, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    refused(
        &cli.with_config("controller", fifo),
        "controller",
        &["apply"],
        2,
        "ml2_conf.ini:0: cannot read: not a regular file",
    );
    // The compute's local_ip is not its tunnel_ip: named, whether --node is given or not.
    let compute = state.join("etc-compute");
    let agent = compute.join(sp_config::guide::LINUXBRIDGE_AGENT);
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    std::fs::write(
        &agent,
        std::fs::read_to_string(
            sp_testenv::guide_compute_config_dir().join(sp_config::guide::LINUXBRIDGE_AGENT),
        )
        .unwrap()
        .replace("local_ip = 10.0.0.102", "local_ip = 10.9.9.9"),
    )
    .unwrap();
    let mismatch = format!(
        "local_ip = 10.9.9.9 in {}, but node compute's tunnel_ip is 10.0.0.102",
        agent.display()
    );
    let wrong = cli.with_config("compute", compute);
    refused(&wrong, "compute", &["apply"], 2, &mismatch);
    refused(
        &wrong,
        "compute",
        &["--node", "compute", "apply"],
        2,
        &mismatch,
    );
    // The compute node with a network role's files missing: named.
    let t = topology(
        &state,
        "compute-network",
        "roles = [\"compute\"]",
        "roles = [\"compute\", \"network\"]",
    );
    refused(
        &cli,
        "compute",
        &["--topology", t.to_str().unwrap(), "apply"],
        2,
        "ml2_conf.ini:0: cannot read",
    );

    // Arguments: usage errors.
    for args in [
        ["--lock-timeout", "inf", "apply"].as_slice(),
        &["--lock-timeout", "1e300", "apply"],
        &["supervise", "--interval", "inf"],
    ] {
        refused(&cli, "controller", args, 2, "seconds");
    }

    // dnsmasq missing from the system's directories: found out before any change. The
    // bind mount is in this test's own mount namespace (the sandbox's).
    let hidden = state.join("not-dnsmasq");
    std::fs::write(&hidden, "").unwrap();
    let dnsmasq = sp_kernel::exec::program("dnsmasq", "dnsmasq-base").unwrap();
    mount(&[
        "--bind",
        hidden.to_str().unwrap(),
        dnsmasq.to_str().unwrap(),
    ]);
    let hidden_run = std::panic::catch_unwind(|| {
        refused(
            &cli,
            "controller",
            &["apply"],
            1,
            "starts dnsmasq: dnsmasq not found",
        )
    });
    mount_undo(&dnsmasq);
    std::fs::remove_file(&hidden).unwrap();
    if let Err(e) = hidden_run {
        std::panic::resume_unwind(e);
    }

    // The good inputs are taken: each node plans from its own files.
    for node in ["controller", "compute"] {
        let out = cli.on(node, &["plan"]);
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn rewrite(path: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    path.to_owned()
}

fn mount(args: &[&str]) {
    sp_testenv::require::program("mount", "mount");
    let st = Command::new("mount").args(args).status().unwrap();
    assert!(st.success(), "mount {args:?}");
}

fn mount_undo(target: &Path) {
    let st = Command::new("umount").arg(target).status().unwrap();
    assert!(st.success(), "umount {}", target.display());
}
