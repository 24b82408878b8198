//! The routers' NAT: N router namespaces loaded natively (`sp_l3::load_each`: one
//! nf_tables batch per namespace over netlink) vs the old way, one `iptables-restore`
//! per router of `RouterNat::iptables_restore()` (entering its namespace between fork
//! and exec, four at a time, as sp-l3 ran them), side by side in one run. Also the
//! reader: `sp_l3::read_each` over the N namespaces, and a re-apply with nothing to
//! do (read, compare, load nothing).

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use sp_neutron::l3::{FloatingIp, RouterNat};
use sp_testenv::require;

fn routers(n: usize) -> Vec<RouterNat> {
    (0..n)
        .map(|i| {
            let ip = |host: usize| {
                format!("10.{}.{}.{}", 1 + i / 250, i % 250, host)
                    .parse()
                    .unwrap()
            };
            RouterNat {
                gateway_device: format!("qg-{i:08x}-00"),
                gateway_ip: Some(ip(1)),
                enable_snat: true,
                floating_ips: (0..2)
                    .map(|f| FloatingIp {
                        floating: ip(10 + f),
                        fixed: format!("192.168.{}.{}", i % 250, 10 + f).parse().unwrap(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One `iptables-restore` per router, `workers` at a time.
fn iptables_restore_each(names: &[String], nats: &[RouterNat], workers: usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(ns) = names.get(i) else { break };
                let mut cmd = sp_kernel::exec::command("iptables-restore", "iptables").unwrap();
                cmd.stdin(Stdio::piped()).stdout(Stdio::null());
                sp_kernel::netns::command_in(&mut cmd, ns).unwrap();
                let mut child = cmd.spawn().unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(nats[i].iptables_restore().as_bytes())
                    .unwrap();
                assert!(child.wait().unwrap().success(), "iptables-restore in {ns}");
            });
        }
    });
}

pub fn run(n: usize, runs: usize) {
    if !crate::in_sandbox_child("nat", n, runs) {
        return;
    }
    require::program("iptables-restore", "iptables");
    let nats = routers(n);
    let ours: Vec<String> = (0..n).map(|i| format!("qrouter-nft-{i}")).collect();
    let theirs: Vec<String> = (0..n).map(|i| format!("qrouter-ipt-{i}")).collect();
    for names in [&ours, &theirs] {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for made in sp_kernel::netns::create_each(&names, |_| Ok(())).unwrap() {
            made.unwrap();
        }
    }
    let names: Vec<&str> = ours.iter().map(String::as_str).collect();
    let routers: Vec<(&str, &RouterNat)> = names.iter().copied().zip(&nats).collect();

    // The first load into empty namespaces, then replacing what is there (best of runs).
    let first = crate::best_of(1, || sp_l3::load_each(&routers, &mut Vec::new()).unwrap());
    let again = crate::best_of(runs, || {
        sp_l3::load_each(&routers, &mut Vec::new()).unwrap()
    });
    let baseline_first = crate::best_of(1, || iptables_restore_each(&theirs, &nats, 4));
    let baseline_again = crate::best_of(runs, || iptables_restore_each(&theirs, &nats, 4));

    // The reader, and a re-apply with nothing to do.
    let mut read = Duration::MAX;
    let mut noop = Duration::MAX;
    for _ in 0..runs.max(3) {
        read = read.min(crate::best_of(1, || {
            for r in sp_l3::read_each(&names).unwrap() {
                assert!(r.unwrap().is_some());
            }
        }));
        noop = noop.min(crate::best_of(1, || {
            let stale: Vec<(&str, &RouterNat)> = routers
                .iter()
                .zip(sp_l3::read_each(&names).unwrap())
                .filter(|(r, c)| {
                    !c.as_ref()
                        .unwrap()
                        .as_ref()
                        .unwrap()
                        .matches(&sp_l3::NatRules::of(r.1))
                })
                .map(|(r, _)| *r)
                .collect();
            let mut changes = Vec::new();
            sp_l3::load_each(&stale, &mut changes).unwrap();
            assert!(changes.is_empty(), "{changes:?}");
        }));
    }
    let rules = sp_l3::NatRules::of(&nats[0]).lines().len();
    crate::report(
        &format!("router NAT: {n} routers (2 floating IPs each, {rules} lines of nft list table), first load"),
        first,
        &[("ipt-rst/4", baseline_first)],
    );
    crate::report(
        &format!("router NAT: {n} routers, loaded again over what is there (best of {runs})"),
        again,
        &[("ipt-rst/4", baseline_again)],
    );
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "  read_each over {n} namespaces: {:.1} ms ({:.0} µs per namespace)",
        read.as_secs_f64() * 1e3,
        per(read)
    );
    println!(
        "  re-apply with nothing to do (read, compare, load nothing): {:.1} ms ({:.0} µs per namespace)",
        noop.as_secs_f64() * 1e3,
        per(noop)
    );
}
