package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/simlab/simlab/ignition"
	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

func newArtifactsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "artifacts",
		Short: "Mirror pinned node artifacts and serve them, with each node's Ignition",
		Long: `The artifact server is the lab's "external HTTP server": nodes download kubeadm,
kubelet, kubectl, crictl and the CNI plugins from it (each verified by the sha512
in their Ignition), metal machines PXE-boot Fedora CoreOS from it and fetch their
Ignition by MAC. 'mirror' fills the directory once (online); 'serve' needs no
internet. See docs/IGNITION.md.`,
	}
	cmd.AddCommand(newArtifactsMirrorCmd(), newArtifactsServeCmd(), newArtifactsIgnitionCmd())
	return cmd
}

// loadStack loads stacks/Pulumi.<stack>.yaml (or a path ending in .yaml).
func loadStack(dir, stack string) (*config.Loaded, error) {
	p := stack
	if filepath.Ext(stack) != ".yaml" && filepath.Ext(stack) != ".yml" {
		p = filepath.Join(dir, "Pulumi."+stack+".yaml")
	}
	l, err := config.LoadStackFile(p)
	var errs *config.Errors
	if errors.As(err, &errs) {
		return nil, fmt.Errorf("%s is invalid (run `simlab validate %s`):\n%v", p, stack, err)
	}
	return l, err
}

