//go:build rehearse

package rehearse

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/tests/standin"
)

// putNodeArtifacts writes the files every node's Ignition downloads, built
// here: kubeadm, kubelet and kubectl (the tools module), crictl and the CNI
// plugins as the release tarballs upstream publishes them, each with its
// sha512 in the manifest (which Ignition verifies).
func putNodeArtifacts(t *testing.T, e *env, dir string, m *artifacts.Manifest) {
	t.Helper()
	put := func(name string, data []byte) {
		if err := standin.Put(dir, m, name, data, "built by tests/rehearse/run.sh"); err != nil {
			t.Fatal(err)
		}
	}
	read := func(file string) []byte {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	put(artifacts.Kubeadm, read(e.kubeBin("kubeadm")))
	put(artifacts.Kubelet, read(e.kubeBin("kubelet")))
	put(artifacts.Kubectl, read(e.kubeBin("kubectl")))
	crictl, _ := filepath.Glob(filepath.Join(e.bin, "crictl-v*"))
	cni, _ := filepath.Glob(filepath.Join(e.bin, "cni-plugins-v*", "*"))
	if len(crictl) == 0 || len(cni) == 0 {
		t.Fatalf("crictl or the CNI plugins are not in %s (run.sh builds them)", e.bin)
	}
	put(artifacts.Crictl, tgz(t, map[string]string{"crictl": crictl[len(crictl)-1]}))
	files := map[string]string{}
	for _, f := range cni {
		files["./"+filepath.Base(f)] = f
	}
	put(artifacts.CNIPlugins, tgz(t, files))
	// A rehearsal node boots no Fedora CoreOS: node.sh stands in for the PXE
	// boot (it fetches the same /ignition?mac= a metal installer would). The
	// server still hands out the PXE entries the metal provider checks, so
	// the images are placeholders of the manifest's names.
	for _, name := range artifacts.FCOSArtifacts {
		put(name, []byte("placeholder for "+name+": the rehearsal boots no Fedora CoreOS\n"))
	}
}

// tgz is a gzip'd tar of files (name in the archive -> file here), mode 0755.
func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(files[n])
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
