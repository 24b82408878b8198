//! Link primitives every operation uses: one `RTM_SETLINK` with the link named in its
//! error, set up, enslave, find-or-fail, the IPv6 link-local address switched off, and
//! deletion in one kernel batch (a link group). Each `ensure_…` reads first and changes
//! only what differs, recording a [`Change`].

use std::collections::BTreeMap;

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;

use crate::netlink::Netlink;
use crate::{attrs, Change, Error, Object, Result, Setting};

/// One dump of a namespace's links, by name and by index: the steps of one run look
/// links up here instead of asking the kernel once per link (a dump costs about what
/// fifty single queries do). Valid until something adds or removes a link.
#[derive(Debug, Default)]
pub struct Links {
    by_name: BTreeMap<String, LinkMessage>,
    names: BTreeMap<u32, String>,
}

impl Links {
    pub fn read(nl: &Netlink) -> Result<Links> {
        Ok(Links::from(nl.links()?))
    }

    pub fn get(&self, name: &str) -> Option<&LinkMessage> {
        self.by_name.get(name)
    }

    /// Every link, by name.
    pub fn iter(&self) -> impl Iterator<Item = &LinkMessage> {
        self.by_name.values()
    }

    /// The name of link `index`.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(String::as_str)
    }
}

impl From<Vec<LinkMessage>> for Links {
    /// A dump read already.
    fn from(links: Vec<LinkMessage>) -> Links {
        let mut out = Links::default();
        for l in links {
            if let Some(n) = attrs::link_name(&l).map(str::to_owned) {
                out.names.insert(l.header.index, n.clone());
                out.by_name.insert(n, l);
            }
        }
        out
    }
}

/// One `RTM_SETLINK`, with the link named in the error.
pub async fn set_link(nl: &Netlink, msg: LinkMessage, name: &str, what: &str) -> Result<()> {
    nl.handle()
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("{what} {name}"), e))
}

/// Sets a link administratively up when it is not.
pub async fn ensure_up(
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
        changes.push(Change::set(
            Object::link(name),
            Setting::State { value: "up" },
        ));
    }
    Ok(())
}

/// Brings a link this call just created up (no change record: its creation is one).
pub async fn set_up_new(nl: &Netlink, link: &mut LinkMessage, name: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(link.header.index).up().build();
    set_link(nl, msg, name, "set up").await?;
    link.header.flags.insert(LinkFlags::Up);
    Ok(())
}

/// Gives a new host-side port (tap, VXLAN device) no IPv6 link-local address
/// (`addrgenmode none`), before it is first set up. An L2 port needs none, and every
/// IPv6 route it would add makes each later link change walk a longer IPv6 routing
/// table (measured: the cost of plugging grew with the square of the networks).
/// `msg`: the `RTM_SETLINK` of the link (by index) that also carries it, with other
/// settings or none; `what` names the request in an error (`"{what} {name}"`).
pub async fn no_link_local(nl: &Netlink, msg: LinkMessage, name: &str, what: &str) -> Result<()> {
    let mut with = msg.clone();
    with.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    match set_link(nl, with, name, what).await {
        // A kernel without IPv6 has nothing to generate, and refuses the whole request
        // before it applies any of it: the other settings go alone.
        Err(e) if e.errno() == Some(libc::EAFNOSUPPORT) => match msg.attributes.is_empty() {
            true => Ok(()),
            false => set_link(nl, msg, name, what).await,
        },
        other => other,
    }
}

/// Enslaves `link` to the bridge `bridge_index` unless it already is.
pub async fn ensure_master(
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
        changes.push(Change::set(
            Object::link(name),
            Setting::Master {
                value: bridge.into(),
            },
        ));
    }
    Ok(())
}

/// Sets a link's MTU when it differs.
pub async fn ensure_mtu(
    nl: &Netlink,
    link: &LinkMessage,
    name: &str,
    mtu: u32,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if attrs::link_mtu(link) != Some(mtu) {
        set_link(
            nl,
            LinkUnspec::new_with_index(link.header.index)
                .mtu(mtu)
                .build(),
            name,
            "set MTU of",
        )
        .await?;
        changes.push(Change::set(Object::link(name), Setting::Mtu { value: mtu }));
    }
    Ok(())
}

/// Finds link `name`, failing when it is missing.
pub fn require_link(nl: &Netlink, name: &str) -> Result<LinkMessage> {
    nl.link_by_name(name)?
        .ok_or_else(|| Error::NoSuchLink(name.to_owned()))
}

/// Deletes link `name` if it exists; true when it did.
pub async fn delete_link(nl: &Netlink, name: &str) -> Result<bool> {
    match nl.link_by_name(name)? {
        Some(l) => {
            nl.handle()
                .link()
                .del(l.header.index)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("delete {name}"), e))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Deletes `links` in one kernel batch. Each link deleted on its own costs an RCU grace
/// period (20–40 ms measured here); the kernel deletes every link of a *link group* in
/// one request. So the links are moved into a group no other link uses — none of `all`,
/// the namespace's links as just read — then that group is deleted (`ip link delete
/// group N`).
pub async fn delete_links(nl: &Netlink, links: &[LinkMessage], all: &[LinkMessage]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let used: std::collections::HashSet<u32> = all.iter().map(attrs::link_group).collect();
    let mut group = 0x5350_0000 | (std::process::id() & 0xffff);
    while used.contains(&group) {
        group = group.wrapping_add(0x1_0000);
    }
    let marks = links
        .iter()
        .map(|l| {
            let msg = LinkUnspec::new_with_index(l.header.index)
                .link_group(group)
                .build();
            RouteNetlinkMessage::SetLink(msg)
        })
        .collect();
    let name = |i: usize| attrs::link_name(&links[i]).unwrap_or("?").to_owned();
    let marked = nl.ack_each(marks, |i| format!("mark for deletion {}", name(i)))?;
    for r in marked {
        match r {
            // Gone meanwhile (a veth whose other end's namespace is being freed).
            Err(e) if e.errno() == Some(libc::ENODEV) => {}
            other => other?,
        }
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    nl.ack(RouteNetlinkMessage::DelLink(msg), 0, || {
        format!("delete {} links (group {group:#x})", links.len())
    })
    .await
}
