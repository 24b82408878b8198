//! Network bridges and VXLAN devices, as the Linux bridge agent makes them.

use std::net::IpAddr;

use futures::StreamExt;

use netlink_packet_route::link::{BridgeStpState, InfoKind, LinkAttribute, LinkMessage};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVxlan};
use sp_kernel::attrs::{self, KERNEL_VXLAN_PORT};
use sp_kernel::links::{delete_link, ensure_master, ensure_up, no_link_local, set_up_new, Links};
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;
use sp_names::IfName;
use sp_neutron::{bridge_name, vxlan_name};

use sp_kernel::steps::RolledBack;

use crate::{input, Change, Error, Object, Result, Setting};

/// A tenant network's VXLAN segment, from `linuxbridge_agent.ini`'s `[vxlan]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VxlanConfig {
    pub vni: u32,
    /// `local_ip`: the device holding it becomes the VXLAN `dev`.
    pub local_ip: IpAddr,
    /// `l2_population = True`: unicast mode, `proxy` on.
    pub l2_population: bool,
    /// Multicast mode only: the group.
    pub group: Option<IpAddr>,
    /// `None` leaves the kernel default (8472), as the agent does.
    pub port: Option<u16>,
    /// The device's MTU, put back when it differs; `None` leaves the kernel's (the
    /// underlay's less the overhead, set at creation) as it is.
    pub mtu: Option<u32>,
}

/// A network as it stands after [`ensure_network`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Network {
    pub bridge: String,
    pub bridge_index: u32,
    pub vxlan: Option<String>,
    /// The MTU ports on this network get: the VXLAN device's (lower − 50), else the
    /// bridge's.
    pub mtu: u32,
    /// This call created the bridge (what a rollback of the caller may delete again).
    #[serde(skip)]
    pub created: bool,
}

