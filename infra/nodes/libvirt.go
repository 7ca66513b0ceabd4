package nodes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/artifacts"
	"github.com/simlab/simlab/infra/config"
	"github.com/simlab/simlab/infra/guard"
)

// libvirtProvider boots each node as a libvirt domain on one hypervisor host
// reached over SSH: an overlay qcow2 on the Fedora CoreOS base image, a raw
// Ceph data disk for workers, and the node's Ignition passed through QEMU's
// fw_cfg (opt/com.coreos/config). Nodes are reached through the hypervisor
// as an SSH jump host, so the libvirt network may stay NATed.
type libvirtProvider struct {
	args      *Args
	image     artifacts.Artifact // the compressed QEMU image in the manifest
	baseImage *remote.Command
}

// hypervisor is the SSH connection to the libvirt host.
func (p *libvirtProvider) hypervisor() remote.ConnectionArgs {
	l := p.args.Libvirt
	return remote.ConnectionArgs{
		Host: pulumi.String(l.Host), Port: pulumi.Float64(float64(l.Port)),
		User: pulumi.String(l.User), PrivateKey: p.args.SSHPrivateKey,
	}
}

// BaseImagePath is where the decompressed Fedora CoreOS QEMU image lives on
// the hypervisor: the manifest's file name without .xz, in imageDir.
func BaseImagePath(imageDir string, image artifacts.Artifact) string {
	return path.Join(imageDir, strings.TrimSuffix(path.Base(image.Path), ".xz"))
}

func (p *libvirtProvider) basePath() string { return BaseImagePath(p.args.Libvirt.ImageDir, p.image) }

// shared downloads the base image of the manifest's release from the
// artifact server onto the hypervisor and checks the manifest's sha512.
//
// There is one such resource per release (<cluster>-fcos-image-<release>),
// and an image is reference-counted by the overlays that use it: bumping
// versions.fcosRelease creates the new release's resource and deletes the
// old one, whose delete keeps the file while any node's overlay still has it
// as backing file; the last overlay's delete removes it (gcBaseImages). The
// file .simlab-base in imageDir names the current release's image, which
// only its own resource removes.
func (p *libvirtProvider) shared(ctx *pulumi.Context, parent *Nodes) error {
	img := p.basePath()
	dir := p.args.Libvirt.ImageDir
	url := artifacts.ArtifactURL(p.args.Artifacts.URL, p.image.Path)
	host := p.args.Libvirt.Host
	create := onFailure(host, "downloading base image "+path.Base(img)+" into "+dir, dir, img+".xz.part", img+".part") +
		fmt.Sprintf(`
img=%[1]s
mkdir -p %[2]s
%[6]s
if [ ! -s "$img" ]; then
  need %[7]d "the download of $img.xz"
  curl -fsSL --retry 5 -o "$img.xz.part" %[3]s
  echo %[4]s' '"$img.xz.part" | sha512sum -c --quiet -
  need "$(xz --robot --list "$img.xz.part" | awk '$1 == "totals" {print $5}')" "$img decompressed"
  xz -dc "$img.xz.part" > "$img.part"
  rm -f "$img.xz.part"
  mv "$img.part" "$img"
fi
qemu-img info "$img" >/dev/null
printf '%%s\n' "$img" > %[5]s`, shq(img), shq(dir), shq(url), shq(p.image.SHA512+" "), shq(path.Join(dir, baseMarker)),
			needSpace(host, dir), p.image.Size)
	del := fmt.Sprintf(`if [ "$(cat %[1]s 2>/dev/null)" = %[2]s ]; then rm -f %[1]s; fi
%[3]s
rmdir %[4]s 2>/dev/null || true`, shq(path.Join(dir, baseMarker)), shq(img), gcBaseImages(dir), shq(dir))
	release := path.Base(path.Dir(p.image.Path))
	var err error
	p.baseImage, err = remote.NewCommand(ctx, p.args.Cluster.Name+"-fcos-image-"+release, &remote.CommandArgs{
		Connection: p.hypervisor(),
		Create:     pulumi.String(create),
		Update:     pulumi.String(create),
		Delete:     pulumi.String(del),
		Triggers:   pulumi.Array{pulumi.String(img), pulumi.String(p.image.SHA512)},
	}, pulumi.Parent(parent),
		// Stacks deployed before images were named by release adopt their
		// image in place (an update) instead of deleting it.
		pulumi.Aliases([]pulumi.Alias{{Name: pulumi.String(p.args.Cluster.Name + "-fcos-image")}}))
	if err != nil {
		return fmt.Errorf("base image: %w", err)
	}
	return nil
}

