//! Reversible plans: an ordered list of (step, undo) pairs — netlink requests, sysctl
//! writes, or custom async steps (an OVSDB transaction, a reachability check). [`Plan::run`]
//! executes them in order; on any failure it runs the undos of the steps done, in
//! reverse, and returns [`RolledBack`] with the cause and any undo that failed. So a
//! group of changes that moves a host's address and routes is never left half-done.
//!
//! The error type `E` is the caller's: a custom step fails with it, and kernel errors and
//! injected faults convert into it. [`Faults::at`] fails on purpose before step *n*,
//! which is how every step's rollback is tested.

use futures::future::BoxFuture;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::LinkUnspec;

use crate::links::set_link;
use crate::netlink::Netlink;
use crate::{attrs, netns, Change, Error, Object, Result};

/// `RTPROT_KERNEL`: routes the kernel derives from addresses; they follow the addresses.
const PROTO_KERNEL: u8 = 2;

/// A failure injected on purpose by [`Faults`], before step `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected failure before step {0}")]
pub struct Injected(pub usize);

/// Counts the kernel-changing steps of an operation and fails on purpose at one of
/// them. Production code passes [`Faults::none`]; tests use [`Faults::at`] to prove that
/// a failure at any step is rolled back completely.
#[derive(Debug, Default)]
pub struct Faults {
    fail_at: Option<usize>,
    steps: usize,
}

impl Faults {
    /// Never fails.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fails before the `n`th kernel-changing step (0-based).
    pub fn at(n: usize) -> Self {
        Faults {
            fail_at: Some(n),
            steps: 0,
        }
    }

    /// Called before each kernel-changing step.
    pub fn step(&mut self) -> Result<(), Injected> {
        let n = self.steps;
        self.steps += 1;
        if self.fail_at == Some(n) {
            return Err(Injected(n));
        }
        Ok(())
    }

    /// How many steps were taken.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// A plan that failed: the cause, and every undo that failed too (empty when the
/// rollback was complete). Operations keep it boxed in a variant of their error
/// (`RolledBack(#[from] Box<RolledBack<Error>>)`).
#[derive(Debug)]
pub struct RolledBack<E> {
    pub cause: E,
    pub rollback: Vec<E>,
}

impl<E: std::fmt::Display> std::fmt::Display for RolledBack<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; rolled back", self.cause)?;
        for (i, e) in self.rollback.iter().enumerate() {
            f.write_str(if i == 0 {
                ", but undoing failed too: "
            } else {
                "; "
            })?;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RolledBack<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// A step that is not a netlink request (an OVSDB transaction, a reachability check):
/// a description and the work itself.
pub struct Custom<'a, E> {
    pub what: String,
    pub run: Box<dyn Fn() -> BoxFuture<'a, Result<(), E>> + Send + Sync + 'a>,
}

/// One reversible change.
pub enum Step<'a, E> {
    AddAddress(AddressMessage),
    DelAddress(AddressMessage),
    AddRoute(RouteMessage),
    DelRoute(RouteMessage),
    /// Enslaves `link` to `master` (`None`: releases it).
    SetMaster {
        link: u32,
        name: String,
        master: Option<u32>,
    },
    /// Sets a link's MAC address.
    SetMac {
        link: u32,
        name: String,
        mac: [u8; 6],
    },
    /// Sets a link administratively up or down.
    SetUp {
        link: u32,
        name: String,
        up: bool,
    },
    /// A `/proc/sys/net` value of this namespace.
    Sysctl {
        key: String,
        value: String,
    },
    Custom(Custom<'a, E>),
    /// Nothing (the undo of a check).
    Nothing,
}

impl<E> std::fmt::Debug for Step<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::AddAddress(a) => {
                write!(f, "add address {} (link {})", describe(a), a.header.index)
            }
            Step::DelAddress(a) => write!(
                f,
                "delete address {} (link {})",
                describe(a),
                a.header.index
            ),
            Step::AddRoute(r) => write!(f, "add {}", describe_route(r)),
            Step::DelRoute(r) => write!(f, "delete {}", describe_route(r)),
            Step::SetMaster { name, master, .. } => write!(f, "set master of {name} to {master:?}"),
            Step::SetMac { name, mac, .. } => write!(
                f,
                "set MAC of {name} to {}",
                mac.map(|b| format!("{b:02x}")).join(":")
            ),
            Step::SetUp { name, up, .. } => {
                write!(f, "set {name} {}", if *up { "up" } else { "down" })
            }
            Step::Sysctl { key, value } => write!(f, "{key}={value}"),
            Step::Custom(c) => f.write_str(&c.what),
            Step::Nothing => f.write_str("nothing"),
        }
    }
}

