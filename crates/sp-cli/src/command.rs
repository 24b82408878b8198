//! The command line the five tools share: global options ([`Common`]), help whose
//! examples are printed as written (never wrapped, whatever the terminal's width) and
//! ends with the exit-code table, `--generate` (shell completions, the man page), and
//! usage errors as one JSON object on standard output under `--json`.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command, Parser};

use crate::exit;

/// The options of every tool, accepted before and after the subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Common {
    /// Machine-readable output: JSON on standard output (docs/json.md), an error as one
    /// object `{"schema":1,"error":{"kind":…,"message":…}}` with the exit code.
    #[arg(long, global = true)]
    pub json: bool,
    /// More on standard error: -v what is being done, -vv debugging (with the netlink
    /// crates' records), -vvv everything. RUST_LOG, when set, decides instead
    /// (RUST_LOG=debug, RUST_LOG=sp_ovsdb=trace,warn).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Errors only on standard error: no notes, warnings or progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// What `--generate` prints.
pub const GENERATE: [&str; 4] = ["complete-bash", "complete-zsh", "complete-fish", "man"];

/// The heading the examples and the exit codes stand under in `--help`.
const EXIT_HEADING: &str = "Exit codes (docs/exit-codes.md):";

/// The tool's command as `--help` shows it: `--generate`, the exit codes after the
/// examples, examples verbatim (see [`verbatim`]).
pub fn command<C: Parser>() -> Command {
    verbatim(with_trailer(C::command()))
}

/// Parses the command line of `C`; `--generate KIND` (first) prints what it names and
/// exits. A usage error exits 2; with `--json` it is also one JSON object on stdout.
pub fn parse<C: Parser>() -> C {
    parse_from(std::env::args_os())
}

/// [`parse`] of the given arguments (the first is the program).
pub fn parse_from<C: Parser>(args: impl IntoIterator<Item = OsString>) -> C {
    let args: Vec<OsString> = args.into_iter().collect();
    if let Some(kind) = generate_request(&args) {
        let cmd = with_trailer(C::command());
        let text = match generate(cmd, &kind) {
            Ok(t) => t,
            Err(e) => {
                crate::errln!("--generate: {e}");
                crate::exit_now(exit::USAGE);
            }
        };
        crate::write_out(format_args!("{text}"));
        crate::exit_now(exit::SUCCESS);
    }
    let result = command::<C>()
        .try_get_matches_from(&args)
        .and_then(|mut m| C::from_arg_matches_mut(&mut m));
    match result {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            let shown = matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if !shown && args.iter().skip(1).any(|a| a == "--json") {
                let text = e.render().to_string();
                let message = text.lines().next().unwrap_or_default();
                let message = message.strip_prefix("error: ").unwrap_or(message);
                crate::error::print_json("usage", message, None);
                crate::err!("{text}");
                crate::exit_now(exit::USAGE);
            }
            e.exit()
        }
    }
}

/// `--generate KIND` (or `--generate=KIND`) as the whole command line.
fn generate_request(args: &[OsString]) -> Option<String> {
    let rest: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    match rest.as_slice() {
        ["--generate", kind] => Some((*kind).to_owned()),
        [one] => one.strip_prefix("--generate=").map(str::to_owned),
        _ => None,
    }
}

/// `--generate` in the help, and the exit-code table after the examples.
fn with_trailer(cmd: Command) -> Command {
    let cmd = cmd.arg(
        Arg::new("generate")
            .long("generate")
            .value_name("KIND")
            .value_parser(GENERATE)
            .exclusive(true)
            .help("Print shell completions or the man page (alone on the command line)"),
    );
    trailer(cmd, true)
}

fn trailer(cmd: Command, root: bool) -> Command {
    let examples = after(&cmd);
    let text = match (examples.is_empty(), root) {
        (true, false) => None,
        (false, false) => Some(examples),
        (true, true) => Some(format!("{EXIT_HEADING}\n{}", exit::TABLE)),
        (false, true) => Some(format!("{examples}\n\n{EXIT_HEADING}\n{}", exit::TABLE)),
    };
    let cmd = match text {
        Some(t) => cmd.after_help(t.clone()).after_long_help(t),
        None => cmd,
    };
    cmd.mut_subcommands(|s| trailer(s, false))
}

