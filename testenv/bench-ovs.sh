#!/usr/bin/env bash
# Benchmark: 100 OVS port adds through sp-ovs (one connection), 100 `ovs-vsctl add-port`
# processes and 100 `ovs-attach add-port` processes, against one private ovsdb-server +
# ovs-vswitchd (userspace datapath) inside a throwaway sandbox. Prints times and ratios.
# Run as root: testenv/bench-ovs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p ovs-attach
OVS_ATTACH_BIN="$PWD/target/release/ovs-attach" cargo bench --locked -p sp-ovs --bench add_ports
