//! Security groups: N instance ports in the guide's `default` group (all egress,
//! ingress from the group, 12-4's ICMP and tcp/22), each with its anti-spoofing and
//! DHCP rules, on one compute node. Ours: `sp_sg::load` (both tables in one nf_tables
//! batch over netlink). The baseline, in the same run and another namespace: what
//! Liberty's agent runs for each port change — `ipset restore` of the member set, then
//! `iptables-restore -n` of the whole filter table (`Firewall::iptables_restore`,
//! IPv4 only: Liberty also runs `ip6tables-restore`, left out here), each process
//! started inside the namespace between fork and exec.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use sp_neutron::sg::{EtherType, Firewall, MemberSet, PortFirewall};
use sp_testenv::require;

/// `n` ports with the guide's default group.
fn firewall(n: usize) -> Firewall {
    let t = sp_config::Topology::guide();
    let group = &t.security_groups[0];
    let rules: Vec<_> = group
        .rules
        .iter()
        .filter_map(|r| r.typed(|_| Some(group.id.clone())))
        .collect();
    let addr = |i: usize| -> std::net::IpAddr {
        format!("10.{}.{}.{}", i / 62500, (i / 250) % 250, 2 + i % 250)
            .parse()
            .unwrap()
    };
    let ports: Vec<PortFirewall> = (0..n)
        .map(|i| {
            let id = format!("{i:08x}-0000-4000-8000-000000000000");
            PortFirewall {
                port_id: id.parse().unwrap(),
                device: sp_neutron::tap_name(&id),
                mac: sp_names::Mac::new([
                    0xfa,
                    0x16,
                    0x3e,
                    (i >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8,
                ])
                .unwrap(),
                fixed_ips: vec![addr(i)],
                pairs: vec![],
                dhcp_servers: vec!["10.0.0.1".parse().unwrap()],
                rules: rules.clone(),
            }
        })
        .collect();
    let sets = [EtherType::Ipv4, EtherType::Ipv6]
        .into_iter()
        .map(|ethertype| MemberSet {
            group_id: group.id.clone(),
            ethertype,
            members: match ethertype {
                EtherType::Ipv4 => (0..n).map(|i| addr(i).into()).collect(),
                EtherType::Ipv6 => vec![],
            },
        })
        .collect();
    Firewall { ports, sets }
}

/// The first `k` ports of `fw` (and every member: the group's members are known).
fn first(fw: &Firewall, k: usize) -> Firewall {
    Firewall {
        ports: fw.ports[..k].to_vec(),
        sets: fw.sets.clone(),
    }
}

/// Runs `program` (found in the system's directories) in namespace `ns` with `input`.
fn restore(program: &str, package: &str, args: &[&str], ns: &str, input: &str) {
    let mut cmd = sp_kernel::exec::command(program, package).unwrap();
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::null());
    sp_kernel::netns::command_in(&mut cmd, ns).unwrap();
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "{program} in {ns}");
}

/// Liberty's refresh after a port change: the member set, then the filter table.
fn liberty(fw: &Firewall, ns: &str) {
    restore(
        "ipset",
        "ipset",
        &["restore"],
        ns,
        &fw.ipset_restore(EtherType::Ipv4),
    );
    restore(
        "iptables-restore",
        "iptables",
        &["-n"],
        ns,
        &fw.iptables_restore(EtherType::Ipv4),
    );
}

fn flush_baseline(ns: &str) {
    restore("iptables-restore", "iptables", &[], ns, "*filter\nCOMMIT\n");
}

pub fn run(n: usize, runs: usize) {
    if !crate::in_sandbox_child("sg", n, runs) {
        return;
    }
    require::program("iptables-restore", "iptables");
    require::program("ipset", "ipset");
    let fw = firewall(n);
    let theirs = "sg-iptables";
    for made in sp_kernel::netns::create_each(&[theirs], |_| Ok(())).unwrap() {
        made.unwrap();
    }
    let load = |f: &Firewall| sp_sg::load(f, &mut Vec::new()).unwrap();
    let remove = || {
        sp_sg::remove().unwrap();
    };

    // All N ports at once, into nothing.
    let mut first_ours = Duration::MAX;
    let mut first_theirs = Duration::MAX;
    for _ in 0..runs {
        remove();
        first_ours = first_ours.min(crate::best_of(1, || load(&fw)));
        flush_baseline(theirs);
        first_theirs = first_theirs.min(crate::best_of(1, || liberty(&fw, theirs)));
    }
    // Ports added one at a time: a refresh per port change.
    remove();
    let one_by_one_ours = crate::best_of(1, || {
        for k in 1..=n {
            load(&first(&fw, k));
        }
    });
    flush_baseline(theirs);
    let one_by_one_theirs = crate::best_of(1, || {
        for k in 1..=n {
            liberty(&first(&fw, k), theirs);
        }
    });
    // A re-apply with nothing to do: read, compare, load nothing.
    let want = sp_sg::SgRules::of(&fw).unwrap();
    let noop = crate::best_of(runs.max(3), || {
        let cur = sp_sg::read().unwrap().unwrap();
        assert!(cur.matches(&want), "{:?}", cur.differences(&want));
    });
    let lines = want.lines().len();
    let ipt = fw.iptables_restore(EtherType::Ipv4).lines().count();
    crate::report(
        &format!(
            "security groups: {n} ports (default group + 12-4), first load ({lines} lines of nft list table; {ipt} lines of iptables-restore input)"
        ),
        first_ours,
        &[("ipset+ipt-rst", first_theirs)],
    );
    crate::report(
        &format!("security groups: {n} ports added one at a time ({n} refreshes)"),
        one_by_one_ours,
        &[("ipset+ipt-rst", one_by_one_theirs)],
    );
    println!(
        "  re-apply with nothing to do (read both tables and the sysctls, compare): {:.1} ms",
        noop.as_secs_f64() * 1e3
    );
}
