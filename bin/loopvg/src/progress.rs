//! Progress of `create --preallocate` where zeros are written: a bar on stderr when it
//! is a terminal, and never with `--json` or `-q` — a log file or a pipe gets no
//! carriage-return updates.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar, when one is to be drawn (stderr a terminal, neither `json` nor `quiet`).
pub fn preallocation(json: bool, quiet: bool) -> Option<ProgressBar> {
    if json || quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "preallocating {bar:30} {binary_bytes}/{binary_total_bytes} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// Moves `bar` to `done` of `total` bytes; the last update leaves it drawn, finished.
pub fn update(bar: &ProgressBar, done: u64, total: u64) {
    bar.set_length(total);
    bar.set_position(done);
    if done >= total {
        bar.finish();
    }
}
