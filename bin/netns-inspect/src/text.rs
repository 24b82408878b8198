//! The human-readable tree.

use std::fmt::Write;

use sp_inspect::{Link, Namespace, Nat, Ovs, Problem, Report, Route, Severity};
use sp_neutron::DeviceRole;

/// One line per namespace, like `ip -br`: kind, id (the name for a plain one), links
/// with state and first address, processes, problems.
pub fn brief(report: &Report) -> String {
    let rows: Vec<[String; 5]> = report
        .namespaces
        .iter()
        .map(|ns| {
            let links: Vec<String> = ns
                .links
                .iter()
                .filter(|l| l.kind != "loopback")
                .map(|l| {
                    let mut s = format!("{} {}", l.name, l.operstate);
                    let first = l.addresses.iter().find(|a| a.scope == "global");
                    if let Some(a) = first.or(l.addresses.first()) {
                        let _ = write!(s, " {}/{}", a.address, a.prefix_len);
                    }
                    s
                })
                .collect();
            let procs = if ns.root || ns.processes.is_empty() {
                ns.process_count.to_string()
            } else {
                let mut names: Vec<String> = ns
                    .processes
                    .iter()
                    .filter_map(|p| p.command.first())
                    .map(|c| c.rsplit('/').next().unwrap_or(c).to_owned())
                    .collect();
                names.dedup();
                format!("{} ({})", ns.process_count, names.join(","))
            };
            let problems = report
                .problems
                .iter()
                .filter(|p| p.namespace == ns.label)
                .count();
            [
                ns.kind.as_str().to_owned(),
                ns.neutron_id.clone().unwrap_or_else(|| ns.label.clone()),
                if links.is_empty() {
                    "-".into()
                } else {
                    links.join(", ")
                },
                format!("procs {procs}"),
                format!("problems {problems}"),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<w0$} {:<w1$} {}  {}  {}",
            r[0], r[1], r[3], r[4], r[2]
        );
    }
    if rows.is_empty() {
        out.push_str("(no namespace matches)\n");
    }
    out
}

/// Renders the report as a tree: one block per namespace, Open vSwitch, then the
/// problems.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for ns in &report.namespaces {
        namespace(&mut out, ns);
        out.push('\n');
    }
    if report.namespaces.is_empty() {
        out.push_str("(no namespace matches)\n\n");
    }
    if let Some(ovs) = &report.ovs {
        open_vswitch(&mut out, ovs);
        out.push('\n');
    }
    problems(&mut out, &report.problems);
    out
}

