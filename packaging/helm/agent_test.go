package helm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func TestAgentDaemonSet(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			ds := one[*appsv1.DaemonSet](t, m)
			spec := ds.Spec.Template.Spec
			ag := container(t, spec, "agent")
			gpuDefaults := c.name != "no-gpu-selector-values"

			gpuToleration := slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
				return tl.Key == "nvidia.com/gpu" && tl.Operator == corev1.TolerationOpExists && tl.Effect == corev1.TaintEffectNoSchedule
			})
			if !gpuToleration {
				t.Errorf("no toleration of nvidia.com/gpu NoSchedule taints: %+v", spec.Tolerations)
			}
			if gpuDefaults {
				if got := spec.NodeSelector["nvidia.com/gpu.present"]; got != "true" {
					t.Errorf("nodeSelector %v, want nvidia.com/gpu.present=true", spec.NodeSelector)
				}
				if spec.RuntimeClassName == nil || *spec.RuntimeClassName != "nvidia" {
					t.Errorf("runtimeClassName %v, want nvidia", spec.RuntimeClassName)
				}
				if !spec.HostPID {
					t.Error("hostPID is off: GPU processes' cgroups are not visible")
				}
			} else {
				if len(spec.NodeSelector) != 0 {
					t.Errorf("nodeSelector %v, want none", spec.NodeSelector)
				}
				if spec.RuntimeClassName != nil {
					t.Errorf("runtimeClassName %q, want none", *spec.RuntimeClassName)
				}
				if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
					return tl.Key == "dedicated" && tl.Value == "gpu" && tl.Effect == corev1.TaintEffectNoExecute
				}) {
					t.Errorf("the custom toleration is missing: %+v", spec.Tolerations)
				}
			}
			if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("hostNetwork with dnsPolicy %q: the aggregator Service would not resolve", spec.DNSPolicy)
			}

			// Host sysfs and procfs, read-only, where --path.sysfs and --path.procfs point.
			for flag, host := range map[string]string{"--path.sysfs": "/sys", "--path.procfs": "/proc"} {
				in, ok := argValue(ag, flag)
				if !ok {
					t.Errorf("no %s argument", flag)
					continue
				}
				vm, vol := hostMountOf(t, spec, ag, in+"/x")
				if vm.MountPath != in || vol.HostPath == nil || vol.HostPath.Path != host {
					t.Errorf("%s=%s is not the host's %s (mount %+v, volume %+v)", flag, in, host, vm, vol.VolumeSource)
				}
				if !vm.ReadOnly {
					t.Errorf("host %s is mounted writable", host)
				}
			}
			if in, _ := argValue(ag, "--path.sysfs"); in != "/host/sys" {
				t.Errorf("--path.sysfs=%s, want /host/sys", in)
			}
			// The kubelet's pod-resources directory, read-only, at the same path.
			prDir := "/var/lib/kubelet/pod-resources"
			vm, vol := hostMountOf(t, spec, ag, prDir+"/kubelet.sock")
			if vm.MountPath != prDir || vol.HostPath == nil || vol.HostPath.Path != prDir || !vm.ReadOnly {
				t.Errorf("pod-resources: mount %+v of %+v, want %s read-only from the host", vm, vol.VolumeSource, prDir)
			}

			env := map[string]corev1.EnvVar{}
			for _, e := range ag.Env {
				env[e.Name] = e
			}
			if e := env["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME is %+v, want the downward API's spec.nodeName", e)
			}
			if env["NVIDIA_VISIBLE_DEVICES"].Value != "all" || env["NVIDIA_DRIVER_CAPABILITIES"].Value != "utility" {
				t.Errorf("NVIDIA env: %+v %+v", env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"])
			}

			if len(ag.Ports) != 1 || ag.Ports[0].Name != "metrics" || ag.Ports[0].ContainerPort != 9560 {
				t.Errorf("ports %+v, want metrics 9560", ag.Ports)
			}
			if listen, _ := argValue(ag, "--web.listen-address"); listen != ":9560" {
				t.Errorf("--web.listen-address=%s, want :9560", listen)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": ag.LivenessProbe, "readiness": ag.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "metrics" || p.HTTPGet.Path != "/healthz" {
					t.Errorf("%s probe %+v, want GET /healthz on port metrics", name, p)
				}
			}
			sc := ag.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("securityContext %+v: want a read-only root, no capabilities, no privilege escalation", sc)
			}
			if sc != nil && sc.Privileged != nil && *sc.Privileged {
				t.Error("the agent runs privileged")
			}
			if ag.Resources.Limits.Memory().IsZero() || ag.Resources.Requests.Cpu().IsZero() {
				t.Errorf("resources %+v: want a memory limit and a CPU request", ag.Resources)
			}
			if spec.ServiceAccountName != agentName {
				t.Errorf("serviceAccountName %s, want %s", spec.ServiceAccountName, agentName)
			}
			if ds.Spec.Template.Annotations["checksum/config"] == "" {
				t.Error("no checksum/config annotation: a config change would not restart the agents")
			}
			if !labelsMatch(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
				t.Errorf("selector %v does not select the pod template %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
			}
		})
	}
}

