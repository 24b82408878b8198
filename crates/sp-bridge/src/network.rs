//! Network bridges and VXLAN devices, as the Linux bridge agent makes them.

use std::net::IpAddr;

use futures::StreamExt;

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, BridgeStpState, In6AddrGenMode, InfoBridge, InfoData, InfoKind,
    InfoVxlan, LinkAttribute, LinkFlags, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVxlan};
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;
use sp_neutron::{bridge_name, vxlan_name};

use crate::{input, Change, Error, Links, Result};

/// The kernel's VXLAN UDP port when none is given (what the Liberty agent relies on).
pub const KERNEL_VXLAN_PORT: u16 = 8472;

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
}

fn kind_word(l: &LinkMessage) -> String {
    attrs::link_kind(l).map_or_else(|| "device".into(), |k| k.to_string())
}

/// Sets a link administratively up when it is not.
pub(crate) async fn ensure_up(
    nl: &Netlink,
    link: &LinkMessage,
    name: &str,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if !attrs::link_is_up(link) {
        set_link(
            nl,
            LinkUnspec::new_with_index(link.header.index).up().build(),
            name,
            "set up",
        )
        .await?;
        changes.push(Change::new(format!("link {name}"), "set up"));
    }
    Ok(())
}

/// One `RTM_SETLINK`, with the link named in the error.
pub(crate) async fn set_link(nl: &Netlink, msg: LinkMessage, name: &str, what: &str) -> Result<()> {
    nl.handle()
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| sp_kernel::Error::netlink(format!("{what} {name}"), e).into())
}

/// Brings a link this call just created up (no change record: its creation is one).
pub(crate) async fn set_up_new(nl: &Netlink, link: &mut LinkMessage, name: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(link.header.index).up().build();
    set_link(nl, msg, name, "set up").await?;
    link.header.flags.insert(LinkFlags::Up);
    Ok(())
}

/// Gives a new host-side port (tap, VXLAN device) no IPv6 link-local address
/// (`addrgenmode none`), before it is first set up. An L2 port needs none, and every
/// IPv6 route it would add makes each later link change walk a longer IPv6 routing
/// table (measured: the cost of plugging grew with the square of the networks).
pub(crate) async fn no_link_local(nl: &Netlink, index: u32, name: &str) -> Result<()> {
    addrgenmode_none(nl, LinkUnspec::new_with_index(index).build(), name).await
}

/// [`no_link_local`] for a link addressed by name.
pub(crate) async fn no_link_local_by_name(nl: &Netlink, name: &str) -> Result<()> {
    addrgenmode_none(nl, LinkUnspec::new_with_name(name).build(), name).await
}

async fn addrgenmode_none(nl: &Netlink, mut msg: LinkMessage, name: &str) -> Result<()> {
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    match set_link(nl, msg, name, "set addrgenmode none on").await {
        // A kernel without IPv6 has nothing to generate.
        Err(Error::Kernel(e)) if e.errno() == Some(libc::EAFNOSUPPORT) => Ok(()),
        other => other,
    }
}

/// Enslaves `link` to the bridge `bridge_index` unless it already is.
pub(crate) async fn ensure_master(
    nl: &Netlink,
    link: &LinkMessage,
    name: &str,
    bridge: &str,
    bridge_index: u32,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if attrs::link_master(link) != Some(bridge_index) {
        let msg = LinkUnspec::new_with_index(link.header.index)
            .controller(bridge_index)
            .build();
        set_link(nl, msg, name, &format!("enslave to {bridge}:")).await?;
        changes.push(Change::new(
            format!("link {name}"),
            format!("enslaved to {bridge}"),
        ));
    }
    Ok(())
}

/// Finds link `name`, failing when it is missing.
pub(crate) async fn require_link(nl: &Netlink, name: &str) -> Result<LinkMessage> {
    nl.link_by_name(name)?
        .ok_or_else(|| Error::NoSuchLink(name.to_owned()))
}

