#!/usr/bin/env bash
# Regenerates crates/sp-lvm/tests/fixtures: the first 16 KiB (label, metadata-area header,
# text) of PVs written by real lvm2 on loop files. Run as root; touches only the loop
# devices it attaches (lvm2 restricted to them) and detaches them again.
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/crates/sp-lvm/tests/fixtures"
mkdir -p "$out"
tmp=$(mktemp -d)
l1="" l2=""
cleanup() { for l in $l1 $l2; do losetup -d "$l" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
truncate -s 64M "$tmp/a" "$tmp/b"
l1=$(losetup -f --show "$tmp/a"); l2=$(losetup -f --show "$tmp/b")
cfg="devices{use_devicesfile=0 filter=[\"a|^$l1\$|\",\"a|^$l2\$|\",\"r|.*|\"]} activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}"
lvm() { command "$@" --config "$cfg" >/dev/null; }
lvm pvcreate "$l1"
lvm vgcreate fixturevg "$l1"
dd if="$l1" of="$out/vgcreate-pv0.bin" bs=4096 count=4 status=none
lvm vgextend fixturevg "$l2"
lvm lvcreate --driverloaded n -an -Zn -y -L 8M -n vol0 fixturevg
lvm lvcreate --driverloaded n -an -Zn -y -i 2 -I 64k -L 16M -n striped fixturevg
dd if="$l1" of="$out/lvs-pv0.bin" bs=4096 count=4 status=none
dd if="$l2" of="$out/lvs-pv1.bin" bs=4096 count=4 status=none