impl<E: From<Error>> Step<'_, E> {
    /// The inverse of an address or route step.
    fn inverse<'b>(&self) -> Step<'b, E> {
        match self {
            Step::AddAddress(a) => Step::DelAddress(a.clone()),
            Step::DelAddress(a) => Step::AddAddress(a.clone()),
            Step::AddRoute(r) => Step::DelRoute(r.clone()),
            Step::DelRoute(r) => Step::AddRoute(r.clone()),
            other => unreachable!("{other:?} carries its own undo"),
        }
    }

    async fn run(&self, nl: &Netlink) -> Result<(), E> {
        let h = nl.handle();
        let res = match self {
            Step::AddAddress(a) => {
                let msg = RouteNetlinkMessage::NewAddress(a.clone());
                return Ok(nl
                    .ack(msg, NLM_F_CREATE | NLM_F_EXCL, || format!("{self:?}"))
                    .await?);
            }
            Step::DelAddress(a) => h.address().del(a.clone()).execute().await,
            Step::AddRoute(r) => {
                // A dumped route carries state flags (LINKDOWN when the NIC has no
                // carrier) that the kernel refuses in a request (EINVAL): keep onlink.
                let mut r = r.clone();
                r.header.flags &= RouteFlags::Onlink;
                h.route().add(r).replace().execute().await
            }
            Step::DelRoute(r) => h.route().del(r.clone()).execute().await,
            Step::Sysctl { key, value } => return Ok(netns::write_net_sysctl(key, value)?),
            Step::SetMaster { link, name, master } => {
                let b = LinkUnspec::new_with_index(*link);
                let msg = match master {
                    Some(m) => b.controller(*m).build(),
                    None => b.nocontroller().build(),
                };
                return Ok(set_link(nl, msg, name, "change master of").await?);
            }
            Step::SetMac { link, name, mac } => {
                let msg = LinkUnspec::new_with_index(*link)
                    .address(mac.to_vec())
                    .build();
                return Ok(set_link(nl, msg, name, "set MAC of").await?);
            }
            Step::SetUp { link, name, up } => {
                let b = LinkUnspec::new_with_index(*link);
                let msg = if *up { b.up() } else { b.down() }.build();
                return Ok(set_link(nl, msg, name, "set up/down").await?);
            }
            Step::Custom(c) => return (c.run)().await,
            Step::Nothing => return Ok(()),
        };
        res.map_err(|e| Error::netlink(format!("{self:?}"), e).into())
    }
}

/// Global addresses of a link (scope universe), in kernel order.
pub fn global_addresses(nl: &Netlink, index: u32) -> Result<Vec<AddressMessage>> {
    Ok(nl
        .addresses()?
        .into_iter()
        .filter(|a| a.header.index == index && u8::from(a.header.scope) == 0)
        .collect())
}

/// Main-table routes through a link that did not come from its addresses.
pub fn routes_via(nl: &Netlink, index: u32) -> Result<Vec<RouteMessage>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        out.extend(nl.main_routes(family)?.into_iter().filter(|r| {
            attrs::route_oif(r) == Some(index)
                && attrs::route_table(r) == 254
                && u8::from(r.header.protocol) != PROTO_KERNEL
                && u8::from(r.header.kind) == 1
        }));
    }
    Ok(out)
}

