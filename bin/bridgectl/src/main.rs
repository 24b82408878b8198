//! `bridgectl`: argument parsing and output only; the work is in `sp-bridge`.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sp_bridge::network::VxlanConfig;
use sp_bridge::port::{HostEnd, PortSpec};
use sp_bridge::{input, l2pop, network, port, show, teardown, uplink, Change};
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::Faults;
use sp_neutron::{bridge_name, PortKind};

/// The Linux bridge agent's plumbing, natively over netlink.
///
/// What Neutron's linuxbridge, L3 and DHCP agents do with brctl, ip link, bridge fdb
/// and ip neigh — same names (brq + network id[:11], tap/qr-/qg-/ns- + port id[:11],
/// vxlan-VNI), same device options, same order. Every command reads first and changes
/// only what differs, prints what it changed ("no change" the second time), and undoes
/// its own partial work on failure.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples (the Liberty guide's controller):
  bridgectl ensure-network 5b6a8b87-fd03-46b5-a968-72bac5091b7c --vni 1 --local-ip 10.0.0.101 --l2-population
  bridgectl ensure-network 78983ca2-77e3-4cdf-9747-ae1b34addeb7 --uplink eth0
  bridgectl plug 5b6a8b87-fd03-46b5-a968-72bac5091b7c 7337070d-45e1-4a2b-9c3d-1234567890ab \\
      --kind router-internal --namespace qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165 \\
      --mac fa:16:3e:a7:24:00 --address 192.168.0.1/24 --ip-forward
  bridgectl fdb add --vni 1 --vtep 10.0.0.102                  flood entry towards compute
  bridgectl l2pop add --vni 1 --vtep 10.0.0.102 --mac fa:16:3e:00:00:05 --ip 192.168.0.5
  bridgectl show --json

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces)."
)]
struct Args {
    #[command(flatten)]
    common: sp_cli::Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A network's bridge brq<id[:11]> (forward delay 0, STP off, IPv6 off, up), with its
    /// vxlan-VNI device (tenant network) or its physical uplink (flat network).
    EnsureNetwork {
        /// The Neutron network's UUID; the bridge is brq + its first 11 characters.
        network_id: String,
        #[command(flatten)]
        vxlan: VxlanArgs,
        /// Flat network: move this NIC (with its addresses and routes) under the bridge.
        #[arg(long, conflicts_with = "vni")]
        uplink: Option<String>,
    },
    /// A router or DHCP port: veth tap<port[:11]> on the network's bridge, its peer
    /// ns-/qr-/qg-<port[:11]> created inside NAMESPACE (made when missing).
    Plug {
        /// The network whose bridge (brq<id[:11]>) the tap end joins.
        network_id: String,
        /// The Neutron port's UUID; the ends are tap/ns-/qr-/qg- + its first 11 characters.
        port_id: String,
        /// What the port is, which names its namespace end.
        #[arg(long, value_enum)]
        kind: Kind,
        /// The namespace of the inner end, e.g. qrouter-<router id>, qdhcp-<network id>.
        #[arg(long)]
        namespace: String,
        /// Port MAC, set on the namespace end.
        #[arg(long)]
        mac: Option<String>,
        /// MTU of both ends, 68–65535 (default: the bridge's, i.e. the VXLAN MTU).
        #[arg(long, value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: Option<u32>,
        /// ADDRESS/PREFIX on the namespace end (repeatable; exactly these are kept — none
        /// given: none kept, except for an instance, whose addresses are left alone).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Default route in the namespace via this gateway.
        #[arg(long)]
        gateway: Option<String>,
        /// net.ipv4.ip_forward=1 in the namespace (routers).
        #[arg(long)]
        ip_forward: bool,
    },
    /// Deletes ports' tap ends (their namespace ends go with them), in one batch.
    Unplug {
        /// The ports' UUIDs (or their first 11 characters).
        port_ids: Vec<String>,
    },
    /// Forwarding entries of vxlan-VNI: without --mac the all-zeros flood entry
    /// (appended, one per remote VTEP); with --mac a port entry (replaced).
    Fdb {
        /// Add or delete the entry.
        #[arg(value_enum)]
        action: Action,
        /// The VXLAN id: the entry goes on vxlan-VNI.
        #[arg(long)]
        vni: u64,
        /// The remote VTEP (the other node's local_ip) the entry sends to.
        #[arg(long)]
        vtep: String,
        /// A port's MAC address (without it: the all-zeros flood entry).
        #[arg(long)]
        mac: Option<String>,
    },
    /// A permanent neighbour (ARP) entry on vxlan-VNI.
    Neigh {
        /// Add or delete the entry.
        #[arg(value_enum)]
        action: Action,
        /// The VXLAN id: the entry goes on vxlan-VNI.
        #[arg(long)]
        vni: u64,
        /// The remote port's IP address.
        #[arg(long)]
        ip: String,
        /// The remote port's MAC address (required for add).
        #[arg(long, required_if_eq("action", "add"))]
        mac: Option<String>,
    },
    /// A remote port as l2population adds it: permanent neighbour + FDB entry.
    L2pop {
        /// Add or delete the entries.
        #[arg(value_enum)]
        action: Action,
        /// The VXLAN id: the entries go on vxlan-VNI.
        #[arg(long)]
        vni: u64,
        /// The remote VTEP (the other node's local_ip) the port is behind.
        #[arg(long)]
        vtep: String,
        /// The remote port's MAC address.
        #[arg(long)]
        mac: String,
        /// The remote port's IP address.
        #[arg(long)]
        ip: String,
    },
    /// Moves NIC under BRIDGE with its addresses and routes; undone on any failure.
    AttachUplink {
        /// The bridge the NIC goes under (brq…).
        bridge: String,
        /// The host NIC whose addresses and routes move onto the bridge.
        nic: String,
    },
    /// Gives NIC its addresses and routes back from BRIDGE and releases it.
    DetachUplink {
        /// The bridge the NIC is under.
        bridge: String,
        /// The NIC that gets its addresses and routes back.
        nic: String,
    },
    /// Deletes networks: bridge, VXLAN devices, taps, qdhcp namespace (uplinks restored).
    DeleteNetwork {
        /// The networks' UUIDs.
        network_ids: Vec<String>,
    },
    /// Deletes named namespaces (and everything in them).
    DeleteNamespace {
        /// The namespaces' names (as in /run/netns).
        names: Vec<String>,
    },
    /// Every bridge with its ports, VXLAN options and FDB entries.
    Show,
}

