#!/bin/sh
# Builds the Debian 12 package of the five tools: what packaging/install.sh --prefix /usr
# installs (binaries, man pages, completions, loopvg.service, stackplumb.service), in
# stackplumb_VERSION_ARCH.deb, with dpkg-deb (no cargo-deb needed).
#
#   packaging/deb.sh [--bins DIR] [--out DIR]
#
# --bins  already built binaries (default: a release build)
# --out   where the .deb goes (default: target/debian)
set -eu
cd "$(dirname "$0")/.."
bins=
out=target/debian
while [ $# -gt 0 ]; do
    case "$1" in
        --bins) bins=$2; shift 2 ;;
        --bins=*) bins=${1#*=}; shift ;;
        --out) out=$2; shift 2 ;;
        --out=*) out=${1#*=}; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deb.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
packaging/install.sh --prefix /usr --destdir "$stage/root" --strip ${bins:+--bins "$bins"} >/dev/null
root=$stage/root
# Debian keeps the units of packages in /lib/systemd/system on bookworm.
mkdir -p "$root/lib/systemd"
mv "$root/usr/lib/systemd/system" "$root/lib/systemd/system"
rmdir "$root/usr/lib/systemd" "$root/usr/lib"
install -d -m 0755 "$root/usr/share/doc/stackplumb"
printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: stackplumb\n\nFiles: *\nLicense: Apache-2.0\n' \
    > "$root/usr/share/doc/stackplumb/copyright"
chmod 0644 "$root/usr/share/doc/stackplumb/copyright"
install -d -m 0755 "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: stackplumb
Version: $version
Architecture: $arch
Maintainer: stackplumb developers <stackplumb@localhost>
Installed-Size: $(du -sk "$root" | cut -f1)
Depends: libc6 (>= 2.36), libgcc-s1
Recommends: dnsmasq-base
Suggests: openvswitch-switch, lvm2
Section: net
Priority: optional
Homepage: https://github.com/stackplumb/stackplumb
Description: OpenStack Liberty host plumbing, natively
 netns-inspect, loopvg, bridgectl, ovs-attach and stackplumb: the data plane of the
 Liberty install guide (Linux bridges, VXLAN, router and DHCP namespaces, NAT) and the
 Cinder loop-file volume group, over netlink, OVSDB and the LVM2 format, with man
 pages, shell completions and the loopvg and stackplumb systemd units.
CONTROL
mkdir -p "$out"
deb=$out/stackplumb_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
