package helm

import (
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

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