// agentConfig is the rendered agent configuration, as the agent reads it.
type agentConfig struct {
	Labels   map[string]string `json:"labels"`
	StateDir string            `json:"state_dir"`
	Sources  struct {
		Node struct {
			Options map[string]any `json:"options"`
		} `json:"node"`
	} `json:"sources"`
	Exporters struct {
		Prometheus struct {
			Enabled bool `json:"enabled"`
		} `json:"prometheus"`
		Stream *struct {
			URL       string `json:"url"`
			TokenFile string `json:"token_file"`
			SpoolDir  string `json:"spool_dir"`
		} `json:"stream"`
	} `json:"exporters"`
	Workloads *struct {
		Labels     map[string]string `json:"labels"`
		Kubernetes struct {
			PodResourcesSocket string `json:"pod_resources_socket"`
			APIServer          string `json:"api_server"`
		} `json:"kubernetes"`
	} `json:"workloads"`
}

func TestAgentConfig(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			ds := one[*appsv1.DaemonSet](t, m)
			spec := ds.Spec.Template.Spec
			ag := container(t, spec, "agent")
			raw := configFromArg(t, m, spec, ag)
			// Strict: a key the struct above lacks is a key the chart did not mean to write.
			var cfg agentConfig
			if err := yaml.UnmarshalStrict([]byte(raw), &cfg); err != nil {
				t.Fatalf("agent config: %v\n%s", err, raw)
			}
			if !cfg.Exporters.Prometheus.Enabled {
				t.Error("exporters.prometheus is off")
			}
			if c.name == "default-values" && (cfg.Labels["site"] != "dc1" || cfg.Labels["hall"] != "h1") {
				t.Errorf("labels %v: agent.config was not merged in", cfg.Labels)
			}
			if cfg.Sources.Node.Options["netdev.device-exclude"] == nil {
				t.Error("netdev does not leave pod interfaces out")
			}
			// Counters on the state volume, which is the hostPath or emptyDir asked for.
			_, vol := hostMountOf(t, spec, ag, cfg.StateDir+"/x")
			if vol.Name != "state" {
				t.Errorf("state_dir %s is on volume %s", cfg.StateDir, vol.Name)
			}
			if c.name == "existing-secret-values" {
				if vol.EmptyDir == nil {
					t.Errorf("state volume %+v, want emptyDir", vol.VolumeSource)
				}
			} else if vol.HostPath == nil {
				t.Errorf("state volume %+v, want hostPath", vol.VolumeSource)
			}

			if c.name == "no-gpu-selector-values" {
				if cfg.Workloads != nil || cfg.Exporters.Stream != nil {
					t.Errorf("workloads %+v and stream %+v, want neither", cfg.Workloads, cfg.Exporters.Stream)
				}
				return
			}
			w := cfg.Workloads
			if w == nil {
				t.Fatalf("no workloads section:\n%s", raw)
			}
			if w.Labels["team"] != "team" || w.Labels["model"] != "app.kubernetes.io/model" {
				t.Errorf("workloads.labels %v", w.Labels)
			}
			if w.Kubernetes.APIServer != "in-cluster" {
				t.Errorf("workloads.kubernetes.api_server %q, want in-cluster", w.Kubernetes.APIServer)
			}
			vm, vol := hostMountOf(t, spec, ag, w.Kubernetes.PodResourcesSocket)
			if vol.HostPath == nil || !vm.ReadOnly || vol.HostPath.Path+strings.TrimPrefix(w.Kubernetes.PodResourcesSocket, vm.MountPath) != "/var/lib/kubelet/pod-resources/kubelet.sock" {
				t.Errorf("pod_resources_socket %s is not the node's kubelet socket (mount %+v, volume %+v)", w.Kubernetes.PodResourcesSocket, vm, vol.VolumeSource)
			}

			s := cfg.Exporters.Stream
			if s == nil {
				t.Fatalf("no exporters.stream:\n%s", raw)
			}
			svc := aggregatorService(t, m)
			wantURL := fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", svc.Name, svc.Namespace, svc.Spec.Ports[0].Port)
			if s.URL != wantURL {
				t.Errorf("exporters.stream.url %s, want the aggregator Service %s", s.URL, wantURL)
			}
			if _, v := hostMountOf(t, spec, ag, s.SpoolDir+"/x"); v.Name != "state" {
				t.Errorf("stream spool %s is on volume %s, not state", s.SpoolDir, v.Name)
			}
			secret, key := secretItemFor(t, spec, ag, s.TokenFile)
			if key != "stream-token" {
				t.Errorf("token_file %s is the Secret's key %s, want stream-token", s.TokenFile, key)
			}
			checkSecretKey(t, m, c, secret, key)
		})
	}
}