// baseMarker is the file in imageDir naming the current base image.
const baseMarker = ".simlab-base"

// gcBaseImages is a script that removes every Fedora CoreOS base image in
// dir that no overlay there uses as its backing file, except the current
// one (baseMarker). It never fails.
func gcBaseImages(dir string) string {
	return fmt.Sprintf(`dir=%[1]s
used() {
  for o in "$dir"/*.qcow2; do
    case "$o" in "$dir"/fedora-coreos-*) continue ;; esac
    [ -e "$o" ] || continue
    if qemu-img info -U --output=json "$o" 2>/dev/null | grep -qF "\"backing-filename\": \"$1\""; then return 0; fi
  done
  return 1
}
cur=$(cat "$dir"/%[2]s 2>/dev/null || true)
for b in "$dir"/fedora-coreos-*-qemu.*.qcow2; do
  [ -e "$b" ] && [ "$b" != "$cur" ] || continue
  if used "$b"; then echo "keeping $b: an overlay still uses it" >&2; else rm -f "$b" && echo "removed $b: no overlay uses it" >&2 || true; fi
done`, shq(dir), baseMarker)
}

// ignitionHash is the sha256 of a node's Ignition, used as a replacement trigger.
func ignitionHash(ign string) string {
	s := sha256.Sum256([]byte(ign))
	return hex.EncodeToString(s[:])
}

