package helm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

const (
	agentName      = releaseName + "-agent"
	aggregatorName = releaseName + "-aggregator"
	secretsName    = releaseName
)

func TestLint(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Namespace = namespace
			lint.KubeVersion = kubeVersionOf()
			res := lint.Run([]string{chartDir}, readValues(t, c.file))
			for _, err := range res.Errors {
				t.Errorf("lint error: %v", err)
			}
			for _, msg := range res.Messages {
				if msg.Severity >= support.WarningSev {
					t.Logf("lint: %s", msg)
				}
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

// TestRenderDecodesStrictly renders every values case and checks which
// objects come out; render decodes each one strictly into its API type.
func TestRenderDecodesStrictly(t *testing.T) {
	want := map[string][]string{
		"chart-defaults":         {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Secret", "Service", "ServiceAccount", "StatefulSet"},
		"default-values":         {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Secret", "Service", "ServiceAccount", "StatefulSet"},
		"existing-secret-values": {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service", "ServiceAccount", "StatefulSet"},
		"monitors-values":        {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "PodMonitor", "Secret", "Service", "ServiceAccount", "ServiceMonitor", "StatefulSet"},
		"no-gpu-selector-values": {"ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"},
	}
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			if w, ok := want[c.name]; !ok {
				t.Errorf("no expected kinds for values case %s; add them here", c.name)
			} else if got := kinds(t, m); !slices.Equal(got, w) {
				t.Errorf("kinds:\n got %v\nwant %v", got, w)
			}
			for _, o := range m.objs {
				meta, ok := o.(interface {
					GetName() string
					GetNamespace() string
					GetLabels() map[string]string
				})
				if !ok {
					t.Fatalf("%T has no object metadata", o)
				}
				l := meta.GetLabels()
				for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"} {
					if l[k] == "" {
						t.Errorf("%T %s has no label %s", o, meta.GetName(), k)
					}
				}
				_, clusterScoped := o.(*rbacv1.ClusterRole)
				if _, b := o.(*rbacv1.ClusterRoleBinding); b {
					clusterScoped = true
				}
				if !clusterScoped && meta.GetNamespace() != namespace {
					t.Errorf("%T %s in namespace %q, want %q", o, meta.GetName(), meta.GetNamespace(), namespace)
				}
			}
			if !strings.Contains(m.rel.Info.Notes, releaseName) {
				t.Errorf("NOTES.txt did not render: %q", m.rel.Info.Notes)
			}
		})
	}
}

// TestStrictDecodingRejectsMisplacedFields shows that the decoder the
// other tests rely on fails on a field in the wrong place, where the
// lenient one would drop it silently.
func TestStrictDecodingRejectsMisplacedFields(t *testing.T) {
	m := renderCase(t, valuesCase{name: "chart-defaults"})
	var doc string
	for src, d := range m.docs {
		if strings.Contains(src, "agent-daemonset.yaml") {
			doc = d
		}
	}
	if doc == "" {
		t.Fatal("no DaemonSet document")
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	spec := obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	// readOnly belongs to the volume mount, not to the hostPath volume.
	var moved bool
	for _, v := range spec["volumes"].([]any) {
		v := v.(map[string]any)
		if v["name"] == "sys" {
			v["hostPath"].(map[string]any)["readOnly"] = true
			moved = true
		}
	}
	if !moved {
		t.Fatal("no sys volume")
	}
	// hostPID belongs to the pod, not to a container.
	c0 := spec["containers"].([]any)[0].(map[string]any)
	c0["hostPID"] = true
	bad, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := serializer(false).Decode(bad, nil, nil); err != nil {
		t.Fatalf("the lenient decoder refused it too (%v): the test shows nothing", err)
	}
	_, err = decodeStrict(bad)
	if err == nil {
		t.Fatal("strict decoding accepted misplaced fields")
	}
	for _, field := range []string{`spec.template.spec.volumes[`, `.hostPath.readOnly`, `spec.template.spec.containers[0].hostPID`} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if _, err := decodeStrict([]byte(doc)); err != nil {
		t.Fatalf("the rendered DaemonSet itself fails: %v", err)
	}
}

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

// checkSecretKey checks that a Secret the pods mount exists with that key:
// rendered by the chart, or the existing one named in values.
func checkSecretKey(t *testing.T, m *manifests, c valuesCase, name, key string) {
	t.Helper()
	if c.name == "existing-secret-values" {
		if name != "joules-credentials" {
			t.Errorf("Secret %s mounted, want the existing joules-credentials", name)
		}
		return
	}
	s := secretByName(m, name)
	if s == nil {
		t.Fatalf("Secret %s is mounted but not rendered", name)
	}
	if len(s.Data[key]) == 0 && s.StringData[key] == "" {
		t.Errorf("Secret %s has no key %s", name, key)
	}
}

func aggregatorService(t *testing.T, m *manifests) *corev1.Service {
	t.Helper()
	for _, s := range all[*corev1.Service](m) {
		if s.Name == aggregatorName {
			return s
		}
	}
	t.Fatalf("no Service %s", aggregatorName)
	return nil
}

// aggregatorConfig is the part of the rendered aggregator configuration
// the chart wires to volumes.
type aggregatorConfig struct {
	TokensFile string `json:"tokens_file"`
	Influx     struct {
		URL            string `json:"url"`
		Bucket         string `json:"bucket"`
		TokenFile      string `json:"token_file"`
		SpoolDir       string `json:"spool_dir"`
		DeadLetterFile string `json:"dead_letter_file"`
	} `json:"influx"`
	Accounting struct {
		StateFile string `json:"state_file"`
	} `json:"accounting"`
}

func TestAggregatorStatefulSet(t *testing.T) {
	for _, c := range valuesCases(t) {
		if c.name == "no-gpu-selector-values" {
			continue // aggregator off
		}
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			sts := one[*appsv1.StatefulSet](t, m)
			spec := sts.Spec.Template.Spec
			ag := container(t, spec, "aggregator")
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
				t.Errorf("replicas %v, want 1", sts.Spec.Replicas)
			}

			if len(sts.Spec.VolumeClaimTemplates) != 1 {
				t.Fatalf("%d volumeClaimTemplates, want 1", len(sts.Spec.VolumeClaimTemplates))
			}
			pvc := sts.Spec.VolumeClaimTemplates[0]
			size, class := "20Gi", ""
			if c.name == "existing-secret-values" {
				size, class = "50Gi", "fast-ssd"
			}
			if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse(size)) != 0 {
				t.Errorf("claim of %s, want %s", got.String(), size)
			}
			if got := pvc.Spec.StorageClassName; (class == "") != (got == nil) || got != nil && *got != class {
				t.Errorf("storageClassName %v, want %q", got, class)
			}

			var raw aggregatorConfig
			if err := yaml.Unmarshal([]byte(configFromArg(t, m, spec, ag)), &raw); err != nil {
				t.Fatal(err)
			}
			// What must survive a restart is on the claim, not in the container.
			for what, path := range map[string]string{"influx.spool_dir": raw.Influx.SpoolDir + "/x", "influx.dead_letter_file": raw.Influx.DeadLetterFile, "accounting.state_file": raw.Accounting.StateFile} {
				vm, vol := mountOf(t, spec, ag, path)
				if vm.Name != pvc.Name || vol != nil {
					t.Errorf("%s (%s) is on %s, not on the claim %s", what, path, vm.Name, pvc.Name)
				}
				if vm.ReadOnly {
					t.Errorf("%s is on a read-only mount", what)
				}
			}
			for _, v := range spec.Volumes {
				if v.Name == pvc.Name {
					t.Errorf("the pod has its own volume %s, hiding the claim", v.Name)
				}
			}
			secret, key := secretItemFor(t, spec, ag, raw.TokensFile)
			if key != "tokens" {
				t.Errorf("tokens_file is the Secret's key %s, want tokens", key)
			}
			checkSecretKey(t, m, c, secret, key)
			wantInfluxToken := c.name == "default-values" || c.name == "existing-secret-values"
			if (raw.Influx.TokenFile != "") != wantInfluxToken {
				t.Errorf("influx.token_file %q, want one: %v", raw.Influx.TokenFile, wantInfluxToken)
			}
			if raw.Influx.TokenFile != "" {
				secret, key := secretItemFor(t, spec, ag, raw.Influx.TokenFile)
				if key != "influx-token" {
					t.Errorf("influx.token_file is the Secret's key %s, want influx-token", key)
				}
				checkSecretKey(t, m, c, secret, key)
			}

			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.FSGroup == nil {
				t.Errorf("pod securityContext %+v: want a non-root user with an fsGroup for the claim", psc)
			}
			if sc := ag.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("container securityContext %+v", ag.SecurityContext)
			}

			// The Service reaches the pods on the container's named port.
			svc := aggregatorService(t, m)
			if !labelsMatch(svc.Spec.Selector, sts.Spec.Template.Labels) {
				t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, sts.Spec.Template.Labels)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9561 || svc.Spec.Ports[0].TargetPort.String() != "http" {
				t.Errorf("Service ports %+v, want 9561 to http", svc.Spec.Ports)
			}
			if len(ag.Ports) != 1 || ag.Ports[0].Name != "http" || ag.Ports[0].ContainerPort != 9561 {
				t.Errorf("container ports %+v", ag.Ports)
			}
			if listen, _ := argValue(ag, "--web.listen-address"); listen != ":9561" {
				t.Errorf("--web.listen-address=%s", listen)
			}
			var headless *corev1.Service
			for _, s := range all[*corev1.Service](m) {
				if s.Name == sts.Spec.ServiceName {
					headless = s
				}
			}
			if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("serviceName %s is not a rendered headless Service", sts.Spec.ServiceName)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": ag.LivenessProbe, "readiness": ag.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "http" || p.HTTPGet.Path != "/health" {
					t.Errorf("%s probe %+v, want GET /health on port http", name, p)
				}
			}
		})
	}
}

