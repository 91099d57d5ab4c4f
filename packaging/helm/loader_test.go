package helm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// command is one of the repository's binaries, built at most once per run.
type command struct {
	name string
	cgo  bool
	once sync.Once
	path string
	err  error
}

var (
	aggregatorCommand = &command{name: "joules-aggregator"}
	// go-nvml is cgo.
	agentCommand = &command{name: "joules-agent", cgo: true}
	// binDir holds the built binaries; TestMain removes it.
	binDir string
)

// build builds ./cmd/NAME once, with the root module's own go.mod: the
// chart is checked against the binaries it ships.
func (c *command) build(t *testing.T) string {
	t.Helper()
	c.once.Do(func() {
		c.path = filepath.Join(binDir, c.name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// -mod=readonly: never let a GOFLAGS=-mod=mod rewrite the root go.mod.
		cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-o", c.path, "./cmd/"+c.name)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = os.Environ()
		if _, ok := os.LookupEnv("CGO_CFLAGS"); !ok {
			// As the Makefile: NVML's headers mark functions deprecated.
			cmd.Env = append(cmd.Env, "CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations")
		}
		if c.cgo {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			c.err = fmt.Errorf("go build ./cmd/%s: %v\n%s", c.name, err, out)
		}
	})
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.path
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "joules-helm-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// laySecretFiles writes the items of c's Secret volume at their paths
// under root, with the rendered Secret's data (a stand-in for an existing
// Secret), and returns where the volume is mounted; "" when c mounts none.
func laySecretFiles(t *testing.T, m *manifests, spec corev1.PodSpec, c corev1.Container, root string) string {
	t.Helper()
	secretsDir := ""
	for _, vm := range c.VolumeMounts {
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
	return secretsDir
}

// configCheck runs bin with args and returns the effective configuration
// it prints.
func configCheck(t *testing.T, bin string, args []string, cfg string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s\nconfig:\n%s", filepath.Base(bin), strings.Join(args, " "), err, out, stderr.String(), cfg)
	}
	return out
}

// TestAggregatorConfigPassesLoader runs the real aggregator's
// --config.check on each rendered configuration, with the Secret's files
// laid out as the pod would see them.
func TestAggregatorConfigPassesLoader(t *testing.T) {
	bin := aggregatorCommand.build(t)
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

			root := t.TempDir()
			secretsDir := laySecretFiles(t, m, spec, ag, root)
			if secretsDir == "" {
				t.Fatal("the aggregator mounts no Secret")
			}
			cfg := strings.ReplaceAll(raw, secretsDir+"/", root+"/")
			file := filepath.Join(root, "aggregator.yml")
			writeFile(t, file, cfg)

			out := configCheck(t, bin, []string{"--config.check", "--config.file", file}, cfg)
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

// agentValues is the agent's part of a values case merged over the
// chart's values.yaml, as Helm merges them (null removes a key).
func agentValues(t *testing.T, c valuesCase) map[string]any {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := util.CoalesceValues(chrt, readValues(t, c.file))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := vals["agent"].(map[string]any)
	return a
}

// dig walks nested maps of values.
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// effectiveAgent is the part of the agent's effective configuration the
// chart sets.
type effectiveAgent struct {
	Labels    map[string]string `json:"labels"`
	Workloads struct {
		Labels     map[string]string `json:"labels"`
		Kubernetes struct {
			PodResourcesSocket string `json:"pod_resources_socket"`
			APIServer          string `json:"api_server"`
		} `json:"kubernetes"`
	} `json:"workloads"`
	Exporters struct {
		Stream struct {
			URL       string `json:"url"`
			TokenFile string `json:"token_file"`
		} `json:"stream"`
	} `json:"exporters"`
}

// TestAgentConfigPassesLoader runs the real agent's --config.check on each
// rendered configuration with the container's own arguments, the Secret's
// files laid out as the pod would see them, and empty directories for the
// host's sysfs and procfs.
func TestAgentConfigPassesLoader(t *testing.T) {
	bin := agentCommand.build(t)
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := renderCase(t, c)
			ds := one[*appsv1.DaemonSet](t, m)
			spec := ds.Spec.Template.Spec
			ag := container(t, spec, "agent")
			raw := configFromArg(t, m, spec, ag)
			vals := agentValues(t, c)
			stream, _ := dig(vals, "stream", "enabled").(bool)

			root := t.TempDir()
			cfg := raw
			if secretsDir := laySecretFiles(t, m, spec, ag, root); secretsDir != "" {
				cfg = strings.ReplaceAll(raw, secretsDir+"/", root+"/")
			} else if stream {
				t.Fatal("the stream is on but the agent mounts no Secret")
			}
			file := filepath.Join(root, "agent.yml")
			writeFile(t, file, cfg)

			args := []string{"--config.check"}
			var sawConfig bool
			for _, a := range ag.Args {
				flag, _, _ := strings.Cut(a, "=")
				switch {
				case flag == "--config.file":
					args = append(args, "--config.file="+file)
					sawConfig = true
				case strings.HasPrefix(flag, "--path."):
					// Host paths mounted in the pod, absent here.
					args = append(args, flag+"="+t.TempDir())
				default:
					args = append(args, a)
				}
			}
			if !sawConfig {
				t.Fatal("the agent is given no --config.file")
			}
			out := configCheck(t, bin, args, cfg)
			var eff effectiveAgent
			if err := yaml.Unmarshal(out, &eff); err != nil {
				t.Fatalf("--config.check printed no YAML: %v\n%s", err, out)
			}

			wantTop, _ := dig(vals, "config", "labels").(map[string]any)
			for k, v := range wantTop {
				if eff.Labels[k] != v {
					t.Errorf("effective labels.%s %q, want %v", k, eff.Labels[k], v)
				}
			}
			w := eff.Workloads
			wantLabels, _ := dig(vals, "workloads", "labels").(map[string]any)
			if len(w.Labels) != len(wantLabels) {
				t.Errorf("effective workloads.labels %v, want %v", w.Labels, wantLabels)
			}
			for k, v := range wantLabels {
				if w.Labels[k] != v {
					t.Errorf("effective workloads.labels.%s %q, want %v", k, w.Labels[k], v)
				}
			}
			wantAPI, _ := dig(vals, "workloads", "kubernetes", "api_server").(string)
			wantSocket, _ := dig(vals, "workloads", "kubernetes", "pod_resources_socket").(string)
			if dig(vals, "workloads") != nil && wantAPI != "in-cluster" {
				t.Errorf("values give workloads.kubernetes.api_server %q; the chart's ServiceAccount is for in-cluster", wantAPI)
			}
			if w.Kubernetes.APIServer != wantAPI {
				t.Errorf("effective workloads.kubernetes.api_server %q, want %q", w.Kubernetes.APIServer, wantAPI)
			}
			if w.Kubernetes.PodResourcesSocket != wantSocket {
				t.Errorf("effective workloads.kubernetes.pod_resources_socket %q, want %q", w.Kubernetes.PodResourcesSocket, wantSocket)
			}

			s := eff.Exporters.Stream
			if (s.URL != "") != stream {
				t.Errorf("effective exporters.stream.url %q, with agent.stream.enabled %v", s.URL, stream)
			}
			if stream && !strings.HasPrefix(s.TokenFile, root+"/") {
				t.Errorf("effective exporters.stream.token_file %q, want the Secret's file", s.TokenFile)
			}
		})
	}
}