/// A command's text after the options, as written.
fn after(cmd: &Command) -> String {
    cmd.get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string().trim_end().to_owned())
        .unwrap_or_default()
}

/// Moves each command's text after the options (its examples, the exit codes) into its
/// help template, where clap prints it as it is: clap wraps `after_help` at the
/// terminal's width, which breaks a long example line in two.
fn verbatim(cmd: Command) -> Command {
    let text = after(&cmd);
    let cmd = if text.is_empty() {
        cmd
    } else {
        assert!(
            !text.contains(['{', '}']),
            "{}: braces would be read as template tags: {text}",
            cmd.get_name()
        );
        cmd.help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{{all-args}}\n\n{text}\n"
        ))
    };
    cmd.mut_subcommands(verbatim)
}

/// What `--generate KIND` prints for `cmd`.
pub fn generate(mut cmd: Command, kind: &str) -> Result<String, String> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_owned();
    let shell = match kind {
        "complete-bash" => Shell::Bash,
        "complete-zsh" => Shell::Zsh,
        "complete-fish" => Shell::Fish,
        "man" => return man(cmd).map_err(|e| e.to_string()),
        other => {
            return Err(format!(
                "{other:?}: expected one of {}",
                GENERATE.join(", ")
            ))
        }
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The man page: clap_mangen's sections for the tool, a section per subcommand with its
/// options, and the examples and exit codes in no-fill mode (as written).
fn man(cmd: Command) -> std::io::Result<String> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let page = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{} {}", cmd.get_name(), sub.get_name());
        let mut part = Vec::new();
        // The global options are the tool's, described once above.
        let own =
            sub.clone()
                .bin_name(&full)
                .mut_args(|a| if a.is_global_set() { a.hide(true) } else { a });
        let sub_page = clap_mangen::Man::new(own);
        sub_page.render_synopsis_section(&mut part)?;
        sub_page.render_description_section(&mut part)?;
        if sub
            .get_arguments()
            .any(|a| !a.is_hide_set() && !a.is_global_set())
        {
            sub_page.render_options_section(&mut part)?;
        }
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS\n", "")
            .replace(".SH DESCRIPTION\n", ".PP\n")
            .replace(".SH OPTIONS\n", ".PP\nOptions:\n");
        let mut heading = roff::Roff::new();
        heading.control("SH", [full.to_uppercase().as_str()]);
        out.extend(heading.to_roff().into_bytes());
        out.extend(part.into_bytes());
        let examples = after(sub);
        if !examples.is_empty() {
            out.extend(no_fill(&examples).into_bytes());
        }
    }
    let mut extra = roff::Roff::new();
    extra.control("SH", ["EXAMPLES AND EXIT STATUS"]);
    out.extend(extra.to_roff().into_bytes());
    out.extend(no_fill(&after(&cmd)).into_bytes());
    page.render_version_section(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Lines kept as written in a man page (`.nf` … `.fi`), escaped by roff.
fn no_fill(text: &str) -> String {
    let mut r = roff::Roff::new();
    r.control("PP", []).control("nf", []);
    for line in text.lines() {
        r.text([roff::roman(line)]);
    }
    r.control("fi", []);
    r.to_roff()
}

/// The arguments of `cmd` and its subcommands that have no help text (`tool sub --arg`).
pub fn unexplained(cmd: &Command) -> Vec<String> {
    let mut found = Vec::new();
    let mut cmd = cmd.clone();
    cmd.build();
    walk(&cmd, cmd.get_name(), &mut found);
    found
}

fn walk(cmd: &Command, path: &str, found: &mut Vec<String>) {
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if a.get_help().is_none() && a.get_long_help().is_none() {
            found.push(format!("{path} {}", a.get_id()));
        }
    }
    for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        if s.get_about().is_none() && s.get_long_about().is_none() {
            found.push(format!("{path} {}", s.get_name()));
        }
        walk(s, &format!("{path} {}", s.get_name()), found);
    }
}

/// Panics with the arguments and subcommands of `C` that have no help text (a test of
/// each tool calls it).
pub fn assert_explained<C: Parser>() {
    let missing = unexplained(&command::<C>());
    assert!(missing.is_empty(), "no help text: {missing:?}");
}
