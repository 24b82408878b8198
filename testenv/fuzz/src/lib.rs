//! What every libFuzzer binary of `src/bin` runs around its target: the target itself
//! (a panic is a crash libFuzzer saves), timed — an input slower than the limit
//! (`SP_FUZZ_SLOW_MS`, 100 ms by default) in the best of three runs is written to
//! `SP_FUZZ_SLOW_DIR` as `slow-<hash>` and reported on stderr.
//!
//! [`init`] runs before libFuzzer installs its signal handlers: it gives SIGSEGV a
//! handler on an alternate stack, which libFuzzer keeps and calls first. Without it a
//! stack overflow in a recursive parser faults again inside libFuzzer's handler (still
//! on the exhausted stack) and the process dies without saving the input; with it the
//! overflow becomes an abort, which libFuzzer reports and saves as a crash.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Settings {
    limit: Duration,
    slow_dir: Option<std::path::PathBuf>,
}

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        sp_fuzz_targets::warm_up();
        let ms = std::env::var("SP_FUZZ_SLOW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        Settings {
            limit: Duration::from_millis(ms),
            slow_dir: std::env::var_os("SP_FUZZ_SLOW_DIR").map(Into::into),
        }
    })
}

/// Set-up before the first input (`fuzz_target!(init: ...)`).
pub fn init() {
    sp_fuzz_targets::warm_up();
    // SAFETY: a fresh anonymous mapping becomes this thread's alternate signal stack for
    // the life of the process; the handler only writes to stderr and aborts.
    unsafe {
        const SIZE: usize = 1 << 20;
        let stack = libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(stack, libc::MAP_FAILED, "mmap for the signal stack");
        let ss = libc::stack_t {
            ss_sp: stack,
            ss_flags: 0,
            ss_size: SIZE,
        };
        assert_eq!(
            libc::sigaltstack(&ss, std::ptr::null_mut()),
            0,
            "sigaltstack"
        );
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()),
            0,
            "sigaction"
        );
    }
}

extern "C" fn on_segv(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    const MSG: &[u8] = b"\nSIGSEGV in the target: a stack overflow, most likely\n";
    // SAFETY: write(2) and abort(3) are async-signal-safe.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::abort();
    }
}

/// Runs target `name` on `data`, timed.
pub fn run(name: &str, data: &[u8]) {
    let s = settings();
    let target = sp_fuzz_targets::by_name(name).expect("a target of sp-fuzz-targets");
    let t0 = Instant::now();
    target(data);
    let mut took = t0.elapsed();
    if took > s.limit && took < s.limit * 5 {
        // On a busy machine a run can be descheduled for longer than the limit: an input
        // just over it is slow only when it is slow every time (the best of three runs).
        for _ in 0..2 {
            let t0 = Instant::now();
            target(data);
            took = took.min(t0.elapsed());
        }
    }
    if took > s.limit {
        // FNV-1a names the input.
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        eprintln!(
            "SLOW: {name}: {} bytes took {} ms at best of three runs (limit {} ms), slow-{hash:016x}",
            data.len(),
            took.as_millis(),
            s.limit.as_millis()
        );
        if let Some(dir) = &s.slow_dir {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(format!("slow-{hash:016x}")), data);
        }
    }
}
