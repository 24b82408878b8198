#!/usr/bin/env bash
# Benchmarks: our commands beside the iproute2/lvm2 baselines, in sandboxes, as root.
#   testenv/bench.sh netns-inspect [--counts 100,1000] [--runs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
testenv/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace --locked -q
if [ "${1:-}" = stackplumb ]; then
    # The code issues 12 and 17 measured their targets on, run beside ours.
    SP_BENCH_ISSUE_CODE=$(testenv/issue-code.sh)
    export SP_BENCH_ISSUE_CODE
fi
exec target/release/sp-bench "$@"