// secretValues are the secrets a values case gives, which must appear in
// the rendered Secret and nowhere else.
func secretValues(t *testing.T, c valuesCase, m *manifests) []string {
	t.Helper()
	vals := readValues(t, c.file)
	s, _ := vals["secrets"].(map[string]any)
	var out []string
	for _, k := range []string{"streamToken", "influxToken"} {
		if v, _ := s[k].(string); v != "" {
			out = append(out, v)
		}
	}
	if extra, ok := s["extraTokens"].([]any); ok {
		for _, v := range extra {
			out = append(out, v.(string))
		}
	}
	if len(out) == 0 {
		// A generated token: take it from the Secret.
		if sec := secretByName(m, secretsName); sec != nil {
			out = append(out, string(sec.Data["stream-token"]))
		}
	}
	return out
}

func TestSecretsStayInSecrets(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			values := secretValues(t, c, m)
			sec := secretByName(m, secretsName)
			if c.name == "existing-secret-values" {
				if sec != nil || len(all[*corev1.Secret](m)) != 0 {
					t.Error("the chart created a Secret beside the existing one")
				}
				for _, spec := range podSpecs(m) {
					for _, v := range spec.Volumes {
						if v.Secret != nil && v.Secret.SecretName != "joules-credentials" {
							t.Errorf("volume %s mounts Secret %s, not the existing one", v.Name, v.Secret.SecretName)
						}
					}
				}
			}
			if sec != nil {
				var all strings.Builder
				for _, v := range sec.Data {
					all.Write(v)
					all.WriteByte('\n')
				}
				for _, v := range values {
					if !strings.Contains(all.String(), v) {
						t.Errorf("secret value %q is not in the Secret", v)
					}
				}
			} else if c.name != "existing-secret-values" && c.name != "no-gpu-selector-values" {
				t.Fatal("no Secret rendered")
			}
			if len(values) == 0 && sec != nil {
				t.Fatal("no secret value to look for")
			}
			for src, doc := range m.docs {
				if strings.Contains(src, "secret.yaml") {
					continue
				}
				for _, v := range values {
					if strings.Contains(doc, v) {
						t.Errorf("%s holds the secret value %q", src, v)
					}
				}
			}
			for _, cm := range all[*corev1.ConfigMap](m) {
				for k, d := range cm.Data {
					for _, v := range values {
						if strings.Contains(d, v) {
							t.Errorf("ConfigMap %s key %s holds the secret value %q", cm.Name, k, v)
						}
					}
				}
			}
			for _, spec := range podSpecs(m) {
				for _, ctr := range spec.Containers {
					for _, e := range ctr.Env {
						if e.Value != "" && slices.Contains(values, e.Value) {
							t.Errorf("container %s has a secret in env %s", ctr.Name, e.Name)
						}
					}
				}
			}
		})
	}
}

