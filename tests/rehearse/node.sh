#!/usr/bin/env bash
# One rehearsal node: a runc container with its own systemd (PID 1),
# containerd, kubelet, sshd, network namespace and root filesystem, like a kind
# node but built here from Debian packages (rootfs.sh) and provisioned by the
# real Ignition with the node's rendered config from the artifact server.
#
#   node.sh up   NAME IP MAC   boot the node (Ignition first, then systemd)
#   node.sh down NAME          stop it and remove all it made
#
# Environment: WORK (the rehearsal's scratch dir), BASE (rootfs.sh's output),
# IGNITION (the ignition binary), ARTIFACTS_URL (simlab artifacts serve),
# BRIDGE (the lab bridge, in the current network namespace), GATEWAY (its
# address), PREFIX (its prefix length).
#
# Where a rehearsal node differs from Fedora CoreOS, it is in
# rehearsal_differences below and nowhere else.
set -euo pipefail
: "${WORK:?}"
cmd=${1:?usage: node.sh up NAME IP MAC | down NAME}
name=${2:?node name}
dir=$WORK/nodes/$name
root=$dir/root
runc_root=$WORK/runc
# The run's own cgroup parent: runs never share a node's cgroup.
cgroup_parent=simlab-rehearsal-$(basename "$WORK")
log() { echo "== node $name: $*" >&2; }

# What FCOS gives a node and this Debian root does not, or what this sandbox
# forbids; everything else on the node comes from its Ignition.
before_ignition() {
  # FCOS enforces SELinux and Ignition relabels what it wrote with setfiles;
  # the rehearsal root has no policy, so its setfiles only reads the list
  # (labels unproven here).
  mkdir -p "$root/etc/selinux" "$dir/bin"
  printf 'SELINUX=disabled\nSELINUXTYPE=targeted\n' > "$root/etc/selinux/config"
  printf '#!/bin/sh\ncat > %s/relabel.list\n' "$dir" > "$dir/bin/setfiles"
  chmod 0755 "$dir/bin/setfiles"
}
rehearsal_differences() {
  # FCOS's image lets the core user sudo without a password (coreos-sudo-group).
  echo 'core ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/90-rehearsal-core"
  chmod 0440 "$root/etc/sudoers.d/90-rehearsal-core"
  # FCOS's sshd reads the keys Ignition writes to ~/.ssh/authorized_keys.d/
  # through ssh-key-dir (AuthorizedKeysCommand); this is the same for sshd 9.2.
  mkdir -p "$root/usr/local/libexec"
  printf '#!/bin/sh\n# The rehearsal'"'"'s ssh-key-dir: every file of ~/.ssh/authorized_keys.d/.\nfor f in "$1"/.ssh/authorized_keys.d/*; do [ -f "$f" ] && cat "$f"; done; exit 0\n' \
    > "$root/usr/local/libexec/ssh-key-dir"
  chmod 0755 "$root/usr/local/libexec/ssh-key-dir"
  printf 'AuthorizedKeysCommand /usr/local/libexec/ssh-key-dir %%h\nAuthorizedKeysCommandUser root\n' \
    > "$root/etc/ssh/sshd_config.d/40-rehearsal-ssh-key-dir.conf"
  # FCOS makes SSH host keys on first boot (sshd-keygen@.service).
  ssh-keygen -A -f "$root" >/dev/null
  # FCOS runs `systemctl preset-all` on first boot; Ignition's enabled units
  # are presets (20-ignition.preset).
  systemctl --root="$root" preset-all >/dev/null 2>&1 || systemctl --root="$root" preset-all
  # This sandbox's root may not lower oom_score_adj: containerd's CRI plugin
  # must clamp pods' scores to its own (restrict_oom_score_adj), or runc fails
  # with "can't get final child's PID from pipe". FCOS needs no such line.
  local cfg=$root/etc/containerd/config.toml
  if grep -q '^\[plugins."io.containerd.grpc.v1.cri"\]$' "$cfg"; then
    sed -i 's/^\[plugins."io.containerd.grpc.v1.cri"\]$/&\n  restrict_oom_score_adj = true/' "$cfg"
  else
    printf '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n' >> "$cfg"
  fi
  # No DHCP or NetworkManager here: the address is set from outside (up),
  # and names resolve only through /etc/hosts.
  printf 'nameserver %s\n' "$GATEWAY" > "$root/etc/resolv.conf"
  printf '127.0.0.1 localhost\n%s %s\n' "$ip" "$name" > "$root/etc/hosts"
}

