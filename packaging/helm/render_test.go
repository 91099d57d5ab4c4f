package helm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

const (
	chartDir    = "joules"
	releaseName = "joules"
	namespace   = "joules"

	agentName      = releaseName + "-agent"
	aggregatorName = releaseName + "-aggregator"
	secretsName    = releaseName
	// The oldest Kubernetes Chart.yaml admits; in test binaries Helm would
	// otherwise assume v1.20.
	kubeVersion = "v1.25.0"
)

func kubeVersionOf() *common.KubeVersion {
	v, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		panic(err)
	}
	return v
}

// scheme knows exactly the kinds the chart may render: anything else fails
// to decode.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(rbacv1.AddToScheme(scheme))
	utilruntime.Must(monitoringv1.AddToScheme(scheme))
}

func serializer(strict bool) *kjson.Serializer {
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: strict})
}

// decodeStrict decodes one manifest into its API type; an unknown,
// misplaced or duplicated field is an error.
func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := serializer(true).Decode(doc, nil, nil)
	return obj, err
}

// valuesCase is one set of values the chart is rendered with: the chart's
// defaults ("") or a file under ci/.
type valuesCase struct {
	name string
	file string
}

func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no values files in ci/")
	}
	sort.Strings(files)
	cases := []valuesCase{{name: "chart-defaults"}}
	for _, f := range files {
		cases = append(cases, valuesCase{name: strings.TrimSuffix(filepath.Base(f), ".yaml"), file: f})
	}
	return cases
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := common.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v.AsMap()
}

// renderChart is `helm template`: the install action, client side only.
func renderChart(vals map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.Replace = true
	install.KubeVersion = kubeVersionOf()
	rel, err := install.RunWithContext(context.Background(), chrt, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("release of type %T", rel)
	}
	return r, nil
}

// manifests is one rendering, every document decoded into its type.
type manifests struct {
	rel  *release.Release
	docs map[string]string // source template → document
	objs []runtime.Object
}

func render(t *testing.T, vals map[string]any) *manifests {
	t.Helper()
	rel, err := renderChart(vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if len(rel.Hooks) > 0 {
		t.Errorf("the chart has %d hooks; none expected", len(rel.Hooks))
	}
	m := &manifests{rel: rel, docs: map[string]string{}}
	split := releaseutil.SplitManifests(rel.Manifest)
	keys := make([]string, 0, len(split))
	for k := range split {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		doc := split[k]
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, err := decodeStrict([]byte(doc))
		if err != nil {
			t.Fatalf("%s: strict decoding: %v\n%s", sourceOf(doc), err, doc)
		}
		m.docs[sourceOf(doc)+"#"+k] = doc
		m.objs = append(m.objs, obj)
	}
	return m
}

func renderCase(t *testing.T, c valuesCase) *manifests {
	t.Helper()
	return render(t, readValues(t, c.file))
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func sourceOf(doc string) string {
	for line := range strings.SplitSeq(doc, "\n") {
		if s, ok := strings.CutPrefix(line, "# Source: "); ok {
			return s
		}
	}
	return "?"
}

// all returns the rendered objects of type T.
func all[T runtime.Object](m *manifests) []T {
	var out []T
	for _, o := range m.objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the single rendered object of type T.
func one[T runtime.Object](t *testing.T, m *manifests) T {
	t.Helper()
	objs := all[T](m)
	if len(objs) != 1 {
		var zero T
		t.Fatalf("want one %T, got %d", zero, len(objs))
	}
	return objs[0]
}

func configMapByName(t *testing.T, m *manifests, name string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range all[*corev1.ConfigMap](m) {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

func secretByName(m *manifests, name string) *corev1.Secret {
	for _, s := range all[*corev1.Secret](m) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// mountOf finds the volume mount of c under which path lies, and the pod's
// volume of that name (nil for a StatefulSet's claim).
func mountOf(t *testing.T, spec corev1.PodSpec, c corev1.Container, path string) (corev1.VolumeMount, *corev1.Volume) {
	t.Helper()
	var best corev1.VolumeMount
	for _, vm := range c.VolumeMounts {
		if under(path, vm.MountPath) && len(vm.MountPath) > len(best.MountPath) {
			best = vm
		}
	}
	if best.Name == "" {
		t.Fatalf("container %s mounts nothing over %s", c.Name, path)
	}
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == best.Name {
			return best, &spec.Volumes[i]
		}
	}
	return best, nil
}

// hostMountOf is mountOf for a volume the pod must have.
func hostMountOf(t *testing.T, spec corev1.PodSpec, c corev1.Container, path string) (corev1.VolumeMount, corev1.Volume) {
	t.Helper()
	vm, vol := mountOf(t, spec, c, path)
	if vol == nil {
		t.Fatalf("container %s mounts volume %s over %s, which the pod does not have", c.Name, vm.Name, path)
	}
	return vm, *vol
}

func under(path, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return strings.HasPrefix(path, dir+"/")
}

// secretItemFor checks that path is a key of a Secret volume and returns
// the Secret's name and the key.
func secretItemFor(t *testing.T, spec corev1.PodSpec, c corev1.Container, path string) (secretName, key string) {
	t.Helper()
	vm, vol := hostMountOf(t, spec, c, path)
	if vol.Secret == nil {
		t.Fatalf("%s is on volume %s, which is not a Secret", path, vol.Name)
	}
	if !vm.ReadOnly {
		t.Errorf("the Secret volume %s is mounted writable", vol.Name)
	}
	rel := strings.TrimPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
	if len(vol.Secret.Items) == 0 {
		return vol.Secret.SecretName, rel
	}
	for _, it := range vol.Secret.Items {
		if it.Path == rel {
			return vol.Secret.SecretName, it.Key
		}
	}
	t.Fatalf("%s: the Secret volume %s has no item with path %s", path, vol.Name, rel)
	return "", ""
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

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func argValue(c corev1.Container, flag string) (string, bool) {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// configFromArg returns the file --config.file names, read from the
// ConfigMap volume it is mounted from.
func configFromArg(t *testing.T, m *manifests, spec corev1.PodSpec, c corev1.Container) string {
	t.Helper()
	path, ok := argValue(c, "--config.file")
	if !ok {
		t.Fatalf("container %s has no --config.file", c.Name)
	}
	vm, vol := hostMountOf(t, spec, c, path)
	if vol.ConfigMap == nil {
		t.Fatalf("--config.file %s is on volume %s, not a ConfigMap", path, vol.Name)
	}
	cm := configMapByName(t, m, vol.ConfigMap.Name)
	key := strings.TrimPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s for --config.file %s", cm.Name, key, path)
	}
	return data
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// kinds lists the kinds rendered, each once, sorted.
func kinds(t *testing.T, m *manifests) []string {
	t.Helper()
	var out []string
	for _, o := range m.objs {
		gvks, _, err := scheme.ObjectKinds(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gvks[0].Kind)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
