#!/usr/bin/env bash
# Benchmark (not a test): add 5 GiB to a loop-file VG
#   A) loopvg extend VG +5G                       (native ioctls + our LVM2 writer, fsynced)
#   B) truncate + losetup -f + pvcreate + vgextend (the lvm2 chain)
#   C) the packstack notes' way: dd of zeros + losetup + pvcreate + vgextend
#      (C writes real zeros, so it uses ${DD_SIZE_MIB:-512} MiB, not 5 GiB; fdisk is skipped)
# Each is run RUNS times (default 5) on its own VG; medians and ratios are printed.
# Run as root. Everything lives in a private temp dir; lvm2 is restricted by a device
# filter to the loop devices bound to files there, which are all unbound at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
RUNS=${RUNS:-5}
DD_SIZE_MIB=${DD_SIZE_MIB:-512}
LOOPVG=${LOOPVG:-}
if [ -z "$LOOPVG" ]; then
  cargo build --release -q -p loopvg
  LOOPVG=target/release/loopvg
fi
tmp=$(mktemp -d /tmp/loopvg-bench.XXXXXX)
ours() { for f in /sys/block/loop*/loop/backing_file; do
           [ -e "$f" ] || continue
           case "$(cat "$f")" in "$tmp"/*) d=${f%/loop/backing_file}; echo "/dev/${d##*/}";; esac
         done; }
cleanup() { for d in $(ours); do losetup -d "$d" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
export LVM_SUPPRESS_FD_WARNINGS=1
lvmcfg() {
  local acc=""; for d in $(ours); do acc+="\"a|^$d\$|\","; done
  echo "devices{use_devicesfile=0 hints=\"none\" filter=[$acc\"r|.*|\"] global_filter=[$acc\"r|.*|\"]} activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}"
}
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# B and C share the lvm2 chain; $1 = how the file is made
chain() {  # name file make-command...
  local vg=$1 file=$2; shift 2
  "$@"
  local dev; dev=$(losetup -f --show "$file")
  lvm pvcreate -q --config "$(lvmcfg)" "$dev" >/dev/null
  lvm vgextend -q --config "$(lvmcfg)" "$vg" "$dev" >/dev/null
}
setup_lvm_vg() {  # dir vg
  mkdir "$tmp/$1"; truncate -s 1G "$tmp/$1/$2"
  local dev; dev=$(losetup -f --show "$tmp/$1/$2")
  lvm pvcreate -q --config "$(lvmcfg)" "$dev" >/dev/null
  lvm vgcreate -q --config "$(lvmcfg)" "$2" "$dev" >/dev/null
}
# A and B interleaved, so load from elsewhere on the machine hits both alike.
mkdir "$tmp/a"
"$LOOPVG" --dir "$tmp/a" create benchvg 1G >/dev/null
setup_lvm_vg b benchlvm
: > "$tmp/a.times"; : > "$tmp/b.times"
for i in $(seq "$RUNS"); do
  t=$(now); "$LOOPVG" --dir "$tmp/a" extend benchvg +5G >/dev/null; echo $(( $(now) - t )) >> "$tmp/a.times"
  f="$tmp/b/benchlvm$((i + 1))"
  t=$(now); chain benchlvm "$f" truncate -s 5G "$f"; echo $(( $(now) - t )) >> "$tmp/b.times"
done
setup_lvm_vg c benchdd
: > "$tmp/c.times"
for i in $(seq "$RUNS"); do
  f="$tmp/c/benchdd$((i + 1))"
  t=$(now); chain benchdd "$f" dd if=/dev/zero bs=1M count="$DD_SIZE_MIB" of="$f" status=none
  echo $(( $(now) - t )) >> "$tmp/c.times"
done

# every VG must still be sound
for vg in benchvg benchlvm benchdd; do lvm vgck --config "$(lvmcfg)" "$vg" 2>/dev/null; done

a=$(median < "$tmp/a.times"); b=$(median < "$tmp/b.times"); c=$(median < "$tmp/c.times")
ms() { awk -v n="$1" 'BEGIN {printf "%8.1f ms", n / 1e6}'; }
range() { sort -n "$1" | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "(%.1f-%.1f)", lo / 1e6, hi / 1e6}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {printf "%6.1fx", x / y}'; }
echo "add space to a loop-file VG, median (min-max) of $RUNS runs ($(uname -r), lvm2 $(lvm version | awk '/LVM version/ {print $3}'))"
echo "  A  loopvg extend VG +5G                               $(ms "$a") $(range "$tmp/a.times")"
echo "  B  truncate 5G + losetup -f + pvcreate + vgextend     $(ms "$b") $(range "$tmp/b.times")   B/A $(ratio "$b" "$a")"
echo "  C  dd ${DD_SIZE_MIB}M of zeros + losetup + pvcreate + vgextend  $(ms "$c") $(range "$tmp/c.times")   C/A $(ratio "$c" "$a")"
echo "  (C writes ${DD_SIZE_MIB} MiB instead of the notes' 5 GiB: the real dd way is ~$((5120 / DD_SIZE_MIB))x the zeros)"
