//! The human-readable tree.

use std::fmt::Write;

use sp_inspect::{Link, Namespace, Report, Route, Severity};

/// Renders the report as a tree: one block per namespace, then the problems.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for ns in &report.namespaces {
        namespace(&mut out, ns);
        out.push('\n');
    }
    if report.namespaces.is_empty() {
        out.push_str("(no namespace matches)\n\n");
    }
    if report.problems.is_empty() {
        out.push_str("problems: none\n");
    } else {
        let _ = writeln!(out, "problems: {}", report.problems.len());
        for p in &report.problems {
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
    out
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
    let sections = 1 + usize::from(!ns.routes.is_empty()) + 1;
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
    if let Some(v) = &l.vxlan {
        let _ = writeln!(
            out,
            "{pad}vxlan id {} dev {} port {}{}{}",
            v.vni.map_or("?".into(), |v| v.to_string()),
            v.dev.as_deref().unwrap_or("-"),
            v.port.map_or("8472 (default)".into(), |p| p.to_string()),
            v.group
                .as_ref()
                .map_or(String::new(), |g| format!(" group {g}")),
            if v.proxy == Some(true) { " proxy" } else { "" },
        );
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
