//! One node's desired state ([`sp_config::desired::NodePlan`]) made real in the calling
//! thread's network namespace, as a reconciler (docs/reconciler.md):
//!
//! 1. **read** what is there, once, from the kernel and the daemons ([`current`]);
//! 2. **plan**, purely: desired × current × what this node made ([`owned`]) → typed
//!    actions ([`planner`]) — creations, attribute changes old → new, deletions of what
//!    this node made and no longer wants;
//! 3. **preflight** before the first change (capabilities, `/proc/sys/net`, the uplink
//!    NICs, `local_ip`, the programs apply runs);
//! 4. **apply** exactly those actions ([`apply`]), in the agents' order — flat networks
//!    and their uplinks (a reversible group), the Open vSwitch side, tenant networks,
//!    ports, l2population, dnsmasq, NAT, the metadata proxy, Cinder's volume group;
//! 5. **verify**: read again and plan again; what is left is reported.
//!
//! [`take_down`] is the same with nothing desired: everything this node made goes,
//! nothing else.

use std::path::PathBuf;

pub mod apply;
pub mod current;
pub mod demo;
mod ovs;
pub mod owned;
pub mod planner;
pub mod supervise;

use apply::Failed;
use current::Current;
use owned::Owned;
use planner::Action;
use sp_config::desired::NodePlan;
use sp_kernel::netlink::Netlink;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bridge(#[from] sp_bridge::Error),
    #[error(transparent)]
    Dhcp(#[from] sp_dhcp::Error),
    #[error(transparent)]
    Metadata(#[from] sp_metadata::Error),
    #[error(transparent)]
    Nat(#[from] sp_l3::Error),
    #[error("security groups: {0}")]
    Firewall(#[from] sp_sg::Error),
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error(transparent)]
    Cinder(#[from] sp_loopvg::Error),
    #[error(transparent)]
    Ovs(#[from] sp_ovs::Error),
    #[error("{0}")]
    Preflight(String),
    #[error("state file {path}: {1}", path = .0.display())]
    State(PathBuf, #[source] std::io::Error),
    #[error("{0}")]
    Locked(String),
    /// Root or a capability is missing; nothing was changed.
    #[error("{0}")]
    Privilege(String),
    #[error(transparent)]
    Name(#[from] sp_names::NameError),
}

/// Where state lives, and where Open vSwitch listens.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The agents' `state_path` (dnsmasq files, NAT records, bridges we made).
    pub state: PathBuf,
    /// Cinder's backing files (`/var/lib/cinder`, as the packstack notes keep them).
    pub cinder: PathBuf,
    /// ovsdb-server, for `external_network_bridge` ([`sp_ovs::default_db`]).
    pub ovsdb: sp_ovs::Endpoint,
    /// The stackplumb binary that runs the metadata proxy (`stackplumb metadata-proxy`):
    /// this one, by default.
    pub program: PathBuf,
}

impl Dirs {
    /// State and Cinder's files where given; Open vSwitch where a standard install
    /// has it.
    pub fn new(state: PathBuf, cinder: PathBuf) -> Dirs {
        Dirs {
            state,
            cinder,
            ovsdb: sp_ovs::default_db(),
            program: std::env::current_exe().unwrap_or_default(),
        }
    }
}

fn loopvg(dirs: &Dirs) -> sp_loopvg::Loopvg<'static> {
    sp_loopvg::Loopvg {
        dir: dirs.cinder.clone(),
        description: "Write from stackplumb".into(),
        ..Default::default()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The metadata proxy of `plan`'s node: `dirs.program`, its pid file
/// (`<state>/stackplumb/metadata-proxy-<node>.pid`) and the namespaces it serves
/// (docs/metadata.md).
pub fn metadata_proxy(plan: &NodePlan, dirs: &Dirs) -> Result<sp_metadata::Proxy> {
    let record = owned::path(&dirs.state, &plan.node)?;
    Ok(sp_metadata::Proxy {
        program: dirs.program.clone(),
        pid_file: record.with_file_name(format!("metadata-proxy-{}.pid", plan.node)),
        served: plan.metadata.clone(),
    })
}

/// What is there and what this node made, read once.
pub async fn read(nl: &Netlink, plan: &NodePlan, dirs: &Dirs) -> Result<(Current, Owned)> {
    let owned = Owned::load(&dirs.state, &plan.node)?;
    let cur = current::read(nl, plan, &owned, dirs).await?;
    Ok((cur, owned))
}

/// The actions that take this node from `cur` to `plan`.
pub fn plan(plan: &NodePlan, cur: &Current, owned: &Owned) -> Result<Vec<Action>> {
    planner::plan(plan, cur, owned).map_err(|c| {
        Error::Preflight(format!(
            "in the way, nothing was changed:\n  {}",
            c.into_iter().map(|c| c.0).collect::<Vec<_>>().join("\n  ")
        ))
    })
}

/// What an apply did, and what a reading afterwards still finds different.
#[derive(Debug)]
pub struct Applied {
    pub done: Vec<Action>,
    pub left: Vec<Action>,
}

/// Reads, plans, checks the preflight, executes the plan, reads and plans again;
/// `done` is called as each action completes.
pub async fn apply(
    nl: &Netlink,
    want: &NodePlan,
    dirs: &Dirs,
    done: &mut dyn FnMut(&Action),
) -> std::result::Result<Applied, Box<Failed>> {
    let early = |cause| {
        Box::new(Failed {
            done: vec![],
            failed: vec![],
            not_done: vec![],
            cause,
        })
    };
    let (cur, mut owned) = read(nl, want, dirs).await.map_err(early)?;
    let actions = plan(want, &cur, &owned).map_err(early)?;
    preflight(nl, want, dirs, &actions).await.map_err(early)?;
    if actions.is_empty() {
        // Nothing was to be done and nothing was: the reading stands.
        return Ok(Applied {
            done: vec![],
            left: vec![],
        });
    }
    let done = apply::execute(nl, want, &cur, &mut owned, actions, dirs, false, done).await?;
    let (cur, owned) = read(nl, want, dirs).await.map_err(early)?;
    let left = plan(want, &cur, &owned).map_err(early)?;
    Ok(Applied { done, left })
}

/// [`apply`] with nothing desired: everything this node made is removed (Cinder's volume
/// group deactivated, its files kept unless `purge`), nothing else.
pub async fn take_down(
    nl: &Netlink,
    want: &NodePlan,
    dirs: &Dirs,
    purge: bool,
    done: &mut dyn FnMut(&Action),
) -> std::result::Result<Applied, Box<Failed>> {
    let early = |cause| {
        Box::new(Failed {
            done: vec![],
            failed: vec![],
            not_done: vec![],
            cause,
        })
    };
    let nothing = nothing_of(want);
    // Open vSwitch reachable before anything is taken down.
    let ovs = ovs::connect(want, dirs).await.map_err(early)?;
    let (cur, mut owned) = read(nl, &nothing, dirs).await.map_err(early)?;
    let mut actions = plan(&nothing, &cur, &owned).map_err(early)?;
    if purge {
        // The volume group goes with its files also when it is inactive, and also when
        // it was made before this node kept a record.
        let name = want
            .cinder
            .as_ref()
            .map(|c| c.volume_group.to_string())
            .or_else(|| owned.volume_group.clone());
        let planned = actions
            .iter()
            .any(|a| matches!(a.object, planner::Object::VolumeGroup { .. }));
        if let (Some(name), false) = (name, planned) {
            if loopvg(dirs)
                .here(&name)
                .map_err(|e| early(e.into()))?
                .is_some()
            {
                actions.push(Action {
                    op: planner::Op::Delete,
                    object: planner::Object::VolumeGroup { name },
                    unit: planner::Unit::Prune,
                });
            }
        }
    }
    let mut finished =
        apply::execute(nl, &nothing, &cur, &mut owned, actions, dirs, purge, done).await?;
    if let Some(ovs) = &ovs {
        let mut changes = Vec::new();
        let r = async {
            ovs::remove_ports(ovs, want, &mut changes).await?;
            ovs::take_down(ovs, nl, want, &dirs.state, &mut changes).await
        }
        .await;
        if let Err(cause) = r {
            return Err(Box::new(Failed {
                done: finished,
                failed: vec![],
                not_done: vec![],
                cause,
            }));
        }
        for c in changes {
            let a = Action {
                op: planner::Op::Delete,
                object: planner::Object::Ovs {
                    said: c.to_string(),
                    object: c.object,
                },
                unit: planner::Unit::Prune,
            };
            done(&a);
            finished.push(a);
        }
    }
    let (cur, owned) = read(nl, &nothing, dirs).await.map_err(early)?;
    let left = plan(&nothing, &cur, &owned).map_err(early)?;
    Ok(Applied {
        done: finished,
        left,
    })
}

/// This node with nothing desired.
fn nothing_of(want: &NodePlan) -> NodePlan {
    NodePlan {
        node: want.node.clone(),
        tunnel_ip: want.tunnel_ip,
        networks: vec![],
        ports: vec![],
        l2pop: vec![],
        dhcp: vec![],
        routers: vec![],
        metadata: vec![],
        cinder: None,
        firewall: Default::default(),
    }
}

/// What this node must have before anything is changed: the capabilities the plan's
/// actions need, a writable `/proc/sys/net`, every uplink NIC, an interface holding the
/// tunnel address (`local_ip`) when a VXLAN network is wanted, dnsmasq when one is to
/// be started.
async fn preflight(nl: &Netlink, plan: &NodePlan, dirs: &Dirs, actions: &[Action]) -> Result<()> {
    use sp_kernel::caps::{self, Cap};
    if actions.is_empty() {
        return Ok(());
    }
    // Namespaces, links, sysctls; dnsmasq binds port 67 on raw sockets and drops to
    // nobody; loop devices for the volume group.
    let mut wanted = vec![Cap::NetAdmin, Cap::SysAdmin];
    if !plan.dhcp.is_empty() {
        wanted.extend([Cap::NetBindService, Cap::NetRaw, Cap::Setuid, Cap::Setgid]);
    }
    // The metadata proxy listens on port 80 in isolated networks' namespaces.
    if !plan.metadata.is_empty() && !wanted.contains(&Cap::NetBindService) {
        wanted.push(Cap::NetBindService);
    }
    let missing = caps::missing(&wanted);
    if !missing.is_empty() {
        return Err(Error::Privilege(format!(
            "stackplumb on node {} {}; nothing was changed",
            plan.node,
            caps::explain(&missing)
        )));
    }
    sp_kernel::netns::check_net_sysctl_writable()
        .map_err(|e| Error::Preflight(format!("{e}; nothing was changed")))?;
    // The directories apply writes into: real directories or nothing yet, never a
    // symlink planted there (found now, not after the data plane is built).
    let dhcp = dirs.state.join("dhcp");
    let ours = [dirs.state.join("stackplumb"), dhcp.clone()]
        .into_iter()
        .chain(plan.dhcp.iter().map(|d| d.dir.clone()));
    for dir in ours {
        if let Ok(md) = std::fs::symlink_metadata(&dir) {
            if !md.is_dir() {
                return Err(Error::Preflight(format!(
                    "{} is not a directory (a symlink is not followed); nothing was changed",
                    dir.display()
                )));
            }
        }
    }
    // The one program this node starts (NAT is written natively), found before
    // anything is made.
    if !plan.dhcp.is_empty() {
        sp_kernel::exec::program("dnsmasq", "dnsmasq-base").map_err(|e| {
            Error::Preflight(format!(
                "node {} starts dnsmasq: {e}; nothing was changed",
                plan.node
            ))
        })?;
    }
    // The metadata proxy is this stackplumb, started by absolute path.
    let runnable = dirs.program.is_absolute() && dirs.program.is_file();
    if !plan.metadata.is_empty() && !runnable {
        return Err(Error::Preflight(format!(
            "node {} runs the metadata proxy with {:?}, which is no program file; nothing was changed",
            plan.node, dirs.program
        )));
    }
    for n in &plan.networks {
        if let Some(nic) = &n.uplink {
            if nl.link_by_name(nic)?.is_none() {
                return Err(Error::Preflight(format!(
                    "uplink {nic} of network {} (physical_interface_mappings) does not exist on node {}; nothing was changed",
                    n.network_id, plan.node
                )));
            }
        }
    }
    let firewall = |a: &Action| a.unit == planner::Unit::Firewall;
    if actions.iter().any(firewall) && !std::path::Path::new("/proc/sys/net/bridge").exists() {
        return Err(Error::Preflight(format!(
            "{}; nothing was changed",
            sp_sg::Error::NoBrNetfilter
        )));
    }
    if plan.networks.iter().any(|n| n.vxlan.is_some()) {
        let held = nl
            .addresses()?
            .iter()
            .any(|a| sp_kernel::attrs::address_ip(a) == Some(plan.tunnel_ip));
        if !held {
            return Err(Error::Preflight(format!(
                "no interface of node {} holds its tunnel address {} (local_ip); nothing was changed",
                plan.node, plan.tunnel_ip
            )));
        }
    }
    Ok(())
}

/// What netns-inspect finds wrong in this node's namespaces (its own, shown as
/// `current`, and those of its ports): a qdhcp without dnsmasq, a router that does not
/// forward, an orphan veth, an MTU mismatch, a leaked namespace…
pub async fn problems(plan: &NodePlan) -> Result<Vec<sp_inspect::Problem>> {
    let ours: std::collections::BTreeSet<&str> = plan
        .ports
        .iter()
        .map(|p| p.namespace.as_str())
        .chain(["current"])
        .collect();
    Ok(sp_inspect::inspect()
        .await?
        .problems
        .into_iter()
        .filter(|p| ours.contains(p.namespace.as_str()))
        .collect())
}
