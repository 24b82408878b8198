//! What every libFuzzer binary of `src/bin` runs around its target: the target itself
//! (a panic is a crash libFuzzer saves), timed — an input slower than the limit
//! (`SP_FUZZ_SLOW_MS`, 100 ms by default) is written to `SP_FUZZ_SLOW_DIR` as
//! `slow-<hash>` and reported on stderr.

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

/// Runs target `name` on `data`, timed.
pub fn run(name: &str, data: &[u8]) {
    let s = settings();
    let target = sp_fuzz_targets::by_name(name).expect("a target of sp-fuzz-targets");
    let t0 = Instant::now();
    target(data);
    let took = t0.elapsed();
    if took > s.limit {
        // FNV-1a names the input.
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        eprintln!(
            "SLOW: {name}: {} bytes took {} ms (limit {} ms), slow-{hash:016x}",
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