func newArtifactsMirrorCmd() *cobra.Command {
	var dir, stack, stacksDir, arch string
	var skipFCOS, skipImages bool
	var extraImages, registries []string
	up := artifacts.DefaultUpstreams()
	cmd := &cobra.Command{
		Use:   "mirror",
		Short: "Download the pinned artifacts, verify each against its upstream checksum, write manifest.json",
		Long: `Mirror downloads kubeadm, kubelet and kubectl (dl.k8s.io, checked against the published
.sha512), crictl (cri-tools release, .sha256), the CNI plugins (release, .sha512) and the
Fedora CoreOS qemu image and live PXE files (the pinned build's meta.json, sha256) into
--dir, and what the program applies to the cluster: the rook-ceph, strimzi-kafka-operator
and csi-driver-nfs charts (checked against the digest in their repository's index.yaml)
and the Rook, Strimzi and metrics-server release manifests (upstream publishes no checksum
for these; their sha512 is recorded, and ` + "`pulumi up`" + ` applies only those bytes).
Then every container image the stack runs, copied by digest into an OCI layout per
repository under images/ (the index and the lab architecture's image, each blob checked
against its sha256): kubeadm's own list (` + "`kubeadm config images list`" + ` of the mirrored
kubeadm), the images the mirrored charts' values and manifests name, and those simlab's
layers run themselves (Flannel, Ceph, Strimzi's Kafka, the NFS server). ` + "`serve`" + ` serves
them as a read-only registry that every node's containerd uses as the mirror of
docker.io, ghcr.io, quay.io and registry.k8s.io. An image an operator starts from defaults
compiled into it is not in any of those lists: name it with --image.
Versions come from infra/config/versions.go, or from --stack when given; with --stack only
what that stack uses is mirrored (no node files for provider existing). Each file is
written to a temp file and renamed only after its checksum matched; a mismatch is an error
and leaves nothing behind. Files already mirrored with a matching checksum are kept.
Finally manifest.json records each file's path, size and sha512.`,
		Example: `  simlab artifacts mirror --dir .artifacts
  simlab artifacts mirror --dir .artifacts --stack lab
  simlab artifacts mirror --kubernetes-url http://mirror.internal/k8s --skip-fcos
  simlab artifacts mirror --stack lab --registry quay.io=https://quay-cache.internal --image quay.io/cephcsi/cephcsi:v3.15.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := config.DefaultVersions()
			deploy := artifacts.DeployArtifacts
			skipNodes := false
			// Without a stack: the images of every layer at the default pins.
			all := config.Default()
			all.Storage.Ceph.Enabled, all.Storage.Kafka.Enabled, all.Storage.NFS.Enabled = true, true, true
			stackImages := all.Images()
			if stack != "" {
				l, err := loadStack(stacksDir, stack)
				if err != nil {
					return err
				}
				v = l.Versions
				deploy = artifacts.DeployFor(&l.Config)
				// A stack on an existing cluster provisions no nodes.
				skipNodes = l.Provider == config.ProviderExisting
				stackImages = l.Config.Images()
			}
			var images []artifacts.ImageRequest
			for _, i := range stackImages {
				images = append(images, artifacts.ImageRequest{Ref: i.Ref, From: i.From})
			}
			for _, ref := range extraImages {
				if _, _, _, err := artifacts.ParseImageRef(ref); err != nil {
					return fmt.Errorf("--image: %w", err)
				}
				images = append(images, artifacts.ImageRequest{Ref: ref, From: "--image"})
			}
			regs := map[string]string{}
			for _, r := range registries {
				host, u, ok := strings.Cut(r, "=")
				if !ok || host == "" || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
					return fmt.Errorf("--registry %q: want HOST=URL, e.g. quay.io=https://quay-cache.internal", r)
				}
				regs[host] = strings.TrimRight(u, "/")
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			m, err := artifacts.Mirror(ctx, artifacts.MirrorOptions{
				Dir: dir, Arch: arch, Upstreams: up, SkipFCOS: skipFCOS, SkipNodes: skipNodes, Deploy: deploy,
				Log: cmd.OutOrStdout(), Client: &http.Client{Timeout: 2 * time.Hour},
				Versions: artifacts.VersionsFor(v), SkipImages: skipImages, Images: images, Registries: regs,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mirrored %d artifacts and %d images into %s (%s)\n", len(m.Artifacts), len(m.Images), dir, filepath.Join(dir, artifacts.ManifestFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".artifacts", "mirror directory")
	f.StringVar(&stack, "stack", "", "take versions from stacks/Pulumi.<STACK>.yaml instead of the defaults")
	f.StringVar(&stacksDir, "stacks-dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	f.StringVar(&arch, "arch", "amd64", "architecture (amd64 or arm64)")
	f.BoolVar(&skipFCOS, "skip-fcos", false, "mirror only the Kubernetes artifacts, not the Fedora CoreOS images")
	f.BoolVar(&skipImages, "skip-images", false, "mirror no container image")
	f.StringArrayVar(&extraImages, "image", nil, "also mirror this image (host/name:tag; repeatable)")
	f.StringArrayVar(&registries, "registry", nil, "pull HOST's images from URL instead (HOST=URL; repeatable); they keep their names")
	f.StringVar(&up.Kubernetes, "kubernetes-url", up.Kubernetes, "base URL of the Kubernetes release binaries")
	f.StringVar(&up.GitHub, "github-url", up.GitHub, "base URL of the cri-tools and CNI plugins release assets")
	f.StringVar(&up.FCOS, "fcos-url", up.FCOS, "base URL of the Fedora CoreOS builds")
	f.StringVar(&up.GitHubRaw, "github-raw-url", up.GitHubRaw, "base URL of files in Git trees (Rook's CRDs, csi-driver-nfs's chart repository)")
	f.StringVar(&up.RookCharts, "rook-charts-url", up.RookCharts, "Rook's Helm chart repository")
	f.StringVar(&up.StrimziCharts, "strimzi-charts-url", up.StrimziCharts, "Strimzi's Helm chart repository")
	return cmd
}

func newArtifactsServeCmd() *cobra.Command {
	var dir, listen, stack, stacksDir, baseURL string
	var verify bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the mirror, each node's Ignition (by name or MAC) and PXE boot arguments",
		Long: `Serve serves --dir over HTTP. With --stack it also renders each node's Ignition from
stacks/Pulumi.<STACK>.yaml and the mirror's manifest:

  GET /<path in manifest.json>   a mirrored file
  GET /ignition?name=<node>      the node's Ignition JSON (or ?mac=<mac>)
  GET /pxe?mac=<mac>             PXE boot (JSON: kernel, initrd, kernel arguments)
  GET /boot.ipxe?mac=<mac>       the same as an iPXE script (chain to it from DHCP)
  GET /v2/...                    the images under <dir>/images (OCI layouts, as written by
                                 'simlab image build') as a read-only registry

Before serving, every file must be present with the manifest's size (and sha512 with
--verify), and the manifest must match the stack's pinned versions.`,
		Example: `  simlab artifacts serve --dir .artifacts --listen 127.0.0.1:8080 --stack dev`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := artifacts.LoadManifest(dir)
			if err != nil {
				return err
			}
			// Sizes always; every byte's sha512 with --verify.
			if err := m.VerifyFiles(dir, verify); err != nil {
				return err
			}
			reg, err := artifacts.NewRegistry(dir)
			if err != nil {
				return err
			}
			o := artifacts.ServerOptions{Dir: dir, Manifest: m, Registry: reg, Log: cmd.ErrOrStderr()}
			if stack != "" {
				l, err := loadStack(stacksDir, stack)
				if err != nil {
					return err
				}
				cfg := l.Config
				if baseURL != "" {
					cfg.Artifacts.URL = baseURL
				}
				r, err := ignition.NewRenderer(&cfg, m)
				if err != nil {
					return err
				}
				nodes := map[string]config.Node{}
				for _, n := range cfg.Nodes() {
					nodes[n.Name] = n
					o.Nodes = append(o.Nodes, artifacts.ServedNode{Name: n.Name, Role: n.Role, MAC: n.MAC})
				}
				// Render every node once up front: a broken snippet fails here, not at boot.
				for _, n := range cfg.Nodes() {
					if _, err := r.Render(n); err != nil {
						return err
					}
				}
				o.Ignition = func(name string) ([]byte, error) { return r.Render(nodes[name]) }
				o.BaseURL = cfg.Artifacts.URL
				if cfg.Metal != nil {
					o.InstallDisk = cfg.Metal.InstallDisk
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: artifacts.Handler(o), ReadHeaderTimeout: 10 * time.Second}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			go func() {
				<-ctx.Done()
				sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
				defer c()
				srv.Shutdown(sctx)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "serving %s (%d artifacts, %d nodes, %d images) on http://%s\n",
				dir, len(m.Artifacts), len(o.Nodes), len(reg.Images()), ln.Addr())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".artifacts", "mirror directory (holding manifest.json)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&stack, "stack", "", "serve Ignition for the nodes of stacks/Pulumi.<STACK>.yaml")
	f.StringVar(&stacksDir, "stacks-dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	f.StringVar(&baseURL, "base-url", "", "URL nodes reach this server at (default: the stack's simlab:artifacts.url)")
	f.BoolVar(&verify, "verify", false, "check every file's sha512 against the manifest before serving (default: sizes only)")
	return cmd
}

func newArtifactsIgnitionCmd() *cobra.Command {
	var dir, stack, stacksDir string
	cmd := &cobra.Command{
		Use:   "ignition NODE",
		Short: "Print one node's Ignition, exactly as serve and the nodes layer render it",
		Long: `Ignition renders the Ignition of NODE (a node name of the stack) from the Butane
templates, the stack's snippets (simlab:ignition) and the mirror's manifest, and prints
it. Use it to check a snippet: errors name the snippet, line and column.`,
		Example: `  simlab artifacts ignition --stack dev dev-worker-1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := artifacts.LoadManifest(dir)
			if err != nil {
				return err
			}
			l, err := loadStack(stacksDir, stack)
			if err != nil {
				return err
			}
			var names []string
			for _, n := range l.Nodes() {
				if n.Name == args[0] {
					out, err := ignition.RenderNode(&l.Config, n, m)
					if err != nil {
						return err
					}
					_, err = cmd.OutOrStdout().Write(out)
					return err
				}
				names = append(names, n.Name)
			}
			return fmt.Errorf("stack %s has no node %q (nodes: %v)", stack, args[0], names)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".artifacts", "mirror directory (holding manifest.json)")
	f.StringVar(&stack, "stack", "dev", "stack whose node to render")
	f.StringVar(&stacksDir, "stacks-dir", "stacks", "directory holding Pulumi.<STACK>.yaml files")
	return cmd
}
