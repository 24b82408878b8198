//! `netns-inspect`: argument parsing and output only; the work is in `sp-inspect`.

mod dot;
mod text;

use std::process::ExitCode;

use clap::Parser;
use sp_cli::error::Kind;
use sp_inspect::{Filter, Severity};
use sp_neutron::NamespaceKind;

/// What lives in every network namespace — at once.
///
/// Replaces the guides' `ip netns`, `ip netns exec qrouter-… ip -f inet addr` and
/// `ip netns exec qdhcp-… ifconfig`: lists every network namespace (named ones in
/// /run/netns, the root one, and those held only by processes), recognises Neutron's
/// qrouter-/qdhcp-/snat-/fip- namespaces with their router or network id, and shows per
/// namespace its links (kind, state, MTU, MAC, master bridge, and for a veth its peer
/// resolved across namespaces), addresses, main-table routes (default route called
/// out), ip_forward and the processes inside; VXLAN devices with their FDB entries and
/// neighbours; each router's NAT (SNAT per subnet, floating IPs, the metadata redirect)
/// and each instance port's filter rules, read from nf_tables; Open vSwitch bridges,
/// ports, tags, patch peers and Neutron port ids, over OVSDB. It ends with the problems
/// it found: stale /run/netns entries, qdhcp without dnsmasq, orphan veths, empty
/// (leaked) Neutron namespaces, routers that do not forward, veth MTU mismatches, OVS
/// interface errors and dead-VLAN ports, floating IPs without DNAT, unfiltered ports.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  netns-inspect                                   every namespace, as a tree
  netns-inspect qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165
  netns-inspect qrouter-006df4cc                  a prefix is enough
  netns-inspect --kind qdhcp                      all DHCP namespaces
  netns-inspect --brief                           one line per namespace, like `ip -br`
  netns-inspect --json | jq '.problems'           machine-readable (docs/netns-inspect-json.md)
  netns-inspect --format dot | dot -Tsvg > n.svg  a picture (Graphviz)
  netns-inspect --check                           exit 3 if an error-level problem is found
                                                  in the root or a named namespace
  netns-inspect --ovsdb unix:/run/ovs/db.sock     Open vSwitch from another ovsdb-server

Needs root (it enters every namespace)."
)]
struct Args {
    /// Namespace names or name prefixes to show (default: all).
    #[arg(value_name = "NAMESPACE")]
    names: Vec<String>,
    /// Only namespaces of this kind: root, qrouter, qdhcp, snat, fip, plain (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<NamespaceKind>,
    /// Output: `text` (a tree), `json` (schema stackplumb.netns-inspect/v2, as the
    /// global `--json`), or `dot` (Graphviz: `| dot -Tsvg`).
    #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "brief")]
    format: Option<Format>,
    /// One line per namespace: kind, id, links with state and first address,
    /// processes, problem count.
    #[arg(long)]
    brief: bool,
    /// Exit with status 3 when a problem of severity "error" is found in the root
    /// namespace, this process's, or a named one (see --all).
    #[arg(long)]
    check: bool,
    /// With --check: count namespaces held only by other processes too.
    #[arg(long, requires = "check")]
    all: bool,
    /// The ovsdb-server to read Open vSwitch from (unix:PATH or tcp:HOST:PORT); default
    /// as ovs-vsctl: unix:$OVS_RUNDIR/db.sock (OVS_RUNDIR=/var/run/openvswitch), where
    /// no server means nothing said about OVS.
    #[arg(long, value_name = "ADDRESS")]
    ovsdb: Option<String>,
    #[command(flatten)]
    common: sp_cli::Common,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Dot,
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
    let format = match format_of(&args) {
        Ok(f) => f,
        Err(e) => return sp_cli::error::fail("netns-inspect", args.common.json, Kind::Usage, e),
    };
    match run(&args, format) {
        Ok(code) => code,
        Err(e) => sp_cli::error::fail(
            "netns-inspect",
            args.common.json,
            kind(e.as_ref()),
            &e.to_string(),
        ),
    }
}

/// An error's kind in JSON, and so its exit code (docs/exit-codes.md).
fn kind(e: &(dyn std::error::Error + 'static)) -> Kind {
    use sp_inspect::{FilterError as F, InspectError as I};
    let kernel = match e.downcast_ref::<I>() {
        Some(I::Kernel(k)) => Some(k),
        _ => e.downcast_ref::<sp_kernel::Error>(),
    };
    match (e.downcast_ref::<F>(), kernel) {
        (Some(F::InvalidName(_)), _) => Kind::InvalidInput,
        (Some(F::NoSuchNamespace(_)), _) => Kind::NotFound,
        (_, Some(k)) => Kind::of_errno(k.errno()),
        _ => Kind::Failure,
    }
}

/// The output asked for: `--json` (global) is `--format json`; with another format or
/// `--brief` it is a usage error.
fn format_of(args: &Args) -> Result<Format, &'static str> {
    match (args.common.json, args.format) {
        (true, Some(f)) if f != Format::Json => Err("--json and --format ask for two outputs"),
        (true, _) if args.brief => Err("--json and --brief ask for two outputs"),
        (true, _) => Ok(Format::Json),
        (false, f) => Ok(f.unwrap_or(Format::Text)),
    }
}

fn run(args: &Args, format: Format) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let filter = Filter::new(args.names.clone(), args.kinds.clone())?;
    let opts = sp_inspect::Options {
        ovsdb: args.ovsdb.as_deref().map(str::parse).transpose()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = filter.apply(runtime.block_on(sp_inspect::inspect_with(&opts))?)?;
    match format {
        Format::Json => sp_cli::outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Dot => sp_cli::out!("{}", dot::render(&report)),
        Format::Text if args.brief => sp_cli::out!("{}", text::brief(&report)),
        Format::Text => sp_cli::out!("{}", text::render(&report)),
    }
    let failing = report
        .problems
        .iter()
        .filter(|p| args.all || sp_inspect::owned_by_operator(&report, p))
        .any(|p| p.severity == Severity::Error);
    Ok(if args.check && failing {
        ExitCode::from(sp_cli::exit::PROBLEMS)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_argument_and_subcommand_is_explained() {
        sp_cli::command::assert_explained::<super::Args>();
    }
}
