package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/joules-energy/joules/internal/testenv"
)

// podKubelet serves pod-resources v1 List. Until the test knows the
// simulated GPUs' UUIDs it lists no pods, as a kubelet with nothing
// scheduled does; Get and GetAllocatableResources answer Unimplemented.
type podKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	mu    sync.Mutex
	pods  []*podresourcesv1.PodResources
	calls int
}

func (k *podKubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	return &podresourcesv1.ListPodResourcesResponse{PodResources: k.pods}, nil
}

func (k *podKubelet) allocate(pods ...*podresourcesv1.PodResources) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pods = pods
}

func (k *podKubelet) listed() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// serveKubelet serves k on a unix socket in a temporary directory until the
// test ends.
func serveKubelet(t *testing.T, k *podKubelet) string {
	socket, _ := testenv.ServeKubelet(t, k)
	return socket
}

// gpuPod is a pod-resources entry: one container holding these nvidia.com/gpu
// device ids.
func gpuPod(ns, name string, deviceIDs ...string) *podresourcesv1.PodResources {
	return &podresourcesv1.PodResources{Namespace: ns, Name: name, Containers: []*podresourcesv1.ContainerResources{{
		Name:    "main",
		Devices: []*podresourcesv1.ContainerDevices{{ResourceName: "nvidia.com/gpu", DeviceIds: deviceIDs}},
	}}}
}

// apiPod is a running pod on node n1 with one container per CPU request
// ("" for none).
func apiPod(ns, name, uid string, labels map[string]string, owner metav1.OwnerReference, cpus ...string) corev1.Pod {
	yes := true
	owner.Controller = &yes
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for i, c := range cpus {
		ctr := corev1.Container{Name: fmt.Sprintf("c%d", i)}
		if c != "" {
			ctr.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(c)}
		}
		p.Spec.Containers = append(p.Spec.Containers, ctr)
	}
	return p
}

// sample is one exposition line.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	expositionLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair      = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// samplesOf parses the samples of one metric out of an exposition.
func samplesOf(t *testing.T, body, name string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(body, "\n") {
		m := expositionLine.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		s := sample{name: name, labels: map[string]string{}, value: v}
		for _, kv := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[kv[1]] = kv[2]
		}
		out = append(out, s)
	}
	return out
}

func (a *agent) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// workloadTags are the labels a pod's share and CPU series carry besides
// the GPU's and the host's.
var workloadTags = []string{"workload_kind", "workload", "namespace", "owner_kind", "owner", "label_team"}

