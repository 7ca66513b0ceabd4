package nodes

import (
	"fmt"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
)

// metalProvider boots listed machines over PXE, the way matchbox does: the
// artifact server (`simlab artifacts serve --stack <stack>`) hands each
// machine, by MAC, an iPXE script (/boot.ipxe?mac=) whose kernel arguments
// install Fedora CoreOS to metal.installDisk (coreos.inst.install_dev) with
// the node's Ignition (coreos.inst.ignition_url=/ignition?mac=). The program
// checks that the server serves exactly the Ignition it rendered, then waits
// until the node answers SSH at its configured IP.
type metalProvider struct {
	args *Args
}

func (p *metalProvider) shared(*pulumi.Context, *Nodes) error { return nil }

// ServedCheckScript fetches a node's iPXE script and Ignition from the
// artifact server and fails unless the Ignition's sha256 is
// $SIMLAB_IGNITION_SHA256, naming the node and what to do.
func ServedCheckScript(artifactsURL, node, mac string) string {
	ipxe := artifacts.ArtifactURL(artifactsURL, "boot.ipxe") + "?mac=" + artifacts.NormalizeMAC(mac)
	ign := artifacts.ArtifactURL(artifactsURL, "ignition") + "?mac=" + artifacts.NormalizeMAC(mac)
	return fmt.Sprintf(`set -eu
sum() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1; }
curl -fsS --retry 3 %[1]s | grep -q coreos.inst.install_dev || { echo "the artifact server gives %[3]s no PXE boot at %[1]s: start it with 'simlab artifacts serve --stack <this stack>'" >&2; exit 1; }
got=$(curl -fsS --retry 3 %[2]s | sum)
if [ "$got" != "$SIMLAB_IGNITION_SHA256" ]; then
  echo "the artifact server serves %[3]s a different Ignition than this program renders (sha256 $got, want $SIMLAB_IGNITION_SHA256): restart 'simlab artifacts serve' with this stack's config" >&2
  exit 1
fi`, shq(ipxe), shq(ign), node)
}

func (p *metalProvider) node(ctx *pulumi.Context, node *Node, n config.Node, ign string, _ func() (string, error)) error {
	if n.MAC == "" || n.IP == "" {
		return fmt.Errorf("metal machines need a MAC and an IP (simlab:metal.machines)")
	}
	hash := ignitionHash(ign)
	served, err := local.NewCommand(ctx, n.Name+"-pxe", &local.CommandArgs{
		Create:      pulumi.String(ServedCheckScript(p.args.Artifacts.URL, n.Name, n.MAC)),
		Environment: pulumi.StringMap{"SIMLAB_IGNITION_SHA256": pulumi.String(hash)},
	}, pulumi.Parent(node))
	if err != nil {
		return fmt.Errorf("PXE entry: %w", err)
	}
	node.InstanceID = pulumi.All(served.ID()).ApplyT(func([]any) string { return artifacts.NormalizeMAC(n.MAC) }).(pulumi.StringOutput)
	node.Address = pulumi.All(served.ID()).ApplyT(func([]any) string { return n.IP }).(pulumi.StringOutput)
	return waitForSSH(ctx, node, p.args, node.Address, nil, pulumi.Array{pulumi.String(artifacts.NormalizeMAC(n.MAC))},
		[]pulumi.Resource{served})
}
