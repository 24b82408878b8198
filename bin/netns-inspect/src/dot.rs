//! The picture: the report as a Graphviz graph (`--format dot`). Each namespace is a
//! cluster, each link a node; edges are veth pairs, bridge and OVS membership, patch
//! ports and VXLAN tunnels to the remote VTEPs their FDB names. Neutron ids are in the
//! labels, what a problem names is red.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use sp_inspect::{Link, Namespace, Report};

/// A string as a DOT quoted id.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn node_id(ns: usize, index: u32) -> String {
    format!("l{ns}_{index}")
}

fn link_label(l: &Link) -> String {
    let mut lines = vec![l.name.clone(), format!("{} {}", l.kind, l.operstate)];
    if let Some(role) = &l.neutron {
        if let Some(p) = role.port_id_prefix() {
            lines.push(format!("port {p}…"));
        }
    }
    if let Some(o) = &l.ovs {
        let mut s = format!("OVS {} on {}", o.iface_type, o.bridge);
        if let Some(t) = o.tag {
            let _ = write!(s, " tag {t}");
        }
        lines.push(s);
        if let Some(id) = &o.iface_id {
            lines.push(format!("Neutron port {id}"));
        }
    }
    if let Some(v) = &l.vxlan {
        lines.push(format!(
            "vni {} local {}",
            v.vni.map_or("?".into(), |v| v.to_string()),
            v.local.as_deref().unwrap_or("-")
        ));
    }
    lines.extend(
        l.addresses
            .iter()
            .filter(|a| a.scope == "global")
            .map(|a| format!("{}/{}", a.address, a.prefix_len)),
    );
    if let Some(f) = &l.filter {
        lines.push(format!("filtered by {} rules", f.len()));
    }
    lines.join("\n")
}

fn cluster_label(ns: &Namespace) -> String {
    let mut lines = vec![ns.label.clone()];
    if let (Some(meaning), Some(id)) = (ns.kind.id_meaning(), &ns.neutron_id) {
        lines[0] = format!("{} {}", ns.kind.as_str(), &id[..id.len().min(8)]);
        lines.push(format!("{meaning} {id}"));
    }
    if let Some(nat) = &ns.nat {
        for f in &nat.floating {
            lines.push(format!("floating {} ↔ {}", f.floating, f.fixed));
        }
        for s in &nat.subnets {
            if let Some(to) = &s.snat_to {
                lines.push(format!("SNAT {} → {to}", s.subnet));
            }
        }
    }
    let names: BTreeSet<String> = ns
        .processes
        .iter()
        .filter_map(|p| p.command.first())
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_owned())
        .collect();
    if !names.is_empty() {
        lines.push(names.into_iter().collect::<Vec<_>>().join(", "));
    }
    lines.join("\n")
}