/// A random locally administered unicast MAC (what the kernel gives a new bridge).
fn random_mac() -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most `mac.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        return Err(sp_kernel::Error::io("getrandom", std::io::Error::last_os_error()).into());
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// `brctl addbr`, `setfd 0`, `stp off`, up — changing only what differs; IPv6 is
/// switched off when the bridge is created.
/// Returns the bridge's index. IPv6 is switched off through `/proc/sys`, so `nl` must
/// be a handle of the calling thread's namespace.
pub async fn ensure_bridge(nl: &Netlink, name: &str, changes: &mut Vec<Change>) -> Result<u32> {
    IfName::check(name)?;
    let existing = nl.link_by_name(name)?;
    Ok(ensure_bridge_made(nl, name, existing, changes)
        .await?
        .0
        .header
        .index)
}

/// Link `name`: from `known` when given, else asked for.
async fn lookup(nl: &Netlink, known: Option<&Links>, name: &str) -> Result<Option<LinkMessage>> {
    Ok(match known {
        Some(k) => k.get(name).cloned(),
        None => nl.link_by_name(name)?,
    })
}

/// [`ensure_bridge`] of the bridge found as `existing`: the bridge as it is now, and
/// whether this call created it.
async fn ensure_bridge_made(
    nl: &Netlink,
    name: &str,
    existing: Option<LinkMessage>,
    changes: &mut Vec<Change>,
) -> Result<(LinkMessage, bool)> {
    let mut made = false;
    let link = match existing {
        Some(link) => {
            if attrs::link_kind(&link) != Some(&InfoKind::Bridge) {
                return Err(Error::WrongKind {
                    name: name.into(),
                    found: attrs::link_kind_word(&link),
                    wanted: "bridge",
                });
            }
            let opts = attrs::bridge(&link).unwrap_or_default();
            if opts.forward_delay != Some(0) || opts.stp != Some(BridgeStpState::Disabled) {
                // Bridge options take effect through RTM_NEWLINK on the existing link.
                let mut msg = LinkMessageBuilder::<LinkBridge>::new(name)
                    .forward_delay(0)
                    .stp_state(BridgeStpState::Disabled)
                    .build();
                msg.header.index = link.header.index;
                nl.handle()
                    .link()
                    .change(msg)
                    .execute()
                    .await
                    .map_err(|e| {
                        sp_kernel::Error::netlink(format!("set options of bridge {name}"), e)
                    })?;
                changes.push(Change::set(
                    Object::bridge(name),
                    Setting::StpForwardDelay {
                        stp: false,
                        forward_delay: 0,
                    },
                ));
            }
            ensure_up(nl, &link, name, changes).await?;
            link
        }
        None => {
            // A MAC of its own, given at creation: a bridge whose MAC was never set
            // takes the lowest of its ports', so ports coming and going would change it.
            // Down (`LinkBridge::new` would make it up) until IPv6 is off.
            let msg = LinkMessageBuilder::<LinkBridge>::new(name)
                .forward_delay(0)
                .stp_state(BridgeStpState::Disabled)
                .address(random_mac()?.to_vec())
                .build();
            let mut link = nl
                .create_link(msg, name, || format!("create bridge {name}"))
                .await?;
            changes.push(Change::new(Object::bridge(name), "created"));
            made = true;
            // As the agent (7.0.4+): IPv6 off on a bridge it creates — once, so that an
            // uplink attach may switch it back on for the NIC's IPv6 addresses. No such
            // file: the kernel runs without IPv6.
            // Off before it is up, so it never gets a link-local address.
            match netns::write_net_sysctl(&format!("ipv6/conf/{name}/disable_ipv6"), "1") {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
            set_up_new(nl, &mut link, name).await?;
            link
        }
    };
    Ok((link, made))
}

/// What an existing VXLAN device is, to compare with what is wanted.
#[derive(Debug, PartialEq)]
struct VxlanShape {
    vni: Option<u32>,
    dev: Option<u32>,
    proxy: bool,
    group: Option<IpAddr>,
    port: u16,
}

/// `link`'s shape; its `dev` counts as `dev` when it serves the same underlay
/// (`fits`).
fn shape(link: &LinkMessage, dev: u32, fits: &dyn Fn(u32) -> bool) -> VxlanShape {
    let v = attrs::vxlan(link).unwrap_or_default();
    VxlanShape {
        vni: v.vni,
        dev: v.dev.map(|d| if fits(d) { dev } else { d }),
        proxy: v.proxy.unwrap_or(false),
        group: v.group,
        port: v.port_or_default(),
    }
}

/// `ip link add vxlan-N type vxlan id N dev <local_ip's interface> [group G] [proxy]`,
/// enslaved to the bridge, up. An existing device (`existing`) with other options is
/// recreated (they cannot be changed in place).
/// `dev` is the index of the interface holding `cfg.local_ip`; an existing device
/// bound to a port of that bridge (Liberty binds `vxlan-N` to the NIC that held
/// `local_ip` before the uplink moved under the bridge) is as good (`fits`).
async fn ensure_vxlan(
    nl: &Netlink,
    cfg: &VxlanConfig,
    (dev, fits): (u32, &dyn Fn(u32) -> bool),
    (bridge, bridge_index): (&str, u32),
    existing: Option<LinkMessage>,
    changes: &mut Vec<Change>,
) -> Result<(String, LinkMessage)> {
    let name = vxlan_name(cfg.vni);
    let want = VxlanShape {
        vni: Some(cfg.vni),
        dev: Some(dev),
        proxy: cfg.l2_population,
        group: cfg.group,
        port: cfg.port.unwrap_or(KERNEL_VXLAN_PORT),
    };
    if let Some(link) = &existing {
        if attrs::link_kind(link) != Some(&InfoKind::Vxlan) {
            return Err(Error::WrongKind {
                name,
                found: attrs::link_kind_word(link),
                wanted: "vxlan",
            });
        }
    }
    let link = match existing {
        Some(link) if shape(&link, dev, fits) == want => link,
        other => {
            if let Some(old) = &other {
                nl.handle()
                    .link()
                    .del(old.header.index)
                    .execute()
                    .await
                    .map_err(|e| {
                        sp_kernel::Error::netlink(format!("delete {name} to recreate it"), e)
                    })?;
            }
            let mut b = LinkVxlan::new(&name, cfg.vni).dev(dev);
            if cfg.l2_population {
                b = b.proxy(true);
            }
            match cfg.group {
                Some(IpAddr::V4(g)) => b = b.group(g),
                Some(IpAddr::V6(g)) => b = b.group6(g),
                None => {}
            }
            if let Some(p) = cfg.port {
                b = b.port(p);
            }
            let msg = b.controller(bridge_index).build();
            let mut link = nl
                .create_link(msg, &name, || format!("create {name}"))
                .await?;
            // Enslaved after the echo, as asked: the creation fails when that fails.
            link.attributes
                .push(LinkAttribute::Controller(bridge_index));
            changes.push(match other {
                Some(_) => Change::saying(
                    Object::Vxlan { name: name.clone() },
                    "recreated",
                    Default::default(),
                    "recreated (options differed)",
                ),
                None => Change::new(Object::Vxlan { name: name.clone() }, "created"),
            });
            let msg = LinkUnspec::new_with_index(link.header.index).build();
            no_link_local(nl, msg, &name, "set addrgenmode none on").await?;
            set_up_new(nl, &mut link, &name).await?;
            link
        }
    };
    ensure_master(nl, &link, &name, bridge, bridge_index, changes).await?;
    if let Some(mtu) = cfg.mtu {
        sp_kernel::links::ensure_mtu(nl, &link, &name, mtu, changes).await?;
    }
    ensure_up(nl, &link, &name, changes).await?;
    Ok((name, link))
}

