#!/usr/bin/env bash
# make rehearse: the stack's nodes and cluster for real on this machine
# (docs/REHEARSAL.md). Root only.
#  1. installs its apt packages the first time (debootstrap, runc, ...);
#  2. builds, cached by version under .cache/bin: Ignition, kubelet and
#     kube-proxy (tools module), crictl and the CNI plugins (the versions
#     infra/config/versions.go pins), and the pause image's program from the
#     Kubernetes module's own source;
#  3. builds the nodes' Debian root (rootfs.sh) and the simlab CLI;
#  4. compiles tests/rehearse and runs it in a network namespace of its own
#     with the lab bridge; the test boots the nodes (node.sh), runs the
#     program's commands on them, and stops exactly what it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${CACHE_DIR:-$root/.cache}
bin=$cache/bin
GO=${GO:-go}
log() { echo "== rehearse: $*"; }

pkgs=(debootstrap runc iproute2 e2fsprogs openssh-client curl libblkid-dev libc6-dev gcc systemd busybox-static)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pin() { sed -n "s/^[[:space:]]*$1:[[:space:]]*\"\\([^\"]*\\)\",.*/\\1/p" "$root/infra/config/versions.go"; }
kube_version=$(pin Kubernetes)
crictl_version=$(pin Crictl)
cni_version=$(pin CNIPlugins)
flannel_version=$(pin Flannel)
# flannel-io/cni-plugin is not served; its program before the move is.
flannel_cni_version=v0.9.1
ign_version=$(awk '$1=="github.com/coreos/ignition/v2" {print $2; exit}' "$root/go.mod")

