#!/usr/bin/env bash
# Installs what stackplumb's build, demo and tests need on Debian 12, as root.
# Idempotent: installs only what is missing; apt-get update only when it must install.
set -euo pipefail

die() { echo "setup: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the tests create namespaces, links and loop devices)"
command -v apt-get >/dev/null || die "needs a Debian-family system with apt-get"

# Debian packages: the oracles (iproute2, lvm2, openvswitch, graphviz's dot), the processes the
# product starts (dnsmasq), and the tools the end-to-end scenes use.
pkgs=(iproute2 dnsmasq-base lvm2 openvswitch-switch iptables nftables iputils-ping
      isc-dhcp-client procps util-linux fdisk kmod ca-certificates curl build-essential
      pkg-config hyperfine udhcpc ethtool podman runc catatonit debootstrap ipset man-db
      systemd dpkg bash graphviz)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # openvswitch-switch's packaged service must not own the host's switch: tests and the
  # demo start their own ovsdb-server/ovs-vswitchd in private run directories. A
  # policy-rc.d answering 101 keeps the package scripts from starting any service.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust >= 1.85 (Debian 12's own cargo is too old for the netlink crates).
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
need_rust=1
if command -v cargo >/dev/null; then
  v=$(rustc --version | awk '{print $2}')
  [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -1)" = "1.85.0" ] && need_rust=0
fi
if [ $need_rust = 1 ]; then
  echo "setup: installing the Rust toolchain with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt
  . "$HOME/.cargo/env"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
