package cluster

import "fmt"

// The init phase: kubeadm init on the controller with the InitConfiguration
// on stdin, skipped when the cluster exists (admin.conf); its undo is
// reset, which is why the controller's machine is never replaced
// implicitly (docs/DAY2.md).

// initPhase is kubeadm init on the controller.
func initPhase() Phase {
	return Phase{
		Prepare: writeConfig("init.yaml"),
		Done:    "sudo test -f /etc/kubernetes/admin.conf", Skipped: "kubeadm init: cluster exists, skipped",
		Run:  "sudo kubeadm init --config " + ConfigDir + "/init.yaml --skip-token-print",
		Undo: resetScript,
	}
}

// writeConfig stores stdin (a kubeadm config) as root-only ConfigDir/file.
func writeConfig(file string) string {
	return fmt.Sprintf(`set -eu
sudo install -d -m 0700 %[1]s
sudo sh -c 'umask 077; cat > %[1]s/%[2]s'`, ConfigDir, file)
}