func (p *libvirtProvider) node(ctx *pulumi.Context, node *Node, n config.Node, ign string, renderIdentity func() (string, error)) error {
	l := p.args.Libvirt
	pool := p.args.Controllers
	if n.Role == config.RoleWorker {
		pool = p.args.Workers
	}
	virsh := "virsh --connect " + shq(l.URI)
	ignPath := path.Join(l.ImageDir, n.Name+".ign")
	diskPath := path.Join(l.ImageDir, n.Name+".qcow2")
	cephPath := path.Join(l.ImageDir, n.Name+"-ceph.raw")
	withCeph := n.Role == config.RoleWorker && pool.CephDiskGiB > 0
	// Ignition runs on first boot only, so a changed Ignition means a new
	// machine. Controllers ignore the drift unless the stack opts in
	// (typhoon PR #335): replacing the controller replaces the cluster.
	followIgnition := n.Role == config.RoleWorker || l.ReplaceControllersOnIgnitionChange
	var identity string
	if followIgnition {
		var err error
		if identity, err = renderIdentity(); err != nil {
			return err
		}
	}

	// What replaces the machine is watched by its guard: `pulumi up` refuses
	// it unless the stack acknowledges it (simlab:<role>s.replace). Every
	// other resource of the node waits for it, so a refusal changes nothing.
	keep, err := p.guard(ctx, node, n, pool, followIgnition, identity)
	if err != nil {
		return err
	}

	ignOpts := []pulumi.ResourceOption{pulumi.Parent(node), pulumi.DependsOn([]pulumi.Resource{keep})}
	if !followIgnition {
		ignOpts = append(ignOpts, pulumi.IgnoreChanges([]string{"stdin"}))
	}
	ignFile, err := remote.NewCommand(ctx, n.Name+"-ignition", &remote.CommandArgs{
		Connection: p.hypervisor(),
		Create: pulumi.String(onFailure(l.Host, "writing node "+n.Name+"'s Ignition to "+ignPath, l.ImageDir, ignPath+".part") + fmt.Sprintf(`
mkdir -p %[1]s
cat > %[2]s.part
chmod 0644 %[2]s.part
mv %[2]s.part %[2]s
if command -v selinuxenabled >/dev/null && selinuxenabled; then chcon --type svirt_home_t %[2]s; fi`, shq(l.ImageDir), shq(ignPath))),
		Delete: pulumi.String("rm -f " + shq(ignPath)),
		Stdin:  pulumi.String(ign),
	}, ignOpts...)
	if err != nil {
		return fmt.Errorf("ignition file: %w", err)
	}

	diskTriggers := pulumi.Array{pulumi.String(diskPath), pulumi.Int(pool.DiskGiB), pulumi.Int(pool.CephDiskGiB)}
	if followIgnition {
		diskTriggers = append(diskTriggers, pulumi.String(ignitionHash(identity)))
	}
	if n.Role == config.RoleWorker {
		// A worker replaced moves to the current Fedora CoreOS release: an
		// FCOS bump rolls the workers once simlab:workers.replace is set.
		diskTriggers = append(diskTriggers, pulumi.String(p.basePath()))
	}
	made := []string{diskPath}
	if withCeph {
		made = append(made, cephPath)
	}
	// A failed create removes both disks: Pulumi has no record of them.
	create := onFailure(l.Host, "creating node "+n.Name+"'s disks in "+l.ImageDir, l.ImageDir, made...) +
		fmt.Sprintf("\nqemu-img create -q -f qcow2 -F qcow2 -b %s %s %dG", shq(p.basePath()), shq(diskPath), pool.DiskGiB)
	del := "rm -f " + shq(diskPath)
	if withCeph {
		create += fmt.Sprintf("\nqemu-img create -q -f raw %s %dG", shq(cephPath), pool.CephDiskGiB)
		del += " " + shq(cephPath)
	}
	// The last overlay on an old release's image takes the image with it.
	del += "\n" + gcBaseImages(l.ImageDir)
	diskOpts := []pulumi.ResourceOption{pulumi.Parent(node), pulumi.DependsOn([]pulumi.Resource{p.baseImage, keep}),
		pulumi.DeleteBeforeReplace(true)}
	if n.Role == config.RoleWorker {
		// One worker at a time: after the previous one is back (roll.go).
		diskOpts = append(diskOpts, p.args.Roll.after(n.Name)...)
	}
	if !pool.Replace {
		// Disks are replaced only when the stack acknowledges it: the guard
		// refuses every harmful change, and a trigger that changed meaning
		// (the Ignition hash became its identity's, without the Kubernetes
		// release) replaces no disk of a stack deployed before.
		diskOpts = append(diskOpts, pulumi.IgnoreChanges([]string{"triggers"}))
	}
	disks, err := remote.NewCommand(ctx, n.Name+"-disks", &remote.CommandArgs{
		Connection: p.hypervisor(),
		Create:     pulumi.String(create),
		// Never rewrite a disk in place: every change that matters is a trigger.
		Update:   pulumi.String("true"),
		Delete:   pulumi.String(del),
		Triggers: diskTriggers,
	}, diskOpts...)
	if err != nil {
		return fmt.Errorf("disks: %w", err)
	}

	install := []string{
		"virt-install --connect " + shq(l.URI),
		"--name " + shq(n.Name),
		fmt.Sprintf("--vcpus %d --memory %d", pool.CPUs, pool.MemoryMiB),
		"--os-variant fedora-coreos-stable --import --graphics none --noautoconsole --autostart",
		fmt.Sprintf("--network network=%s,mac=%s,model=virtio", shq(l.Network), n.MAC),
		fmt.Sprintf("--disk path=%s,format=qcow2,bus=virtio", shq(diskPath)),
	}
	if withCeph {
		install = append(install, fmt.Sprintf("--disk path=%s,format=raw,bus=virtio,serial=ceph", shq(cephPath)))
	}
	install = append(install, shq("--qemu-commandline=-fw_cfg name=opt/com.coreos/config,file="+ignPath))
	domain, err := remote.NewCommand(ctx, n.Name+"-domain", &remote.CommandArgs{
		Connection: p.hypervisor(),
		// virt-install's progress goes to stderr: stdout is the UUID alone,
		// which the node's InstanceID and the cluster's triggers are.
		// A domain of that name that is not this node (another MAC: a
		// leftover of another stack or a hand-made VM) is an error, never
		// adopted.
		// A virt-install that fails after defining the domain (qemu would
		// not start) leaves no domain behind.
		Create: pulumi.String("set -eu\n" + libvirtReachable(virsh, l, "node "+n.Name+" not created") + fmt.Sprintf(`
if %[1]s dominfo %[2]s >/dev/null 2>&1; then
  if ! %[1]s domiflist %[2]s | grep -qi %[3]s; then
    echo "domain %[4]s already exists on hypervisor %[5]s but is not this node (its NIC is not %[6]s): remove it (virsh undefine) or rename the node" >&2
    exit 1
  fi
elif ! %[7]s >&2; then
  %[8]s
  echo "hypervisor %[5]s: virt-install of node %[4]s failed (its error is above); no domain %[4]s left defined" >&2
  exit 1
fi
%[1]s domuuid %[2]s`, virsh, shq(n.Name), shq(n.MAC), n.Name, l.Host, n.MAC, strings.Join(install, " \\\n  "), undefine(virsh, n.Name))),
		// cpus and memory change in place: the same machine, the same UUID,
		// so nothing keyed on it (kubeadm init or join) runs again.
		Update: pulumi.String(libvirtReachable(virsh, l, "node "+n.Name+" not resized") + resizeScript(virsh, n.Name, pool.CPUs, pool.MemoryMiB)),
		// With libvirtd down the delete fails, so Pulumi keeps the node in
		// its state rather than forgetting a domain that is still there.
		Delete:   pulumi.String("set -eu\n" + libvirtReachable(virsh, l, "node "+n.Name+" not deleted: start libvirtd and run the destroy again") + undefine(virsh, n.Name)),
		Triggers: pulumi.Array{disks.ID(), pulumi.String(l.Network)},
	}, append([]pulumi.ResourceOption{pulumi.Parent(node), pulumi.DependsOn([]pulumi.Resource{ignFile, disks, keep}), pulumi.DeleteBeforeReplace(true)},
		// A resized worker restarts only once it is drained (roll.go).
		p.args.Roll.beforeRestart(n.Name)...)...)
	if err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	node.InstanceID = trimmed(domain.Stdout)

	if n.IP != "" {
		node.Address = pulumi.All(domain.Stdout).ApplyT(func([]any) string { return n.IP }).(pulumi.StringOutput)
	} else {
		lease, err := remote.NewCommand(ctx, n.Name+"-address", &remote.CommandArgs{
			Connection: p.hypervisor(),
			Create: pulumi.String(libvirtReachable(virsh, l, "node "+n.Name+"'s address not read") + fmt.Sprintf(`for i in $(seq 1 150); do
  ip=$(%s domifaddr %s --source lease 2>/dev/null | awk '/ipv4/ {split($4, a, "/"); print a[1]; exit}')
  if [ -n "$ip" ]; then echo "$ip"; exit 0; fi
  sleep 2
done
echo "no DHCP lease for %s on network %s after 300s" >&2
exit 1`, virsh, shq(n.Name), n.Name, l.Network)),
			Triggers: pulumi.Array{domain.Stdout},
		}, pulumi.Parent(node), pulumi.DependsOn([]pulumi.Resource{domain}))
		if err != nil {
			return fmt.Errorf("address: %w", err)
		}
		node.Address = trimmed(lease.Stdout)
	}

	h := p.hypervisor()
	proxy := remote.ProxyConnectionArgs{Host: h.Host, Port: h.Port, User: h.User, PrivateKey: h.PrivateKey}
	return waitForSSH(ctx, node, p.args, node.Address, proxy, pulumi.Array{domain.Stdout}, []pulumi.Resource{domain})
}

