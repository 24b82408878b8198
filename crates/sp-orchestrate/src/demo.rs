//! `stackplumb demo`: the guide's two-node cloud built in a sandbox on this machine, the
//! guide's checks (10-4, 10-5, 12-x) run against it natively, and everything torn down.
//! The sandbox is a network + mount namespace of its own: the host's interfaces are
//! never touched. Loop devices are global, so Cinder's VG has a name of the run's own
//! (its work directory's, `stackplumb-demo-XXXXXX`), its loop devices are released and
//! its files removed at the end — only that VG's, found by its files' identity.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use sp_bridge::port::{self, HostEnd, PortSpec};
use sp_bridge::{input, network};
use sp_config::desired::{plan, NodePlan};
use sp_config::{GuideConfig, Topology};
use sp_kernel::netlink::Netlink;
use sp_kernel::netns;
use sp_kernel::probe::{dhcp, echo};
use sp_lvm::vg::VgName;
use sp_neutron::PortKind;

use crate::{apply, take_down, Dirs, Error, Result};

/// One line of the live report.
pub enum Line {
    /// A step that was done.
    Step(String),
    /// A check and whether it held.
    Check(String, bool),
}

/// The guide's physical network: a segment (a bridge in the sandbox) with the
/// controller (10.0.0.101), the compute node (10.0.0.102) and an external PC (10.0.0.1,
/// the ext-net gateway) as namespaces whose `eth0` sits on it.
async fn physical(nl: &Netlink) -> Result<()> {
    let mut changes = Vec::new();
    network::ensure_bridge(nl, "segment", &mut changes).await?;
    let hosts = [
        ("controller", "10.0.0.101/24", Some("10.0.0.1")),
        ("compute", "10.0.0.102/24", Some("10.0.0.1")),
        ("extpc", "10.0.0.1/24", None),
    ];
    let ports: Vec<PortSpec> = hosts
        .iter()
        .map(|(name, cidr, gw)| {
            Ok(PortSpec {
                port_id: format!("{name}-seg"),
                kind: PortKind::Instance,
                namespace: (*name).to_owned(),
                host: HostEnd::Bridge("segment".into()),
                mac: None,
                mtu: Some(1500),
                addresses: Some(vec![input::cidr(cidr)?]),
                gateway: gw.map(input::ip).transpose()?,
                ip_forward: false,
            })
        })
        .collect::<Result<_, sp_bridge::Error>>()?;
    port::plug(nl, &ports, &mut changes).await?;
    Ok(())
}

/// What vm1's DHCP client would configure.
async fn configure(nl: &Netlink, lease: &dhcp::Lease) -> Result<()> {
    let eth0 = nl
        .link_by_name("eth0")?
        .ok_or_else(|| sp_kernel::Error::NoSuchLink("eth0".into()))?;
    let h = nl.handle();
    let wrap = |what: &'static str| move |e| Error::Kernel(sp_kernel::Error::netlink(what, e));
    h.address()
        .add(eth0.header.index, lease.ip.into(), lease.prefix_len)
        .execute()
        .await
        .map_err(wrap("address from the lease"))?;
    if let Some(mtu) = lease.mtu {
        let msg = rtnetlink::LinkUnspec::new_with_index(eth0.header.index)
            .mtu(mtu.into())
            .build();
        h.link()
            .set(msg)
            .execute()
            .await
            .map_err(wrap("MTU from the lease"))?;
    }
    if let Some(gw) = lease.router {
        let msg = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(eth0.header.index)
            .build();
        h.route()
            .add(msg)
            .execute()
            .await
            .map_err(wrap("router from the lease"))?;
    }
    Ok(())
}

/// The Cinder size the topology asks for.
fn cfg_size(plans: &[NodePlan]) -> String {
    plans
        .iter()
        .find_map(|p| p.cinder.as_ref().map(|c| c.size.to_string()))
        .unwrap_or_default()
}

/// The demo's own VG name: its mkdtemp work directory's name (`stackplumb-demo-XXXXXX`,
/// letters and digits after the prefix), so no two live demos share one and it is never
/// the host's `cinder-volumes`.
pub fn vg_name(work: &Path) -> VgName {
    work.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("stackplumb-demo-"))
        .and_then(|n| VgName::new(n).ok())
        .unwrap_or_else(|| {
            VgName::new(format!("stackplumb-demo-{}", std::process::id()))
                .expect("letters, digits and dashes")
        })
}

/// Whether `target` answers an ICMP echo from `node` out of `eth0`.
fn pings(node: &str, target: &str) -> Result<bool> {
    let ip: IpAddr = target.parse().expect("literal");
    Ok(Netlink::block_on_in(node, async move |_nl| {
        echo::answers(ip, "eth0", Duration::from_secs(3))
            .await
            .unwrap_or(false)
    })?)
}