/// Renders the report as a DOT digraph.
pub fn render(report: &Report) -> String {
    let red_links: HashSet<(&str, &str)> = report
        .problems
        .iter()
        .filter_map(|p| Some((p.namespace.as_str(), p.link.as_deref()?)))
        .collect();
    let red_ns: HashSet<&str> = report
        .problems
        .iter()
        .filter(|p| p.link.is_none())
        .map(|p| p.namespace.as_str())
        .collect();
    let mut out = String::from(
        "digraph netns {\n  graph [rankdir=LR, fontname=\"sans\", fontsize=11, compound=true];\n  \
         node [shape=box, fontname=\"sans\", fontsize=10];\n  edge [fontname=\"sans\", fontsize=9];\n",
    );
    // (namespace label, link index) → node, and link name → nodes (for OVS).
    let mut by_label: HashMap<(&str, u32), String> = HashMap::new();
    let mut by_name: HashMap<&str, Vec<String>> = HashMap::new();
    for (n, ns) in report.namespaces.iter().enumerate() {
        let red = red_ns.contains(ns.label.as_str());
        let _ = writeln!(
            out,
            "  subgraph cluster_{n} {{\n    label={};{}",
            quote(&cluster_label(ns)),
            if red {
                " color=red; fontcolor=red;"
            } else {
                ""
            }
        );
        for l in ns.links.iter().filter(|l| l.kind != "loopback") {
            let id = node_id(n, l.index);
            let red = red_links.contains(&(ns.label.as_str(), l.name.as_str()));
            let _ = writeln!(
                out,
                "    {id} [label={}{}{}];",
                quote(&link_label(l)),
                if l.kind == "bridge" || l.ovs.as_ref().is_some_and(|o| o.bridge == l.name) {
                    ", style=rounded"
                } else {
                    ""
                },
                if red {
                    ", color=red, fontcolor=red"
                } else {
                    ""
                }
            );
            by_label.insert((ns.label.as_str(), l.index), id.clone());
            by_name.entry(l.name.as_str()).or_default().push(id);
        }
        out.push_str("  }\n");
    }
    let mut edges = Vec::new();
    let mut veth_done: HashSet<(String, String)> = HashSet::new();
    for (n, ns) in report.namespaces.iter().enumerate() {
        for l in ns.links.iter().filter(|l| l.kind != "loopback") {
            let id = node_id(n, l.index);
            if let Some(p) = &l.peer {
                if let Some(other) = by_label.get(&(p.namespace.as_str(), p.index)) {
                    let key = if id < *other {
                        (id.clone(), other.clone())
                    } else {
                        (other.clone(), id.clone())
                    };
                    if veth_done.insert(key) {
                        edges.push(format!("{id} -> {other} [dir=both, label=\"veth\"]"));
                    }
                }
            }
            if let Some(m) = &l.master {
                if let Some(b) = ns.links.iter().find(|b| &b.name == m) {
                    edges.push(format!(
                        "{id} -> {} [style=dashed, label=\"master\"]",
                        node_id(n, b.index)
                    ));
                }
            }
            if let Some(o) = &l.ovs {
                if o.bridge != l.name {
                    if let Some(b) = by_name.get(o.bridge.as_str()).and_then(|v| v.first()) {
                        edges.push(format!("{id} -> {b} [style=dashed, label=\"OVS\"]"));
                    }
                }
            }
            if let Some(v) = &l.vxlan {
                let vteps: BTreeSet<std::net::IpAddr> =
                    v.fdb.iter().filter_map(|e| e.dst).collect();
                for vtep in vteps {
                    edges.push(format!(
                        "{id} -> {} [style=dotted, label=\"VXLAN\"]",
                        quote(&format!("VTEP {vtep}"))
                    ));
                }
            }
        }
    }
    // OVS ports without a kernel device (patch ports, tunnels) as nodes of their own.
    if let Some(ovs) = &report.ovs {
        out.push_str("  subgraph cluster_ovs {\n    label=\"Open vSwitch (ports without a device)\"; style=dashed;\n");
        for b in &ovs.bridges {
            for p in &b.ports {
                for i in &p.interfaces {
                    if by_name.contains_key(i.name.as_str()) {
                        continue;
                    }
                    let id = quote(&format!("ovs:{}", i.name));
                    let kind = if i.iface_type.is_empty() {
                        "system"
                    } else {
                        &i.iface_type
                    };
                    let mut label = format!("{}\nOVS {kind} on {}", i.name, b.name);
                    if let Some(t) = p.tag {
                        let _ = write!(label, " tag {t}");
                    }
                    if let Some(r) = &i.remote_ip {
                        let _ = write!(label, "\nremote {r}");
                    }
                    let red = i.error.is_some() || p.tag == Some(4095);
                    let _ = writeln!(
                        out,
                        "    {id} [label={}{}];",
                        quote(&label),
                        if red {
                            ", color=red, fontcolor=red"
                        } else {
                            ""
                        }
                    );
                    if let Some(bn) = by_name.get(b.name.as_str()).and_then(|v| v.first()) {
                        edges.push(format!("{id} -> {bn} [style=dashed, label=\"OVS\"]"));
                    }
                    if let Some(peer) = &i.peer {
                        if i.name < *peer {
                            edges.push(format!(
                                "{id} -> {} [dir=both, style=bold, label=\"patch\"]",
                                quote(&format!("ovs:{peer}"))
                            ));
                        }
                    }
                    if let Some(r) = &i.remote_ip {
                        edges.push(format!(
                            "{id} -> {} [style=dotted, label=\"VXLAN\"]",
                            quote(&format!("VTEP {r}"))
                        ));
                    }
                }
            }
        }
        out.push_str("  }\n");
    }
    for e in edges {
        let _ = writeln!(out, "  {e};");
    }
    out.push_str("}\n");
    out
}
