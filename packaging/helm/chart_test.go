package helm

import (
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
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
