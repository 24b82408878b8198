//! Problems an operator should know about, judged from the collected namespaces.

use sp_neutron::NamespaceKind;

use crate::model::*;

/// Appends the problems found in `namespaces` to `out`.
pub fn find(namespaces: &[Namespace], out: &mut Vec<Problem>) {
    for ns in namespaces {
        let problem = |severity, kind, link: Option<&Link>, message: String| Problem {
            severity,
            kind,
            namespace: ns.label.clone(),
            link: link.map(|l| l.name.clone()),
            message,
        };
        let non_lo = ns.links.iter().filter(|l| l.kind != "loopback").count();
        if ns.kind.is_neutron() && non_lo == 0 && ns.process_count == 0 {
            out.push(problem(
                Severity::Warning,
                ProblemKind::EmptyNeutronNamespace,
                None,
                format!(
                    "{} has no interface but lo and no process: leaked after its {} was \
                     deleted? (`ip netns delete {}`)",
                    ns.label,
                    ns.kind.id_meaning().unwrap_or("owner"),
                    ns.label
                ),
            ));
        }
        if ns.kind == NamespaceKind::Qdhcp
            && non_lo > 0
            && !ns
                .processes
                .iter()
                .any(|p| sp_kernel::procs::is_dnsmasq(&p.command))
        {
            out.push(problem(
                Severity::Error,
                ProblemKind::QdhcpWithoutDnsmasq,
                None,
                format!(
                    "{} has no dnsmasq running: instances on network {} get no DHCP lease",
                    ns.label,
                    ns.neutron_id.as_deref().unwrap_or("?")
                ),
            ));
        }
        if ns.kind == NamespaceKind::Qrouter && non_lo > 0 && ns.ip_forward == Some(false) {
            out.push(problem(
                Severity::Error,
                ProblemKind::QrouterNotForwarding,
                None,
                format!(
                    "{} has net.ipv4.ip_forward=0: the router routes nothing",
                    ns.label
                ),
            ));
        }
        if let Some(nat) = &ns.nat {
            for f in nat.floating.iter().filter(|f| !f.dnat) {
                out.push(problem(
                    Severity::Error,
                    ProblemKind::FloatingIpWithoutDnat,
                    None,
                    format!(
                        "floating IP {} of {} leaves as {} (SNAT) but nothing translates it back (no `ip daddr {} dnat to {}`): unreachable from outside",
                        f.floating, f.fixed, f.floating, f.floating, f.fixed
                    ),
                ));
            }
            for sn in nat.subnets.iter().filter(|s| s.snat_to.is_none()) {
                out.push(problem(
                    Severity::Warning,
                    ProblemKind::SubnetWithoutSnat,
                    None,
                    format!(
                        "router subnet {} on {} has no SNAT rule: its instances reach the outside only through floating IPs (right only for enable_snat=False)",
                        sn.subnet, sn.dev
                    ),
                ));
            }
        }
        for link in ns.links.iter().filter(|l| {
            ns.security_groups && l.master.is_some() && l.filter.as_ref().is_some_and(Vec::is_empty)
        }) {
            out.push(problem(
                Severity::Error,
                ProblemKind::PortWithoutFilter,
                Some(link),
                format!(
                    "instance port {} on {} has no filtering rule while security groups \
                     are on in {}: its traffic passes unfiltered",
                    link.name,
                    link.master.as_deref().unwrap_or("?"),
                    ns.label
                ),
            ));
        }
        for link in ns.links.iter().filter(|l| l.kind == "veth") {
            match &link.peer {
                None => out.push(problem(
                    Severity::Error,
                    ProblemKind::OrphanVeth,
                    Some(link),
                    format!(
                        "veth {} in {}: its peer is in no namespace visible here (neither \
                         named in /run/netns nor held by a process) — a leaked namespace \
                         still pinned by an open descriptor or a foreign mount",
                        link.name, ns.label
                    ),
                )),
                // Report each pair once, on the end with the larger MTU: it sends the
                // frames the other end drops, and its MTU is the one to lower.
                Some(peer) if peer.mtu.is_some() && link.mtu > peer.mtu => out.push(problem(
                    Severity::Warning,
                    ProblemKind::MtuMismatch,
                    Some(link),
                    format!(
                        "veth {} (mtu {}) in {} and its peer {} (mtu {}) in {} differ: \
                             frames larger than the smaller MTU are dropped",
                        link.name,
                        fmt_mtu(link.mtu),
                        ns.label,
                        peer.name,
                        fmt_mtu(peer.mtu),
                        peer.namespace
                    ),
                )),
                Some(_) => {}
            }
        }
    }
}

fn fmt_mtu(m: Option<u32>) -> String {
    m.map_or_else(|| "?".into(), |m| m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(label: &str, kind: NamespaceKind) -> Namespace {
        Namespace {
            label: label.into(),
            names: vec![label.into()],
            inode: 7,
            root: false,
            current: false,
            kind,
            neutron_id: Some("5b6a8b87-fd03-46b5-a968-72bac5091b7c".into()),
            ip_forward: Some(false),
            links: vec![link("lo", "loopback", 1)],
            routes: vec![],
            processes: vec![],
            process_count: 0,
            nft_tables: vec![],
            security_groups: false,
            nat: None,
        }
    }

    fn link(name: &str, kind: &str, index: u32) -> Link {
        let mut l = Link::new(index, name, kind);
        l.up = true;
        l.operstate = "UP".into();
        l.mtu = Some(1500);
        l
    }

    fn kinds(nss: &[Namespace]) -> Vec<ProblemKind> {
        let mut out = vec![];
        find(nss, &mut out);
        out.into_iter().map(|p| p.kind).collect()
    }

    #[test]
    fn empty_neutron_namespace_is_a_leak() {
        assert_eq!(
            kinds(&[ns("qdhcp-x", NamespaceKind::Qdhcp)]),
            [ProblemKind::EmptyNeutronNamespace]
        );
        assert!(kinds(&[ns("blue", NamespaceKind::Plain)]).is_empty());
    }

    #[test]
    fn qdhcp_needs_dnsmasq() {
        let mut n = ns("qdhcp-x", NamespaceKind::Qdhcp);
        n.links.push(link("ns-1", "tun", 2));
        n.process_count = 1;
        n.processes = vec![Process {
            pid: 5,
            command: vec!["sleep".into()],
        }];
        assert_eq!(kinds(&[n.clone()]), [ProblemKind::QdhcpWithoutDnsmasq]);
        n.processes[0].command = vec!["/usr/sbin/dnsmasq".into(), "--no-hosts".into()];
        assert!(kinds(&[n]).is_empty());
    }

    #[test]
    fn router_must_forward_and_veths_need_peers() {
        let mut n = ns("qrouter-x", NamespaceKind::Qrouter);
        n.links.push(link("qr-1", "veth", 2));
        assert_eq!(
            kinds(&[n.clone()]),
            [ProblemKind::QrouterNotForwarding, ProblemKind::OrphanVeth]
        );
        n.ip_forward = Some(true);
        n.links[1].mtu = Some(1500);
        n.links[1].peer = Some(Peer {
            namespace: "root".into(),
            namespace_inode: 9,
            index: 4,
            name: "tap1".into(),
            mtu: Some(1450),
            master: None,
        });
        assert_eq!(kinds(&[n]), [ProblemKind::MtuMismatch]);
    }
}