fn open_vswitch(out: &mut String, ovs: &Ovs) {
    let _ = writeln!(out, "Open vSwitch ({})", ovs.db);
    for (n, b) in ovs.bridges.iter().enumerate() {
        let last = n + 1 == ovs.bridges.len();
        let (head, cont) = if last {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let _ = writeln!(
            out,
            "{head} {}  fail_mode {}  datapath {}",
            b.name,
            b.fail_mode.as_deref().unwrap_or("standalone (unset)"),
            b.datapath_type.as_deref().unwrap_or("system (unset)")
        );
        for p in &b.ports {
            for i in &p.interfaces {
                let mut line = format!(
                    "{cont}  {:<16} {:<9}",
                    p.name,
                    if i.iface_type.is_empty() {
                        "system"
                    } else {
                        &i.iface_type
                    }
                );
                if let Some(t) = p.tag {
                    let _ = write!(line, " tag {t}");
                }
                if i.name != p.name {
                    let _ = write!(line, " interface {}", i.name);
                }
                if let Some(peer) = &i.peer {
                    let _ = write!(line, " peer {peer}");
                }
                if let Some(r) = &i.remote_ip {
                    let _ = write!(line, " remote_ip {r}");
                }
                if let Some(id) = &i.iface_id {
                    let _ = write!(line, " Neutron port {id}");
                }
                if let Some(m) = &i.attached_mac {
                    let _ = write!(line, " attached-mac {m}");
                }
                if let Some(e) = &i.error {
                    let _ = write!(line, " ERROR {e}");
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

fn problems(out: &mut String, problems: &[Problem]) {
    let report_problems = problems;
    if report_problems.is_empty() {
        out.push_str("problems: none\n");
    } else {
        let _ = writeln!(out, "problems: {}", report_problems.len());
        for p in report_problems {
            let sev = match p.severity {
                Severity::Error => "error  ",
                Severity::Warning => "warning",
            };
            // The same word as in the JSON (`orphan-veth`, `mtu-mismatch`…).
            let kind = serde_json::to_value(p.kind).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {sev} {:<24} {}",
                kind.as_str().unwrap_or("?"),
                p.message
            );
        }
    }
}

fn namespace(out: &mut String, ns: &Namespace) {
    let mut tags = Vec::new();
    if ns.root {
        tags.push("root namespace".to_owned());
    }
    if ns.current {
        tags.push("this process's namespace".to_owned());
    }
    if let (Some(meaning), Some(id)) = (ns.kind.id_meaning(), &ns.neutron_id) {
        tags.push(format!("{} · {meaning} {id}", ns.kind.as_str()));
    }
    if ns.names.is_empty() && !ns.root && !ns.current {
        tags.push("unnamed, held by processes".to_owned());
    }
    if ns.names.len() > 1 {
        tags.push(format!("also named {}", ns.names[1..].join(", ")));
    }
    let fwd = match ns.ip_forward {
        Some(true) => "ip_forward=1",
        Some(false) => "ip_forward=0",
        None => "ip_forward=?",
    };
    let _ = writeln!(
        out,
        "{}  [{}]  {fwd}  inode {}",
        ns.label,
        tags.join("; "),
        ns.inode
    );
    let sections = 1
        + usize::from(!ns.routes.is_empty())
        + usize::from(!ns.nft_tables.is_empty())
        + usize::from(ns.nat.is_some())
        + 1;
    let mut left = sections;
    let mut branch = |out: &mut String, title: &str| -> &'static str {
        left -= 1;
        let (head, cont) = if left == 0 {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let _ = writeln!(out, "{head} {title}");
        cont
    };
    let cont = branch(out, &format!("links ({})", ns.links.len()));
    for l in &ns.links {
        link(out, cont, l);
    }
    if !ns.routes.is_empty() {
        let cont = branch(out, "routes (main table)");
        for r in &ns.routes {
            let _ = writeln!(out, "{cont}  {}", route(r));
        }
    }
    if !ns.nft_tables.is_empty() {
        branch(out, &format!("nf_tables: {}", ns.nft_tables.join(", ")));
    }
    if let Some(nat) = &ns.nat {
        let cont = branch(out, "NAT");
        nat_lines(out, cont, nat);
    }
    if ns.root {
        branch(
            out,
            &format!(
                "processes: {} (not listed for the root namespace)",
                ns.process_count
            ),
        );
    } else if ns.processes.is_empty() {
        branch(out, "processes: none");
    } else {
        let cont = branch(out, &format!("processes ({})", ns.processes.len()));
        for p in &ns.processes {
            let _ = writeln!(out, "{cont}  {:>7}  {}", p.pid, p.command.join(" "));
        }
    }
}

fn nat_lines(out: &mut String, cont: &str, nat: &Nat) {
    for s in &nat.subnets {
        let _ = writeln!(
            out,
            "{cont}  subnet {} on {}: {}",
            s.subnet,
            s.dev,
            match &s.snat_to {
                Some(to) => format!(
                    "SNAT to {to}{}",
                    s.out_dev
                        .as_ref()
                        .map_or(String::new(), |d| format!(" out {d}"))
                ),
                None => "no SNAT".into(),
            }
        );
    }
    for f in &nat.floating {
        let _ = writeln!(
            out,
            "{cont}  floating {} ↔ {}{}",
            f.floating,
            f.fixed,
            match (f.dnat, f.snat) {
                (true, true) => "",
                (true, false) => "  (DNAT only: leaves by the router's SNAT)",
                (false, _) => "  (no DNAT: unreachable from outside)",
            }
        );
    }
    if let Some(m) = &nat.metadata {
        let _ = writeln!(
            out,
            "{cont}  metadata 169.254.169.254{} from {} → local port {}",
            m.dport.map_or(String::new(), |p| format!(":{p}")),
            m.from.as_deref().unwrap_or("any"),
            m.to_port
        );
    }
}

/// What Neutron makes of the link: its OVS plugging, the hybrid plugging's parts.
fn neutron_line(l: &Link) -> Option<String> {
    if let Some(o) = &l.ovs {
        let mut s = format!("OVS {} port on {}", o.iface_type, o.bridge);
        if let Some(t) = o.tag {
            let _ = write!(s, ", tag {t}");
        }
        if let Some(p) = &o.peer {
            let _ = write!(s, ", patch to {p}");
        }
        if let Some(id) = &o.iface_id {
            let _ = write!(s, ", Neutron port {id}");
        }
        if let Some(m) = &o.attached_mac {
            let _ = write!(s, ", attached-mac {m}");
        }
        if let Some(e) = &o.error {
            let _ = write!(s, ", ERROR {e}");
        }
        return Some(s);
    }
    match &l.neutron {
        Some(DeviceRole::HybridBridge { port_id_prefix }) => Some(format!(
            "hybrid plugging: the Linux bridge of Neutron port {port_id_prefix}… (iptables filters it here)"
        )),
        Some(DeviceRole::HybridBridgeEnd { port_id_prefix }) => Some(format!(
            "hybrid plugging: the veth end on qbr{port_id_prefix} of Neutron port {port_id_prefix}…"
        )),
        Some(DeviceRole::HybridOvsEnd { port_id_prefix }) => Some(format!(
            "hybrid plugging: the veth end towards br-int of Neutron port {port_id_prefix}…"
        )),
        _ => None,
    }
}

fn link(out: &mut String, cont: &str, l: &Link) {
    let mut line = format!(
        "{cont}  {:<16} {:<8} {:<7}{}",
        l.name,
        l.kind,
        l.operstate,
        if l.up { "" } else { " (admin down)" }
    );
    if let Some(mtu) = l.mtu {
        let _ = write!(line, " mtu {mtu}");
    }
    if let Some(mac) = &l.mac {
        let _ = write!(line, " {mac}");
    }
    if let Some(m) = &l.master {
        let _ = write!(line, " master {m}");
    }
    let _ = writeln!(out, "{line}");
    let pad = format!("{cont}    ");
    if let Some(s) = neutron_line(l) {
        let _ = writeln!(out, "{pad}{}: {s}", l.name);
    }
    if let Some(v) = &l.vxlan {
        let onoff = |b: Option<bool>| match b {
            Some(true) => "on",
            Some(false) => "off",
            None => "?",
        };
        let _ = writeln!(
            out,
            "{pad}vxlan id {} local {} dev {} port {} learning {} proxy {}{}",
            v.vni.map_or("?".into(), |v| v.to_string()),
            v.local.as_deref().unwrap_or("-"),
            v.dev.as_deref().unwrap_or("-"),
            v.port.map_or("8472 (default)".into(), |p| p.to_string()),
            onoff(v.learning),
            onoff(v.proxy),
            v.group
                .as_ref()
                .map_or(String::new(), |g| format!(" group {g}")),
        );
        for e in &v.fdb {
            let _ = writeln!(out, "{pad}  fdb {e}");
        }
        for n in &v.neighbours {
            let _ = writeln!(out, "{pad}  neigh {n}");
        }
    }
    if let Some(rules) = &l.filter {
        if rules.is_empty() {
            let _ = writeln!(out, "{pad}filter: no rule names this port");
        } else {
            let _ = writeln!(out, "{pad}filter ({} rules):", rules.len());
            for r in rules {
                let _ = writeln!(out, "{pad}  {} {}: {}", r.table, r.chain, r.rule);
            }
        }
    }
    if !l.addresses.is_empty() {
        let addrs: Vec<String> = l
            .addresses
            .iter()
            .map(|a| {
                let mut s = format!("{}/{}", a.address, a.prefix_len);
                if let Some(b) = &a.broadcast {
                    let _ = write!(s, " brd {b}");
                }
                if a.scope != "global" {
                    let _ = write!(s, " scope {}", a.scope);
                }
                s
            })
            .collect();
        let _ = writeln!(out, "{pad}{}", addrs.join(", "));
    }
    if l.kind == "veth" {
        match &l.peer {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "{pad}↔ {} in {}{}",
                    p.name,
                    p.namespace,
                    p.master
                        .as_ref()
                        .map_or(String::new(), |m| format!(", on {m}"))
                );
            }
            None => {
                let _ = writeln!(out, "{pad}↔ peer not found in any visible namespace");
            }
        }
    }
}

fn route(r: &Route) -> String {
    let mut s = r.destination.clone();
    if let Some(g) = &r.gateway {
        let _ = write!(s, " via {g}");
    }
    if let Some(d) = &r.dev {
        let _ = write!(s, " dev {d}");
    }
    if r.protocol != "boot" && r.protocol != "unspec" {
        let _ = write!(s, " proto {}", r.protocol);
    }
    if r.scope != "global" {
        let _ = write!(s, " scope {}", r.scope);
    }
    if let Some(src) = &r.prefsrc {
        let _ = write!(s, " src {src}");
    }
    if let Some(m) = r.metric {
        let _ = write!(s, " metric {m}");
    }
    if r.route_type != "unicast" {
        s = format!("{} {s}", r.route_type);
    }
    if r.default {
        s.push_str("   ← default route");
    }
    s
}