/// `brctl addbr`, `setfd 0`, `stp off`, up — changing only what differs; IPv6 is
/// switched off when the bridge is created.
/// Returns the bridge's index. IPv6 is switched off through `/proc/sys`, so `nl` must
/// be a handle of the calling thread's namespace.
pub async fn ensure_bridge(nl: &Netlink, name: &str, changes: &mut Vec<Change>) -> Result<u32> {
    input::ifname(name)?;
    let existing = nl.link_by_name(name)?;
    Ok(ensure_bridge_made(nl, name, existing, changes).await?.0)
}

/// Link `name`: from `known` when given, else asked for.
async fn lookup(nl: &Netlink, known: Option<&Links>, name: &str) -> Result<Option<LinkMessage>> {
    Ok(match known {
        Some(k) => k.get(name).cloned(),
        None => nl.link_by_name(name)?,
    })
}

/// [`ensure_bridge`] of the bridge found as `existing`, also telling whether this call
/// created it.
async fn ensure_bridge_made(
    nl: &Netlink,
    name: &str,
    existing: Option<LinkMessage>,
    changes: &mut Vec<Change>,
) -> Result<(u32, bool)> {
    let mut made = false;
    let link = match existing {
        Some(link) => {
            if attrs::link_kind(&link) != Some(&InfoKind::Bridge) {
                return Err(Error::WrongKind {
                    name: name.into(),
                    found: kind_word(&link),
                    wanted: "bridge",
                });
            }
            let (fd, stp) = match attrs::link_data(&link) {
                Some(InfoData::Bridge(opts)) => (
                    opts.iter().find_map(|o| match o {
                        InfoBridge::ForwardDelay(d) => Some(*d),
                        _ => None,
                    }),
                    opts.iter().find_map(|o| match o {
                        InfoBridge::StpState(s) => Some(*s),
                        _ => None,
                    }),
                ),
                _ => (None, None),
            };
            if fd != Some(0) || stp != Some(BridgeStpState::Disabled) {
                // Bridge options take effect through RTM_NEWLINK on the existing link.
                let mut msg = LinkBridge::new(name)
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
                changes.push(Change::new(
                    format!("bridge {name}"),
                    "set forward_delay 0, stp off",
                ));
            }
            ensure_up(nl, &link, name, changes).await?;
            link
        }
        None => {
            let msg = LinkBridge::new(name)
                .forward_delay(0)
                .stp_state(BridgeStpState::Disabled)
                .build();
            nl.handle()
                .link()
                .add(msg)
                .execute()
                .await
                .map_err(|e| sp_kernel::Error::netlink(format!("create bridge {name}"), e))?;
            changes.push(Change::new(format!("bridge {name}"), "created"));
            made = true;
            // As the agent (7.0.4+): IPv6 off on a bridge it creates — once, so that an
            // uplink attach may switch it back on for the NIC's IPv6 addresses. No such
            // file: the kernel runs without IPv6.
            let key = format!("ipv6/conf/{name}/disable_ipv6");
            // Off before it is up, so it never gets a link-local address.
            if netns::read_net_sysctl(&key).is_ok() {
                netns::write_net_sysctl(&key, "1")?;
            }
            let mut link = require_link(nl, name).await?;
            set_up_new(nl, &mut link, name).await?;
            link
        }
    };
    Ok((link.header.index, made))
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

fn shape(link: &LinkMessage) -> VxlanShape {
    let mut s = VxlanShape {
        vni: None,
        dev: None,
        proxy: false,
        group: None,
        port: KERNEL_VXLAN_PORT,
    };
    if let Some(InfoData::Vxlan(opts)) = attrs::link_data(link) {
        for o in opts {
            match o {
                InfoVxlan::Id(v) => s.vni = Some(*v),
                InfoVxlan::Link(d) => s.dev = Some(*d),
                InfoVxlan::Proxy(p) => s.proxy = *p,
                InfoVxlan::Group(g) if !g.is_unspecified() => s.group = Some((*g).into()),
                InfoVxlan::Group6(g) if !g.is_unspecified() => s.group = Some((*g).into()),
                InfoVxlan::Port(p) => s.port = *p,
                _ => {}
            }
        }
    }
    s
}

/// `ip link add vxlan-N type vxlan id N dev <local_ip's interface> [group G] [proxy]`,
/// enslaved to the bridge, up. An existing device (`existing`) with other options is
/// recreated (they cannot be changed in place).
/// `dev` is the index of the interface holding `cfg.local_ip`.
async fn ensure_vxlan(
    nl: &Netlink,
    cfg: &VxlanConfig,
    dev: u32,
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
                found: kind_word(link),
                wanted: "vxlan",
            });
        }
    }
    let link = match existing {
        Some(link) if shape(&link) == want => link,
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
            nl.handle()
                .link()
                .add(msg)
                .execute()
                .await
                .map_err(|e| sp_kernel::Error::netlink(format!("create {name}"), e))?;
            let action = if other.is_some() {
                "recreated (options differed)"
            } else {
                "created"
            };
            changes.push(Change::new(format!("vxlan {name}"), action));
            let mut link = require_link(nl, &name).await?;
            no_link_local(nl, link.header.index, &name).await?;
            set_up_new(nl, &mut link, &name).await?;
            link
        }
    };
    ensure_master(nl, &link, &name, bridge, bridge_index, changes).await?;
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
    let mut nets = ensure_networks(nl, std::slice::from_ref(&spec), None, changes).await?;
    Ok(nets.pop().expect("one network"))
}

