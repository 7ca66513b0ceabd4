package cluster

// resetScript undoes init or join on a node; it never fails, so destroy
// never hangs on a node that is already gone or half set up. It empties
// /etc/cni/net.d but keeps the directory: containerd watches it, and a
// directory deleted and made again is not seen, so a node joined again would
// stay NotReady ("cni plugin not initialized") until containerd restarts
// (found by the rehearsal, docs/REHEARSAL.md).
const resetScript = `sudo kubeadm reset -f --cri-socket ` + CRISocket + ` || true
sudo rm -rf ` + ConfigDir + ` /var/lib/cni /run/flannel || true
sudo find /etc/cni/net.d -mindepth 1 -delete 2>/dev/null || true
sudo ip link delete cni0 2>/dev/null || true
sudo ip link delete flannel.1 2>/dev/null || true`
