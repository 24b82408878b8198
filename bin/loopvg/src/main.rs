//! `loopvg`: loop-file-backed LVM volume groups (the Cinder backing store), natively.

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sp_cli::error::Kind;
use sp_loopvg::columns::{fields_help, Format, Report};
use sp_loopvg::size::{human, Units};
use sp_loopvg::unit::{install_unit, UNIT_NAME};
use sp_loopvg::{Loopvg, VgReport, DEFAULT_DIR};

const AFTER_HELP: &str = "\
Examples (the packstack notes' Cinder store, done natively):
  loopvg create cinder-volumes 20G            # /var/lib/cinder/cinder-volumes, loop device, PV, VG
  loopvg extend cinder-volumes +5G            # replaces: dd … >> cinder-volumes02; losetup /dev/loop3 …;
                                              #           fdisk /dev/loop3; pvcreate /dev/loop3; vgextend
  loopvg extend cinder-volumes +5G --grow     # grow the last file instead (losetup -c + pvresize)
  loopvg list                                 # as vgs prints it; --pvs as pvs, with the files
  loopvg list -o vg_name,vg_size,vg_free --units g --noheadings --separator :
  loopvg list --pvs --reportformat json       # shaped like pvs --reportformat json
  loopvg list --select 'vg_free>=5g && pv_count=1'
  loopvg list --json                          # loopvg's own report: every number in bytes
  loopvg activate --all                       # after a reboot, before cinder-volume starts
  loopvg install-unit                         # a systemd unit that runs `activate --all` at boot
  loopvg deactivate cinder-volumes
  loopvg remove cinder-volumes [--keep-files]

Sizes as lvm2 reads them: binary, 20G = 20 GiB (also 20GiB, 20g, 512M, 1T, 1.5G);
a bare number is MiB (100 = 100 MiB); s is sectors, b bytes. Backing files are sparse,
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
    /// Report VGs on loop devices and backing files as vgs does (pvs with --pvs).
    #[command(after_help = "\
Fields (-o help lists them all): lvm2's vg_name, vg_uuid, vg_attr, vg_size, vg_free,
vg_extent_size, vg_extent_count, vg_free_count, pv_count, lv_count, snap_count,
vg_seqno, vg_missing_pv_count, max_lv, max_pv, pv_name, pv_uuid, pv_attr, pv_size,
pv_free, pv_used, dev_size, pe_start, pv_pe_count, pv_pe_alloc_count, pv_missing, and
loopvg's own loop_file, loop_file_size, loop_file_here, loop_vg_active.
A PV field makes the rows PVs, as in vgs. A PV no loop device carries is [unknown].

Examples:
  loopvg list -o +vg_extent_size --units m
  loopvg list --pvs -o pv_name,pv_size,loop_file --noheadings --separator ,
  loopvg list --reportformat json -o vg_name,vg_size,vg_free --units b --nosuffix
  loopvg list --select 'vg_name=cinder-volumes && pv_missing=1' -o pv_uuid,loop_file")]
    List {
        /// Only this VG.
        name: Option<String>,
        /// Columns, lvm2's field names: `a,b` replaces the default, `+a,b` appends, `-a`
        /// removes; repeatable, evaluated left to right. `-o help` lists the fields.
        #[arg(
            short = 'o',
            long = "options",
            value_name = "FIELDS",
            allow_hyphen_values = true
        )]
        options: Vec<String>,
        /// One row per PV with pvs's default columns and the backing file (JSON key "pv").
        #[arg(long)]
        pvs: bool,
        /// Units of sizes, as lvm2's --units: [Number]r|R|h|H|b|B|s|S|k|K|m|M|g|G|t|T|p|P|e|E
        /// (upper case: powers of 1000; r, the default, marks rounded values with <).
        #[arg(long, value_name = "UNITS", value_parser = |s: &str| s.parse::<Units>())]
        units: Option<Units>,
        /// No heading line.
        #[arg(long)]
        noheadings: bool,
        /// Between columns instead of aligning them with spaces.
        #[arg(long, value_name = "STRING")]
        separator: Option<String>,
        /// Align columns even with --separator.
        #[arg(long)]
        aligned: bool,
        /// Sizes without their unit letter (with --units other than h, r).
        #[arg(long)]
        nosuffix: bool,
        /// basic (columns) or json (shaped like vgs/pvs --reportformat json).
        #[arg(long, value_name = "FORMAT", value_parser = |s: &str| s.parse::<Format>())]
        reportformat: Option<Format>,
        /// Rows to show, lvm2's selection: field=value, !=, <, <=, >, >= (numbers and
        /// sizes; sizes MiB without a unit), joined by && or , (and), || or # (or), ! and
        /// parentheses; e.g. 'vg_name=cinder-volumes && vg_free>=5g'.
        #[arg(short = 'S', long, value_name = "SELECTION")]
        select: Option<String>,
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
            pv.device
                .as_ref()
                .map_or("[unknown]".into(), |d| d.display().to_string()),
            show(&pv.file),
            foreign,
            human(pv.size),
            human(pv.free),
            pv.pe_count,
            pv.pe_alloc
        );
    }
}

