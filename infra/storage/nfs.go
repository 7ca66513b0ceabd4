package storage

import (
	"fmt"
	"strconv"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	storagev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/storage/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Names of the NFS objects.
const (
	// NFSDriver is csi-driver-nfs's CSI driver name.
	NFSDriver = "nfs.csi.k8s.io"
	// NFSStorageClass provisions subdirectories of the share (ReadWriteMany).
	NFSStorageClass = "nfs-csi"
	// DatasetClaim is the dataset PVC's name in the simulator's namespace;
	// the simulator chart mounts it (values dataset.claimName).
	DatasetClaim = "simulator-datasets"
	// NFSServerName names the in-cluster NFS server's Deployment, Service and volume.
	NFSServerName = "nfs-server"
)

// nfsMountOptions are used for every NFS mount (the in-cluster server
// exports its root over NFSv4 with fsid=0).
var nfsMountOptions = pulumi.StringArray{pulumi.String("nfsvers=4.1")}

// nfs registers csi-driver-nfs, the optional in-cluster NFS server on a
// Ceph volume, a StorageClass on the share, and the dataset volume: a
// statically bound PV on the share's root (reclaim Retain: datasets survive
// destroy) and the ReadWriteMany claim the simulator mounts. It returns the
// claim's name.
func (b *builder) nfs(given []pulumi.Resource, ceph cephOut) (string, error) {
	a := b.args
	if !a.Storage.NFS.Enabled {
		// Your own dataset claim (or none), in a namespace that is yours too.
		return a.Storage.NFS.ExistingClaim, nil
	}
	v := a.Versions
	ns, err := b.namespace(NFSNamespace, "nfs", given...)
	if err != nil {
		return "", err
	}
	driver, err := b.chart(chartSpec{
		resource: b.name + "-csi-driver-nfs", release: "csi-driver-nfs", namespace: NFSNamespace,
		chart: a.Mirrored.CSIDriverNFSChart, version: v.CSIDriverNFS,
		values: pulumi.Map{
			// No snapshot controller and no snapshot CRDs: nothing to outlive the release.
			"externalSnapshotter": pulumi.Map{"enabled": pulumi.Bool(false)},
		},
	}, ns)
	if err != nil {
		return "", fmt.Errorf("csi-driver-nfs: %w", err)
	}

	server, share := a.Storage.NFS.Server, a.Storage.NFS.Path
	var backend pulumi.Resource = driver.res
	if server == "" {
		var err error
		backend, err = b.nfsServer(ns, ceph)
		if err != nil {
			return "", err
		}
		server, share = NFSServerName+"."+NFSNamespace+".svc", "/"
	}

	sc, err := storagev1.NewStorageClass(b.ctx, b.name+"-nfs-csi", &storagev1.StorageClassArgs{
		Metadata:          &metav1.ObjectMetaArgs{Name: pulumi.String(NFSStorageClass), Labels: labels("nfs")},
		Provisioner:       pulumi.String(NFSDriver),
		Parameters:        pulumi.StringMap{"server": pulumi.String(server), "share": pulumi.String(share)},
		ReclaimPolicy:     pulumi.String("Delete"),
		VolumeBindingMode: pulumi.String("Immediate"),
		MountOptions:      nfsMountOptions,
	}, b.after(driver, backend)...)
	if err != nil {
		return "", fmt.Errorf("StorageClass %s: %w", NFSStorageClass, err)
	}

	simNS, err := b.namespace(a.DatasetNamespace, "simulator", given...)
	if err != nil {
		return "", err
	}
	size := pulumi.String(strconv.Itoa(a.Storage.NFS.SizeGiB) + "Gi")
	pvName := a.DatasetNamespace + "-datasets"
	pv, err := corev1.NewPersistentVolume(b.ctx, b.name+"-dataset-pv", &corev1.PersistentVolumeArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(pvName), Labels: labels("nfs")},
		Spec: &corev1.PersistentVolumeSpecArgs{
			Capacity:                      pulumi.StringMap{"storage": size},
			AccessModes:                   pulumi.StringArray{pulumi.String("ReadWriteMany")},
			PersistentVolumeReclaimPolicy: pulumi.String("Retain"),
			StorageClassName:              pulumi.String(NFSStorageClass),
			MountOptions:                  nfsMountOptions,
			ClaimRef: &corev1.ObjectReferenceArgs{
				Namespace: pulumi.String(a.DatasetNamespace), Name: pulumi.String(DatasetClaim),
			},
			Csi: &corev1.CSIPersistentVolumeSourceArgs{
				Driver: pulumi.String(NFSDriver),
				// Unique per share (csi-driver-nfs: server#subdir#share form).
				VolumeHandle:     pulumi.String(server + share + "##" + pvName),
				VolumeAttributes: pulumi.StringMap{"server": pulumi.String(server), "share": pulumi.String(share)},
			},
		},
	}, b.opts(sc, backend)...)
	if err != nil {
		return "", fmt.Errorf("dataset PersistentVolume: %w", err)
	}
	claim, err := corev1.NewPersistentVolumeClaim(b.ctx, b.name+"-dataset-claim", &corev1.PersistentVolumeClaimArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(DatasetClaim), Namespace: pulumi.String(a.DatasetNamespace), Labels: labels("nfs"),
		},
		Spec: &corev1.PersistentVolumeClaimSpecArgs{
			AccessModes:      pulumi.StringArray{pulumi.String("ReadWriteMany")},
			StorageClassName: pulumi.String(NFSStorageClass),
			VolumeName:       pulumi.String(pvName),
			Resources:        &corev1.VolumeResourceRequirementsArgs{Requests: pulumi.StringMap{"storage": size}},
		},
	}, b.opts(pv, simNS)...)
	if err != nil {
		return "", fmt.Errorf("dataset PersistentVolumeClaim: %w", err)
	}
	b.offer(claim)
	return DatasetClaim, nil
}