// TestStreamTokenIsAccepted: the token the agents send is a line of the
// aggregator's tokens file, as are the extra writers' tokens.
func TestStreamTokenIsAccepted(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			sec := secretByName(m, secretsName)
			if sec == nil {
				return // existing Secret, or nothing uses one
			}
			stream := string(sec.Data["stream-token"])
			if len(stream) < 20 {
				t.Errorf("stream-token %q is too short", stream)
			}
			lines := strings.Split(strings.TrimRight(string(sec.Data["tokens"]), "\n"), "\n")
			if !slices.Contains(lines, stream) {
				t.Errorf("tokens %q do not include the agents' stream-token", lines)
			}
			if c.name == "default-values" && !slices.Contains(lines, "ci-telegraf-token-9a7e31") {
				t.Errorf("tokens %q lack the extra token", lines)
			}
		})
	}
}

func podSpecs(m *manifests) []corev1.PodSpec {
	var out []corev1.PodSpec
	for _, d := range all[*appsv1.DaemonSet](m) {
		out = append(out, d.Spec.Template.Spec)
	}
	for _, s := range all[*appsv1.StatefulSet](m) {
		out = append(out, s.Spec.Template.Spec)
	}
	return out
}

func TestMonitors(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			sms := all[*monitoringv1.ServiceMonitor](m)
			pms := all[*monitoringv1.PodMonitor](m)
			if c.name != "monitors-values" {
				if len(sms)+len(pms) != 0 {
					t.Errorf("%d ServiceMonitors and %d PodMonitors rendered while disabled", len(sms), len(pms))
				}
				return
			}
			if len(sms) != 1 || len(pms) != 1 {
				t.Fatalf("%d ServiceMonitors and %d PodMonitors, want one each", len(sms), len(pms))
			}
			sm, pm := sms[0], pms[0]

			// The ServiceMonitor selects exactly the aggregator Service, by a port it has.
			var selected []*corev1.Service
			for _, s := range all[*corev1.Service](m) {
				if labelsMatch(sm.Spec.Selector.MatchLabels, s.Labels) {
					selected = append(selected, s)
				}
			}
			if len(selected) != 1 || selected[0].Name != aggregatorName {
				t.Fatalf("ServiceMonitor selects %d Services, want only %s", len(selected), aggregatorName)
			}
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("%d endpoints", len(sm.Spec.Endpoints))
			}
			ep := sm.Spec.Endpoints[0]
			if !slices.ContainsFunc(selected[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor port %q is not a port of %s", ep.Port, aggregatorName)
			}
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor path %q", ep.Path)
			}
			if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, namespace) || sm.Labels["release"] != "prometheus" {
				t.Errorf("ServiceMonitor namespaces %v labels %v", sm.Spec.NamespaceSelector.MatchNames, sm.Labels)
			}

			// The PodMonitor selects the agents' pods by their container's port name.
			ds := one[*appsv1.DaemonSet](t, m)
			if !labelsMatch(pm.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
				t.Errorf("PodMonitor selector %v does not match the agents' pods %v", pm.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
			}
			sts := one[*appsv1.StatefulSet](t, m)
			if labelsMatch(pm.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
				t.Error("PodMonitor also selects the aggregator's pods")
			}
			if len(pm.Spec.PodMetricsEndpoints) != 1 {
				t.Fatalf("%d pod endpoints", len(pm.Spec.PodMetricsEndpoints))
			}
			pe := pm.Spec.PodMetricsEndpoints[0]
			ag := container(t, ds.Spec.Template.Spec, "agent")
			if pe.Port == nil || !slices.ContainsFunc(ag.Ports, func(p corev1.ContainerPort) bool { return p.Name == *pe.Port }) {
				t.Errorf("PodMonitor port %v is not a port of the agent container %+v", pe.Port, ag.Ports)
			}
			if pe.Port != nil && *pe.Port != "metrics" {
				t.Errorf("PodMonitor port %q, want metrics", *pe.Port)
			}
			if !pe.HonorLabels {
				t.Error("PodMonitor does not honour the agent's labels")
			}
			if pe.Interval != "10s" {
				t.Errorf("PodMonitor interval %q, want 10s", pe.Interval)
			}
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

// TestTemplateGuards: values that would lose data or attribution fail the
// render with a message, rather than install something broken.
func TestTemplateGuards(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals string
		want string // "" : renders
	}{
		{"two aggregators without a tier", "aggregator: {replicas: 2}", "aggregator.config.cluster"},
		{"a tier of two", "aggregator: {replicas: 2, config: {cluster: {urls: [nats://nats:4222]}}}", ""},
		{"spool off the volume", "aggregator: {config: {influx: {spool_dir: /tmp/spool}}}", "persistent volume"},
		{"state off the volume", "aggregator: {config: {accounting: {state_file: /tmp/acct.state}}}", "accounting.state_file"},
		{"socket off the mount", "agent: {workloads: {kubernetes: {pod_resources_socket: /run/kubelet.sock}}}", "agent.podResourcesDir"},
		{"stream with no aggregator", "aggregator: {enabled: false}", "agent.stream.url is required"},
		{"stream elsewhere", "aggregator: {enabled: false}\nagent: {stream: {url: 'https://agg.example:9561'}}", ""},
		{"bad state type", "agent: {state: {type: pvc}}", "hostPath or emptyDir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tc.vals), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := renderChart(vals)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("render failed: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("rendered; want a failure naming %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if tc.want == "" {
				render(t, vals) // and decodes strictly
			}
		})
	}
}