/// Many networks at once: all input checked and every `local_ip` resolved (one
/// address dump) before anything is made, then the networks made concurrently on one
/// socket. A network whose VXLAN device fails loses the bridge this call made for it.
/// `known`: the links as they are now (one dump for all), else each is asked for.
pub async fn ensure_networks(
    nl: &Netlink,
    specs: &[NetworkSpec],
    known: Option<&Links>,
    changes: &mut Vec<Change>,
) -> Result<Vec<Network>> {
    for s in specs {
        input::ifname(&bridge_name(&s.network_id))?;
        if let Some(cfg) = &s.vxlan {
            input::vni(cfg.vni.into())?;
        }
    }
    let addrs = if specs.iter().any(|s| s.vxlan.is_some()) {
        nl.addresses()?
    } else {
        Vec::new()
    };
    let dev_of = |ip: IpAddr| {
        addrs
            .iter()
            .find(|a| attrs::address_ip(a) == Some(ip))
            .map(|a| a.header.index)
            .ok_or(Error::NoLocalIp(ip))
    };
    let devs: Vec<Option<u32>> = specs
        .iter()
        .map(|s| s.vxlan.as_ref().map(|c| dev_of(c.local_ip)).transpose())
        .collect::<Result<_>>()?;
    let results: Vec<Result<(Network, Vec<Change>)>> =
        futures::stream::iter(specs.iter().zip(devs))
            .map(|(s, dev)| async move {
                let mut changes = Vec::new();
                let net = ensure_one(nl, s, dev, known, &mut changes).await?;
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
    known: Option<&Links>,
    changes: &mut Vec<Change>,
) -> Result<Network> {
    let bridge = bridge_name(&spec.network_id);
    let existing = lookup(nl, known, &bridge).await?;
    let (bridge_index, made_bridge) = ensure_bridge_made(nl, &bridge, existing, changes).await?;
    let (vxlan, mtu) = match spec.vxlan.as_ref().zip(dev) {
        Some((cfg, dev)) => {
            let existing = lookup(nl, known, &vxlan_name(cfg.vni)).await?;
            let on = (bridge.as_str(), bridge_index);
            match ensure_vxlan(nl, cfg, dev, on, existing, changes).await {
                Ok((name, link)) => (Some(name), attrs::link_mtu(&link)),
                Err(cause) => {
                    // Nothing half-made: a bridge this call created goes again.
                    let mut rollback = Vec::new();
                    if made_bridge {
                        if let Err(e) = crate::teardown::delete_link(nl, &bridge).await {
                            rollback.push(e);
                        }
                    }
                    return Err(Error::RolledBack {
                        cause: Box::new(cause),
                        rollback,
                    });
                }
            }
        }
        None => {
            let link = match lookup(nl, known, &bridge).await? {
                Some(l) if !made_bridge => l,
                _ => require_link(nl, &bridge).await?,
            };
            (None, attrs::link_mtu(&link))
        }
    };
    Ok(Network {
        bridge,
        bridge_index,
        vxlan,
        mtu: mtu.unwrap_or(1500),
    })
}
