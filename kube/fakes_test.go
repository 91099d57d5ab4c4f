package kube

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

const testNode = "node-a"

// fakeKubelet serves pod-resources v1 List on a unix socket; Get and
// GetAllocatableResources answer Unimplemented.
type fakeKubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	socket string
	srv    *grpc.Server
	calls  atomic.Int32
	mu     sync.Mutex
	pods   []*podresourcesv1.PodResources
}

func (f *fakeKubelet) setPods(pods ...*podresourcesv1.PodResources) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods = pods
}

func (f *fakeKubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return &podresourcesv1.ListPodResourcesResponse{PodResources: f.pods}, nil
}

func startKubelet(t *testing.T, pods ...*podresourcesv1.PodResources) *fakeKubelet {
	t.Helper()
	f := &fakeKubelet{pods: pods}
	f.socket, f.srv = serveKubelet(t, f)
	return f
}

// serveKubelet serves impl on a new unix socket until the test ends.
func serveKubelet(t *testing.T, impl podresourcesv1.PodResourcesListerServer) (string, *grpc.Server) {
	return testenv.ServeKubelet(t, impl)
}

// prPodOf is a pod-resources entry: one container with these devices.
func prPodOf(ns, name string, cpuIDs []int64, devices ...*podresourcesv1.ContainerDevices) *podresourcesv1.PodResources {
	return &podresourcesv1.PodResources{
		Namespace: ns,
		Name:      name,
		Containers: []*podresourcesv1.ContainerResources{{
			Name:    "main",
			Devices: devices,
			CpuIds:  cpuIDs,
		}},
	}
}

func devs(resource string, ids ...string) *podresourcesv1.ContainerDevices {
	return &podresourcesv1.ContainerDevices{ResourceName: resource, DeviceIds: ids}
}

// fakeAPI is an API server that lists pods on testNode, over TLS with a
// bearer token.
type fakeAPI struct {
	t                  *testing.T
	srv                *httptest.Server
	caFile, tokenFile  string
	calls              atomic.Int32
	mu                 sync.Mutex
	token              string
	pods               []corev1.Pod
	status             int // answer this status with a Status body instead
	hang               bool
	sawSelector, sawRV string
}

func startAPI(t *testing.T, pods ...corev1.Pod) *fakeAPI {
	t.Helper()
	a := &fakeAPI{t: t, token: "token-1", pods: pods}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	dir := t.TempDir()
	a.caFile = filepath.Join(dir, "ca.crt")
	a.tokenFile = filepath.Join(dir, "token")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	if err := os.WriteFile(a.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	a.writeToken("token-1\n")
	return a
}

func (a *fakeAPI) writeToken(tok string) {
	a.t.Helper()
	if err := os.WriteFile(a.tokenFile, []byte(tok), 0o600); err != nil {
		a.t.Fatal(err)
	}
}

// saw returns the last request's fieldSelector and resourceVersion.
func (a *fakeAPI) saw() (selector, resourceVersion string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sawSelector, a.sawRV
}

func (a *fakeAPI) set(f func(a *fakeAPI)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	a.mu.Lock()
	a.sawSelector, a.sawRV = r.URL.Query().Get("fieldSelector"), r.URL.Query().Get("resourceVersion")
	token, pods, code, hang := a.token, a.pods, a.status, a.hang
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	status := func(code int, msg string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{Status: "Failure", Message: msg, Code: int32(code)})
	}
	switch {
	case hang:
		<-r.Context().Done() // until the client gives up
	case r.URL.Path != "/api/v1/pods":
		status(http.StatusNotFound, "no such path "+r.URL.Path)
	case r.Header.Get("Authorization") != "Bearer "+token:
		status(http.StatusUnauthorized, "Unauthorized")
	case code != 0:
		status(code, `pods is forbidden: User "system:serviceaccount:joules:joules-agent" cannot list resource "pods" in API group "" at the cluster scope`)
	default:
		_ = json.NewEncoder(w).Encode(corev1.PodList{Items: pods})
	}
}

// podOpt changes a test pod.
type podOpt func(*corev1.Pod)

func apiPodOf(ns, name, uid string, opts ...podOpt) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: testNode},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func ownedBy(kind, name string) podOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{Kind: kind, Name: name, Controller: &yes, UID: "owner-" + types.UID(name)})
	}
}

func labelled(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

// requesting adds a container per CPU request ("" for none).
func requesting(cpus ...string) podOpt {
	return func(p *corev1.Pod) {
		for i, c := range cpus {
			ctr := corev1.Container{Name: "c" + string(rune('0'+i))}
			if c != "" {
				ctr.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(c)}
			}
			p.Spec.Containers = append(p.Spec.Containers, ctr)
		}
	}
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

// fakeClock lets tests step past RefreshEvery without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testStart = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// newClient makes a Client on a fake clock, closed when the test ends.
func newClient(t *testing.T, cfg Config) (*Client, *fakeClock) {
	t.Helper()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: testStart}
	c.now = clock.now
	t.Cleanup(func() { c.Close() })
	return c, clock
}

// apiConfig points a Config at the fake API server.
func (a *fakeAPI) config() Config {
	return Config{APIServer: a.srv.URL, TokenFile: a.tokenFile, CAFile: a.caFile, NodeName: testNode}
}
