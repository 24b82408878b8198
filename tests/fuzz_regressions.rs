//! Replays every file of `testenv/fuzz/regressions/<target>/` — the fuzzers' findings
//! and hand-made nasty inputs — through the fuzz targets (`sp-fuzz-targets`): no panic,
//! no abort, and each input under 100 ms in a release build (2 s in a debug one, which
//! the suite builds), in the best of three runs when the first is just over.
//!
//! Each input runs in a child process (this test binary again, running only
//! `replay_one_input` with the input named in the environment), so that a stack
//! overflow or an allocation failure — an abort of the whole process — fails the
//! target's test with a message instead of killing the test binary. One test per target
//! names every input that failed and how.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TARGET_VAR: &str = "SP_FUZZ_REPLAY_TARGET";
const INPUT_VAR: &str = "SP_FUZZ_REPLAY_INPUT";
const ELAPSED_TAG: &str = "sp-fuzz-replay-elapsed-ns=";

fn limit() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(100)
    }
}

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/fuzz/regressions")
}

/// The child's side: runs one input when the parent asks for it, does nothing otherwise.
#[test]
fn replay_one_input() {
    let (Some(target), Some(input)) = (std::env::var_os(TARGET_VAR), std::env::var_os(INPUT_VAR))
    else {
        return;
    };
    let target = target.to_str().expect("UTF-8 target name");
    let f = sp_fuzz_targets::by_name(target).expect("a target of sp-fuzz-targets");
    let data = std::fs::read(&input).expect("the input");
    sp_fuzz_targets::warm_up();
    let t0 = Instant::now();
    f(&data);
    let mut took = t0.elapsed();
    if took > limit() && took < limit() * 5 {
        // One run can be descheduled on a busy machine: slow is slow every time (an
        // input five times over the limit is slow, no need to wait for it again).
        for _ in 0..2 {
            let t0 = Instant::now();
            f(&data);
            took = took.min(t0.elapsed());
        }
    }
    println!("{ELAPSED_TAG}{}", took.as_nanos());
}

/// The parent's side: every input of `target` in a child; the failures, one line each.
fn replay(target: &str) {
    let dir = regressions().join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "{}: no regression inputs to replay",
        dir.display()
    );
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy();
        let (status, stdout, stderr) = run_child(&exe, target, input);
        let elapsed = stdout
            .lines()
            .find_map(|l| l.split_once(ELAPSED_TAG))
            .and_then(|(_, n)| {
                let digits = n.bytes().take_while(u8::is_ascii_digit).count();
                n[..digits].parse::<u64>().ok()
            })
            .map(Duration::from_nanos);
        match elapsed {
            Some(t) if status.is_some_and(|s| s.success()) => {
                if t > limit() {
                    failures.push(format!(
                        "{target}/{name}: took {} ms (limit {} ms)",
                        t.as_millis(),
                        limit().as_millis()
                    ));
                }
            }
            _ => failures.push(format!(
                "{target}/{name}: {}: {}",
                how_it_ended(status),
                why(&stderr, &stdout)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} regression inputs failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// Runs `input` in a child, killed after ten times the limit; its status (`None`: it
/// was killed for taking too long), stdout and stderr.
fn run_child(exe: &Path, target: &str, input: &Path) -> (Option<ExitStatus>, String, String) {
    let tmp = std::env::temp_dir();
    let tag = format!("sp-fuzz-replay.{}.{target}", std::process::id());
    let (out_path, err_path) = (
        tmp.join(format!("{tag}.out")),
        tmp.join(format!("{tag}.err")),
    );
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "replay_one_input",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TARGET_VAR, target)
        .env(INPUT_VAR, input)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit() * 10;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| {
        let text = String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let _ = std::fs::remove_file(p);
        text
    };
    (status, read(&out_path), read(&err_path))
}

fn how_it_ended(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    let Some(status) = status else {
        return format!(
            "still running after {} s, killed",
            (limit() * 10).as_secs_f32()
        );
    };
    match (status.code(), status.signal()) {
        (_, Some(6)) => "aborted (SIGABRT)".into(),
        (_, Some(11)) => "crashed (SIGSEGV)".into(),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(101), None) => "panicked".into(),
        (Some(code), None) => format!("exited {code} without running the input to its end"),
        (None, None) => "ended".into(),
    }
}

/// The panic message or the abort's last words, from the child's output.
fn why(stderr: &str, stdout: &str) -> String {
    let text = format!("{stdout}\n{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
        let mut msg = lines[i].trim().trim_end_matches(':').to_owned();
        if let Some(next) = lines.get(i + 1) {
            msg.push_str(": ");
            msg.push_str(next.trim());
        }
        return msg;
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.contains("overflowed its stack") || l.contains("memory allocation"))
    {
        return l.trim().to_owned();
    }
    lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| "no output".into(), |l| l.trim().to_owned())
}

#[test]
fn lvm_label() {
    replay("lvm_label");
}

#[test]
fn mda_header() {
    replay("mda_header");
}

#[test]
fn metadata_text() {
    replay("metadata_text");
}

#[test]
fn ini() {
    replay("ini");
}

#[test]
fn topology() {
    replay("topology");
}

#[test]
fn sizes() {
    replay("sizes");
}

#[test]
fn ovsdb_codec() {
    replay("ovsdb_codec");
}

#[test]
fn ovsdb_datum() {
    replay("ovsdb_datum");
}

#[test]
fn nft_dump() {
    replay("nft_dump");
}

#[test]
fn metadata_http() {
    replay("metadata_http");
}

/// Every target has its directory of regression inputs, and every directory a target.
#[test]
fn every_target_has_regressions() {
    let mut dirs: Vec<String> = std::fs::read_dir(regressions())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = sp_fuzz_targets::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    targets.sort();
    assert_eq!(dirs, targets);
}