# go install PKG... into a scratch GOBIN, then move the results.
go_install() { # dest-dir version pkgs...
  local dest=$1 version=$2; shift 2
  local tmp=$bin/.gobin-$$
  mkdir -p "$tmp"
  GOBIN=$tmp CGO_ENABLED=0 $GO install -trimpath -ldflags='-s -w' "${@/%/@$version}"
  mkdir -p "$dest"
  mv -f "$tmp"/* "$dest"/
  rmdir "$tmp"
}

if [ ! -x "$bin/ignition-$ign_version" ]; then
  log "building Ignition $ign_version (~1 CPU-minute)"
  mkdir -p "$bin/.gobin-ignition"
  GOBIN=$bin/.gobin-ignition CGO_ENABLED=1 $GO install -trimpath \
    -ldflags="-s -w -X github.com/coreos/ignition/v2/internal/version.Raw=$ign_version" \
    "github.com/coreos/ignition/v2/internal@$ign_version"
  mv -f "$bin/.gobin-ignition/internal" "$bin/ignition-$ign_version"
  rmdir "$bin/.gobin-ignition"
fi
if [ ! -x "$bin/crictl-$crictl_version" ]; then
  log "building crictl $crictl_version"
  go_install "$bin/.crictl-$$" "$crictl_version" sigs.k8s.io/cri-tools/cmd/crictl
  mv -f "$bin/.crictl-$$/crictl" "$bin/crictl-$crictl_version" && rmdir "$bin/.crictl-$$"
fi
if [ ! -x "$bin/cni-plugins-$cni_version/bridge" ]; then
  log "building the CNI plugins $cni_version"
  rm -rf "$bin/cni-plugins-$cni_version.part"
  go_install "$bin/cni-plugins-$cni_version.part" "$cni_version" \
    github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/meta/portmap
  rm -rf "$bin/cni-plugins-$cni_version" && mv "$bin/cni-plugins-$cni_version.part" "$bin/cni-plugins-$cni_version"
fi
if [ ! -x "$bin/flanneld-$flannel_version" ]; then
  log "building flanneld $flannel_version (cgo: its udp backend)"
  mkdir -p "$bin/.gobin-flannel"
  GOBIN=$bin/.gobin-flannel CGO_ENABLED=1 $GO install -trimpath \
    -ldflags="-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$flannel_version" \
    "github.com/flannel-io/flannel@$flannel_version"
  mv -f "$bin/.gobin-flannel/flannel" "$bin/flanneld-$flannel_version" && rmdir "$bin/.gobin-flannel"
fi
if [ ! -x "$bin/flannel-cni-$flannel_cni_version" ]; then
  log "building the flannel CNI plugin (containernetworking/plugins $flannel_cni_version meta/flannel)"
  go_install "$bin/.flannel-cni-$$" "$flannel_cni_version" github.com/containernetworking/plugins/plugins/meta/flannel
  mv -f "$bin/.flannel-cni-$$/flannel" "$bin/flannel-cni-$flannel_cni_version" && rmdir "$bin/.flannel-cni-$$"
fi
coredns_version=$("$bin/kubeadm-$kube_version" config images list --kubernetes-version "$kube_version" | sed -n 's#.*/coredns:##p')
if [ ! -x "$bin/coredns-$coredns_version" ]; then
  log "building CoreDNS $coredns_version (~3 CPU-minutes)"
  go_install "$bin/.coredns-$$" "$coredns_version" github.com/coredns/coredns
  mv -f "$bin/.coredns-$$/coredns" "$bin/coredns-$coredns_version" && rmdir "$bin/.coredns-$$"
fi
# The pause image's program, compiled from the Kubernetes module's own source
# (build/pause/linux/pause.c), static; its version is kubeadm's pause tag.
pause_version=$("$bin/kubeadm-$kube_version" config images list --kubernetes-version "$kube_version" | sed -n 's#.*/pause:##p')
if [ ! -x "$bin/pause-$pause_version" ]; then
  log "building pause $pause_version"
  src=$(cd "$root/tests/tools" && $GO list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  gcc -Os -static -DVERSION="$pause_version" -o "$bin/pause-$pause_version.tmp" "$src"
  mv -f "$bin/pause-$pause_version.tmp" "$bin/pause-$pause_version"
fi

base=$(CACHE_DIR=$cache bash "$root/tests/rehearse/rootfs.sh")

log "building simlab and compiling the test"
mkdir -p "$cache/rehearse"
(cd "$root" && $GO build -o "$cache/rehearse/simlab" ./infra/cmd/simlab && $GO test -c -tags rehearse -o "$cache/rehearse/rehearse.test" ./tests/rehearse)

# The lab network: a bridge in a network namespace of the rehearsal's own;
# the test (and the artifact server it starts) joins it with nsenter --net,
# which keeps this mount namespace's cgroup and sysfs mounts for runc.
ns=simlab-rehearse-$$
work=$(mktemp -d "$cache/rehearse/run-XXXXXX")
# Ignition writes a user's SSH keys as that user: the path to each node root
# must be searchable by all.
chmod 0755 "$work"
cleanup() {
  # The test stops its nodes; this catches whatever a crash left.
  for d in "$work"/nodes/*/; do [ -d "$d" ] && WORK=$work nsenter --net="/var/run/netns/$ns" bash "$root/tests/rehearse/node.sh" down "$(basename "$d")" || true; done
  ip netns del "$ns" 2>/dev/null || true
  rmdir /sys/fs/cgroup/*/"simlab-rehearsal-$(basename "$work")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # so a stopped run cleans up too
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add rhbr0 type bridge
ip -n "$ns" addr add 10.214.0.1/24 dev rhbr0
ip -n "$ns" link set rhbr0 up

log "running the rehearsal (work dir $work)"
cd "$root/tests/rehearse"
REHEARSE_WORK=$work REHEARSE_BASE=$base REHEARSE_BIN=$bin REHEARSE_SIMLAB=$cache/rehearse/simlab \
  REHEARSE_IGNITION=$bin/ignition-$ign_version REHEARSE_PAUSE=$bin/pause-$pause_version \
  REHEARSE_FLANNELD=$bin/flanneld-$flannel_version REHEARSE_FLANNEL_CNI=$bin/flannel-cni-$flannel_cni_version \
  REHEARSE_BUSYBOX=/bin/busybox REHEARSE_COREDNS=$bin/coredns-$coredns_version REHEARSE_BRIDGE=rhbr0 REHEARSE_GATEWAY=10.214.0.1 REHEARSE_PREFIX=24 \
  nsenter --net="/var/run/netns/$ns" "$cache/rehearse/rehearse.test" -test.v -test.timeout 30m "$@"

# It stops exactly what it started: the test stopped its nodes; no node
# container, mount, cgroup or loop device may be left.
containers=$(runc --root "$work/runc" list -q 2>/dev/null || true)
mounts=$(grep " $work" /proc/self/mounts || true)
cleanup
trap - EXIT
cgroups=$(ls -d /sys/fs/cgroup/*/"simlab-rehearsal-$(basename "$work")" 2>/dev/null || true)
loops=$(losetup -a 2>/dev/null | grep "$work" || true) # the nodes' disks
if [ -n "$containers$mounts$cgroups$loops" ]; then
  echo "rehearse: left behind: containers [$containers] mounts [$mounts] cgroups [$cgroups] loop devices [$loops]" >&2
  exit 1
fi
log "passed; nothing left behind"