/// The same address on another link (label and lifetimes dropped).
/// The broadcast address iproute2's `brd +` gives an IPv4 address: the subnet's last
/// address (the address itself for a /31 or /32), as Liberty's agents set it.
pub fn broadcast_of(ip: std::net::Ipv4Addr, prefix_len: u8) -> std::net::Ipv4Addr {
    match prefix_len {
        0..=30 => std::net::Ipv4Addr::from(u32::from(ip) | (u32::MAX >> prefix_len)),
        _ => ip,
    }
}

fn address_on(a: &AddressMessage, index: u32) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header = a.header.clone();
    m.header.index = index;
    m.attributes = a
        .attributes
        .iter()
        .filter(|x| {
            matches!(
                x,
                AddressAttribute::Address(_)
                    | AddressAttribute::Local(_)
                    | AddressAttribute::Broadcast(_)
            )
        })
        .cloned()
        .collect();
    m
}

/// The same route through another link with metric `metric`.
fn route_on(r: &RouteMessage, index: u32, metric: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = r.header.clone();
    m.attributes = r
        .attributes
        .iter()
        .filter(|x| {
            matches!(
                x,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::PrefSource(_)
                    | RouteAttribute::Table(_)
                    | RouteAttribute::Metrics(_)
            )
        })
        .cloned()
        .collect();
    m.attributes.push(RouteAttribute::Oif(index));
    if metric != 0 {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m
}

/// How a moved route's metric is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The Linux bridge agent's rule: m − 1, or 100 when the route had none, so the
    /// new route wins while both exist.
    Agent,
    /// Unchanged: the replace takes the old route over in place (same key).
    Same,
    /// The inverse of [`Metric::Agent`], for moving back: 100 → none, m → m + 1. So an
    /// attach and a detach leave the route as it was (but for an original metric of
    /// 101, which comes back as none).
    Unagent,
}

/// What a [`Plan::move_ip`] will move, for reporting.
#[derive(Debug, Clone, Default)]
pub struct Moved {
    pub addresses: Vec<String>,
    /// [`Object::Route`]s.
    pub routes: Vec<Object>,
}

impl Moved {
    /// Records what the move did.
    pub fn report(&self, from: &str, to: &str, changes: &mut Vec<Change>) {
        for a in &self.addresses {
            changes.push(Change::moved(Object::address(a, None), from, to));
        }
        for r in &self.routes {
            changes.push(Change::moved(r.clone(), from, to));
        }
    }
}

/// An ordered list of reversible steps: run in order, and on any failure the steps
/// done are undone in reverse, so nothing is left half-done.
pub struct Plan<'a, E> {
    steps: Vec<(Step<'a, E>, Step<'a, E>)>,
}

impl<E> std::fmt::Debug for Plan<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("steps", &self.steps).finish()
    }
}

impl<E> Default for Plan<'_, E> {
    fn default() -> Self {
        Plan { steps: Vec::new() }
    }
}

