//! The five tools as operators expect them (issue 16): global options before and after
//! the subcommand, one exit-code table, usage and failures as one JSON object, help
//! examples never wrapped, completions that bash loads, man pages that `man` renders,
//! logs on stderr through tracing (`-v`, `-q`, `RUST_LOG`, the netlink crates' records).

use std::process::{Command, Output};

use serde_json::Value;
use sp_testenv::{require, sandbox, workspace_bin, TOOLS};

fn run(tool: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(workspace_bin(tool));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

/// A failure under `--json`: (exit code, the error's kind), the object checked.
fn json_error(tool: &str, args: &[&str]) -> (i32, String) {
    sp_testenv::json_error(&run(tool, args, &[]))
}

/// Input each tool refuses before it reads or changes anything, as (subcommand…, rest).
fn refused(tool: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    match tool {
        "netns-inspect" => (vec![], vec!["a/b"]),
        "loopvg" => (vec!["create"], vec!["a/b", "64M"]),
        "bridgectl" => (vec!["fdb", "add"], vec!["--vni", "0", "--vtep", "10.0.0.2"]),
        "ovs-attach" => (vec!["show"], vec!["--db", "ssl:1.2.3.4:6640"]),
        "stackplumb" => (vec!["plan"], vec!["--config-dir", "/nonexistent-sp-config"]),
        _ => unreachable!(),
    }
}

#[test]
fn global_options_are_taken_before_and_after_the_subcommand() {
    sandbox::enter();
    for tool in TOOLS {
        let (sub, rest) = refused(tool);
        for globals in [&["--json", "-q"][..], &["-v", "--json"]] {
            let before: Vec<&str> = globals.iter().chain(&sub).chain(&rest).copied().collect();
            let after: Vec<&str> = sub.iter().chain(&rest).chain(globals).copied().collect();
            for args in [before, after] {
                assert_eq!(
                    json_error(tool, &args),
                    (2, "invalid-input".into()),
                    "{tool} {args:?}"
                );
            }
        }
    }
    // The example, refused before.
    let (code, kind) = json_error(
        "stackplumb",
        &[
            "plan",
            "--node",
            "controller",
            "--config-dir",
            "/nonexistent-sp-config",
            "--json",
        ],
    );
    assert_eq!((code, kind.as_str()), (2, "invalid-input"));
}

#[test]
fn usage_errors_exit_2_and_are_json_with_json() {
    for tool in TOOLS {
        assert_eq!(
            json_error(tool, &["--json", "--no-such-option"]),
            (2, "usage".into()),
            "{tool}"
        );
        let out = run(tool, &["--no-such-option"], &[]);
        assert_eq!(out.status.code(), Some(2), "{tool}");
        assert!(
            out.stdout.is_empty(),
            "{tool}: nothing on stdout without --json"
        );
    }
    // -v and -q together make no sense.
    assert_eq!(
        run("bridgectl", &["-v", "-q", "show"], &[]).status.code(),
        Some(2)
    );
}

/// A tool that needs root, run as nobody: the table's 6, said as such.
#[test]
fn needs_root_is_exit_6_in_every_tool_that_changes_the_host() {
    sandbox::enter();
    require::program("setpriv", "util-linux");
    let nobody = |tool: &str, args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(workspace_bin(tool))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: {e}: {text}"));
        (out.status.code().unwrap(), v["error"]["kind"].clone())
    };
    let dir = std::env::temp_dir().join(format!("sp-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = format!("--dir={}", dir.display());
    assert_eq!(
        nobody("loopvg", &["--json", &dir_arg, "create", "nobodyvg", "64M"]),
        (6, Value::from("privilege"))
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
    // A bridge in the root namespace of this host is never made: refused with EPERM first.
    assert_eq!(
        nobody(
            "bridgectl",
            &[
                "--json",
                "ensure-network",
                "5b6a8b87-fd03-46b5-a968-72bac5091b7c"
            ]
        ),
        (6, Value::from("privilege"))
    );
}

/// The help text after the options (examples, exit codes) at a width.
fn help(tool: &str, args: &[&str], columns: &str) -> String {
    let out = run(tool, args, &[("COLUMNS", columns)]);
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The help split after the options (clap's `-V, --version` or `-h, --help` comes last):
/// the options, wrapped to the terminal, and what follows (examples, exit codes), which
/// must not depend on the width.
fn split(help: &str) -> (&str, &str) {
    let last = ["Print version", "Print help"]
        .iter()
        .filter_map(|w| help.rfind(w))
        .max()
        .expect("clap's own options");
    let end = last + help[last..].find('\n').unwrap_or(help.len() - last);
    help.split_at(end)
}

fn examples(help: &str) -> &str {
    let after = split(help).1;
    assert!(after.trim().len() > 40, "text after the options: {help}");
    after
}

#[test]
fn help_examples_are_printed_as_written_at_any_width() {
    let cases: [(&str, &[&str]); 8] = [
        ("netns-inspect", &["--help"]),
        ("loopvg", &["--help"]),
        ("loopvg", &["create", "--help"]),
        ("bridgectl", &["--help"]),
        ("ovs-attach", &["--help"]),
        ("ovs-attach", &["add-port", "--help"]),
        ("stackplumb", &["--help"]),
        ("stackplumb", &["-h"]),
    ];
    for (tool, args) in cases {
        let (narrow, wide) = (help(tool, args, "80"), help(tool, args, "200"));
        assert_eq!(examples(&narrow), examples(&wide), "{tool} {args:?}");
    }
    // The case: the first VXLAN example copied whole from an 80-column terminal.
    let narrow = help("bridgectl", &["--help"], "80");
    assert!(
        narrow.lines().any(|l| l
            == "  bridgectl ensure-network 5b6a8b87-fd03-46b5-a968-72bac5091b7c --vni 1 \
                --local-ip 10.0.0.101 --l2-population"),
        "{narrow}"
    );
    // The arguments' own help is still wrapped to the terminal.
    assert!(
        split(&narrow).0.lines().all(|l| l.chars().count() <= 80),
        "{narrow}"
    );
}

#[test]
fn every_help_ends_with_the_one_exit_code_table_of_the_docs() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/exit-codes.md"
    ))
    .unwrap();
    // | code | meaning | e.g. |
    let codes: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .filter(|c| c.parse::<u8>().is_ok())
        .map(str::to_owned)
        .collect();
    assert_eq!(codes, ["0", "1", "2", "3", "4", "5", "6"]);
    for tool in TOOLS {
        let text = help(tool, &["--help"], "100");
        let table = &text[text.find("Exit codes (docs/exit-codes.md):").expect(tool)..];
        let shown: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(shown, codes, "{tool}");
    }
}

#[test]
fn completions_load_in_bash_and_are_made_for_zsh_and_fish() {
    require::program("bash", "bash");
    for tool in TOOLS {
        let script = format!(
            "set -e; source <('{}' --generate complete-bash); complete -p {tool}",
            workspace_bin(tool).display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{tool}: {out:?}");
        assert!(
            text.starts_with("complete ")
                && text.contains(" -F _")
                && text.trim_end().ends_with(tool),
            "{text}"
        );
        let zsh = run(tool, &["--generate", "complete-zsh"], &[]);
        assert!(String::from_utf8_lossy(&zsh.stdout).starts_with(&format!("#compdef {tool}")));
        let fish = run(tool, &["--generate", "complete-fish"], &[]);
        assert!(String::from_utf8_lossy(&fish.stdout).contains(&format!("complete -c {tool} ")));
    }
    // A subcommand's options complete too.
    let bash = run("loopvg", &["--generate", "complete-bash"], &[]);
    assert!(String::from_utf8_lossy(&bash.stdout).contains("--preallocate"));
}

#[test]
fn every_man_page_renders_with_its_examples_as_written() {
    require::program("man", "man-db");
    let dir = std::env::temp_dir().join(format!("sp-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for tool in TOOLS {
        let page = dir.join(format!("{tool}.1"));
        let out = run(tool, &["--generate", "man"], &[]);
        assert!(out.status.success(), "{tool}: {out:?}");
        std::fs::write(&page, &out.stdout).unwrap();
        let man = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .env_remove("MANPAGER")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&man.stdout);
        let warnings = String::from_utf8_lossy(&man.stderr);
        assert!(man.status.success(), "{tool}: {warnings}");
        assert!(
            warnings.trim().is_empty(),
            "{tool}: groff warns: {warnings}"
        );
        for heading in ["NAME", "SYNOPSIS", "OPTIONS", "EXAMPLES AND EXIT STATUS"] {
            assert!(text.contains(heading), "{tool}: no {heading}:\n{text}");
        }
        assert!(
            text.contains("6  needs root or a capability"),
            "{tool}:\n{text}"
        );
    }
    let page = dir.join("bridgectl.1");
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        text.contains("bridgectl ensure-network 5b6a8b87-fd03-46b5-a968-72bac5091b7c --vni 1 --local-ip 10.0.0.101 --l2-population"),
        "{text}"
    );
    assert!(
        text.contains("BRIDGECTL PLUG"),
        "a section per subcommand:\n{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A timestamp as tracing-subscriber prints it: `2026-12-01T13:46:44.123456Z`.
fn timestamped(line: &str) -> bool {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    stamp.len() >= 20
        && stamp.ends_with('Z')
        && stamp.as_bytes()[4] == b'-'
        && stamp.as_bytes()[10] == b'T'
}

#[test]
fn logs_follow_v_q_and_rust_log_with_the_netlink_crates_records() {
    sandbox::enter();
    require::program("unshare", "util-linux");
    // Each run in a new network namespace of its own: the network made through
    // rtnetlink's connection (netlink-proto) from scratch each time.
    let stderr = |globals: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new("unshare");
        cmd.arg("-n")
            .arg(workspace_bin("bridgectl"))
            .args(["ensure-network", "5b6a8b87-fd03-46b5-a968-72bac5091b7c"])
            .args(globals)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{globals:?}: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Quiet by default and with -q; nothing of netlink-proto's below -vv.
    assert_eq!(stderr(&[], &[]), "");
    assert_eq!(stderr(&["-q"], &[]), "");
    assert_eq!(stderr(&["-v"], &[]), "");
    // -vv: the netlink crates' log records, bridged under their own target, on stderr
    // with timestamps (a pipe here, not a terminal).
    let debug = stderr(&["-vv"], &[]);
    let netlink: Vec<&str> = debug
        .lines()
        .filter(|l| l.contains(" TRACE netlink_proto::"))
        .collect();
    assert!(!netlink.is_empty(), "{debug}");
    assert!(netlink.iter().all(|l| timestamped(l)), "{debug}");
    // RUST_LOG decides when set, over -q.
    let chosen = stderr(&["-q"], &[("RUST_LOG", "netlink_proto=trace")]);
    assert!(
        chosen.lines().any(|l| l.contains(" TRACE netlink_proto::")),
        "{chosen}"
    );
    assert!(chosen.lines().all(timestamped), "{chosen}");
    assert!(
        !chosen.contains("netlink_sys"),
        "only the target asked for: {chosen}"
    );
    // An unreadable RUST_LOG is said, and the options decide.
    let bad = stderr(&[], &[("RUST_LOG", "a=b=c")]);
    assert!(bad.starts_with("RUST_LOG=\"a=b=c\" ignored"), "{bad}");
}

/// The JSON the tools print carries no arrows or check marks: the facts are fields.
#[test]
fn json_outputs_are_versioned_and_carry_no_prose_marks() {
    sandbox::enter();
    let out = run(
        "bridgectl",
        &[
            "--json",
            "ensure-network",
            "5b6a8b87-fd03-46b5-a968-72bac5091b7c",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let out = run(
        "bridgectl",
        &[
            "plug",
            "5b6a8b87-fd03-46b5-a968-72bac5091b7c",
            "7337070d-45e1-4a2b-9c3d-1234567890ab",
            "--kind",
            "router-internal",
            "--namespace",
            "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 2);
    let veth = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["object"] == serde_json::json!({"type": "veth", "name": "tap7337070d-45"}))
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        veth,
        &serde_json::json!({"object": {"type": "veth", "name": "tap7337070d-45"}, "action": "created",
            "peer": "qr-7337070d-45", "namespace": "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165"})
    );
    let show = run("bridgectl", &["show", "--json"], &[]);
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["schema"], 1);
    assert_eq!(shown["bridges"][0]["name"], "brq5b6a8b87-fd", "{shown}");
    for text in [out.stdout, show.stdout] {
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains(['→', '↔', '✓', '✗']), "{text}");
    }
}