// guard registers the node's guard (infra/guard): the values whose change
// replaces the machine (its disks or its domain), refused at `pulumi up`
// unless simlab:<role>s.replace is set.
func (p *libvirtProvider) guard(ctx *pulumi.Context, node *Node, n config.Node, pool config.Pool, followIgnition bool, ign string) (pulumi.Resource, error) {
	// ign is the node's Ignition identity (ignition.Renderer.Identity).
	role := "controllers"
	harm := "replace the controller: a new empty root disk or domain, kubeadm reset and init again, a new cluster " +
		"with every Kubernetes object, Ceph and Kafka data lost"
	safely := "the cluster is rebuilt from scratch"
	if n.Role == config.RoleWorker {
		role = "workers"
		harm = "replace the worker: new empty root and Ceph disks (its OSDs purged, Ceph copies their data again), drained, reset and joined again"
		safely = "the workers are replaced one at a time, each after its OSDs can stop (ceph osd ok-to-stop) and the previous " +
			"one is back (Node Ready, its new OSD up, Ceph healthy)"
	}
	values := []guard.Value{
		{Name: "simlab:" + role + ".diskGiB", Value: fmt.Sprint(pool.DiskGiB)},
		{Name: "simlab:libvirt.network", Value: p.args.Libvirt.Network},
		// The disks' paths: their trigger, ignored until acknowledged.
		{Name: "simlab:libvirt.imageDir", Value: p.args.Libvirt.ImageDir},
	}
	if n.Role == config.RoleWorker {
		values = append(values, guard.Value{Name: "simlab:workers.cephDiskGiB", Value: fmt.Sprint(pool.CephDiskGiB)})
	}
	if followIgnition {
		// A new name for a new meaning: a guard recorded before this had the
		// whole Ignition's hash, and records this one on its next update.
		values = append(values, guard.Value{Name: "Ignition sha256 but the Kubernetes release (simlab:ignition, ssh.authorizedKeys, versions, artifacts.url)",
			Value: ignitionHash(ign)})
	}
	g, err := guard.New(ctx, n.Name+"-guard", &guard.Args{
		Subject: n.Name, Harm: harm, Ack: "simlab:" + role + ".replace", Acked: pool.Replace, Safely: safely, Values: values,
		Book: p.args.Guards,
	}, pulumi.Parent(node))
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	return g, nil
}

