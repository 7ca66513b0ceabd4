package cluster

import (
	"encoding/json"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	rbacv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/rbac/v1"
	yamlv2 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/yaml/v2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/simlab/simlab/infra/config"
)

// Flannel's namespace and names (its images: config.Versions.FlannelImage).
const (
	flannelNamespace = "kube-flannel"
	flannelName      = "flannel"
)

// FlannelNetConf is flannel's net-conf.json: the pod network (config's
// podCIDR, which kubeadm's podSubnet also uses) with the vxlan backend.
func FlannelNetConf(podCIDR string) string {
	b, _ := json.Marshal(map[string]any{
		"Network":        podCIDR,
		"EnableNFTables": false,
		"Backend":        map[string]any{"Type": "vxlan"},
	})
	return string(b)
}

// flannelCNIConf is the CNI chain flannel installs on every node.
const flannelCNIConf = `{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`

// flannel deploys Flannel (vxlan, --kube-subnet-mgr) as typed objects, so the
// pod network follows the stack's podCIDR and the images follow versions.go.
// It returns the DaemonSet, which depends on every other Flannel object.
func flannel(ctx *pulumi.Context, c config.Cluster, v config.Versions, opts ...pulumi.ResourceOption) (pulumi.Resource, error) {
	labels := pulumi.StringMap{"app": pulumi.String(flannelName), "k8s-app": pulumi.String(flannelName)}
	ns, err := corev1.NewNamespace(ctx, flannelNamespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(flannelNamespace), Labels: pulumi.StringMap{
			"k8s-app":                            pulumi.String(flannelName),
			"pod-security.kubernetes.io/enforce": pulumi.String("privileged"),
		}},
	}, opts...)
	if err != nil {
		return nil, err
	}
	inNS := append(append([]pulumi.ResourceOption{}, opts...), pulumi.DependsOn([]pulumi.Resource{ns}))
	meta := &metav1.ObjectMetaArgs{Name: pulumi.String(flannelName), Namespace: pulumi.String(flannelNamespace), Labels: labels}
	sa, err := corev1.NewServiceAccount(ctx, "flannel", &corev1.ServiceAccountArgs{Metadata: meta}, inNS...)
	if err != nil {
		return nil, err
	}
	role, err := rbacv1.NewClusterRole(ctx, "flannel", &rbacv1.ClusterRoleArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(flannelName), Labels: labels},
		Rules: rbacv1.PolicyRuleArray{
			rbacv1.PolicyRuleArgs{ApiGroups: pulumi.StringArray{pulumi.String("")}, Resources: pulumi.StringArray{pulumi.String("pods")},
				Verbs: pulumi.StringArray{pulumi.String("get")}},
			rbacv1.PolicyRuleArgs{ApiGroups: pulumi.StringArray{pulumi.String("")}, Resources: pulumi.StringArray{pulumi.String("nodes")},
				Verbs: pulumi.ToStringArray([]string{"get", "list", "watch"})},
			rbacv1.PolicyRuleArgs{ApiGroups: pulumi.StringArray{pulumi.String("")}, Resources: pulumi.StringArray{pulumi.String("nodes/status")},
				Verbs: pulumi.StringArray{pulumi.String("patch")}},
		},
	}, opts...)
	if err != nil {
		return nil, err
	}
	binding, err := rbacv1.NewClusterRoleBinding(ctx, "flannel", &rbacv1.ClusterRoleBindingArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(flannelName), Labels: labels},
		RoleRef: rbacv1.RoleRefArgs{ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Kind: pulumi.String("ClusterRole"),
			Name: pulumi.String(flannelName)},
		Subjects: rbacv1.SubjectArray{rbacv1.SubjectArgs{Kind: pulumi.String("ServiceAccount"),
			Name: pulumi.String(flannelName), Namespace: pulumi.String(flannelNamespace)}},
	}, append(append([]pulumi.ResourceOption{}, opts...), pulumi.DependsOn([]pulumi.Resource{role, sa}))...)
	if err != nil {
		return nil, err
	}
	cm, err := corev1.NewConfigMap(ctx, "kube-flannel-cfg", &corev1.ConfigMapArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("kube-flannel-cfg"), Namespace: pulumi.String(flannelNamespace), Labels: labels},
		Data: pulumi.StringMap{
			"cni-conf.json": pulumi.String(flannelCNIConf),
			"net-conf.json": pulumi.String(FlannelNetConf(c.PodCIDR)),
		},
	}, inNS...)
	if err != nil {
		return nil, err
	}
	hostPath := func(name, path string, typ string) corev1.VolumeArgs {
		hp := &corev1.HostPathVolumeSourceArgs{Path: pulumi.String(path)}
		if typ != "" {
			hp.Type = pulumi.String(typ)
		}
		return corev1.VolumeArgs{Name: pulumi.String(name), HostPath: hp}
	}
	mount := func(name, path string) corev1.VolumeMountArgs {
		return corev1.VolumeMountArgs{Name: pulumi.String(name), MountPath: pulumi.String(path)}
	}
	fieldEnv := func(name, path string) corev1.EnvVarArgs {
		return corev1.EnvVarArgs{Name: pulumi.String(name), ValueFrom: &corev1.EnvVarSourceArgs{
			FieldRef: &corev1.ObjectFieldSelectorArgs{FieldPath: pulumi.String(path)}}}
	}
	image := v.FlannelImage()
	ds, err := appsv1.NewDaemonSet(ctx, "kube-flannel-ds", &appsv1.DaemonSetArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("kube-flannel-ds"), Namespace: pulumi.String(flannelNamespace), Labels: labels},
		Spec: appsv1.DaemonSetSpecArgs{
			Selector: &metav1.LabelSelectorArgs{MatchLabels: pulumi.StringMap{"app": pulumi.String(flannelName)}},
			Template: corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{Labels: labels},
				Spec: corev1.PodSpecArgs{
					HostNetwork:        pulumi.Bool(true),
					PriorityClassName:  pulumi.String("system-node-critical"),
					ServiceAccountName: pulumi.String(flannelName),
					Tolerations: corev1.TolerationArray{corev1.TolerationArgs{
						Operator: pulumi.String("Exists"), Effect: pulumi.String("NoSchedule")}},
					NodeSelector: pulumi.StringMap{"kubernetes.io/os": pulumi.String("linux")},
					InitContainers: corev1.ContainerArray{
						corev1.ContainerArgs{
							Name:         pulumi.String("install-cni-plugin"),
							Image:        pulumi.String(v.FlannelCNIImage()),
							Command:      pulumi.ToStringArray([]string{"cp"}),
							Args:         pulumi.ToStringArray([]string{"-f", "/flannel", "/opt/cni/bin/flannel"}),
							VolumeMounts: corev1.VolumeMountArray{mount("cni-plugin", "/opt/cni/bin")},
						},
						corev1.ContainerArgs{
							Name:    pulumi.String("install-cni"),
							Image:   pulumi.String(image),
							Command: pulumi.ToStringArray([]string{"cp"}),
							Args:    pulumi.ToStringArray([]string{"-f", "/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"}),
							VolumeMounts: corev1.VolumeMountArray{mount("cni", "/etc/cni/net.d"),
								mount("flannel-cfg", "/etc/kube-flannel/")},
						},
					},
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:    pulumi.String("kube-flannel"),
						Image:   pulumi.String(image),
						Command: pulumi.ToStringArray([]string{"/opt/bin/flanneld"}),
						Args:    pulumi.ToStringArray([]string{"--ip-masq", "--kube-subnet-mgr"}),
						Resources: &corev1.ResourceRequirementsArgs{Requests: pulumi.StringMap{
							"cpu": pulumi.String("100m"), "memory": pulumi.String("50Mi")}},
						SecurityContext: &corev1.SecurityContextArgs{
							Privileged:   pulumi.Bool(false),
							Capabilities: &corev1.CapabilitiesArgs{Add: pulumi.ToStringArray([]string{"NET_ADMIN", "NET_RAW"})},
						},
						Env: corev1.EnvVarArray{
							fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							corev1.EnvVarArgs{Name: pulumi.String("EVENT_QUEUE_DEPTH"), Value: pulumi.String("5000")},
						},
						VolumeMounts: corev1.VolumeMountArray{mount("run", "/run/flannel"),
							mount("flannel-cfg", "/etc/kube-flannel/"), mount("xtables-lock", "/run/xtables.lock")},
					}},
					Volumes: corev1.VolumeArray{
						hostPath("run", "/run/flannel", ""),
						// /opt is writable on Fedora CoreOS (/var/opt); /usr is not.
						hostPath("cni-plugin", "/opt/cni/bin", ""),
						hostPath("cni", "/etc/cni/net.d", ""),
						corev1.VolumeArgs{Name: pulumi.String("flannel-cfg"),
							ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: pulumi.String("kube-flannel-cfg")}},
						hostPath("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
					},
				},
			},
		},
	}, append(append([]pulumi.ResourceOption{}, opts...), pulumi.DependsOn([]pulumi.Resource{ns, sa, binding, cm}))...)
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// metricsServer deploys the pinned metrics-server release manifest, a file of
// the artifact mirror. It keeps metrics-server's TLS verification of
// kubelets: their serving certificates come from serverTLSBootstrap and are
// approved by the admit commands. The ConfigFile is a remote component:
// depending on it waits for its objects.
func metricsServer(ctx *pulumi.Context, manifest string, opts ...pulumi.ResourceOption) (pulumi.Resource, error) {
	return yamlv2.NewConfigFile(ctx, "metrics-server", &yamlv2.ConfigFileArgs{
		File: pulumi.String(manifest),
	}, opts...)
}