/// A network to ensure: its id and, for a tenant network, its VXLAN segment.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    pub network_id: String,
    pub vxlan: Option<VxlanConfig>,
}

/// The bridge of `network_id`, with its VXLAN device when `vxlan` is given.
pub async fn ensure_network(
    nl: &Netlink,
    network_id: &str,
    vxlan: Option<&VxlanConfig>,
    changes: &mut Vec<Change>,
) -> Result<Network> {
    let spec = NetworkSpec {
        network_id: network_id.to_owned(),
        vxlan: vxlan.cloned(),
    };
    let mut nets = ensure_networks(nl, std::slice::from_ref(&spec), changes).await?;
    Ok(nets.pop().expect("one network"))
}

/// Many networks at once: all input checked and every `local_ip` resolved (one
/// address dump) before anything is made, then the networks made concurrently on one
/// socket. A network whose VXLAN device fails loses the bridge this call made for it.
/// With VXLAN segments, one dump of the links answers what exists (and which links are
/// ports of the device holding `local_ip`) for all of them; without, each is asked for.
pub async fn ensure_networks(
    nl: &Netlink,
    specs: &[NetworkSpec],
    changes: &mut Vec<Change>,
) -> Result<Vec<Network>> {
    for s in specs {
        IfName::check(&bridge_name(&s.network_id))?;
        if let Some(cfg) = &s.vxlan {
            input::vni(cfg.vni.into())?;
        }
    }
    let vxlan = specs.iter().any(|s| s.vxlan.is_some());
    let addrs = if vxlan { nl.addresses()? } else { Vec::new() };
    let dev_of = |ip: IpAddr| {
        addrs
            .iter()
            .find(|a| attrs::address_ip(a) == Some(ip))
            .map(|a| a.header.index)
            .ok_or(Error::NoLocalIp(ip))
    };
    let known = match vxlan {
        true => Some(Links::read(nl)?),
        false => None,
    };
    let known = known.as_ref();
    // The masters of the links, to know a port of the device holding local_ip.
    let masters: std::collections::HashMap<u32, u32> = known
        .iter()
        .flat_map(|k| k.iter())
        .filter_map(|l| Some((l.header.index, attrs::link_master(l)?)))
        .collect();
    let masters = &masters;
    let devs: Vec<Option<u32>> = specs
        .iter()
        .map(|s| s.vxlan.as_ref().map(|c| dev_of(c.local_ip)).transpose())
        .collect::<Result<_>>()?;
    let results: Vec<Result<(Network, Vec<Change>)>> =
        futures::stream::iter(specs.iter().zip(devs))
            .map(|(s, dev)| async move {
                let mut changes = Vec::new();
                let net = ensure_one(nl, s, dev, masters, known, &mut changes).await?;
                Ok((net, changes))
            })
            .buffered(64)
            .collect()
            .await;
    let mut out = Vec::with_capacity(specs.len());
    for r in results {
        let (net, done) = r?;
        changes.extend(done);
        out.push(net);
    }
    Ok(out)
}

async fn ensure_one(
    nl: &Netlink,
    spec: &NetworkSpec,
    dev: Option<u32>,
    masters: &std::collections::HashMap<u32, u32>,
    known: Option<&Links>,
    changes: &mut Vec<Change>,
) -> Result<Network> {
    let bridge = bridge_name(&spec.network_id);
    let existing = lookup(nl, known, &bridge).await?;
    let (bridge_link, made_bridge) = ensure_bridge_made(nl, &bridge, existing, changes).await?;
    let bridge_index = bridge_link.header.index;
    let (vxlan, mtu) = match spec.vxlan.as_ref().zip(dev) {
        Some((cfg, dev)) => {
            let existing = lookup(nl, known, &vxlan_name(cfg.vni)).await?;
            let on = (bridge.as_str(), bridge_index);
            let fits = |d: u32| masters.get(&d) == Some(&dev);
            match ensure_vxlan(nl, cfg, (dev, &fits), on, existing, changes).await {
                Ok((name, link)) => (Some(name), attrs::link_mtu(&link)),
                Err(cause) => {
                    // Nothing half-made: a bridge this call created goes again.
                    let mut rollback = Vec::new();
                    if made_bridge {
                        if let Err(e) = delete_link(nl, &bridge).await {
                            rollback.push(e.into());
                        }
                    }
                    return Err(Error::RolledBack(Box::new(RolledBack { cause, rollback })));
                }
            }
        }
        None => (None, attrs::link_mtu(&bridge_link)),
    };
    Ok(Network {
        bridge,
        bridge_index,
        vxlan,
        mtu: mtu.unwrap_or(1500),
        created: made_bridge,
    })
}
