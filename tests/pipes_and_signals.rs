//! The five tools and a closed pipe or a termination signal: each ends quietly (by
//! SIGPIPE, as `ip link | head -1` does — no panic, no message), and the demo and an
//! apply finish their work first, so nothing is left half-made or leaked.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};

use sp_testenv::nodes::{two_nodes, Cli};
use sp_testenv::{require, sandbox};

/// Runs `cmd` with a standard output whose reader has already gone.
fn with_closed_stdout(mut cmd: Command) -> (ExitStatus, String) {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = cmd
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn quiet(what: &str, (status, stderr): (ExitStatus, String)) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "{what}: {status:?} — {stderr}"
    );
    assert!(stderr.is_empty(), "{what} said: {stderr}");
}

fn tool(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(sp_testenv::workspace_bin(name));
    c.args(args);
    c
}

#[test]
fn every_tool_ends_quietly_on_a_closed_pipe() {
    sandbox::enter();
    sp_testenv::scene::ip(&["link", "add", "brq5b6a8b87-fd", "type", "bridge"]);
    for (name, args) in [
        ("netns-inspect", vec![]),
        ("netns-inspect", vec!["--json"]),
        ("bridgectl", vec!["show"]),
        ("bridgectl", vec!["--json", "show"]),
        ("loopvg", vec!["--dir", "/nonexistent-sp-dir", "list"]),
        (
            "loopvg",
            vec!["--json", "--dir", "/nonexistent-sp-dir", "list"],
        ),
        ("stackplumb", vec!["--help"]),
        ("ovs-attach", vec!["--help"]),
    ] {
        let what = format!("{name} {args:?}");
        let (status, stderr) = with_closed_stdout(tool(name, &args));
        // clap's own --help ignores a closed pipe and exits 0; ours end by SIGPIPE.
        assert!(
            status.signal() == Some(libc::SIGPIPE) || status.success(),
            "{what}: {status:?} — {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(stderr.is_empty(), "{what} said: {stderr}");
    }
    quiet(
        "netns-inspect",
        with_closed_stdout(tool("netns-inspect", &[])),
    );
    // A full disk is not a gone reader: said on stderr, and the run fails.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = tool("netns-inspect", &["--json"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("standard output: No space left on device"),
        "{err}"
    );
}

/// What a demo could leave: loop devices bound to files of a demo work directory, its
/// dnsmasq processes, its work directories.
fn demo_debris() -> Vec<String> {
    let mut out: Vec<String> = sp_testenv::lvm::bound_under(&std::env::temp_dir())
        .into_iter()
        .filter(|d| {
            let n = d.trim_start_matches("/dev/");
            std::fs::read(format!("/sys/block/{n}/loop/backing_file"))
                .is_ok_and(|f| String::from_utf8_lossy(&f).contains("stackplumb-demo-"))
        })
        .collect();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            if c.starts_with("dnsmasq") && c.contains("stackplumb-demo-") {
                out.push(format!("dnsmasq {}", e.file_name().to_string_lossy()));
            }
        }
    }
    for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("stackplumb-demo-") {
            out.push(n);
        }
    }
    out.sort();
    out
}

fn demo() -> Child {
    Command::new(sp_testenv::workspace_bin("stackplumb"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the demo's output up to its first apply line.
fn until_first_apply(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 {
        if line.contains("stackplumb apply on") {
            return r;
        }
        line.clear();
    }
    panic!("the demo ended before its first apply");
}

#[test]
fn the_demo_leaks_nothing_on_a_closed_pipe_or_a_signal() {
    require::root();
    require::program("dnsmasq", "dnsmasq-base");
    let before = demo_debris();
    // Output closed before the first line: the demo runs to its end, tears down, and
    // ends by SIGPIPE.
    let mut cmd = Command::new(sp_testenv::workspace_bin("stackplumb"));
    cmd.arg("demo");
    quiet("stackplumb demo", with_closed_stdout(cmd));
    assert_eq!(demo_debris(), before, "after a closed pipe");

    // Output closed midway (the reader goes after the first apply).
    let mut child = demo();
    drop(until_first_apply(&mut child));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{out:?}");
    assert_eq!(demo_debris(), before, "after the reader left midway");

    // SIGINT / SIGTERM / SIGHUP midway: the demo finishes and tears down, then exits
    // 128 + the signal; SIGPIPE sent by hand is ignored (Rust ignores it).
    for (signal, code) in [
        (libc::SIGINT, Some(130)),
        (libc::SIGTERM, Some(143)),
        (libc::SIGHUP, Some(129)),
        (libc::SIGPIPE, Some(0)),
    ] {
        let mut child = demo();
        let mut rest = until_first_apply(&mut child);
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(child.id() as i32, signal) };
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut rest, &mut text);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), code, "signal {signal}: {status:?}\n{text}");
        assert!(text.contains("destroy --purge on controller"), "{text}");
        assert_eq!(demo_debris(), before, "after signal {signal}");
    }
}

/// An apply whose output closes, or that gets SIGINT, still converges: the next apply
/// has nothing to do.
#[test]
fn an_apply_finishes_when_its_output_closes_or_it_is_interrupted() {
    let (cli, _cleanup) = two_nodes();
    let no_change = |cli: &Cli| {
        let out = cli.on("controller", &["apply"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    quiet(
        "stackplumb apply",
        with_closed_stdout(cli.cmd("controller", &["apply"])),
    );
    assert_eq!(no_change(&cli), "node controller: no change\n");
    let out = cli.on("controller", &["destroy"]);
    assert!(out.status.success(), "{out:?}");

    let mut child = cli
        .cmd("controller", &["apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SAFETY: signalling our own child by its PID, as soon as it runs.
    std::thread::sleep(std::time::Duration::from_millis(20));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        status.code() == Some(130) || status.success(),
        "interrupted apply: {status:?}"
    );
    assert_eq!(no_change(&cli), "node controller: no change\n");
}
