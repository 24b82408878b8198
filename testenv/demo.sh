#!/usr/bin/env bash
# The main job: build, then `stackplumb demo` — the Liberty guide's two-node cloud
# (controller + compute, VXLAN, router with SNAT and a floating IP, dnsmasq, Cinder's
# volume group on loop files) built natively in a private sandbox, checked the way the
# guide checks it, shown through netns-inspect, and torn down. The host's interfaces are
# not touched; the loop devices it binds are released.
# Run as root on Debian 12: `testenv/demo.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
testenv/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace --locked -q
exec target/release/stackplumb demo
