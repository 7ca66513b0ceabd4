// Package image owns the simulator's container image, built without a
// container engine: a static binary (CGO off, -trimpath, no build ID) per
// platform, in one layer on an empty base, as a multi-platform OCI image
// index written to an OCI image layout. The same source and Go toolchain give
// the same bytes, so the same digest: the chart can run the image by digest
// and a worker runs exactly what was built.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the unprivileged user the image runs as (the chart's
// securityContext expects it).
const User = "65532:65532"

// Entrypoint is the binary's path in the image.
const Entrypoint = "/simulator"

// DefaultPlatforms are the platforms an image is built for.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// Options configure Build.
type Options struct {
	// ModuleDir is the root of the Go module holding ./simulator.
	ModuleDir string
	// Out is the OCI image layout directory to write (created or replaced).
	Out string
	// Ref names the image in the layout (annotation
	// org.opencontainers.image.ref.name), e.g. ghcr.io/simlab/simulator:0.1.0.
	Ref string
	// Platforms are "os/arch" pairs; empty means DefaultPlatforms.
	Platforms []string
	// Go is the go command; empty means "go" on PATH.
	Go string
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// Result is what Build wrote.
type Result struct {
	// Digest is the image index's digest (sha256:...).
	Digest v1.Hash
	// Platforms maps "os/arch" to that platform's image manifest digest.
	Platforms map[string]v1.Hash
}

// Build compiles the simulator for each platform and writes the image index
// to o.Out. Nothing is left at o.Out when it fails.
func Build(ctx context.Context, o Options) (Result, error) {
	if o.Go == "" {
		o.Go = "go"
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Out == "" || o.ModuleDir == "" {
		return Result{}, fmt.Errorf("image: ModuleDir and Out are required")
	}
	tmp, err := os.MkdirTemp("", "simlab-image-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(tmp)

	res := Result{Platforms: map[string]v1.Hash{}}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		goos, arch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || arch == "" {
			return Result{}, fmt.Errorf("image: platform %q: want os/arch, e.g. linux/amd64", p)
		}
		bin := filepath.Join(tmp, goos+"-"+arch, "simulator")
		start := time.Now()
		if err := compile(ctx, o, goos, arch, bin); err != nil {
			return Result{}, fmt.Errorf("image: building the simulator for %s: %w", p, err)
		}
		img, err := platformImage(bin, goos, arch)
		if err != nil {
			return Result{}, fmt.Errorf("image: %s: %w", p, err)
		}
		d, err := img.Digest()
		if err != nil {
			return Result{}, err
		}
		res.Platforms[p] = d
		fmt.Fprintf(o.Log, "%-12s %s (built in %.1f s)\n", p, d, time.Since(start).Seconds())
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: arch}}})
	}
	if res.Digest, err = idx.Digest(); err != nil {
		return Result{}, err
	}
	// Write next to the destination, then swap it in.
	stage := o.Out + ".tmp"
	os.RemoveAll(stage)
	lp, err := layout.Write(stage, empty.Index)
	if err != nil {
		return Result{}, fmt.Errorf("image: writing the layout: %w", err)
	}
	var opts []layout.Option
	if o.Ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.Ref}))
	}
	if err := lp.AppendIndex(idx, opts...); err != nil {
		os.RemoveAll(stage)
		return Result{}, fmt.Errorf("image: writing the layout: %w", err)
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return Result{}, err
	}
	if err := os.Rename(stage, o.Out); err != nil {
		return Result{}, err
	}
	return res, nil
}

// compile builds a static, reproducible simulator binary.
func compile(ctx context.Context, o Options, goos, arch, out string) error {
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, "./simulator")
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// platformImage is the binary as the one layer on an empty base.
func platformImage(bin, goos, arch string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Fixed owner, mode and time: the layer depends on the binary alone.
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(Entrypoint, "/"), Mode: 0o755, Size: int64(len(data)),
		Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatUSTAR}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS: goos, Architecture: arch,
		Config: v1.Config{
			Entrypoint: []string{Entrypoint}, User: User,
			// controller: 8080 (API, /metrics, /healthz, /readyz); worker: 8081, SFTP 2222.
			ExposedPorts: map[string]struct{}{"8080/tcp": {}, "8081/tcp": {}, "2222/tcp": {}},
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "simlab image build"}})
}