func TestAgentRBAC(t *testing.T) {
	m := renderCase(t, valuesCase{name: "chart-defaults"})
	role := one[*rbacv1.ClusterRole](t, m)
	var pods bool
	for _, r := range role.Rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "pods") {
			pods = true
			for _, v := range []string{"get", "list", "watch"} {
				if !slices.Contains(r.Verbs, v) {
					t.Errorf("pods rule lacks %s: %v", v, r.Verbs)
				}
			}
			for _, v := range r.Verbs {
				if !slices.Contains([]string{"get", "list", "watch"}, v) {
					t.Errorf("pods rule grants %s: read only was meant", v)
				}
			}
		}
	}
	if !pods || len(role.Rules) != 1 {
		t.Errorf("rules %+v, want one: read pods", role.Rules)
	}
	bind := one[*rbacv1.ClusterRoleBinding](t, m)
	if bind.RoleRef.Kind != "ClusterRole" || bind.RoleRef.Name != role.Name {
		t.Errorf("roleRef %+v, want ClusterRole %s", bind.RoleRef, role.Name)
	}
	ds := one[*appsv1.DaemonSet](t, m)
	sa := ds.Spec.Template.Spec.ServiceAccountName
	if len(bind.Subjects) != 1 || bind.Subjects[0].Kind != "ServiceAccount" || bind.Subjects[0].Name != sa || bind.Subjects[0].Namespace != namespace {
		t.Errorf("subjects %+v, want ServiceAccount %s/%s", bind.Subjects, namespace, sa)
	}
	var found bool
	for _, s := range all[*corev1.ServiceAccount](m) {
		found = found || s.Name == sa
	}
	if !found {
		t.Errorf("ServiceAccount %s is not rendered", sa)
	}
	if ds.Spec.Template.Spec.AutomountServiceAccountToken == nil || !*ds.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("the agent gets no service account token to read pods with")
	}
}
