#!/usr/bin/env bash
# Runs inside run.sh's network and mount namespaces: a hypervisor of its own
# (libvirtd, virtlogd, an isolated libvirt network, sshd on 127.0.0.1), then
# the test binary, then stops exactly what it started.
#
# Domains run on qemu's TCG, not KVM: /dev/kvm works on these machines but
# nested KVM fails the first real-to-protected-mode switch of any guest
# firmware or boot loader ("KVM internal error. Suberror: 1 / emulation
# failure" under SeaBIOS+SYSLINUX, qemu -kernel and OVMF alike), so /dev/kvm is
# hidden from libvirtd here and virt-install picks TCG. docs/LAB-SETUP.md.
set -euo pipefail
root=$1 testbin=$2 base=$3
shift 3
state=$(mktemp -d /tmp/simlab-libvirt.XXXXXX)
log() { echo "== test-libvirt: $*"; }

# libvirt's state and definitions stay in this mount namespace.
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt/qemu; do
  mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /var/lib/libvirt/images
# An empty file, not /dev/null: libvirt re-probes qemu whenever /dev/kvm's
# ctime changes, and /dev/null's changes with every write to it.
if [ -e /dev/kvm ]; then : > "$state/no-kvm"; mount --bind "$state/no-kvm" /dev/kvm; fi
# qemu without per-domain /dev namespaces (they would try to move that mount).
cp /etc/libvirt/qemu.conf "$state/qemu.conf"
echo 'namespaces = []' >> "$state/qemu.conf"
mount --bind "$state/qemu.conf" /etc/libvirt/qemu.conf

pids=()
stop() {
  set +e
  for d in $(virsh --connect qemu:///system list --all --name 2>/dev/null); do
    log "left behind by the test: domain $d (destroying)"
    virsh --connect qemu:///system destroy "$d" >/dev/null 2>&1
    virsh --connect qemu:///system undefine "$d" --nvram >/dev/null 2>&1 || virsh --connect qemu:///system undefine "$d" >/dev/null 2>&1
  done
  virsh --connect qemu:///system net-destroy simlab-test >/dev/null 2>&1
  [ -s "$state/sshd.pid" ] && kill "$(cat "$state/sshd.pid")"
  for p in /run/libvirtd.pid /run/virtlogd.pid; do [ -s "$p" ] && kill "$(cat "$p")"; done
  rm -rf "$state"
}
trap stop EXIT

virtlogd -d
libvirtd -d
for i in $(seq 1 100); do virsh --connect qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
virsh --connect qemu:///system version >/dev/null

cat > "$state/net.xml" <<XML
<network>
  <name>simlab-test</name>
  <bridge name='simlabbr0' stp='off'/>
  <ip address='10.213.0.1' netmask='255.255.255.0'>
    <dhcp><range start='10.213.0.100' end='10.213.0.200'/></dhcp>
  </ip>
</network>
XML
virsh --connect qemu:///system net-create "$state/net.xml" >/dev/null

ssh-keygen -q -t ed25519 -N '' -f "$state/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$state/id" -C simlab-libvirt-test
cp "$state/id.pub" "$state/authorized_keys"
mkdir -p /run/sshd
cat > "$state/sshd_config" <<CFG
ListenAddress 127.0.0.1:2222
HostKey $state/host_key
AuthorizedKeysFile $state/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv *
PidFile $state/sshd.pid
CFG
/usr/sbin/sshd -f "$state/sshd_config" -E "$state/sshd.log"

log "libvirtd $(libvirtd --version | awk '{print $NF}'), network simlab-test (10.213.0.1/24), sshd on 127.0.0.1:2222"
export SIMLAB_LIBVIRT_SSH_PORT=2222 SIMLAB_LIBVIRT_SSH_KEY=$state/id SIMLAB_LIBVIRT_HOST_KEY=$state/host_key.pub \
  SIMLAB_LIBVIRT_NETWORK=simlab-test SIMLAB_LIBVIRT_HOST_IP=10.213.0.1 \
  SIMLAB_LIBVIRT_IMAGEDIR=/var/lib/libvirt/images/simlab-lvt SIMLAB_LIBVIRT_BASE=$base
cd "$root/tests/libvirt"
"$testbin" -test.v -test.count=1 -test.timeout 20m "$@"
