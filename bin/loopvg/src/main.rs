//! `loopvg`: loop-file-backed LVM volume groups (the Cinder backing store), natively.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sp_cli::error::Kind;
use sp_loopvg::size::human;
use sp_loopvg::unit::{install_unit, UNIT_NAME};
use sp_loopvg::{Loopvg, VgReport, DEFAULT_DIR};

const AFTER_HELP: &str = "\
Examples (the packstack notes' Cinder store, done natively):
  loopvg create cinder-volumes 20G            # /var/lib/cinder/cinder-volumes, loop device, PV, VG
  loopvg extend cinder-volumes +5G            # replaces: dd … >> cinder-volumes02; losetup /dev/loop3 …;
                                              #           fdisk /dev/loop3; pvcreate /dev/loop3; vgextend
  loopvg extend cinder-volumes +5G --grow     # grow the last file instead (losetup -c + pvresize)
  loopvg list --json                          # numbers as vgs/pvs --units b print them
  loopvg activate --all                       # after a reboot, before cinder-volume starts
  loopvg install-unit                         # a systemd unit that runs `activate --all` at boot
  loopvg deactivate cinder-volumes
  loopvg remove cinder-volumes [--keep-files]

Sizes are binary: 20G = 20 GiB (also 20GiB, 20g, 512M, 1T). Backing files are sparse,
created 0600, never through a symlink. loopvg takes lvm2's own locks
(/run/lock/lvm/P_global and V_<vg>), so it never races lvm2 commands; real pvs, vgs,
vgck and vgextend work on what it writes, and it works on VGs lvm2 made on loop files.";

#[derive(Parser)]
#[command(
    name = "loopvg",
    version,
    about = "Loop-file-backed LVM volume groups for Cinder, without losetup, dd, fdisk or lvm2 tools",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Directory of the backing files (new VGs go here; inactive files are found here).
    /// Any bytes: a path need not be UTF-8.
    #[arg(long, global = true, default_value = DEFAULT_DIR, value_parser = clap::value_parser!(PathBuf))]
    dir: PathBuf,
    #[command(flatten)]
    common: sp_cli::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a VG on a new backing file <DIR>/<NAME> bound to a loop device.
    #[command(after_help = "Example: loopvg create cinder-volumes 20G --dir /var/lib/cinder")]
    Create {
        /// Name of the new VG (cinder.conf volume_group, e.g. cinder-volumes); also the
        /// backing file's name in --dir.
        name: String,
        /// Size of the backing file, e.g. 20G.
        #[arg(allow_hyphen_values = true)]
        size: String,
        /// Reserve the blocks now (fallocate; zeros are written, with progress, where
        /// the filesystem cannot) instead of a sparse file.
        #[arg(long)]
        preallocate: bool,
    },
    /// Add space: a new backing file <NAME>02, 03, … as a new PV (default), or --grow.
    #[command(
        after_help = "Examples: loopvg extend cinder-volumes +5G\n          loopvg extend cinder-volumes +5G --grow"
    )]
    Extend {
        /// The VG to extend.
        name: String,
        /// Space to add, e.g. +5G.
        #[arg(allow_hyphen_values = true)]
        size: String,
        /// Grow the last backing file and its PV in place instead of adding a file.
        #[arg(long)]
        grow: bool,
    },
    /// Show VGs on loop devices and backing files: PVs, devices, files, sizes, free extents.
    List {
        /// Only this VG.
        name: Option<String>,
    },
    /// Bind every backing file of a VG to a loop device again (after a reboot).
    #[command(
        after_help = "Example: loopvg activate --all   (what the systemd unit runs at boot)"
    )]
    Activate {
        /// The VG to activate.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every VG whose backing files are in --dir.
        #[arg(long)]
        all: bool,
    },
    /// Unbind the loop devices of a VG (its files stay; `activate` brings it back).
    Deactivate {
        /// The VG whose loop devices are unbound.
        name: String,
    },
    /// Delete a VG: wipe its PV labels, unbind its loop devices, delete its files.
    Remove {
        /// The VG to delete, with its backing files.
        name: String,
        /// Keep the (wiped) backing files.
        #[arg(long)]
        keep_files: bool,
    },
    /// Install loopvg.service, which runs `loopvg activate --all` at boot before cinder-volume.
    #[command(after_help = "Then: systemctl daemon-reload && systemctl enable loopvg.service")]
    InstallUnit {
        /// Where unit files go.
        #[arg(long, default_value = "/etc/systemd/system", value_parser = clap::value_parser!(PathBuf))]
        unit_dir: PathBuf,
        /// Absolute path of loopvg in the unit (default: this executable).
        #[arg(long, value_parser = clap::value_parser!(PathBuf))]
        bin: Option<PathBuf>,
    },
}