impl<'a, E: From<Error> + From<Injected>> Plan<'a, E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step and its undo.
    pub fn push(&mut self, step: Step<'a, E>, undo: Step<'a, E>) {
        self.steps.push((step, undo));
    }

    /// Appends an address or route step; its undo is its inverse.
    fn push_inverse(&mut self, step: Step<'a, E>) {
        let undo = step.inverse();
        self.steps.push((step, undo));
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Moves `from`'s global addresses and its routes onto `to`, in the Linux bridge
    /// agent's order: (IPv6 on for `to` when it is off and IPv6 addresses come,)
    /// addresses added to `to`, routes replaced onto `to`, `from`'s routes deleted,
    /// `from`'s addresses deleted (last first, so the primary goes last). An address
    /// already on `to` is not added again, so a run killed midway is finished by the
    /// next.
    pub fn move_ip(
        &mut self,
        nl: &Netlink,
        from: &LinkMessage,
        to: &LinkMessage,
        metric: Metric,
    ) -> Result<Moved> {
        let (fi, ti) = (from.header.index, to.header.index);
        let addrs = global_addresses(nl, fi)?;
        let routes = routes_via(nl, fi)?;
        let to_name = attrs::link_name(to).unwrap_or_default();
        let key = format!("ipv6/conf/{to_name}/disable_ipv6");
        if addrs
            .iter()
            .any(|a| a.header.family == AddressFamily::Inet6)
            && netns::read_net_sysctl(&key).is_ok_and(|v| v == "1")
        {
            self.push(
                Step::Sysctl {
                    key: key.clone(),
                    value: "0".into(),
                },
                Step::Sysctl {
                    key,
                    value: "1".into(),
                },
            );
        }
        // Already on `to` (a run killed midway): neither added nor, on undo, deleted.
        let there: Vec<String> = global_addresses(nl, ti)?.iter().map(describe).collect();
        for a in addrs.iter().filter(|a| !there.contains(&describe(a))) {
            self.push_inverse(Step::AddAddress(address_on(a, ti)));
        }
        for r in &routes {
            let m = attrs::route_metric(r);
            match metric {
                Metric::Agent => {
                    let m = if m == 0 { 100 } else { m - 1 };
                    self.push_inverse(Step::AddRoute(route_on(r, ti, m)));
                }
                Metric::Unagent => {
                    let m = if m == 100 { 0 } else { m + 1 };
                    self.push_inverse(Step::AddRoute(route_on(r, ti, m)));
                }
                // The replace takes the old route over in place, so undoing it means
                // putting the old route back.
                Metric::Same => self.push(
                    Step::AddRoute(route_on(r, ti, m)),
                    Step::AddRoute(r.clone()),
                ),
            }
        }
        if metric != Metric::Same {
            for r in &routes {
                self.push_inverse(Step::DelRoute(r.clone()));
            }
        }
        for a in addrs.iter().rev() {
            self.push_inverse(Step::DelAddress(a.clone()));
        }
        Ok(Moved {
            addresses: addrs.iter().map(describe).collect(),
            routes: routes.iter().map(route_object).collect(),
        })
    }

    /// Runs the plan; on failure undoes what was done, in reverse, and reports both
    /// the cause and any undo that failed.
    pub async fn run(self, nl: &Netlink, faults: &mut Faults) -> Result<(), Box<RolledBack<E>>> {
        let mut done: Vec<Step<'a, E>> = Vec::new();
        for (step, undo) in self.steps {
            let res = match faults.step() {
                Ok(()) => step.run(nl).await,
                Err(e) => Err(e.into()),
            };
            if let Err(cause) = res {
                let mut rollback = Vec::new();
                for u in done.iter().rev() {
                    if let Err(e) = u.run(nl).await {
                        rollback.push(e);
                    }
                }
                return Err(Box::new(RolledBack { cause, rollback }));
            }
            done.push(undo);
        }
        Ok(())
    }
}

fn describe(a: &AddressMessage) -> String {
    let ip = attrs::address_ip(a).map_or("?".into(), |ip| ip.to_string());
    format!("{ip}/{}", a.header.prefix_len)
}

/// A moved route as a change names it: `dst` as `ip -j route` gives it.
fn route_object(r: &RouteMessage) -> Object {
    let len = r.header.destination_prefix_length;
    let dst = match attrs::route_destination(r) {
        _ if len == 0 => "default".to_owned(),
        Some(ip) => format!("{ip}/{len}"),
        None => format!("?/{len}"),
    };
    Object::Route {
        dst,
        gateway: attrs::route_gateway(r),
    }
}

fn describe_route(r: &RouteMessage) -> String {
    let dst = if r.header.destination_prefix_length == 0 {
        "default".to_owned()
    } else {
        format!("route /{}", r.header.destination_prefix_length)
    };
    match attrs::route_gateway(r) {
        Some(gw) => format!("{dst} via {gw}"),
        None => dst,
    }
}
