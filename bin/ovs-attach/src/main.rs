//! `ovs-attach`: Open vSwitch bridges and ports over the OVSDB protocol.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use sp_cli::error::Kind;
use sp_kernel::netlink::Netlink;
use sp_ovs::attach::{self, AttachOptions, Faults, HostChange};
use sp_ovs::persist::ConfigFormat;
use sp_ovs::{BridgeSpec, Change, Endpoint, Error, Ovs, PatchSpec, PortSpec};

const EXAMPLES: &str = "\
The host NIC into br-ex, as the packstack notes do with ifcfg-eno1 / ifcfg-br-ex
(10.50.14.50/24, gateway 10.50.14.1) and a network restart — live, checked, undone
on any failure:
  ovs-attach br-ex eno1 --emit-config ifcfg       # print the notes' two ifcfg files (no change)
  ovs-attach br-ex eno1                           # br-ex created if missing, IP + routes moved,
                                                  # eno1 added as a port, gateway 10.50.14.1 pinged
  ovs-attach br-ex eno1 --datapath-type netdev    # on a host without the OVS kernel module
  ovs-attach --detach br-ex eno1                  # the reverse (br-ex stays)
  (same as: ovs-attach attach br-ex eno1, ovs-attach detach br-ex eno1)

Bridges and ports (the packstack notes' Open vSwitch layout):
  ovs-attach add-br br-ex                          # the external bridge
  ovs-attach add-br br-ex --datapath-type netdev   # on a host without the OVS kernel module
  ovs-attach add-port br-ex qg-48cdaf68-67 --type internal
  ovs-attach add-port br-int qr-709be681-e9 --type internal --tag 1 \\
      --iface-id 709be681-e961-4396-a762-435dc0c5b40f --attached-mac fa:16:3e:71:8a:c6
  ovs-attach add-br br-tun --fail-mode secure
  ovs-attach add-patch br-int patch-tun br-tun patch-int
  ovs-attach show                                  # the same tree as `ovs-vsctl show`
  ovs-attach --json list br-int
  ovs-attach del-port --if-exists br-ex qg-48cdaf68-67

Every change waits until ovs-vswitchd has applied it (like ovs-vsctl) unless --no-wait,
and fails after --timeout seconds with a message saying what did not answer.
The database is unix:$OVS_RUNDIR/db.sock unless --db names one, as for ovs-vsctl.";

/// Open vSwitch bridges and ports, spoken directly to ovsdb-server (RFC 7047), and the
/// host NIC moved into br-ex with its IP.
///
/// ovs-attach never runs ovs-vsctl: each command is one OVSDB transaction that
/// re-checks its assumptions at commit, bumps next_cfg, and then waits until
/// ovs-vswitchd reports cur_cfg >= next_cfg and checks the new interfaces for errors.
/// `ovs-attach BRIDGE NIC` adds the steps around it over netlink — addresses and routes
/// moved, the gateway pinged — and undoes them all if any fails.
#[derive(Parser)]
#[command(
    version,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    arg_required_else_help = true
)]
struct Cli {
    /// ovsdb-server to talk to: unix:PATH or tcp:HOST:PORT; default, as ovs-vsctl's,
    /// unix:$OVS_RUNDIR/db.sock (OVS_RUNDIR unset: /var/run/openvswitch).
    #[arg(long, global = true, value_name = "ADDRESS")]
    db: Option<String>,
    /// Seconds to wait for ovsdb-server's answers and for ovs-vswitchd to apply a change.
    #[arg(long, global = true, default_value = "10", value_name = "SECONDS", value_parser = seconds)]
    timeout: Duration,
    #[command(flatten)]
    common: sp_cli::Common,
    #[command(flatten)]
    short: Short,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `ovs-attach [--detach] BRIDGE NIC`: the short form of attach/detach.
#[derive(Args)]
struct Short {
    /// The bridge the NIC goes into (short form of `attach BRIDGE NIC`).
    #[arg(requires = "nic")]
    bridge: Option<String>,
    /// The host NIC whose addresses and routes move onto the bridge.
    nic: Option<String>,
    /// Reverse an attach (short form of `detach BRIDGE NIC`).
    #[arg(long, requires = "bridge")]
    detach: bool,
    #[command(flatten)]
    opts: AttachArgs,
}

/// Of the commands that change the database.
#[derive(Args)]
struct Wait {
    /// Return once the database holds the change, without waiting for ovs-vswitchd.
    #[arg(long)]
    no_wait: bool,
}

/// The NIC move's options.
#[derive(Args)]
struct AttachArgs {
    /// Datapath of br-ex when it has to be created: `netdev` without the OVS kernel module.
    #[arg(long, value_name = "TYPE")]
    datapath_type: Option<String>,
    /// Do not ping the default gateways (IPv4, IPv6) through the bridge after the move.
    #[arg(long)]
    no_gateway_check: bool,
    /// Seconds the gateway has to answer before everything is undone.
    #[arg(long, default_value = "5", value_name = "SECONDS", value_parser = seconds)]
    gateway_timeout: Duration,
    /// Move the NIC's port if it is on another bridge (refused otherwise).
    #[arg(long = "move")]
    move_it: bool,
    /// Print the files that make the attach persistent (from the live addresses and
    /// gateway, before or after attaching) and change nothing.
    #[arg(long, value_name = "FORMAT")]
    emit_config: Option<Format>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// CentOS/RHEL `ifcfg-NIC` + `ifcfg-BRIDGE` (initscripts' OVS support).
    Ifcfg,
    /// Debian/Ubuntu `/etc/network/interfaces` stanzas (openvswitch-switch).
    Interfaces,
}

impl AttachArgs {
    fn options(&self) -> AttachOptions {
        AttachOptions {
            datapath_type: self.datapath_type.clone().unwrap_or_default(),
            gateway_timeout: (!self.no_gateway_check).then_some(self.gateway_timeout),
            move_from_other_bridge: self.move_it,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Move the host NIC into BRIDGE with its addresses and routes (see the examples).
    #[command(after_help = EXAMPLES)]
    Attach {
        /// The bridge the NIC goes into (created when missing).
        bridge: String,
        /// The host NIC whose addresses and routes move onto the bridge.
        nic: String,
        #[command(flatten)]
        opts: AttachArgs,
    },
    /// Take the NIC out of BRIDGE, its addresses and routes back on it.
    Detach {
        /// The bridge the NIC is in.
        bridge: String,
        /// The NIC that gets its addresses and routes back.
        nic: String,
        #[command(flatten)]
        opts: AttachArgs,
    },
    /// Create a bridge (with its internal port of the same name).
    #[command(after_help = "Example: ovs-attach add-br br-ex --datapath-type netdev")]
    AddBr {
        /// The new bridge's name (br-ex, br-int, br-tun).
        bridge: String,
        /// `netdev` for the userspace datapath (no openvswitch kernel module needed).
        #[arg(long, value_name = "TYPE")]
        datapath_type: Option<String>,
        /// What the bridge does without a controller.
        #[arg(long, value_parser = ["secure", "standalone"])]
        fail_mode: Option<String>,
        /// An existing bridge of that name is not an error.
        #[arg(long)]
        may_exist: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a bridge with all its ports.
    DelBr {
        /// The bridge to delete.
        bridge: String,
        /// A missing bridge is not an error.
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Add a port (a NIC or veth already present, or an internal port OVS creates).
    #[command(
        after_help = "Examples:\n  ovs-attach add-port br-ex eno1\n  ovs-attach add-port br-ex qg-48cdaf68-67 --type internal\n  ovs-attach add-port br-int tap754104f3-90 --type internal --tag 3"
    )]
    AddPort(AddPort),
    /// Remove a port (its interface goes with it).
    #[command(
        after_help = "Examples:\n  ovs-attach del-port br-ex qg-48cdaf68-67\n  ovs-attach del-port --if-exists qg-48cdaf68-67"
    )]
    DelPort {
        /// The port; or, when PORT follows, the bridge it must be on.
        #[arg(value_name = "BRIDGE_OR_PORT")]
        first: String,
        /// The port, when a bridge was named first.
        #[arg(value_name = "PORT")]
        second: Option<String>,
        /// A missing port is not an error.
        #[arg(long)]
        if_exists: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Join two bridges with a pair of patch ports (one transaction).
    #[command(after_help = "Example: ovs-attach add-patch br-int patch-tun br-tun patch-int")]
    AddPatch {
        /// The first bridge (br-int).
        bridge: String,
        /// The patch port on it (patch-tun).
        port: String,
        /// The second bridge (br-tun).
        peer_bridge: String,
        /// The patch port on the second bridge (patch-int).
        peer_port: String,
        /// Ends already in place are not an error.
        #[arg(long)]
        may_exist: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// List bridges, or the ports of BRIDGE.
    List {
        /// The bridge whose ports are listed (none: the bridges).
        bridge: Option<String>,
    },
    /// The whole configuration, as `ovs-vsctl show` prints it.
    Show,
}

#[derive(Args)]
struct AddPort {
    /// The bridge the port goes on.
    bridge: String,
    /// The port (and its interface): a device's name, or the internal port to create.
    port: String,
    /// Interface type: `internal` for qg-/qr-/tap ports OVS creates, `patch`, …;
    /// none for an existing device.
    #[arg(long = "type", value_name = "TYPE", default_value = "")]
    kind: String,
    /// Access VLAN tag (what the OVS agent sets on br-int ports).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..4096))]
    tag: Option<u16>,
    /// Interface option KEY=VALUE (repeatable), e.g. peer=patch-tun.
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = key_value)]
    options: Vec<(String, String)>,
    /// Interface external_ids KEY=VALUE (repeatable).
    #[arg(long = "external-id", value_name = "KEY=VALUE", value_parser = key_value)]
    external_ids: Vec<(String, String)>,
    /// Neutron port UUID (sets external_ids iface-id, attached-mac, iface-status=active).
    #[arg(long, requires = "attached_mac")]
    iface_id: Option<String>,
    /// The Neutron port's MAC address.
    #[arg(long, requires = "iface_id")]
    attached_mac: Option<String>,
    /// The port already on this bridge is not an error.
    #[arg(long)]
    may_exist: bool,
    /// Move the port here if it is on another bridge (refused otherwise); the moved
    /// port keeps its interface settings.
    #[arg(long = "move")]
    move_it: bool,
    #[command(flatten)]
    wait: Wait,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected a positive number of seconds, got {s:?}"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl AddPort {
    fn spec(&self) -> PortSpec {
        let mut spec = PortSpec {
            options: self.options.iter().cloned().collect(),
            external_ids: self
                .external_ids
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            tag: self.tag,
            may_exist: self.may_exist,
            move_from_other_bridge: self.move_it,
            ..PortSpec::new(&self.port, &self.kind)
        };
        if let (Some(id), Some(mac)) = (&self.iface_id, &self.attached_mac) {
            spec = spec.neutron(id, mac);
        }
        spec
    }
}

fn change_word(c: &Change) -> String {
    match c {
        Change::Created => "created".into(),
        Change::Deleted => "deleted".into(),
        Change::Unchanged => "already as asked, nothing changed".into(),
        Change::Moved { from } => format!("moved here from bridge {from}"),
    }
}

/// Prints what a change did: `OBJECT: WHAT` or one JSON object.
fn report(json: bool, object: serde_json::Value, label: &str, change: &Change) {
    if json {
        let mut v = serde_json::to_value(change).expect("serialisable");
        let members = v.as_object_mut().expect("tagged enum");
        members.extend(object.as_object().expect("object").clone());
        members.insert("schema".into(), json!(SCHEMA));
        sp_cli::outln!("{v}");
    } else {
        sp_cli::outln!("{label}: {}", change_word(change));
    }
}

/// Attach or detach (`detach`), or print the persistent configuration.
async fn move_nic(
    cli: &Cli,
    bridge: &str,
    nic: &str,
    detach: bool,
    opts: &AttachArgs,
) -> Result<(), Error> {
    let db = endpoint(cli)?;
    let nl = Netlink::current()?;
    if let Some(format) = opts.emit_config {
        // The bridge's datapath is read when ovsdb-server answers; the files do not
        // need it otherwise.
        let ovs = Ovs::connect(&db, cli.timeout, false).await.ok();
        let host = attach::host_ip(
            ovs.as_ref(),
            &nl,
            bridge,
            nic,
            opts.datapath_type.as_deref(),
        )
        .await?;
        let format = match format {
            Format::Ifcfg => ConfigFormat::Ifcfg,
            Format::Interfaces => ConfigFormat::Interfaces,
        };
        if cli.common.json {
            let v = json!({"schema": SCHEMA, "host": host, "config": host.render(format)});
            sp_cli::outln!("{v}");
        } else {
            sp_cli::out!("{}", host.render(format));
        }
        return Ok(());
    }
    let ovs = Ovs::connect(&db, cli.timeout, true).await?;
    let (options, mut faults) = (opts.options(), Faults::none());
    let (op, changes) = if detach {
        let c = attach::detach(&ovs, &nl, bridge, nic, &options, &mut faults);
        ("detach", c.await?)
    } else {
        let c = attach::attach(&ovs, &nl, bridge, nic, &options, &mut faults);
        ("attach", c.await?)
    };
    print_changes(cli.common.json, op, bridge, nic, &changes);
    Ok(())
}

fn print_changes(json: bool, op: &str, bridge: &str, nic: &str, changes: &[HostChange]) {
    let result = if changes.is_empty() {
        "unchanged"
    } else {
        "changed"
    };
    if json {
        let v = json!({"schema": CHANGES_SCHEMA, "result": result, "op": op, "bridge": bridge, "nic": nic, "changes": changes});
        sp_cli::outln!("{v}");
    } else if changes.is_empty() {
        let state = if op == "attach" {
            "attached to"
        } else {
            "not attached to"
        };
        sp_cli::outln!("{nic}: already {state} {bridge}, nothing changed");
    } else {
        changes.iter().for_each(|c| sp_cli::outln!("{c}"));
    }
}

async fn run(mut cli: Cli) -> Result<(), Error> {
    let command = match &cli.command {
        Some(Command::Attach { bridge, nic, opts }) => {
            return move_nic(&cli, bridge, nic, false, opts).await
        }
        Some(Command::Detach { bridge, nic, opts }) => {
            return move_nic(&cli, bridge, nic, true, opts).await
        }
        Some(_) if cli.short.bridge.is_some() => <Cli as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "BRIDGE NIC (attach) cannot be combined with another command",
            )
            .exit(),
        Some(_) => cli.command.take().expect("a subcommand"),
        None => {
            let s = &cli.short;
            let (Some(bridge), Some(nic)) = (&s.bridge, &s.nic) else {
                unreachable!("clap requires BRIDGE NIC without a subcommand")
            };
            return move_nic(&cli, bridge, nic, s.detach, &s.opts).await;
        }
    };
    let db = endpoint(&cli)?;
    let wait = match &command {
        Command::AddBr { wait, .. }
        | Command::DelBr { wait, .. }
        | Command::DelPort { wait, .. }
        | Command::AddPatch { wait, .. }
        | Command::AddPort(AddPort { wait, .. }) => !wait.no_wait,
        Command::List { .. } | Command::Show | Command::Attach { .. } | Command::Detach { .. } => {
            false
        }
    };
    let ovs = Ovs::connect(&db, cli.timeout, wait).await?;
    let json = cli.common.json;
    match command {
        Command::Attach { .. } | Command::Detach { .. } => unreachable!("handled above"),
        Command::AddBr {
            bridge,
            datapath_type,
            fail_mode,
            may_exist,
            ..
        } => {
            let spec = BridgeSpec {
                datapath_type: datapath_type.unwrap_or_default(),
                fail_mode,
                may_exist,
            };
            let c = ovs.add_br(&bridge, &spec).await?;
            report(
                json,
                json!({"bridge": bridge}),
                &format!("bridge {bridge}"),
                &c,
            );
        }
        Command::DelBr {
            bridge, if_exists, ..
        } => {
            let c = ovs.del_br(&bridge, if_exists).await?;
            report(
                json,
                json!({"bridge": bridge}),
                &format!("bridge {bridge}"),
                &c,
            );
        }
        Command::AddPort(a) => {
            let c = ovs.add_port(&a.bridge, &a.spec()).await?;
            let label = format!("port {} on bridge {}", a.port, a.bridge);
            report(
                json,
                json!({"bridge": a.bridge, "port": a.port}),
                &label,
                &c,
            );
        }
        Command::DelPort {
            first,
            second,
            if_exists,
            ..
        } => {
            let (bridge, port) = match &second {
                Some(port) => (Some(first.as_str()), port),
                None => (None, &first),
            };
            let c = ovs.del_port(bridge, port, if_exists).await?;
            report(
                json,
                json!({"bridge": bridge, "port": port}),
                &format!("port {port}"),
                &c,
            );
        }
        Command::AddPatch {
            bridge,
            port,
            peer_bridge,
            peer_port,
            may_exist,
            ..
        } => {
            let spec = PatchSpec {
                bridge,
                port,
                peer_bridge,
                peer_port,
                may_exist,
            };
            let changes = ovs.add_patch(&spec).await?;
            for ((b, p, peer), c) in [
                (&spec.bridge, &spec.port, &spec.peer_port),
                (&spec.peer_bridge, &spec.peer_port, &spec.port),
            ]
            .into_iter()
            .zip(&changes)
            {
                let label = format!("patch port {p} on bridge {b} (peer {peer})");
                report(
                    json,
                    json!({"bridge": b, "port": p, "peer": peer}),
                    &label,
                    c,
                );
            }
        }
        Command::List { bridge } => {
            let names = match &bridge {
                Some(b) => ovs.list_ports(b).await?,
                None => ovs.list_br().await?,
            };
            if json {
                let v = match &bridge {
                    Some(b) => json!({"schema": SCHEMA, "bridge": b, "ports": names}),
                    None => json!({"schema": SCHEMA, "bridges": names}),
                };
                sp_cli::outln!("{v}");
            } else {
                names.iter().for_each(|n| sp_cli::outln!("{n}"));
            }
        }
        Command::Show => {
            let show = ovs.show().await?;
            if json {
                let mut v = serde_json::to_value(&show).expect("serialisable");
                v.as_object_mut()
                    .expect("an object")
                    .insert("schema".into(), json!(SCHEMA));
                sp_cli::outln!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("serialisable")
                );
            } else {
                sp_cli::out!("{show}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Output that never panics on a closed pipe; SIGINT/SIGTERM/SIGHUP taken at the end
    // of the work, never half-way (sp_cli).
    sp_cli::init();
    sp_cli::finish(exit_code())
}

fn exit_code() -> ExitCode {
    let cli: Cli = sp_cli::command::parse();
    sp_cli::log::init(&cli.common);
    let json = cli.common.json;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => sp_cli::error::fail("ovs-attach", json, kind(&e), &e.to_string()),
    }
}

/// The version of ovs-attach's JSON (docs/json.md).
const SCHEMA: u32 = 1;

/// The version of `attach`'s and `detach`'s results (docs/json.md): 2 since a change's
/// object is typed.
const CHANGES_SCHEMA: u32 = 2;

/// The database: --db, else ovs-vsctl's default (`$OVS_RUNDIR/db.sock`).
fn endpoint(cli: &Cli) -> Result<Endpoint, Error> {
    match &cli.db {
        Some(db) => Ok(db.parse()?),
        None => Ok(sp_ovs::default_db()),
    }
}

/// An error's kind in JSON, and so its exit code (docs/exit-codes.md).
fn kind(e: &Error) -> Kind {
    use sp_ovsdb::Error as Db;
    match e {
        Error::InvalidName { .. } | Error::Name(_) | Error::Db(Db::BadEndpoint(_)) => {
            Kind::InvalidInput
        }
        Error::NoBridge(_) | Error::NoPort { .. } | Error::NoDevice(_) => Kind::NotFound,
        Error::WaitTimeout { .. } | Error::Db(Db::Timeout { .. }) => Kind::Timeout,
        Error::Db(Db::Connect { source, .. }) => Kind::of_errno(source.raw_os_error()),
        Error::Kernel(k) => Kind::of_errno(k.errno()),
        _ => Kind::Failure,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_and_subcommand_is_explained() {
        sp_cli::command::assert_explained::<super::Cli>();
    }
}
