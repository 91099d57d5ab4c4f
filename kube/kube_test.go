package kube

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// names lists pods as namespace/name.
func names(pods []Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

func snapshot(t *testing.T, c *Client) *Snapshot {
	t.Helper()
	s, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trainAndInfer is the kubelet's view in most tests: one pod with two GPUs,
// one with a MIG device and four exclusive CPUs.
func trainAndInfer() []*podresourcesv1.PodResources {
	return []*podresourcesv1.PodResources{
		prPodOf("ml", "train-0", nil, devs("nvidia.com/gpu", "GPU-aaaa", "GPU-bbbb")),
		prPodOf("serve", "infer-x", []int64{4, 5, 6, 7}, devs("nvidia.com/mig-1g.10gb", "MIG-cccc")),
	}
}

func TestPodResourcesMapsDevicesToPods(t *testing.T) {
	k := startKubelet(t, trainAndInfer()...)
	c, _ := newClient(t, Config{PodResourcesSocket: k.socket})
	s := snapshot(t, c)
	for _, id := range []string{"GPU-aaaa", "GPU-bbbb"} {
		got := s.ByDevice(id)
		if !reflect.DeepEqual(names(got), []string{"ml/train-0"}) {
			t.Errorf("ByDevice(%s) = %v, want ml/train-0", id, names(got))
		}
		if len(got) == 1 && (got[0].UID != "" || got[0].Owner != "" || got[0].Labels != nil || got[0].CPUs != 0) {
			t.Errorf("ByDevice(%s) = %+v: pod-resources alone gives no UID, owner, labels or CPUs for a pod without exclusive CPUs", id, got[0])
		}
	}
	got := s.ByDevice("MIG-cccc")
	if !reflect.DeepEqual(names(got), []string{"serve/infer-x"}) || got[0].CPUs != 4 {
		t.Errorf("ByDevice(MIG-cccc) = %+v, want serve/infer-x with 4 CPUs", got)
	}
	if got := s.ByDevice("GPU-unknown"); len(got) != 0 {
		t.Errorf("an unknown device gave %v", names(got))
	}
	if _, ok := s.ByUID(""); ok {
		t.Error("ByUID found a pod without a UID")
	}
}

func TestTimeSlicedGPUListsEverySharingPod(t *testing.T) {
	k := startKubelet(t,
		prPodOf("b", "second", nil, devs("nvidia.com/gpu", "GPU-shared::1")),
		prPodOf("a", "first", nil, devs("nvidia.com/gpu.shared", "GPU-shared::0", "GPU-shared::3")),
		prPodOf("a", "nic", nil, devs("nvidia.com/hostdev", "0000:3b:00.1"), devs("example.com/fpga", "GPU-notagpu")),
	)
	c, _ := newClient(t, Config{PodResourcesSocket: k.socket})
	s := snapshot(t, c)
	if got := names(s.ByDevice("GPU-shared")); !reflect.DeepEqual(got, []string{"a/first", "b/second"}) {
		t.Errorf("ByDevice(GPU-shared) = %v, want each sharing pod once, sorted", got)
	}
	if got := s.ByDevice("GPU-notagpu"); len(got) != 0 {
		t.Errorf("a device of a resource other than nvidia.com/gpu or mig-* was mapped: %v", names(got))
	}
	if _, devices := s.Len(); devices != 1 {
		t.Errorf("%d devices known, want only GPU-shared", devices)
	}
}

func TestAPIServerNamesPodsAndOwners(t *testing.T) {
	cronMinutes := strconv.FormatInt(testStart.Add(-time.Hour).Unix()/60, 10)
	a := startAPI(t,
		apiPodOf("web", "web-7d9f8b6c5-x2k4p", "uid-web", ownedBy("ReplicaSet", "web-7d9f8b6c5"),
			labelled("app", "web", "pod-template-hash", "7d9f8b6c5"), requesting("500m", "2")),
		apiPodOf("web", "legacy-abcde", "uid-rs", ownedBy("ReplicaSet", "legacy"), requesting("1")),
		apiPodOf("db", "pg-0", "uid-pg", ownedBy("StatefulSet", "pg"), requesting("250m")),
		apiPodOf("kube-system", "dcgm-q8z", "uid-ds", ownedBy("DaemonSet", "dcgm")),
		apiPodOf("ml", "finetune-7xk2p", "uid-job", ownedBy("Job", "finetune"), requesting("4", "")),
		apiPodOf("ml", "step-2-abcde", "uid-step", ownedBy("Job", "step-2")),
		apiPodOf("ml", "nightly-"+cronMinutes+"-abcde", "uid-cron", ownedBy("Job", "nightly-"+cronMinutes)),
		apiPodOf("ml", "bench-12345678901-x", "uid-notcron", ownedBy("Job", "bench-99999999")),
		apiPodOf("default", "debug", "uid-bare", labelled("run", "debug")),
	)
	c, _ := newClient(t, a.config())
	s := snapshot(t, c)
	sel, rv := a.saw()
	if sel != "spec.nodeName="+testNode {
		t.Errorf("fieldSelector %q, want spec.nodeName=%s", sel, testNode)
	}
	if rv != "0" {
		t.Errorf("resourceVersion %q, want 0 (served from the watch cache)", rv)
	}
	for _, tc := range []struct {
		uid, ns, name, kind, owner string
		cpus                       float64
	}{
		{"uid-web", "web", "web-7d9f8b6c5-x2k4p", "Deployment", "web", 2.5},
		{"uid-rs", "web", "legacy-abcde", "ReplicaSet", "legacy", 1},
		{"uid-pg", "db", "pg-0", "StatefulSet", "pg", 0.25},
		{"uid-ds", "kube-system", "dcgm-q8z", "DaemonSet", "dcgm", 0},
		{"uid-job", "ml", "finetune-7xk2p", "Job", "finetune", 4},
		{"uid-step", "ml", "step-2-abcde", "Job", "step-2", 0},
		{"uid-cron", "ml", "nightly-" + cronMinutes + "-abcde", "CronJob", "nightly", 0},
		{"uid-notcron", "ml", "bench-12345678901-x", "Job", "bench-99999999", 0},
		{"uid-bare", "default", "debug", "", "", 0},
	} {
		p, ok := s.ByUID(tc.uid)
		if !ok {
			t.Errorf("ByUID(%s): not found", tc.uid)
			continue
		}
		if p.UID != tc.uid || p.Namespace != tc.ns || p.Name != tc.name || p.OwnerKind != tc.kind || p.Owner != tc.owner || p.CPUs != tc.cpus {
			t.Errorf("ByUID(%s) = %s/%s owner %s %q, %v CPUs; want %s/%s owner %s %q, %v CPUs",
				tc.uid, p.Namespace, p.Name, p.OwnerKind, p.Owner, p.CPUs, tc.ns, tc.name, tc.kind, tc.owner, tc.cpus)
		}
	}
	if p, _ := s.ByUID("uid-web"); p.Labels["app"] != "web" || len(p.Labels) != 2 {
		t.Errorf("labels %v, want app=web and pod-template-hash", p.Labels)
	}
	if p, _ := s.ByUID("uid-bare"); p.Labels["run"] != "debug" {
		t.Errorf("labels %v, want run=debug", p.Labels)
	}
	if _, devices := s.Len(); devices != 0 {
		t.Errorf("the API server alone mapped %d devices; it knows none", devices)
	}
	if _, ok := s.ByUID("uid-missing"); ok {
		t.Error("an unknown UID was found")
	}
}

func TestJoinByNamespaceAndName(t *testing.T) {
	k := startKubelet(t, append(trainAndInfer(),
		prPodOf("ml", "new-pod", nil, devs("nvidia.com/gpu", "GPU-dddd")),
		prPodOf("ml", "done", nil, devs("nvidia.com/gpu", "GPU-eeee")),
	)...)
	a := startAPI(t,
		apiPodOf("ml", "train-0", "uid-train", ownedBy("StatefulSet", "train"), labelled("team", "llm"), requesting("8")),
		apiPodOf("serve", "infer-x", "uid-infer", ownedBy("ReplicaSet", "infer-5c8d"), labelled("pod-template-hash", "5c8d")),
		apiPodOf("ml", "done", "uid-done", ownedBy("Job", "done"), phase(corev1.PodSucceeded)),
	)
	cfg := a.config()
	cfg.PodResourcesSocket = k.socket
	c, _ := newClient(t, cfg)
	s := snapshot(t, c)

	for _, id := range []string{"GPU-aaaa", "GPU-bbbb"} {
		got := s.ByDevice(id)
		if len(got) != 1 || got[0].UID != "uid-train" || got[0].Owner != "train" || got[0].Labels["team"] != "llm" || got[0].CPUs != 8 {
			t.Errorf("ByDevice(%s) = %+v, want train-0 with the API server's UID, owner, labels and 8 CPUs requested", id, got)
		}
	}
	got := s.ByDevice("MIG-cccc")
	if len(got) != 1 || got[0].UID != "uid-infer" || got[0].OwnerKind != "Deployment" || got[0].Owner != "infer" || got[0].CPUs != 4 {
		t.Errorf("ByDevice(MIG-cccc) = %+v, want infer-x of Deployment infer with its 4 exclusive CPUs (no request in the API)", got)
	}
	if p, _ := s.ByUID("uid-infer"); p.CPUs != 4 {
		t.Errorf("ByUID(uid-infer) has %v CPUs, want the 4 exclusive ones there too", p.CPUs)
	}
	if got := s.ByDevice("GPU-dddd"); len(got) != 1 || got[0].Name != "new-pod" || got[0].UID != "" {
		t.Errorf("ByDevice(GPU-dddd) = %+v, want new-pod, not yet in the API server's list, by name alone", got)
	}
	if got := s.ByDevice("GPU-eeee"); len(got) != 0 {
		t.Errorf("a Succeeded pod still holds its GPU: %v", names(got))
	}
	if p, ok := s.ByUID("uid-done"); !ok || p.Owner != "done" {
		t.Errorf("ByUID(uid-done) = %+v, %v: a finished pod keeps its name", p, ok)
	}
}

func TestSnapshotReusedWithinRefreshEvery(t *testing.T) {
	k := startKubelet(t, trainAndInfer()...)
	a := startAPI(t, apiPodOf("ml", "train-0", "uid-train"))
	cfg := a.config()
	cfg.PodResourcesSocket = k.socket
	cfg.RefreshEvery = time.Minute
	c, clock := newClient(t, cfg)

	first := snapshot(t, c)
	clock.advance(59 * time.Second)
	if again := snapshot(t, c); again != first {
		t.Error("a snapshot within RefreshEvery was built anew")
	}
	if a.calls.Load() != 1 || k.calls.Load() != 1 {
		t.Fatalf("%d API server and %d kubelet calls within RefreshEvery, want 1 each", a.calls.Load(), k.calls.Load())
	}
	clock.advance(time.Second)
	if later := snapshot(t, c); later == first {
		t.Error("the snapshot was reused past RefreshEvery")
	}
	if a.calls.Load() != 2 || k.calls.Load() != 2 {
		t.Errorf("%d API server and %d kubelet calls after RefreshEvery, want 2 each", a.calls.Load(), k.calls.Load())
	}
}

func TestServersGoneLastSnapshotWithError(t *testing.T) {
	k := startKubelet(t, trainAndInfer()...)
	a := startAPI(t, apiPodOf("ml", "train-0", "uid-train"))
	cfg := a.config()
	cfg.PodResourcesSocket = k.socket
	c, clock := newClient(t, cfg)
	snapshot(t, c)

	k.srv.Stop()
	a.srv.Close()
	clock.advance(time.Hour)
	s, err := c.Snapshot(context.Background())
	if err == nil {
		t.Fatal("no error with both sources gone")
	}
	for _, want := range []string{"kubelet pod-resources socket " + k.socket, "mount " + filepath.Dir(k.socket), "kubernetes API server " + a.srv.URL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := s.ByDevice("GPU-aaaa"); len(got) != 1 || got[0].UID != "uid-train" {
		t.Errorf("ByDevice(GPU-aaaa) = %+v, want the last good snapshot's train-0", got)
	}
	// Until the next refresh the same answer comes back, with no new calls.
	s2, err2 := c.Snapshot(context.Background())
	if s2 != s || err2 == nil || err2.Error() != err.Error() {
		t.Errorf("within RefreshEvery of a failure: %p, %v; want %p, %v", s2, err2, s, err)
	}
}

func TestOneSourceFailingKeepsItsLastData(t *testing.T) {
	k := startKubelet(t, trainAndInfer()...)
	a := startAPI(t, apiPodOf("ml", "train-0", "uid-train"))
	cfg := a.config()
	cfg.PodResourcesSocket = k.socket
	c, clock := newClient(t, cfg)
	snapshot(t, c)

	a.set(func(a *fakeAPI) { a.status = 500 })
	k.setPods(append(trainAndInfer(), prPodOf("ml", "later", nil, devs("nvidia.com/gpu", "GPU-ffff")))...)
	clock.advance(time.Hour)
	s, err := c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "kubelet") {
		t.Errorf("error %v, want the API server's 500 alone", err)
	}
	if got := s.ByDevice("GPU-aaaa"); len(got) != 1 || got[0].UID != "uid-train" {
		t.Errorf("ByDevice(GPU-aaaa) = %+v, want train-0 joined with the API server's last list", got)
	}
	if got := names(s.ByDevice("GPU-ffff")); !reflect.DeepEqual(got, []string{"ml/later"}) {
		t.Errorf("ByDevice(GPU-ffff) = %v, want the kubelet's fresh allocation", got)
	}
}

func TestForbiddenSaysWhichRBACRule(t *testing.T) {
	a := startAPI(t)
	a.set(func(a *fakeAPI) { a.status = 403 })
	c, _ := newClient(t, a.config())
	s, err := c.Snapshot(context.Background())
	if s != nil || err == nil {
		t.Fatalf("snapshot %v, error %v; want none and an error", s, err)
	}
	for _, want := range []string{"403", "cannot list resource", "service account needs get and list on pods", `resources ["pods"]`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestTokenReadAgainEachRefresh(t *testing.T) {
	a := startAPI(t, apiPodOf("ml", "train-0", "uid-train"))
	c, clock := newClient(t, a.config())
	snapshot(t, c)

	a.set(func(a *fakeAPI) { a.token = "token-2" }) // rotated on the server first
	clock.advance(time.Hour)
	_, err := c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), a.tokenFile) {
		t.Errorf("error %v, want a 401 naming the token file", err)
	}
	a.writeToken("token-2")
	clock.advance(time.Hour)
	if s := snapshot(t, c); !has(s, "uid-train") {
		t.Error("the rotated token was not used")
	}
}

func has(s *Snapshot, uid string) bool { _, ok := s.ByUID(uid); return ok }

func TestPodLeavingListKeptOneRefresh(t *testing.T) {
	a := startAPI(t, apiPodOf("ml", "job-x", "uid-job"), apiPodOf("ml", "stay", "uid-stay"))
	c, clock := newClient(t, a.config())
	snapshot(t, c)

	a.set(func(a *fakeAPI) { a.pods = a.pods[1:] })
	clock.advance(time.Hour)
	if s := snapshot(t, c); !has(s, "uid-job") || !has(s, "uid-stay") {
		t.Error("a pod that just left the list was dropped at once")
	}
	clock.advance(time.Hour)
	if s := snapshot(t, c); has(s, "uid-job") || !has(s, "uid-stay") {
		t.Error("a pod that left the list was kept past one refresh")
	}
}

func TestRecreatedPodJoinsTheLiveOne(t *testing.T) {
	k := startKubelet(t, prPodOf("db", "pg-0", nil, devs("nvidia.com/gpu", "GPU-aaaa")))
	a := startAPI(t, apiPodOf("db", "pg-0", "uid-old"))
	cfg := a.config()
	cfg.PodResourcesSocket = k.socket
	c, clock := newClient(t, cfg)
	snapshot(t, c)

	a.set(func(a *fakeAPI) { a.pods = []corev1.Pod{apiPodOf("db", "pg-0", "uid-new")} })
	clock.advance(time.Hour)
	s := snapshot(t, c)
	if got := s.ByDevice("GPU-aaaa"); len(got) != 1 || got[0].UID != "uid-new" {
		t.Errorf("ByDevice = %+v, want the new pg-0, not the one carried over", got)
	}
	if !has(s, "uid-old") {
		t.Error("the old pg-0 was not kept for one refresh")
	}
}

func TestHungAPIServerTimesOut(t *testing.T) {
	a := startAPI(t)
	a.set(func(a *fakeAPI) { a.hang = true })
	cfg := a.config()
	cfg.Timeout = 50 * time.Millisecond
	c, _ := newClient(t, cfg)
	_, err := c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("error %v, want no answer within 50ms", err)
	}
}

func TestMissingSocketSaysMount(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "kubelet.sock")
	c, _ := newClient(t, Config{PodResourcesSocket: "unix://" + sock})
	s, err := c.Snapshot(context.Background())
	if s != nil || err == nil {
		t.Fatalf("snapshot %v, error %v; want none and an error", s, err)
	}
	want := "kubelet pod-resources socket " + sock + ": no such socket: mount " + filepath.Dir(sock) + " into the agent's pod"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestCallerGivingUpDoesNotHoldOffTheNextRefresh(t *testing.T) {
	k := startKubelet(t, trainAndInfer()...)
	c, _ := newClient(t, Config{PodResourcesSocket: k.socket})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Snapshot(ctx); err == nil {
		t.Fatal("no error with a cancelled context")
	}
	if s := snapshot(t, c); len(s.ByDevice("GPU-aaaa")) != 1 {
		t.Error("the refresh after a cancelled one was not tried at once")
	}
}

func TestInClusterUsesServiceEnvironment(t *testing.T) {
	a := startAPI(t, apiPodOf("ml", "train-0", "uid-train"))
	u, err := url.Parse(a.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", u.Hostname())
	t.Setenv("KUBERNETES_SERVICE_PORT", u.Port())
	t.Setenv("NODE_NAME", testNode)
	c, _ := newClient(t, Config{APIServer: InCluster, TokenFile: a.tokenFile, CAFile: a.caFile})
	if s := snapshot(t, c); !has(s, "uid-train") {
		t.Error("in-cluster: train-0 not listed")
	}
	if sel, _ := a.saw(); sel != "spec.nodeName="+testNode {
		t.Errorf("fieldSelector %q, want the node from NODE_NAME", sel)
	}

	// The service account's files are the defaults.
	cfg := Config{APIServer: InCluster, NodeName: testNode}
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	if api, err := newAPIServer(&cfg, func(k string) string { return env[k] }); err == nil {
		api.close()
	}
	if cfg.TokenFile != serviceAccountDir+"/token" || cfg.CAFile != serviceAccountDir+"/ca.crt" {
		t.Errorf("in-cluster defaults: token %q, CA %q", cfg.TokenFile, cfg.CAFile)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	notPEM := filepath.Join(dir, "not.pem")
	for path, content := range map[string]string{empty: "\n", notPEM: "hello"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "neither pod_resources_socket nor api_server"},
		{Config{PodResourcesSocket: "/s", Timeout: -time.Second}, "timeout"},
		{Config{PodResourcesSocket: "/s", RefreshEvery: -time.Second}, "refresh_every"},
		{Config{APIServer: "ftp://x", NodeName: "n"}, `api_server "ftp://x"`},
		{Config{APIServer: "not a url", NodeName: "n"}, `api_server "not a url"`},
		{Config{APIServer: "http://127.0.0.1:8001", NodeName: "n", TokenFile: empty}, "in clear"},
		{Config{APIServer: "https://127.0.0.1:6443"}, "node_name"},
		{Config{APIServer: InCluster, NodeName: "n"}, "KUBERNETES_SERVICE_HOST"},
		{Config{APIServer: "https://127.0.0.1:6443", NodeName: "n", TokenFile: filepath.Join(dir, "none")}, "token_file"},
		{Config{APIServer: "https://127.0.0.1:6443", NodeName: "n", TokenFile: empty}, "token_file: " + empty + " is empty"},
		{Config{APIServer: "https://127.0.0.1:6443", NodeName: "n", CAFile: filepath.Join(dir, "none")}, "ca_file"},
		{Config{APIServer: "https://127.0.0.1:6443", NodeName: "n", CAFile: notPEM}, "ca_file " + notPEM + " holds no PEM"},
	} {
		c, err := New(tc.cfg, nil)
		if err == nil {
			c.Close()
			t.Errorf("New(%+v) accepted it", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %q does not name %q", tc.cfg, err, tc.want)
		}
	}
	// kubectl proxy: plain http without a token is fine.
	c, err := New(Config{APIServer: "http://127.0.0.1:8001", NodeName: "n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestOwnerOf(t *testing.T) {
	now := testStart
	minutes := func(at time.Time) string { return strconv.FormatInt(at.Unix()/60, 10) }
	for _, tc := range []struct {
		ref              ownerRef
		labels           map[string]string
		kind, name, note string
	}{
		{ownerRef{"ReplicaSet", "api-6f7b9"}, map[string]string{"pod-template-hash": "6f7b9"}, "Deployment", "api", "Deployment from the hash"},
		{ownerRef{"ReplicaSet", "api-6f7b9"}, map[string]string{"pod-template-hash": "other"}, "ReplicaSet", "api-6f7b9", "hash not the suffix"},
		{ownerRef{"ReplicaSet", "api-6f7b9"}, nil, "ReplicaSet", "api-6f7b9", "no hash"},
		{ownerRef{"ReplicaSet", "-6f7b9"}, map[string]string{"pod-template-hash": "6f7b9"}, "ReplicaSet", "-6f7b9", "nothing before the hash"},
		{ownerRef{"Job", "report-" + minutes(now.Add(-24*time.Hour))}, nil, "CronJob", "report", "yesterday's run"},
		{ownerRef{"Job", "a-b-" + minutes(now)}, nil, "CronJob", "a-b", "dashes in the CronJob's name"},
		{ownerRef{"Job", "report-" + minutes(now.Add(72*time.Hour))}, nil, "Job", "report-" + minutes(now.Add(72*time.Hour)), "days ahead: not a schedule"},
		{ownerRef{"Job", "report-" + minutes(time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC))}, nil, "Job", "report-" + minutes(time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)), "before CronJobs existed"},
		{ownerRef{"Job", "train-2"}, nil, "Job", "train-2", "small number"},
		{ownerRef{"Job", "12345678"}, nil, "Job", "12345678", "no name before the number"},
		{ownerRef{"Node", "node-a"}, nil, "Node", "node-a", "static pod's mirror"},
		{ownerRef{}, nil, "", "", "bare pod"},
	} {
		if kind, name := ownerOf(tc.ref, tc.labels, now); kind != tc.kind || name != tc.name {
			t.Errorf("%s: ownerOf(%v) = %s %q, want %s %q", tc.note, tc.ref, kind, name, tc.kind, tc.name)
		}
	}
}

func TestPodLevelCPURequestWins(t *testing.T) {
	p := apiPodOf("ml", "x", "uid-x", requesting("1", "1"))
	if got := fromAPI(&p).pod.CPUs; got != 2 {
		t.Errorf("containers' requests sum to %v, want 2", got)
	}
	p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}
	if got := fromAPI(&p).pod.CPUs; got != 3 {
		t.Errorf("with a pod-level request of 3: %v", got)
	}
}

func TestNilSnapshotHasNoPods(t *testing.T) {
	var s *Snapshot
	if _, ok := s.ByUID("x"); ok || s.ByDevice("GPU-x") != nil {
		t.Error("a nil snapshot has pods")
	}
	if pods, devices := s.Len(); pods != 0 || devices != 0 {
		t.Error("a nil snapshot has a length")
	}
}

// oldKubelet serves the pod-resources service without List.
type oldKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
}

func TestKubeletWithoutListSaysSo(t *testing.T) {
	socket, _ := serveKubelet(t, oldKubelet{})
	c, _ := newClient(t, Config{PodResourcesSocket: socket})
	_, err := c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not serve pod-resources v1") {
		t.Errorf("error %v, want that the kubelet does not serve pod-resources v1", err)
	}
}

func TestUnknownCASaysCheckCAFile(t *testing.T) {
	a := startAPI(t)
	cfg := a.config()
	cfg.CAFile = "" // the system's CAs do not know the test server's
	c, _ := newClient(t, cfg)
	_, err := c.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "check that ca_file holds the cluster's CA") {
		t.Errorf("error %v, want a hint about ca_file", err)
	}
}
