#!/usr/bin/env bash
# Benchmarks: our commands beside the iproute2/lvm2 baselines, in sandboxes, as root.
#   testenv/bench.sh netns-inspect [--counts 100,1000] [--runs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
testenv/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace --locked -q
exec target/release/sp-bench "$@"
