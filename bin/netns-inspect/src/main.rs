//! `netns-inspect`: argument parsing and output only; the work is in `sp-inspect`.

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
/// out), ip_forward and the processes inside. It ends with the problems it found:
/// stale /run/netns entries, qdhcp without dnsmasq, orphan veths, empty (leaked)
/// Neutron namespaces, routers that do not forward, veth MTU mismatches.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  netns-inspect                                   every namespace, as a tree
  netns-inspect qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165
  netns-inspect qrouter-006df4cc                  a prefix is enough
  netns-inspect --kind qdhcp                      all DHCP namespaces
  netns-inspect --json | jq '.problems'           machine-readable (docs/netns-inspect-json.md)
  netns-inspect --check                           exit 3 if an error-level problem is found

Needs root (it enters every namespace)."
)]
struct Args {
    /// Namespace names or name prefixes to show (default: all).
    #[arg(value_name = "NAMESPACE")]
    names: Vec<String>,
    /// Only namespaces of this kind: root, qrouter, qdhcp, snat, fip, plain (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<NamespaceKind>,
    /// Exit with status 3 when a problem of severity "error" is found.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    common: sp_cli::Common,
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
    match run(&args) {
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
    use sp_inspect::FilterError as F;
    match (e.downcast_ref::<F>(), e.downcast_ref::<sp_kernel::Error>()) {
        (Some(F::InvalidName(_)), _) => Kind::InvalidInput,
        (Some(F::NoSuchNamespace(_)), _) => Kind::NotFound,
        (_, Some(k)) => Kind::of_errno(k.errno()),
        _ => Kind::Failure,
    }
}

fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let filter = Filter::new(args.names.clone(), args.kinds.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = filter.apply(runtime.block_on(sp_inspect::inspect())?)?;
    if args.common.json {
        sp_cli::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        sp_cli::out!("{}", text::render(&report));
    }
    let failing = report
        .problems
        .iter()
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