fn print_vg(vg: &VgReport) {
    sp_cli::outln!(
        "{}  {}  seqno {}  size {}  free {}  ({} of {} extents of {} free)  LVs {}  {}",
        vg.name,
        vg.uuid,
        vg.seqno,
        human(vg.size),
        human(vg.free),
        vg.free_count,
        vg.extent_count,
        human(vg.extent_size),
        vg.lv_count,
        if vg.active { "active" } else { "inactive" }
    );
    for pv in &vg.pvs {
        let show = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
        let foreign = if pv.file_here || pv.file.is_none() {
            ""
        } else {
            " (bound from another mount namespace)"
        };
        sp_cli::outln!(
            "  {:<5} {:<12} {}{}  size {}  free {}  ({} extents, {} used)",
            pv.key,
            show(&pv.device),
            show(&pv.file),
            foreign,
            human(pv.size),
            human(pv.free),
            pv.pe_count,
            pv.pe_alloc
        );
    }
}

fn run(cli: Cli) -> sp_loopvg::Result<()> {
    let progress = |done: u64, total: u64| {
        sp_cli::err!("\rpreallocating: {} of {}", human(done), human(total));
        if done == total {
            sp_cli::errln!();
        }
    };
    let lv = Loopvg {
        dir: cli.dir.clone(),
        progress: Some(&progress),
        // args_os: an argument need not be UTF-8 (std::env::args would panic on one).
        description: format!(
            "Write from {}",
            std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ..Loopvg::default()
    };
    let list = |vgs: &[VgReport]| -> sp_loopvg::Result<()> {
        if cli.common.json {
            print_json(&vgs)?;
        } else if vgs.is_empty() {
            sp_cli::outln!(
                "no loop-file volume groups (bound loop devices and {} searched)",
                cli.dir.display()
            );
        } else {
            vgs.iter().for_each(print_vg);
        }
        Ok(())
    };
    // What create, extend, activate and deactivate leave (docs/json.md).
    let changed = |vgs: &[VgReport]| -> sp_loopvg::Result<()> {
        match cli.common.json {
            true => print_json(&serde_json::json!({ "schema": SCHEMA, "vgs": vgs })),
            false => list(vgs),
        }
    };
    match &cli.command {
        Command::Create {
            name,
            size,
            preallocate,
        } => changed(&[lv.create(name, size, *preallocate)?])?,
        Command::Extend { name, size, grow } => {
            let vg = if *grow {
                lv.grow(name, size)?
            } else {
                lv.extend(name, size)?
            };
            changed(&[vg])?;
        }
        Command::List { name: Some(name) } => list(&lv.list(Some(name))?)?,
        Command::List { name: None } => {
            let (found, corrupt, skipped) = lv.survey()?;
            for s in &skipped {
                sp_cli::errln!("loopvg: note: {s}");
            }
            for c in &corrupt {
                sp_cli::errln!(
                    "loopvg: warning: {c}; skipped (`pvck` shows what lvm2 makes of it)"
                );
            }
            list(&found)?;
        }
        Command::Activate { name, .. } => changed(&lv.activate(name.as_deref())?)?,
        Command::Deactivate { name } => changed(&[lv.deactivate(name)?])?,
        Command::Remove { name, keep_files } => {
            let r = lv.remove(name, *keep_files)?;
            if cli.common.json {
                print_json(&serde_json::json!({ "schema": SCHEMA, "removed": r }))?;
            } else {
                sp_cli::outln!(
                    "removed volume group {}; {} {}",
                    r.name,
                    if r.files_kept {
                        "kept (wiped)"
                    } else {
                        "deleted"
                    },
                    r.files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Command::InstallUnit { unit_dir, bin } => {
            let bin = match bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .and_then(|p| p.canonicalize())
                    .map_err(sp_loopvg::error::io("find this executable"))?,
            };
            let path = install_unit(unit_dir, &bin, &cli.dir)?;
            if cli.common.json {
                print_json(
                    &serde_json::json!({ "schema": SCHEMA, "unit": path.to_string_lossy() }),
                )?;
            } else {
                sp_cli::outln!(
                    "wrote {}\nenable it with: systemctl daemon-reload && systemctl enable {UNIT_NAME}",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// The version of loopvg's JSON but list's (docs/json.md).
const SCHEMA: u32 = 1;

fn print_json<T: serde::Serialize>(v: &T) -> sp_loopvg::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| sp_loopvg::Error::Io {
        what: "write the JSON report".into(),
        source: std::io::Error::other(e),
    })?;
    sp_cli::outln!("{text}");
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => sp_cli::error::fail("loopvg", json, kind(&e), &e.to_string()),
    }
}

/// An error's kind in JSON, and so its exit code (docs/exit-codes.md).
fn kind(e: &sp_loopvg::Error) -> Kind {
    use sp_kernel::loopdev::LoopError;
    use sp_loopvg::Error as E;
    match e {
        E::NotRoot | E::Capabilities(_) => Kind::Privilege,
        E::Loop(LoopError::Denied(_) | LoopError::NoNode { .. }) => Kind::Privilege,
        E::InvalidName { .. }
        | E::InvalidUnitPath { .. }
        | E::InvalidSize { .. }
        | E::NotUtf8Path(_)
        | E::TooSmall { .. } => Kind::InvalidInput,
        E::VgNotFound { .. } => Kind::NotFound,
        E::Io { source, .. } | E::Loop(LoopError::Io { source, .. }) => {
            Kind::of_errno(source.raw_os_error())
        }
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