/// Builds, checks and tears down the guide's cloud under `work` (a fresh directory for
/// configuration, state and Cinder's files). Must run on a thread of its own: it moves
/// that thread into the sandbox. True when every check held.
/// With `inspect` (the netns-inspect binary), its view of the routers' and DHCP
/// namespaces is printed before the teardown.
pub fn run(work: &Path, inspect: Option<&Path>, report: &mut dyn FnMut(Line)) -> Result<bool> {
    netns::enter_sandbox()?;
    report(Line::Step(
        "sandbox: a network + mount namespace of its own; the host is not touched".into(),
    ));
    let etc = work.join("etc");
    sp_config::guide::write_guide_files(&etc)
        .map_err(|e| sp_kernel::Error::io("write the guide's files", e))?;
    let mut cfg = GuideConfig::load(&etc).map_err(|e| Error::Preflight(e.to_string()))?;
    // VG names are host-wide (the loop devices are the host's): the demo's is its own,
    // never the host's `cinder-volumes`.
    let vg = vg_name(work);
    cfg.cinder = Some(sp_config::guide::Cinder {
        volume_group: vg.clone(),
    });
    report(Line::Step(format!(
        "Cinder's volume group for this run: {} (VG names are host-wide; the host's are left alone)",
        vg
    )));
    let dirs = Dirs::new(work.join("state"), work.join("cinder"));
    let plans: Vec<NodePlan> =
        plan(&Topology::guide(), &cfg, &dirs.state).map_err(|e| Error::Preflight(e.join("; ")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| sp_kernel::Error::io("start a runtime", e))?;
    rt.block_on(async { physical(&Netlink::current()?).await })?;
    report(Line::Step("the guide's hosts: controller 10.0.0.101, compute 10.0.0.102, external PC 10.0.0.1 on one segment".into()));

    let mut ok = true;
    let outcome = (|| -> Result<()> {
        for p in &plans {
            let applied =
                Netlink::block_on_in(&p.node, async |nl| apply(&nl, p, &dirs, &mut |_| {}).await)?
                    .map_err(|f| f.cause)?;
            report(Line::Step(format!(
                "stackplumb apply on {}: {} actions",
                p.node,
                applied.done.len()
            )));
        }
        let vm1 = Topology::guide().instances.remove(0);
        let mac = vm1.mac.octets();
        let lease = Netlink::block_on_in("vm1", async |_nl| {
            dhcp::lease("eth0", mac, Duration::from_secs(10))
        })?;
        let check = |report: &mut dyn FnMut(Line), ok: &mut bool, what: String, held: bool| {
            *ok &= held;
            report(Line::Check(what, held));
        };
        match lease {
            Ok(l) => {
                check(
                    report,
                    &mut ok,
                    format!(
                        "10-5: vm1 (compute) gets {}/{} from dnsmasq on the controller, across VXLAN; router {}, MTU {}",
                        l.ip,
                        l.prefix_len,
                        l.router.map_or("none".into(), |r| r.to_string()),
                        l.mtu.map_or("none".into(), |m| m.to_string())
                    ),
                    l.mtu == Some(1450) && l.router.is_some(),
                );
                Netlink::block_on_in("vm1", async |nl| configure(&nl, &l).await)??;
            }
            Err(e) => check(
                report,
                &mut ok,
                format!("10-5: vm1 gets a DHCP lease: {e}"),
                false,
            ),
        }
        for (from, to, what) in [
            ("vm1", "192.168.0.1", "vm1 pings its router 192.168.0.1"),
            (
                "vm1",
                "10.0.0.1",
                "vm1 reaches the external PC 10.0.0.1 (SNAT)",
            ),
            (
                "extpc",
                "10.0.0.200",
                "10-4: the external PC pings the router's gateway 10.0.0.200",
            ),
            (
                "extpc",
                "10.0.0.201",
                "the external PC reaches vm1 on its floating IP 10.0.0.201",
            ),
        ] {
            check(report, &mut ok, what.into(), pings(from, to)?);
        }
        let found = sp_loopvg::Loopvg {
            dir: dirs.cinder.clone(),
            ..Default::default()
        }
        .here(&vg);
        match found {
            Ok(Some(v)) => check(
                report,
                &mut ok,
                format!(
                    "12-x: volume group {} on loop files, {:.2} GiB usable ({} configured)",
                    v.name,
                    v.size as f64 / f64::from(1u32 << 30),
                    cfg_size(&plans)
                ),
                v.active,
            ),
            Ok(None) => check(
                report,
                &mut ok,
                format!(
                    "12-x: volume group {} not found in {}",
                    vg,
                    dirs.cinder.display()
                ),
                false,
            ),
            Err(e) => check(report, &mut ok, format!("12-x: volume group: {e}"), false),
        }
        if let Some(bin) = inspect {
            report(Line::Step(
                "what netns-inspect sees on the controller's namespaces:".into(),
            ));
            let _ = std::process::Command::new(bin)
                .args(["--kind", "qrouter", "--kind", "qdhcp"])
                .status();
        }
        Ok(())
    })();
    // Always taken down, whatever happened — every node, even when one fails (a node
    // left standing would keep its dnsmasq and loop devices).
    let mut down = Ok(());
    for p in plans.iter().rev() {
        match Netlink::block_on_in(&p.node, async |nl| {
            take_down(&nl, p, &dirs, true, &mut |_| {}).await
        })
        .map_err(Error::from)
        .and_then(|r| r.map_err(|f| f.cause))
        {
            Ok(applied) => report(Line::Step(format!(
                "stackplumb destroy --purge on {}: {} actions",
                p.node,
                applied.done.len()
            ))),
            Err(e) => {
                report(Line::Check(
                    format!("stackplumb destroy --purge on {}: {e}", p.node),
                    false,
                ));
                if down.is_ok() {
                    down = Err(e);
                }
            }
        }
    }
    outcome?;
    down?;
    Ok(ok)
}
