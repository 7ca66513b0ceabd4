#!/usr/bin/env bash
# Builds the stand-in for the Fedora CoreOS QEMU image that `make test-libvirt`
# boots (it is NOT Fedora CoreOS): a FAT disk that SYSLINUX boots into
# Debian's kernel and an initramfs holding busybox and the real Ignition
# (github.com/coreos/ignition/v2, platform qemu). On boot it brings up the
# first NIC with DHCP, runs Ignition's fetch stage (the config from QEMU's
# fw_cfg, opt/com.coreos/config) and files stage into a scratch root that has
# FCOS's users (root, core), then prints a report of what Ignition applied
# (and its boot ID, CPUs and memory) on the serial console, again and again,
# until the domain is stopped; ACPI's power button powers it off.
#
# usage: standin-image.sh IGNITION_BINARY OUT.qcow2
set -euo pipefail
ign=$1 out=$2
kver=$(ls /lib/modules | sort -V | tail -1)
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "standin-image: no kernel $kernel (apt-get install linux-image-amd64)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,etc,sysroot,lib/modules,lib64,lib/x86_64-linux-gnu,usr/bin}
cp /bin/busybox "$root/bin/busybox"
cp "$ign" "$root/usr/bin/ignition"
# What Ignition runs to manage users (--root /sysroot), from Debian's passwd.
mkdir -p "$root/usr/sbin"
for b in useradd usermod groupadd; do cp "/usr/sbin/$b" "$root/usr/sbin/$b"; done
# Ignition and those are dynamically linked (libblkid, glibc, ...): take their libraries.
for bin in "$ign" /usr/sbin/useradd /usr/sbin/usermod /usr/sbin/groupadd; do
  for lib in $(ldd "$bin" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
done
# virtio (PCI, net) and fw_cfg are modules in Debian's kernel; so are ACPI's
# power button and evdev, which the stand-in powers off on (virsh shutdown).
: > "$root/modules.order"
for m in virtio_pci virtio_net qemu_fw_cfg button evdev; do
  modprobe -S "$kver" --show-depends "$m" | awk '/^insmod/ {print $2}' | while read -r ko; do
    base=$(basename "$ko")
    grep -qx "$base" "$root/modules.order" || { cp "$ko" "$root/lib/modules/$base"; echo "$base" >> "$root/modules.order"; }
  done
done
# FCOS labels what Ignition wrote with SELinux's setfiles; the stand-in has no
# SELinux policy, so its setfiles only consumes the list (labels unproven here).
printf '#!/bin/sh\ncat > /run/relabel.list\n' > "$root/usr/sbin/setfiles"
chmod 0755 "$root/usr/sbin/setfiles"
cat > "$root/udhcpc.sh" <<'SH'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
SH
cat > "$root/init" <<'SH'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs sysroot /sysroot
for m in $(cat /modules.order); do insmod /lib/modules/$m; done
echo "simlab-standin: booted (a stand-in for Fedora CoreOS, not FCOS)"
# FCOS's users, as the real image has them.
mkdir -p /sysroot/etc /sysroot/var/home/core /sysroot/root
echo 'root:x:0:0:root:/root:/bin/bash' > /sysroot/etc/passwd
echo 'core:x:1000:1000:CoreOS Admin:/var/home/core:/bin/bash' >> /sysroot/etc/passwd
printf 'root:x:0:\nwheel:x:10:core\nsudo:x:27:core\ncore:x:1000:\n' > /sysroot/etc/group
printf 'root:*::0:99999:7:::\ncore:*::0:99999:7:::\n' > /sysroot/etc/shadow
chmod 0600 /sysroot/etc/shadow
# FCOS enforces SELinux and Ignition relabels; the stand-in has none.
mkdir -p /sysroot/etc/selinux
printf "SELINUX=disabled\nSELINUXTYPE=targeted\n" > /sysroot/etc/selinux/config
chown 1000:1000 /sysroot/var/home/core
chmod 0700 /sysroot/var/home/core
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /udhcpc.sh -t 30 -T 2 -n -q || echo "simlab-standin: no DHCP lease"
ip -4 addr show eth0 | sed 's/^/simlab-standin: /'
# FCOS powers off when ACPI's power button is pressed (virsh shutdown, as a
# resize in place does): so does the stand-in, on the first event of a
# "Power Button" input device.
for e in /sys/class/input/event*; do
  if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
    (head -c 1 "/dev/input/${e##*/}" > /dev/null && echo "simlab-standin: power button: powering off" && poweroff -f) &
  fi
done
status=applied
ignition -platform qemu -stage fetch -log-to-stdout > /run/fetch.log 2>&1 || status=fetch-failed
[ "$status" = applied ] && { ignition -platform qemu -stage files -root /sysroot -log-to-stdout > /run/files.log 2>&1 || status=files-failed; }
while :; do
  echo "SIMLAB-REPORT-BEGIN status=$status"
  if [ "$status" != applied ]; then tail -n 40 /run/fetch.log /run/files.log 2>/dev/null | sed 's/^/log: /'; fi
  (cd /sysroot && find . -mindepth 1 | sort | while read -r f; do
    if [ -L "$f" ]; then echo "link ${f#.} $(readlink "$f")"
    elif [ -d "$f" ]; then echo "dir ${f#.} $(stat -c %a "$f")"
    else echo "file ${f#.} $(stat -c %a "$f") $(sha512sum "$f" | cut -d' ' -f1)"; fi
  done)
  sed 's/^/passwd /' /sysroot/etc/passwd
  echo "boot $(cat /proc/sys/kernel/random/boot_id) $(grep -c ^processor /proc/cpuinfo) $(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
  echo "SIMLAB-REPORT-END"
  sleep 3
done
SH
chmod 0755 "$root/init" "$root/udhcpc.sh"
(cd "$root" && find . | sort | cpio -o -H newc --quiet) | gzip -1 > "$work/initrd.img"
# A FAT "superfloppy" (no partition table) whose boot sector is SYSLINUX's.
size_kib=$(( ( $(stat -c %s "$kernel") + $(stat -c %s "$work/initrd.img") ) / 1024 + 8192 ))
mkfs.vfat -n STANDIN -C "$work/disk.raw" "$size_kib" >/dev/null
syslinux --install "$work/disk.raw"
printf 'DEFAULT standin\nPROMPT 0\nTIMEOUT 0\nLABEL standin\n  KERNEL vmlinuz\n  APPEND initrd=initrd.img console=ttyS0 panic=5\n' > "$work/syslinux.cfg"
mcopy -i "$work/disk.raw" "$kernel" ::vmlinuz
mcopy -i "$work/disk.raw" "$work/initrd.img" ::initrd.img
mcopy -i "$work/disk.raw" "$work/syslinux.cfg" ::syslinux.cfg
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$out"
