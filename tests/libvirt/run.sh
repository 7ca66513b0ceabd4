#!/usr/bin/env bash
# make test-libvirt: the nodes layer's libvirt commands against a real libvirtd
# and qemu on this machine (tests/libvirt/libvirt_test.go; docs/LAB-SETUP.md).
#  1. installs what it needs with apt the first time (libvirt, qemu, sshd, a kernel, ...);
#  2. builds the real Ignition and the stand-in base image into .cache (by version and content);
#  3. compiles the test, then runs it in a network namespace of its own, with
#     libvirtd, virtlogd and sshd that hypervisor.sh starts there and stops after.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${CACHE_DIR:-$root/.cache}
GO=${GO:-go}
log() { echo "== test-libvirt: $*"; }

pkgs=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils virtinst openssh-server openssh-client
  dnsmasq-base iptables iproute2 linux-image-amd64 busybox-static syslinux syslinux-common mtools dosfstools
  xz-utils curl cpio kmod passwd libblkid-dev util-linux)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The real Ignition, at the version go.mod pins (cgo: libblkid).
ign_version=$(awk '$1=="github.com/coreos/ignition/v2" {print $2; exit}' "$root/go.mod")
ign=$cache/bin/ignition-$ign_version
if [ ! -x "$ign" ]; then
  log "building Ignition $ign_version (~1 CPU-minute)"
  mkdir -p "$cache/bin/.gobin-ignition"
  GOBIN=$cache/bin/.gobin-ignition CGO_ENABLED=1 $GO install -trimpath \
    -ldflags="-s -w -X github.com/coreos/ignition/v2/internal/version.Raw=$ign_version" \
    "github.com/coreos/ignition/v2/internal@$ign_version"
  mv -f "$cache/bin/.gobin-ignition/internal" "$ign"
  rmdir "$cache/bin/.gobin-ignition"
fi

# The stand-in base image, keyed by what goes into it.
kver=$(ls /lib/modules | sort -V | tail -1)
key=$( (sha256sum "$root/tests/libvirt/standin-image.sh" "$ign"; echo "$kver") | sha256sum | cut -c1-16)
base=$cache/libvirt/standin-$key.qcow2
if [ ! -s "$base" ]; then
  log "building the FCOS stand-in image (kernel $kver)"
  mkdir -p "$cache/libvirt"
  "$root/tests/libvirt/standin-image.sh" "$ign" "$base.part"
  mv -f "$base.part" "$base"
fi

log "compiling the test"
testbin=$cache/libvirt/libvirt.test
(cd "$root" && $GO test -c -tags libvirt -o "$testbin" ./tests/libvirt)

ns=simlab-libvirt-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
log "hypervisor in network namespace $ns"
ip netns exec "$ns" unshare --mount --propagation private \
  bash "$root/tests/libvirt/hypervisor.sh" "$root" "$testbin" "$base" "$@"