func tagsOf(s sample) map[string]string {
	out := map[string]string{}
	for _, k := range workloadTags {
		if v, ok := s.labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

// key names a series by its GPU ("" for none) and workload tags, to
// compare what the agent shows with what the test expects.
func key(gpu string, tags map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gpu=%q", gpu)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		fmt.Fprintf(&b, ",%s=%q", k, tags[k])
	}
	return b.String()
}

func pod(name, ownerKind, owner, team string) map[string]string {
	return map[string]string{"workload_kind": "k8s_pod", "workload": "ml/" + name, "namespace": "ml", "owner_kind": ownerKind, "owner": owner, "label_team": team}
}

// TestAgentNamesPodsFromTheKubelet runs the agent on simulated GPUs with a
// fake kubelet that allocates GPU 0 to one pod and time-slices GPU 1 between
// two, and a fake API server that says what those pods are: the GPUs, whose
// processes the agent cannot see, are shared among the allocated pods with
// their namespace, controller and team label, and the pods' CPU requests
// are reported.
func TestAgentNamesPodsFromTheKubelet(t *testing.T) {
	kubelet := &podKubelet{}
	socket := serveKubelet(t, kubelet)

	var (
		apiMu     sync.Mutex
		badQuery  []string
		apiCalled int
	)
	rs := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "serve-7c9d8f6b5", UID: "rs-uid"}
	sts := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "train", UID: "sts-uid"}
	pods := corev1.PodList{Items: []corev1.Pod{
		apiPod("ml", "train-0", "0e1d2c3b-0000-4000-8000-000000000001", map[string]string{"team": "vision", "apps.kubernetes.io/pod-index": "0"}, sts, "3", "1"),
		apiPod("ml", "a", "0e1d2c3b-0000-4000-8000-00000000000a", map[string]string{"team": "search", "pod-template-hash": "7c9d8f6b5"}, rs, "1500m"),
		apiPod("ml", "b", "0e1d2c3b-0000-4000-8000-00000000000b", map[string]string{"team": "search", "pod-template-hash": "7c9d8f6b5"}, rs, ""),
		// On the node but on no GPU: neither shares nor CPUs of its own.
		apiPod("ml", "idle", "0e1d2c3b-0000-4000-8000-0000000000ff", map[string]string{"team": "vision"}, sts, "8"),
	}}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiMu.Lock()
		apiCalled++
		ok := r.Method == http.MethodGet && r.URL.Path == "/api/v1/pods" && r.URL.Query().Get("fieldSelector") == "spec.nodeName=n1"
		if !ok {
			badQuery = append(badQuery, r.Method+" "+r.URL.String())
		}
		apiMu.Unlock()
		if !ok {
			http.Error(w, "not this node's pods", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pods)
	}))
	t.Cleanup(api.Close)

	cfg := writeFile(t, "agent.yml", fmt.Sprintf(`sources: {nvml: {simulate: dgxh200, interval: 1s}, node: {enabled: false}}
workloads:
  labels: {team: team}
  kubernetes: {pod_resources_socket: %s, api_server: %s, node_name: n1}
  refresh: 1s
`, socket, api.URL))
	a := startAgent(t, "--config.file="+cfg)
	var body string // the last scrape, shown when the test fails
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last scrape:\n%s\nagent logs:\n%s", body, a.logs)
		}
	})

	// The UUIDs as the agent reports them, which the kubelet then allocates.
	uuids := map[string]string{}
	testenv.WaitFor(t, 20*time.Second, "the power of simulated GPUs 0 and 1 with their UUIDs", func() bool {
		body = a.scrape(t)
		for _, s := range samplesOf(t, body, "joules_gpu_power_watts") {
			if g := s.labels["gpu"]; (g == "0" || g == "1") && s.labels["uuid"] != "" {
				uuids[g] = s.labels["uuid"]
			}
		}
		return len(uuids) == 2
	})
	if uuids["0"] == uuids["1"] {
		t.Fatalf("GPUs 0 and 1 have the same UUID %s", uuids["0"])
	}
	kubelet.allocate(
		gpuPod("ml", "train-0", uuids["0"]),
		// Time-sliced: the device plugin gives each replica an id of its own.
		gpuPod("ml", "a", uuids["1"]+"::0"),
		gpuPod("ml", "b", uuids["1"]+"::1"),
	)

	want := map[string]float64{}
	want[key("0", pod("train-0", "StatefulSet", "train", "vision"))] = 1
	want[key("1", pod("a", "Deployment", "serve", "search"))] = 0.5
	want[key("1", pod("b", "Deployment", "serve", "search"))] = 0.5

	got := map[string]float64{}
	testenv.WaitFor(t, 20*time.Second, "the shares of the kubelet's pods", func() bool {
		body = a.scrape(t)
		clear(got)
		for _, s := range samplesOf(t, body, "joules_gpu_workload_share_ratio") {
			got[key(s.labels["gpu"], tagsOf(s))] = s.value
		}
		return maps.Equal(got, want)
	})
	for _, s := range samplesOf(t, body, "joules_gpu_workload_share_ratio") {
		if s.labels["uuid"] != uuids[s.labels["gpu"]] {
			t.Errorf("share of %s on GPU %s has uuid %q, want %q", s.labels["workload"], s.labels["gpu"], s.labels["uuid"], uuids[s.labels["gpu"]])
		}
	}

	// The resolver's CPUs are collected every 10s (main.go), so the first
	// collection after the pods were seen on a GPU can be that far off.
	wantCPUs := map[string]float64{
		key("", pod("train-0", "StatefulSet", "train", "vision")): 4,
		key("", pod("a", "Deployment", "serve", "search")):        1.5,
	}
	gotCPUs := map[string]float64{}
	testenv.WaitFor(t, 30*time.Second, "the requested CPUs of the pods on GPUs", func() bool {
		body = a.scrape(t)
		clear(gotCPUs)
		for _, s := range samplesOf(t, body, "joules_workload_requested_cpus") {
			gotCPUs[key("", tagsOf(s))] = s.value
		}
		return maps.Equal(gotCPUs, wantCPUs)
	})
	for _, s := range samplesOf(t, body, "joules_workload_requested_cpus") {
		if g, ok := s.labels["gpu"]; ok {
			t.Errorf("requested CPUs of %s carry gpu=%q: they are the pod's, not a GPU's", s.labels["workload"], g)
		}
	}

	if kubelet.listed() == 0 {
		t.Error("the agent never listed the kubelet's pod resources")
	}
	apiMu.Lock()
	defer apiMu.Unlock()
	if apiCalled == 0 || len(badQuery) > 0 {
		t.Errorf("API server: %d requests; not for this node's pods: %v", apiCalled, slices.Compact(badQuery))
	}
}
