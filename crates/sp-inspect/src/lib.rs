//! `netns-inspect` as a library: what lives in every network namespace.
//!
//! [`inspect`] finds every namespace (named in `/run/netns`, the root one, the caller's,
//! and those held only by processes), reads links, addresses, routes, `ip_forward` and
//! processes of each, resolves veth peers across namespaces, recognises Neutron's
//! `qrouter-`/`qdhcp-`/`snat-`/`fip-` namespaces and points out problems.
//! [`Filter`] narrows a report to the namespaces asked for.

mod gather;
mod model;
mod names;
mod ovs;
mod problems;
mod rules;

pub use gather::{inspect, inspect_with, InspectError, Options};
pub use model::*;
pub use ovs::default_endpoint as default_ovsdb;
use sp_neutron::NamespaceKind;

/// Which namespaces to keep in a report.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Names or name prefixes (`qrouter-006df4cc`); empty keeps all.
    pub names: Vec<String>,
    /// Kinds; empty keeps all.
    pub kinds: Vec<NamespaceKind>,
}

/// Errors of a filter that cannot be satisfied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    InvalidName(#[from] sp_names::NameError),
    #[error("no network namespace named {0:?} (or starting with it); `netns-inspect` alone lists them all")]
    NoSuchNamespace(String),
}

impl Filter {
    /// Checks the names before any work: no `/`, no `..`. A trailing `…` (as the
    /// guides abbreviate ids) is taken as a prefix marker and dropped.
    pub fn new(names: Vec<String>, kinds: Vec<NamespaceKind>) -> Result<Self, FilterError> {
        let names = names
            .into_iter()
            .map(|n| {
                let n = n.strip_suffix('…').map(str::to_owned).unwrap_or(n);
                sp_names::NsName::check(&n).map(|_| n)
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { names, kinds })
    }

    fn matches_name(ns: &Namespace, wanted: &str) -> bool {
        ns.label == wanted || ns.names.iter().any(|n| n.starts_with(wanted))
    }

    /// Keeps the namespaces (and their problems) this filter selects. Every name must
    /// select at least one namespace.
    pub fn apply(&self, mut report: Report) -> Result<Report, FilterError> {
        for wanted in &self.names {
            if !report
                .namespaces
                .iter()
                .any(|ns| Self::matches_name(ns, wanted))
                && !report.problems.iter().any(|p| p.namespace == *wanted)
            {
                return Err(FilterError::NoSuchNamespace(wanted.clone()));
            }
        }
        let keep = |label: &str, kind: Option<NamespaceKind>, ns: Option<&Namespace>| {
            let by_name = self.names.is_empty()
                || self.names.iter().any(|w| match ns {
                    Some(ns) => Self::matches_name(ns, w),
                    None => label.starts_with(w.as_str()),
                });
            let by_kind = self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(&k));
            by_name && by_kind
        };
        report
            .namespaces
            .retain(|ns| keep(&ns.label, Some(ns.kind), Some(ns)));
        let kept: Vec<String> = report.namespaces.iter().map(|n| n.label.clone()).collect();
        report.problems.retain(|p| {
            kept.contains(&p.namespace)
                || (p.kind == ProblemKind::StaleNetnsFile
                    && keep(
                        &p.namespace,
                        Some(sp_neutron::classify_namespace(&p.namespace).0),
                        None,
                    ))
        });
        Ok(report)
    }
}

/// Whether `p` concerns what an operator owns: the root namespace, this process's, a
/// named one (or a stale name) — not a namespace held only by some process, which
/// belongs to whoever runs it (another user's container, a sandbox).
pub fn owned_by_operator(report: &Report, p: &Problem) -> bool {
    match report.namespaces.iter().find(|ns| ns.label == p.namespace) {
        Some(ns) => ns.root || ns.current || !ns.names.is_empty(),
        None => !p.namespace.starts_with("pid:"),
    }
}
