// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 in the
// same module graph as the Kubernetes binaries so its version is pinned in
// tests/tools/go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