// nfsServer registers the in-cluster NFS server: a Ceph block volume, a
// single-replica Deployment exporting it, and its Service. The volume
// depends on the Ceph StorageClass, so it is deleted before the pool.
func (b *builder) nfsServer(ns pulumi.Resource, ceph cephOut) (pulumi.Resource, error) {
	a := b.args
	sel := pulumi.StringMap{"app.kubernetes.io/name": pulumi.String(NFSServerName)}
	meta := func() *metav1.ObjectMetaArgs {
		l := labels("nfs")
		l["app.kubernetes.io/name"] = pulumi.String(NFSServerName)
		return &metav1.ObjectMetaArgs{Name: pulumi.String(NFSServerName), Namespace: pulumi.String(NFSNamespace), Labels: l}
	}
	data, err := corev1.NewPersistentVolumeClaim(b.ctx, b.name+"-nfs-server-data", &corev1.PersistentVolumeClaimArgs{
		Metadata: meta(),
		Spec: &corev1.PersistentVolumeClaimSpecArgs{
			AccessModes:      pulumi.StringArray{pulumi.String("ReadWriteOnce")},
			StorageClassName: pulumi.String(ceph.className),
			Resources: &corev1.VolumeResourceRequirementsArgs{
				Requests: pulumi.StringMap{"storage": pulumi.String(strconv.Itoa(a.Storage.NFS.SizeGiB) + "Gi")},
			},
		},
	}, b.opts(ns, ceph.class)...)
	if err != nil {
		return nil, fmt.Errorf("NFS server volume: %w", err)
	}
	ports := []struct {
		name string
		port int
	}{{"nfs", 2049}, {"mountd", 20048}, {"rpcbind", 111}}
	var cports corev1.ContainerPortArray
	var sports corev1.ServicePortArray
	for _, p := range ports {
		cports = append(cports, corev1.ContainerPortArgs{Name: pulumi.String(p.name), ContainerPort: pulumi.Int(p.port)})
		sports = append(sports, corev1.ServicePortArgs{Name: pulumi.String(p.name), Port: pulumi.Int(p.port)})
	}
	deploy, err := appsv1.NewDeployment(b.ctx, b.name+"-nfs-server", &appsv1.DeploymentArgs{
		Metadata: meta(),
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(1),
			// One writer of the RWO volume at a time.
			Strategy: &appsv1.DeploymentStrategyArgs{Type: pulumi.String("Recreate")},
			Selector: &metav1.LabelSelectorArgs{MatchLabels: sel},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: sel},
				Spec: &corev1.PodSpecArgs{
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:            pulumi.String(NFSServerName),
						Image:           pulumi.String(a.Versions.NFSServerImage),
						Ports:           cports,
						SecurityContext: &corev1.SecurityContextArgs{Privileged: pulumi.Bool(true)},
						VolumeMounts: corev1.VolumeMountArray{corev1.VolumeMountArgs{
							Name: pulumi.String("exports"), MountPath: pulumi.String("/exports"),
						}},
					}},
					Volumes: corev1.VolumeArray{corev1.VolumeArgs{
						Name: pulumi.String("exports"),
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSourceArgs{
							ClaimName: pulumi.String(NFSServerName),
						},
					}},
				},
			},
		},
	}, b.opts(data)...)
	if err != nil {
		return nil, fmt.Errorf("NFS server: %w", err)
	}
	svc, err := corev1.NewService(b.ctx, b.name+"-nfs-server-svc", &corev1.ServiceArgs{
		Metadata: meta(),
		Spec:     &corev1.ServiceSpecArgs{Selector: sel, Ports: sports},
	}, b.opts(deploy)...)
	if err != nil {
		return nil, fmt.Errorf("NFS server Service: %w", err)
	}
	b.offer(deploy, svc)
	return svc, nil
}
