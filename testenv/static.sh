#!/usr/bin/env bash
# Static release binaries of the five tools, for CI images without glibc >= 2.34
# (Debian 11, busybox, distroless…): glibc linked in statically (crt-static) on the
# gnu target, so they run on any x86_64 Linux kernel (docs/install.md).
#
#   testenv/static.sh [OUT_DIR]     default OUT_DIR: target/static
#
# The binaries land in OUT_DIR; `file OUT_DIR/*` says "statically linked" (static-pie).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
out=${1:-target/static}
triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
  *-linux-gnu) ;;
  *) echo "static.sh: needs a *-linux-gnu host toolchain, not $triple" >&2; exit 1 ;;
esac
# --target keeps build scripts and proc macros dynamic (they run on this host) and
# puts the static build beside the normal one (target/$triple/static). The `static`
# profile is release without LTO (Cargo.toml): a few minutes instead of ten here.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --profile static --locked --target "$triple" \
  -p netns-inspect -p loopvg -p bridgectl -p ovs-attach -p stackplumb
mkdir -p "$out"
for b in netns-inspect loopvg bridgectl ovs-attach stackplumb; do
  install -m 0755 "target/$triple/static/$b" "$out/$b"
done
echo "static.sh: $(ls "$out" | tr '\n' ' ')in $out"