// resizeScript sets a domain's vCPUs and memory in its persistent config
// and, when they differ from the running domain's, restarts it (shutdown,
// wait, start) so they take effect; then prints the domain's UUID. Run again
// after a failure it finishes the job.
func resizeScript(virsh, name string, cpus, memoryMiB int) string {
	return fmt.Sprintf(`set -eu
v() { %[1]s "$@"; }
n=%[2]s
cpus=%[3]d
mem=%[4]d
info=$(v dominfo "$n")
cur_cpus=$(printf '%%s\n' "$info" | awk '/^CPU\(s\):/ {print $2}')
cur_mem=$(printf '%%s\n' "$info" | awk '/^Max memory:/ {print int($3 / 1024)}')
if [ "$cur_cpus" != "$cpus" ] || [ "$cur_mem" != "$mem" ]; then
  echo "resizing $n: $cur_cpus -> $cpus vCPUs, $cur_mem -> $mem MiB (restarts it)" >&2
  if [ "$cpus" -gt "$cur_cpus" ]; then
    v setvcpus "$n" "$cpus" --config --maximum; v setvcpus "$n" "$cpus" --config
  else
    v setvcpus "$n" "$cpus" --config; v setvcpus "$n" "$cpus" --config --maximum
  fi
  if [ "$mem" -gt "$cur_mem" ]; then
    v setmaxmem "$n" "${mem}M" --config; v setmem "$n" "${mem}M" --config
  else
    v setmem "$n" "${mem}M" --config; v setmaxmem "$n" "${mem}M" --config
  fi
  if [ "$(v domstate "$n")" = running ]; then
    v shutdown "$n" >/dev/null
    i=0
    while [ "$(v domstate "$n")" != "shut off" ]; do
      i=$((i + 1))
      if [ "$i" -gt 150 ]; then echo "$n did not shut down within 300s; resize it by hand (docs/DAY2.md)" >&2; exit 1; fi
      sleep 2
    done
    v start "$n" >/dev/null
  fi
fi
v domuuid "$n"`, virsh, shq(name), cpus, memoryMiB)
}