# Every capability but CAP_SYS_RESOURCE, which this sandbox does not give its
# root (so it cannot lower oom_score_adj either): a privileged node otherwise.
config_json() {
  local caps='"CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_DAC_READ_SEARCH","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_SETPCAP","CAP_LINUX_IMMUTABLE","CAP_NET_BIND_SERVICE","CAP_NET_BROADCAST","CAP_NET_ADMIN","CAP_NET_RAW","CAP_IPC_LOCK","CAP_IPC_OWNER","CAP_SYS_MODULE","CAP_SYS_RAWIO","CAP_SYS_CHROOT","CAP_SYS_PTRACE","CAP_SYS_PACCT","CAP_SYS_ADMIN","CAP_SYS_BOOT","CAP_SYS_NICE","CAP_SYS_TIME","CAP_SYS_TTY_CONFIG","CAP_MKNOD","CAP_LEASE","CAP_AUDIT_WRITE","CAP_AUDIT_CONTROL","CAP_SETFCAP","CAP_MAC_OVERRIDE","CAP_MAC_ADMIN","CAP_SYSLOG","CAP_WAKE_ALARM","CAP_BLOCK_SUSPEND","CAP_AUDIT_READ","CAP_PERFMON","CAP_BPF","CAP_CHECKPOINT_RESTORE"'
  # The host kernel's modules, where it has any (some kernels have all built in).
  local modules=
  [ -d "/lib/modules/$(uname -r)" ] && modules=',
    {"destination": "/lib/modules", "type": "bind", "source": "/lib/modules", "options": ["rbind", "ro"]}'
  cat <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/sbin/init"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=simlab-rehearsal"],
    "cwd": "/",
    "capabilities": {"bounding": [$caps], "effective": [$caps], "inheritable": [$caps], "permitted": [$caps], "ambient": [$caps]},
    "noNewPrivileges": false
  },
  "root": {"path": "$root", "readonly": false},
  "hostname": "$name",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rw"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "rw"]},
    {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
    {"destination": "/var/lib/containerd", "type": "bind", "source": "$dir/disk/containerd", "options": ["rbind", "rw"]},
    {"destination": "/var/lib/kubelet", "type": "bind", "source": "$dir/disk/kubelet", "options": ["rbind", "rw"]}$modules
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
      {"type": "network"}],
    "cgroupsPath": "/$cgroup_parent/$name",
    "resources": {"devices": [{"allow": true, "access": "rwm"}]}
  }
}
EOF
}

case $cmd in
up)
  ip=${3:?node IP}
  mac=${4:?node MAC}
  : "${BASE:?}" "${IGNITION:?}" "${ARTIFACTS_URL:?}" "${BRIDGE:?}" "${GATEWAY:?}" "${PREFIX:?}"
  mkdir -p "$dir/upper" "$dir/overlay-work" "$root" "$dir/disk"
  mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$dir/upper,workdir=$dir/overlay-work" "$root"
  # A node's disk of its own (a sparse file, loop-mounted) for containerd's
  # and the kubelet's state: on the host's disk the kubelet would measure the
  # host's free space, and on a busy CI machine below its eviction threshold
  # (nodefs.available 10%) it taints the node with disk-pressure, so no pod
  # schedules (found in CI, docs/REHEARSAL.md). FCOS nodes have theirs.
  truncate -s "${NODE_DISK_GIB:-30}G" "$dir/disk.img"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dir/disk.img"
  mount -o loop "$dir/disk.img" "$dir/disk"
  mkdir -p "$dir/disk/containerd" "$dir/disk/kubelet"

  # What a metal machine's installer does with coreos.inst.ignition_url: the
  # node's config, by MAC, from the artifact server; then the real Ignition's
  # fetch and files stages on the node's root (downloads checked by sha512).
  t0=$(date +%s.%N)
  before_ignition
  curl -fsS --retry 3 -o "$dir/config.ign" "$ARTIFACTS_URL/ignition?mac=$mac"
  IGNITION_CONFIG_FILE=$dir/config.ign "$IGNITION" -platform file -stage fetch \
    -config-cache "$dir/ignition.json" -log-to-stdout > "$dir/ignition-fetch.log" 2>&1 ||
    { cat "$dir/ignition-fetch.log" >&2; log "Ignition's fetch stage failed"; exit 1; }
  PATH=$dir/bin:$PATH "$IGNITION" -platform file -stage files -root "$root" \
    -config-cache "$dir/ignition.json" -log-to-stdout > "$dir/ignition-files.log" 2>&1 ||
    { cat "$dir/ignition-files.log" >&2; log "Ignition's files stage failed"; exit 1; }
  rehearsal_differences
  t1=$(date +%s.%N)
  log "provisioned by Ignition in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"

  # Created, not started: PID 1 waits while its network is made, a veth into
  # the lab bridge with the address and MAC the stack names.
  mkdir -p "$dir/bundle" "$runc_root"
  config_json > "$dir/bundle/config.json"
  runc --root "$runc_root" create --bundle "$dir/bundle" --pid-file "$dir/pid" "simlab-rh-$name" \
    > "$dir/console.log" 2>&1 < /dev/null || { cat "$dir/console.log" >&2; exit 1; }
  pid=$(cat "$dir/pid")
  veth=rh$(printf %s "$name" | cksum | cut -d' ' -f1) # <= 15 characters
  echo "$veth" > "$dir/veth"
  ip link add "$veth" type veth peer name eth0 netns "$pid"
  ip link set "$veth" master "$BRIDGE" up
  nsenter -t "$pid" -n sh -e -c "ip link set lo up; ip link set eth0 address $mac; \
    ip addr add $ip/$PREFIX dev eth0; ip link set eth0 up; ip route add default via $GATEWAY"
  runc --root "$runc_root" start "simlab-rh-$name"
  log "systemd started (pid $(cat "$dir/pid"))"
  ;;
down)
  if [ -d "$runc_root" ] && runc --root "$runc_root" state "simlab-rh-$name" >/dev/null 2>&1; then
    # SIGKILL to the node's PID 1 and wait for it: its namespace goes with it.
    runc --root "$runc_root" delete --force "simlab-rh-$name" || true
  fi
  # Pods' mounts below the root (kubelet, containerd) first, then the root.
  if [ -d "$root" ]; then
    grep " $root" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  # Then the node's disk (the loop device goes with its last mount).
  grep " $dir/disk" /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [ -f "$dir/veth" ] && ip link del "$(cat "$dir/veth")" 2>/dev/null || true
  rmdir "/sys/fs/cgroup/"*"/$cgroup_parent/$name" 2>/dev/null || true
  rm -rf "$dir"
  ;;
*) echo "usage: node.sh up NAME IP MAC | down NAME" >&2; exit 2 ;;
esac
