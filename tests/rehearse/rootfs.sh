#!/usr/bin/env bash
# Builds the rehearsal nodes' base root filesystem from Debian packages
# (debootstrap), cached under $CACHE_DIR/rehearse keyed by suite and package
# list. This is where a rehearsal node differs from Fedora CoreOS: Debian
# userland and packages, a writable /usr, no boot (systemd starts as PID 1 of
# a runc container). What simlab puts on a node (/opt/bin, /etc, units, users,
# keys) comes from the node's rendered Ignition, applied later by the real
# Ignition (node.sh), never from this script.
# Usage: rootfs.sh  -> prints the rootfs path.
set -euo pipefail
CACHE_DIR=${CACHE_DIR:?}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What FCOS ships and simlab's units use (containerd, runc, iptables,
# conntrack, sshd, sudo, tar), plus systemd to run the units.
PACKAGES=systemd,systemd-sysv,dbus,containerd,runc,openssh-server,iptables,conntrack,sudo,kmod,iproute2,procps,ca-certificates,ethtool,socat,ebtables,tar,gzip,util-linux,mount,passwd,curl
key=$( (printf '%s %s\n' "$SUITE" "$PACKAGES"; cat "$0") | sha256sum | cut -c1-12)
out=$CACHE_DIR/rehearse/rootfs-$SUITE-$key
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
command -v debootstrap >/dev/null || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends debootstrap >&2; }
rm -rf "$out.part" && mkdir -p "$out.part"
echo "rehearse: debootstrap $SUITE into $out (first time: a few minutes)" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$out.part" "$MIRROR" >&2
# A node has no console login and boots no hardware; its address is set from
# outside (node.sh), so nothing waits for a network manager to be online.
chroot "$out.part" systemctl mask systemd-networkd-wait-online.service systemd-networkd.service getty@.service console-getty.service systemd-udevd.service \
  systemd-udevd-kernel.socket systemd-udevd-control.socket systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount systemd-remount-fs.service >&2
rm -f "$out.part"/etc/ssh/ssh_host_* "$out.part"/etc/machine-id
: > "$out.part/etc/machine-id"
touch "$out.part/.complete"
rm -rf "$out" && mv "$out.part" "$out"
echo "$out"
