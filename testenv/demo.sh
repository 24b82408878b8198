#!/usr/bin/env bash
# The main job: build, then show netns-inspect on the guide's qrouter/qdhcp scene,
# made and removed inside a private sandbox (the host's interfaces are not touched).
# Run as root on Debian 12: `testenv/demo.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
testenv/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace --locked -q
exec target/release/netns-inspect-demo