var (
	aggregatorOnce sync.Once
	aggregatorBin  string
	aggregatorErr  error
)

// buildAggregator builds the repository's joules-aggregator once, with the
// root module's own go.mod: the chart is checked against the binary it ships.
func buildAggregator(t *testing.T) string {
	t.Helper()
	aggregatorOnce.Do(func() {
		dir, err := os.MkdirTemp("", "joules-helm-test")
		if err != nil {
			aggregatorErr = err
			return
		}
		aggregatorBin = filepath.Join(dir, "joules-aggregator")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// -mod=readonly: never let a GOFLAGS=-mod=mod rewrite the root go.mod.
		cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-o", aggregatorBin, "./cmd/joules-aggregator")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			aggregatorErr = fmt.Errorf("go build ./cmd/joules-aggregator: %v\n%s", err, out)
		}
	})
	if aggregatorErr != nil {
		t.Fatal(aggregatorErr)
	}
	return aggregatorBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if aggregatorBin != "" {
		os.RemoveAll(filepath.Dir(aggregatorBin))
	}
	os.Exit(code)
}

// TestAggregatorConfigPassesLoader runs the real aggregator's
// --config.check on each rendered configuration, with the Secret's files
// laid out as the pod would see them.
func TestAggregatorConfigPassesLoader(t *testing.T) {
	bin := buildAggregator(t)
	for _, c := range valuesCases(t) {
		if c.name == "no-gpu-selector-values" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			sts := one[*appsv1.StatefulSet](t, m)
			spec := sts.Spec.Template.Spec
			ag := container(t, spec, "aggregator")
			raw := configFromArg(t, m, spec, ag)

			// The Secret volume's items, at their paths under a temporary root.
			root := t.TempDir()
			secretsDir := ""
			for _, vm := range ag.VolumeMounts {
				for _, v := range spec.Volumes {
					if v.Name != vm.Name || v.Secret == nil {
						continue
					}
					secretsDir = vm.MountPath
					sec := secretByName(m, v.Secret.SecretName)
					for _, it := range v.Secret.Items {
						data := "token-for-the-check\n"
						if sec != nil {
							data = string(sec.Data[it.Key])
						}
						writeFile(t, filepath.Join(root, it.Path), data)
					}
				}
			}
			if secretsDir == "" {
				t.Fatal("the aggregator mounts no Secret")
			}
			cfg := strings.ReplaceAll(raw, secretsDir+"/", root+"/")
			file := filepath.Join(root, "aggregator.yml")
			writeFile(t, file, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stderr strings.Builder
			cmd := exec.CommandContext(ctx, bin, "--config.check", "--config.file", file)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("joules-aggregator --config.check: %v\n%s%s\nconfig:\n%s", err, out, stderr.String(), cfg)
			}
			// The effective configuration it prints keeps the chart's paths.
			var eff map[string]any
			if err := yaml.Unmarshal(out, &eff); err != nil {
				t.Fatalf("--config.check printed no YAML: %v\n%s", err, out)
			}
			influx, _ := eff["influx"].(map[string]any)
			if influx["spool_dir"] != "/var/lib/joules/aggregator/spool" {
				t.Errorf("effective influx.spool_dir %v", influx["spool_dir"])
			}
			if tf, _ := eff["tokens_file"].(string); !strings.HasPrefix(tf, root+"/") {
				t.Errorf("effective tokens_file %q, want the Secret's file", tf)
			}
		})
	}
}