func trimmed(s pulumi.StringOutput) pulumi.StringOutput {
	return s.ApplyT(strings.TrimSpace).(pulumi.StringOutput)
}

// undefine is a script that stops and undefines domain name if it exists; it
// never fails.
func undefine(virsh, name string) string {
	return fmt.Sprintf("%[1]s destroy %[2]s >/dev/null 2>&1 || true\n"+
		"%[1]s undefine %[2]s --nvram >/dev/null 2>&1 || %[1]s undefine %[2]s >/dev/null 2>&1 || true", virsh, shq(name))
}

// libvirtReachable is a script that fails, saying so, when libvirt at the
// stack's URI does not answer on the hypervisor (libvirtd stopped or
// crashed): "hypervisor H: cannot reach libvirt at URI (is libvirtd
// running there?): <virsh's error>; <consequence>". Without it a delete
// would pass with the domain still there, and a create would end in
// virt-install's error, which names neither the node nor the host.
func libvirtReachable(virsh string, l *config.Libvirt, consequence string) string {
	return fmt.Sprintf(`if ! why=$(%[1]s uri 2>&1 >/dev/null); then
  echo "hypervisor %[2]s: cannot reach libvirt at %[3]s (is libvirtd running there?): $(printf '%%s' "$why" | tr '\n' ' ' | sed 's/ *$//'); %[4]s" >&2
  exit 1
fi
`, virsh, l.Host, l.URI, consequence)
}

// onFailure is the start of a script that writes into dir on the hypervisor
// (set -eu and an EXIT trap): when the script fails, the trap removes the
// files it was making (partial) and says on stderr what failed, on which
// host, and how much space is left in dir, so a full disk reads as one
// ("hypervisor H: creating node N's disks in DIR failed (exit 1); ...; 0 MiB
// free in DIR") and nothing half-written stays.
func onFailure(host, what, dir string, partial ...string) string {
	q := make([]string, len(partial))
	for i, f := range partial {
		q[i] = shq(f)
	}
	return fmt.Sprintf(`set -eu
simlab_dir=%[3]s
simlab_failed() {
  rc=$?
  [ "$rc" -eq 0 ] && return 0
  rm -f -- %[4]s
  d=$simlab_dir
  while [ ! -d "$d" ]; do d=$(dirname "$d"); done
  free=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 {printf "%%d MiB", $4 / 1024}')
  echo "hypervisor %[1]s: %[2]s failed (exit $rc); removed what it had written; ${free:-unknown space} free in $simlab_dir" >&2
}
trap simlab_failed EXIT`, host, what, shq(dir), strings.Join(q, " "))
}

// needSpace is a shell function, need BYTES WHAT, that fails with a clear
// error when dir (which exists) has less than BYTES free.
func needSpace(host, dir string) string {
	return fmt.Sprintf(`need() {
  avail=$(df -Pk %[2]s | awk 'NR == 2 {print $4}')
  if [ "$avail" -lt $(( ($1 + 1023) / 1024 )) ]; then
    echo "hypervisor %[1]s: not enough space in %[3]s for $2: it needs $(( $1 / 1048576 + 1 )) MiB, $(( avail / 1024 )) MiB free" >&2
    exit 1
  fi
}`, host, shq(dir), dir)
}
