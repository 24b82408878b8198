#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and root integration tests.
# Run as root on Debian 12: `testenv/test.sh` (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
testenv/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The static binaries tests/static_binaries.rs runs where there is no C library.
testenv/static.sh
cargo nextest run --workspace --locked --profile ci "$@"
