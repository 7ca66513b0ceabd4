package nodes

import (
	"fmt"
	"net"
	"path"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// metalProvider boots listed machines over PXE, the way matchbox does: the
// program writes each machine's Ignition and an iPXE script named after its
// MAC into the artifact server's directory (simlab:artifacts.dir), the
// machine's firmware chains boot.ipxe from the server, the Fedora CoreOS live
// image installs to metal.installDisk with that Ignition, and the program
// waits until the node answers SSH at its configured IP.
type metalProvider struct {
	args *Args
}

// IgnitionPath is where a node's Ignition lives under the artifact directory
// and URL.
func IgnitionPath(node string) string { return "ignition/" + node + ".ign" }

// PXEPath is a machine's iPXE script under the artifact directory and URL,
// named as iPXE's ${mac:hexhyp} expands (52-54-00-...).
func PXEPath(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err == nil {
		mac = hw.String()
	}
	return "pxe/" + strings.ReplaceAll(strings.ToLower(mac), ":", "-") + ".ipxe"
}

// LiveImages are the Fedora CoreOS PXE files of a release under the artifact URL.
func LiveImages(release string) (kernel, initramfs, rootfs string) {
	base := "fcos/fedora-coreos-" + release + "-live-"
	return base + "kernel.x86_64", base + "initramfs.x86_64.img", base + "rootfs.x86_64.img"
}

// BootScript is the shared iPXE entry point: DHCP hands it to every machine,
// and it chains the machine's own script by MAC.
func BootScript(artifactsURL string) string {
	return "#!ipxe\nchain " + strings.TrimSuffix(artifactsURL, "/") + "/pxe/${mac:hexhyp}.ipxe\n"
}

// PXEScript is a machine's iPXE script: the live kernel with the installer's
// arguments (coreos.inst.install_dev, coreos.inst.ignition_url).
func PXEScript(artifactsURL, release, installDisk, node string) string {
	u := strings.TrimSuffix(artifactsURL, "/")
	kernel, initramfs, rootfs := LiveImages(release)
	args := []string{
		"initrd=main",
		"coreos.live.rootfs_url=" + u + "/" + rootfs,
		"coreos.inst.install_dev=" + installDisk,
		"coreos.inst.ignition_url=" + u + "/" + IgnitionPath(node),
		"console=tty0", "console=ttyS0,115200n8",
	}
	return fmt.Sprintf("#!ipxe\nkernel %s/%s %s\ninitrd --name main %s/%s\nboot\n",
		u, kernel, strings.Join(args, " "), u, initramfs)
}

func (p *metalProvider) dir() string {
	if p.args.Artifacts.Dir == "" {
		return ".artifacts"
	}
	return p.args.Artifacts.Dir
}

// shared writes the boot.ipxe entry point the DHCP server points machines at.
func (p *metalProvider) shared(ctx *pulumi.Context, parent *Nodes) error {
	file := path.Join(p.dir(), "boot.ipxe")
	_, err := local.NewCommand(ctx, p.args.Cluster.Name+"-pxe-boot", &local.CommandArgs{
		Create: pulumi.String(fmt.Sprintf("set -eu\nmkdir -p %s\ncat > %s", shq(p.dir()), shq(file))),
		Stdin:  pulumi.String(BootScript(p.args.Artifacts.URL)),
		Delete: pulumi.String("rm -f " + shq(file)),
	}, pulumi.Parent(parent))
	if err != nil {
		return fmt.Errorf("boot.ipxe: %w", err)
	}
	return nil
}

func (p *metalProvider) node(ctx *pulumi.Context, node *Node, n config.Node, ign string) error {
	if n.MAC == "" || n.IP == "" {
		return fmt.Errorf("metal machines need a MAC and an IP (simlab:metal.machines)")
	}
	ignFile := path.Join(p.dir(), IgnitionPath(n.Name))
	pxeFile := path.Join(p.dir(), PXEPath(n.MAC))
	script := PXEScript(p.args.Artifacts.URL, p.args.Versions.FCOSRelease, p.args.Metal.InstallDisk, n.Name)
	pxe, err := local.NewCommand(ctx, n.Name+"-pxe", &local.CommandArgs{
		Create: pulumi.String(fmt.Sprintf(`set -eu
mkdir -p %s %s
cat > %s.part && mv %s.part %s
printf '%%s' "$SIMLAB_IPXE" > %s`,
			shq(path.Dir(ignFile)), shq(path.Dir(pxeFile)), shq(ignFile), shq(ignFile), shq(ignFile), shq(pxeFile))),
		Stdin:       pulumi.String(ign),
		Environment: pulumi.StringMap{"SIMLAB_IPXE": pulumi.String(script)},
		// Without its PXE entry a removed machine cannot reinstall itself.
		Delete: pulumi.String("rm -f " + shq(ignFile) + " " + shq(pxeFile)),
	}, pulumi.Parent(node))
	if err != nil {
		return fmt.Errorf("PXE entry: %w", err)
	}
	node.InstanceID = pulumi.All(pxe.ID()).ApplyT(func([]any) string { return n.MAC }).(pulumi.StringOutput)
	node.Address = pulumi.All(pxe.ID()).ApplyT(func([]any) string { return n.IP }).(pulumi.StringOutput)
	return waitForSSH(ctx, node, p.args, node.Address, nil, pulumi.Array{pulumi.String(n.MAC)}, []pulumi.Resource{pxe})
}