/// The report `list`'s options ask for (`None` for other commands and for `--json`);
/// a bad option is a usage error, found before anything is read.
fn list_report(command: &Command, json: bool) -> Result<Option<Report>, String> {
    let Command::List {
        options,
        pvs,
        units,
        noheadings,
        separator,
        aligned,
        nosuffix,
        reportformat,
        select,
        ..
    } = command
    else {
        return Ok(None);
    };
    let lvm_form = !options.is_empty()
        || *pvs
        || units.is_some()
        || *noheadings
        || separator.is_some()
        || *aligned
        || *nosuffix
        || reportformat.is_some()
        || select.is_some();
    if json && lvm_form {
        return Err(
            "--json prints loopvg's own report; for lvm2's columns, selection and JSON use \
             --reportformat json (with -o, --units, --select …)"
                .into(),
        );
    }
    if json {
        return Ok(None);
    }
    let mut r = Report::new(options, *pvs, select.as_deref())?;
    r.units = units.unwrap_or_default();
    r.headings = !noheadings;
    r.separator = separator.clone();
    r.aligned = *aligned;
    r.suffix = !nosuffix;
    r.format = reportformat.unwrap_or(Format::Basic);
    Ok(Some(r))
}

fn run(cli: Cli, report: Option<Report>) -> sp_loopvg::Result<()> {
    if let Command::List { options, .. } = &cli.command {
        if options.iter().any(|o| o == "help") {
            sp_cli::out!("{}", fields_help());
            return Ok(());
        }
    }
    let bar = progress::preallocation(cli.common.json, cli.common.quiet);
    let update = |done: u64, total: u64| {
        if let Some(b) = &bar {
            progress::update(b, done, total);
        }
    };
    let lv = Loopvg {
        dir: cli.dir.clone(),
        progress: bar.is_some().then_some(&update as &dyn Fn(u64, u64)),
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
        Command::List { name, select, .. } => {
            let found = match name {
                Some(name) => lv.list(Some(name))?,
                None => {
                    let (found, corrupt, skipped) = lv.survey()?;
                    // -q: errors only.
                    let (corrupt, skipped) = match cli.common.quiet {
                        true => (vec![], vec![]),
                        false => (corrupt, skipped),
                    };
                    for s in &skipped {
                        sp_cli::errln!("loopvg: note: {s}");
                    }
                    for c in &corrupt {
                        sp_cli::errln!(
                            "loopvg: warning: {c}; skipped (`pvck` shows what lvm2 makes of it)"
                        );
                    }
                    found
                }
            };
            match &report {
                None => list(&found)?,
                // What no VG at all looks like to a reader (a script asking with
                // --noheadings or --select gets nothing, as from vgs).
                Some(r)
                    if found.is_empty()
                        && r.format == Format::Basic
                        && r.headings
                        && select.is_none() =>
                {
                    list(&found)?;
                }
                Some(r) => sp_cli::out!("{}", r.render(&found)),
            }
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
    // Checked before anything is read.
    let report = match list_report(&cli.command, json) {
        Ok(r) => r,
        Err(e) => return sp_cli::error::fail("loopvg", json, Kind::Usage, &e),
    };
    match run(cli, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => sp_cli::error::fail("loopvg", json, kind(&e), &e.to_string()),
    }
}

/// An error's kind in JSON, and so its exit code (docs/exit-codes.md).
fn kind(e: &sp_loopvg::Error) -> Kind {
    use sp_kernel::loopdev::LoopError;
    use sp_loopvg::Error as E;
    match e {
        e if e.is_privilege() => Kind::Privilege,
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