#[derive(clap::Args, Debug)]
struct VxlanArgs {
    /// Tenant network over VXLAN with this VNI (1–16777215).
    #[arg(long, requires = "local_ip")]
    vni: Option<u64>,
    /// [vxlan] local_ip: the interface holding it carries the tunnel.
    #[arg(long)]
    local_ip: Option<String>,
    /// [vxlan] l2_population = True: unicast mode, proxy ARP on the device.
    #[arg(long)]
    l2_population: bool,
    /// Multicast mode: the group.
    #[arg(long)]
    group: Option<String>,
    /// UDP port (default: the kernel's 8472, as the agent leaves it).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Kind {
    /// ns-… in qdhcp-<network>.
    Dhcp,
    /// qr-… in qrouter-<router>.
    RouterInternal,
    /// qg-… in qrouter-<router>.
    RouterGateway,
    /// eth0 in an instance namespace (a sandboxed VM).
    Instance,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Action {
    /// Add the entry (no change when it is there).
    Add,
    /// Delete the entry (no change when it is not there).
    Del,
}

fn main() -> ExitCode {
    // Output that never panics on a closed pipe; SIGINT/SIGTERM/SIGHUP taken at the end
    // of the work, never half-way (sp_cli).
    sp_cli::init();
    sp_cli::finish(exit_code())
}

fn exit_code() -> ExitCode {
    // Before any thread: namespaces are entered by threads.
    sp_kernel::limits::prepare_descriptors();
    let args: Args = sp_cli::command::parse();
    sp_cli::log::init(&args.common);
    let json = args.common.json;
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.into())
        .and_then(|runtime| runtime.block_on(run(&args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => sp_cli::error::fail("bridgectl", json, kind(e.as_ref()), &e.to_string()),
    }
}

/// An error's kind in JSON, and so its exit code (docs/exit-codes.md).
fn kind(e: &(dyn std::error::Error + 'static)) -> sp_cli::error::Kind {
    use sp_bridge::Error as B;
    use sp_cli::error::Kind;
    use sp_kernel::Error as K;
    let kernel = match e.downcast_ref::<B>() {
        Some(B::Kernel(k)) => Some(k),
        _ => e.downcast_ref::<K>(),
    };
    match (e.downcast_ref::<B>(), kernel) {
        (Some(B::Name(_) | B::InvalidVni(_) | B::InvalidCidr(_) | B::InvalidIp(_)), _) => {
            Kind::InvalidInput
        }
        (_, Some(K::Name(_))) => Kind::InvalidInput,
        (_, Some(K::NoSuchLink(_))) => Kind::NotFound,
        (_, Some(k)) => Kind::of_errno(k.errno()),
        _ => Kind::Failure,
    }
}

/// The version of `show`'s JSON (docs/json.md).
const SCHEMA: u32 = 1;

/// The version of the changes document (docs/json.md): 2 since a change's object is
/// typed.
const CHANGES_SCHEMA: u32 = 2;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

async fn run(args: &Args) -> BoxResult<()> {
    let nl = Netlink::current()?;
    let mut changes: Vec<Change> = Vec::new();
    match &args.cmd {
        Cmd::EnsureNetwork {
            network_id,
            vxlan,
            uplink: nic,
        } => {
            let cfg = vxlan.config()?;
            match nic {
                Some(nic) => {
                    let mut faults = Faults::none();
                    uplink::ensure_flat(
                        &nl,
                        network_id,
                        nic,
                        Some(uplink::GATEWAY_TIMEOUT),
                        &mut faults,
                        &mut changes,
                    )
                    .await?;
                }
                None => {
                    network::ensure_network(&nl, network_id, cfg.as_ref(), &mut changes).await?;
                }
            }
        }
        Cmd::Plug {
            network_id,
            port_id,
            kind,
            namespace,
            mac,
            mtu,
            addresses,
            gateway,
            ip_forward,
        } => {
            let spec = PortSpec {
                port_id: port_id.clone(),
                kind: match kind {
                    Kind::Dhcp => PortKind::Dhcp,
                    Kind::RouterInternal => PortKind::RouterInternal,
                    Kind::RouterGateway => PortKind::RouterGateway,
                    Kind::Instance => PortKind::Instance,
                },
                namespace: namespace.clone(),
                host: HostEnd::Bridge(bridge_name(network_id)),
                mac: mac.as_deref().map(input::mac).transpose()?,
                mtu: *mtu,
                // An instance without --address keeps what its guest takes by DHCP.
                addresses: match (kind, addresses.is_empty()) {
                    (Kind::Instance, true) => None,
                    _ => Some(
                        addresses
                            .iter()
                            .map(|a| input::cidr(a))
                            .collect::<Result<_, _>>()?,
                    ),
                },
                gateway: gateway.as_deref().map(input::ip).transpose()?,
                ip_forward: *ip_forward,
            };
            port::plug(&nl, &[spec], &mut changes).await?;
        }
        Cmd::Unplug { port_ids } => teardown::unplug(&nl, port_ids, &mut changes).await?,
        Cmd::Fdb {
            action,
            vni,
            vtep,
            mac,
        } => {
            let (vni, vtep) = (input::vni(*vni)?, input::ip(vtep)?);
            match (action, mac.as_deref().map(input::mac).transpose()?) {
                (Action::Add, None) => l2pop::flood_add(&nl, vni, vtep, &mut changes).await?,
                (Action::Del, None) => l2pop::flood_del(&nl, vni, vtep, &mut changes).await?,
                (Action::Add, Some(m)) => l2pop::fdb_add(&nl, vni, m, vtep, &mut changes).await?,
                (Action::Del, Some(m)) => l2pop::fdb_del(&nl, vni, m, vtep, &mut changes).await?,
            }
        }
        Cmd::Neigh {
            action,
            vni,
            ip,
            mac,
        } => {
            let (vni, ip) = (input::vni(*vni)?, input::ip(ip)?);
            match action {
                Action::Add => {
                    let mac = input::mac(mac.as_deref().ok_or("neigh add needs --mac")?)?;
                    l2pop::neigh_add(&nl, vni, ip, mac, &mut changes).await?
                }
                Action::Del => l2pop::neigh_del(&nl, vni, ip, &mut changes).await?,
            }
        }
        Cmd::L2pop {
            action,
            vni,
            vtep,
            mac,
            ip,
        } => {
            let (vni, vtep, mac, ip) = (
                input::vni(*vni)?,
                input::ip(vtep)?,
                input::mac(mac)?,
                input::ip(ip)?,
            );
            match action {
                Action::Add => l2pop::port_add(&nl, vni, mac, ip, vtep, &mut changes).await?,
                Action::Del => l2pop::port_del(&nl, vni, mac, ip, vtep, &mut changes).await?,
            }
        }
        Cmd::AttachUplink { bridge, nic } => {
            uplink::attach(
                &nl,
                bridge,
                nic,
                Some(uplink::GATEWAY_TIMEOUT),
                &mut Faults::none(),
                &mut changes,
            )
            .await?
        }
        Cmd::DetachUplink { bridge, nic } => {
            uplink::detach(&nl, bridge, nic, &mut Faults::none(), &mut changes).await?
        }
        Cmd::DeleteNetwork { network_ids } => {
            teardown::delete_networks(&nl, network_ids, &mut changes).await?
        }
        Cmd::DeleteNamespace { names } => teardown::delete_namespaces(names, &mut changes)?,
        Cmd::Show => {
            let view = show::show(&nl)?;
            if args.common.json {
                let v = serde_json::json!({ "schema": SCHEMA, "bridges": view });
                sp_cli::outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_show(&view);
            }
            return Ok(());
        }
    }
    if args.common.json {
        sp_cli::outln!(
            "{}",
            serde_json::json!({ "schema": CHANGES_SCHEMA, "changes": changes })
        );
    } else if changes.is_empty() {
        sp_cli::outln!("no change");
    } else {
        for c in &changes {
            sp_cli::outln!("{c}");
        }
    }
    Ok(())
}

impl VxlanArgs {
    fn config(&self) -> BoxResult<Option<VxlanConfig>> {
        let Some(vni) = self.vni else { return Ok(None) };
        let local_ip: IpAddr =
            input::ip(self.local_ip.as_deref().ok_or("--vni needs --local-ip")?)?;
        Ok(Some(VxlanConfig {
            vni: input::vni(vni)?,
            local_ip,
            l2_population: self.l2_population,
            group: self.group.as_deref().map(input::ip).transpose()?,
            port: self.port,
            mtu: None,
        }))
    }
}

fn print_show(view: &[show::BridgeView]) {
    if view.is_empty() {
        sp_cli::outln!("no bridges");
    }
    for b in view {
        sp_cli::outln!(
            "{}  {}  mtu {}  forward_delay {}  stp {}{}",
            b.name,
            if b.up { "UP" } else { "DOWN" },
            b.mtu.map_or("?".into(), |m| m.to_string()),
            b.forward_delay.map_or("?".into(), |d| d.to_string()),
            if b.stp { "on" } else { "off" },
            if b.addresses.is_empty() {
                String::new()
            } else {
                format!("  {}", b.addresses.join(", "))
            },
        );
        for p in &b.ports {
            sp_cli::outln!(
                "  {:<16} {:<7} {}",
                p.name,
                p.kind,
                if p.up { "up" } else { "down" }
            );
            if let Some(v) = &p.vxlan {
                sp_cli::outln!(
                    "    vni {} local {} dev {} port {} learning {}{}{}",
                    v.vni.map_or("?".into(), |v| v.to_string()),
                    v.local.as_deref().unwrap_or("-"),
                    v.dev.as_deref().unwrap_or("-"),
                    v.port,
                    if v.learning { "on" } else { "off" },
                    if v.proxy { " proxy" } else { "" },
                    v.group
                        .as_ref()
                        .map_or(String::new(), |g| format!(" group {g}")),
                );
                for e in &v.fdb {
                    sp_cli::outln!("    fdb {e}");
                }
                for n in &v.neighbours {
                    sp_cli::outln!("    neigh {n}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_and_subcommand_is_explained() {
        sp_cli::command::assert_explained::<super::Args>();
    }
}
