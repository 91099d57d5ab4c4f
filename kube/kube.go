// Package kube tells the agent, on a Kubernetes node, which pods hold which
// GPUs and what those pods are: their UID, namespace, name, controller,
// labels and requested CPUs.
//
// Two sources, either or both: the kubelet's pod-resources socket says which
// pod (by namespace and name) was allocated which device, and the API
// server's pods on this node give each pod's UID, owner and labels, so that a
// process found through its cgroup's pod UID gets a name. Both are read at
// most once per RefreshEvery and kept in an immutable Snapshot; a source that
// fails leaves its last good data in place.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config says where to look. Zero values mean "not used" or the default.
type Config struct {
	// PodResourcesSocket is the kubelet's pod-resources socket, usually
	// /var/lib/kubelet/pod-resources/kubelet.sock; "" leaves it out.
	PodResourcesSocket string
	// APIServer is "" (not used), "in-cluster" (KUBERNETES_SERVICE_HOST and
	// KUBERNETES_SERVICE_PORT with the pod's service account) or a URL.
	APIServer string
	// TokenFile and CAFile default, in-cluster, to the service account's
	// token and ca.crt. With a URL, "" means no token and the system's CAs.
	TokenFile, CAFile string
	// NodeName restricts the API server's answer to this node's pods;
	// default $NODE_NAME.
	NodeName string
	// Timeout bounds each call to a source (default 5s).
	Timeout time.Duration
	// RefreshEvery is how long a snapshot is reused (default 30s).
	RefreshEvery time.Duration
}

// InCluster is the APIServer value that means the cluster the agent runs in.
const InCluster = "in-cluster"

const (
	serviceAccountDir   = "/var/run/secrets/kubernetes.io/serviceaccount"
	defaultTimeout      = 5 * time.Second
	defaultRefreshEvery = 30 * time.Second
)

// Pod is what the agent knows of a pod. Fields a source did not give are
// empty: with pod-resources alone, UID, Owner and Labels are.
type Pod struct {
	UID, Namespace, Name string
	// OwnerKind and Owner name the pod's controller: Deployment (from the
	// ReplicaSet and its pod-template-hash), ReplicaSet, StatefulSet,
	// DaemonSet, CronJob (from the Job's name, when it is unmistakable), Job,
	// or any other kind as the pod's controller reference says; "" for a
	// bare pod.
	OwnerKind, Owner string
	// Labels are the pod's labels, shared by every copy: read only.
	Labels map[string]string
	// CPUs is the pod's CPU request from the API server, or else the number
	// of exclusive CPUs the kubelet's CPU manager gave it.
	CPUs float64
}

// Snapshot is the pods at one refresh. It does not change once built, and
// a nil *Snapshot has no pods.
type Snapshot struct {
	byUID    map[string]Pod
	byDevice map[string][]Pod
}

// ByUID returns the pod with this UID (as in the pod's cgroup path, with
// dashes). Pods that finished, or left the API server's list since the last
// refresh, are still found, so that a process that outlives its pod by a
// moment keeps its name.
func (s *Snapshot) ByUID(uid string) (Pod, bool) {
	if s == nil || uid == "" {
		return Pod{}, false
	}
	p, ok := s.byUID[uid]
	return p, ok
}

// ByDevice returns the pods allocated the device: a GPU UUID ("GPU-…") or a
// MIG device UUID ("MIG-…"), as the NVIDIA device plugin reports them, sorted
// by namespace and name. Several pods share a GPU that the device plugin
// time-slices. Pods the API server says have finished are left out: their
// devices may already be another pod's.
func (s *Snapshot) ByDevice(id string) []Pod {
	if s == nil {
		return nil
	}
	return slices.Clone(s.byDevice[id])
}

// Len is the number of pods ByUID knows and the number of devices ByDevice
// knows, for logs and tests.
func (s *Snapshot) Len() (pods, devices int) {
	if s == nil {
		return 0, 0
	}
	return len(s.byUID), len(s.byDevice)
}

// Client reads the configured sources, at most once per RefreshEvery. It is
// safe for concurrent use.
type Client struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time // a field so that tests move time without sleeping
	pr     *podResources
	api    *apiServer

	mu      sync.Mutex
	tried   time.Time // the last refresh; zero before the first
	snap    *Snapshot
	err     error
	apiPods []apiPod // the API server's last good list, with pods carried over
	haveAPI bool
	prPods  []prPod // the kubelet's last good list
	havePR  bool
	failing map[string]string // source → last error text, to log changes only
}

// New checks cfg and sets up the sources. Nothing is contacted yet, so a
// kubelet that is still starting is not an error here; a bad setting is, and
// the error names its key.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PodResourcesSocket == "" && cfg.APIServer == "" {
		return nil, errors.New("kube: neither pod_resources_socket nor api_server is set: give at least one")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("kube: timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.RefreshEvery < 0 {
		return nil, fmt.Errorf("kube: refresh_every %v is negative", cfg.RefreshEvery)
	}
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = defaultRefreshEvery
	}
	c := &Client{cfg: cfg, logger: logger, now: time.Now, failing: map[string]string{}}
	if cfg.APIServer != "" {
		api, err := newAPIServer(&c.cfg, os.Getenv)
		if err != nil {
			return nil, err
		}
		c.api = api
	}
	if cfg.PodResourcesSocket != "" {
		path := strings.TrimPrefix(cfg.PodResourcesSocket, "unix://")
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("kube: pod_resources_socket %q: %w", cfg.PodResourcesSocket, err)
		}
		pr, err := newPodResources(abs, cfg.Timeout)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("kube: pod_resources_socket %q: %w", cfg.PodResourcesSocket, err)
		}
		c.pr = pr
	}
	return c, nil
}

// Snapshot returns the pods, read afresh when the last refresh is older than
// RefreshEvery. When a source fails, the snapshot still has that source's
// last good data (nil only when no source ever answered) and the error says
// what failed and what to do about it, so attribution goes on with slightly
// old data. The same error comes back until the next refresh.
func (c *Client) Snapshot(ctx context.Context) (*Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.tried.IsZero() && !now.Before(c.tried) && now.Sub(c.tried) < c.cfg.RefreshEvery {
		return c.snap, c.err
	}
	c.refresh(ctx, now)
	if c.err != nil && ctx.Err() != nil {
		c.tried = time.Time{} // the caller gave up, not the source: try again next time
	}
	return c.snap, c.err
}

func (c *Client) refresh(ctx context.Context, now time.Time) {
	c.tried = now
	var (
		wg             sync.WaitGroup
		apiList        []apiPod
		prList         []prPod
		apiErr, prdErr error
	)
	if c.api != nil {
		wg.Go(func() { apiList, apiErr = c.api.list(ctx) })
	}
	if c.pr != nil {
		wg.Go(func() { prList, prdErr = c.pr.list(ctx) })
	}
	wg.Wait()
	if c.api != nil && apiErr == nil {
		c.apiPods, c.haveAPI = carryOver(c.apiPods, apiList), true
	}
	if c.pr != nil && prdErr == nil {
		c.prPods, c.havePR = prList, true
	}
	c.note("api_server", c.api != nil, apiErr)
	c.note("pod_resources", c.pr != nil, prdErr)
	c.err = errors.Join(apiErr, prdErr)
	if !c.haveAPI && !c.havePR {
		c.snap = nil
		return
	}
	c.snap = build(c.apiPods, c.prPods, now)
	pods, devices := c.snap.Len()
	c.logger.Debug("Kubernetes pods refreshed", "pods", pods, "devices", devices)
}

// note logs a source's failure when it starts or changes and its recovery,
// not every refresh of a lasting outage.
func (c *Client) note(source string, used bool, err error) {
	if !used {
		return
	}
	prev, wasFailing := c.failing[source]
	switch {
	case err != nil && err.Error() != prev:
		c.failing[source] = err.Error()
		c.logger.Warn("Kubernetes source failing; keeping its last good data", "source", source, "err", err)
	case err == nil && wasFailing:
		delete(c.failing, source)
		c.logger.Info("Kubernetes source answering again", "source", source)
	}
}

// carryOver returns the new list plus, once, the pods of the previous list
// that are no longer in it: a job's pod deleted right after it finished
// still names the processes NVML reports a moment later.
func carryOver(prev, cur []apiPod) []apiPod {
	present := make(map[string]bool, len(cur))
	for _, p := range cur {
		present[p.pod.UID] = true
	}
	for _, p := range prev {
		if !p.carried && !present[p.pod.UID] {
			p.carried, p.terminal = true, true
			cur = append(cur, p)
		}
	}
	return cur
}

// build joins the API server's pods and the kubelet's allocations by
// namespace and name (pod-resources has no UIDs).
func build(api []apiPod, pr []prPod, now time.Time) *Snapshot {
	s := &Snapshot{byUID: make(map[string]Pod, len(api)), byDevice: map[string][]Pod{}}
	byName := make(map[string]int, len(api))
	for i, p := range api {
		key := p.pod.Namespace + "/" + p.pod.Name
		// A live pod wins over a finished or deleted one of the same name,
		// as when a StatefulSet's pod is recreated.
		if j, ok := byName[key]; !ok || (api[j].terminal && !p.terminal) {
			byName[key] = i
		}
	}
	pods := make([]Pod, len(api))
	for i, p := range api {
		pods[i] = p.pod
		pods[i].OwnerKind, pods[i].Owner = ownerOf(p.owner, p.pod.Labels, now)
	}
	for _, r := range pr {
		i, known := byName[r.namespace+"/"+r.name]
		if known && pods[i].CPUs == 0 {
			pods[i].CPUs = float64(r.cpus)
		}
	}
	for _, p := range pods {
		s.byUID[p.UID] = p
	}
	for _, r := range pr {
		pod := Pod{Namespace: r.namespace, Name: r.name, CPUs: float64(r.cpus)}
		if i, known := byName[r.namespace+"/"+r.name]; known {
			if api[i].terminal {
				continue
			}
			pod = pods[i]
		}
		for _, id := range r.devices {
			s.byDevice[id] = append(s.byDevice[id], pod)
		}
	}
	for _, list := range s.byDevice {
		slices.SortFunc(list, func(a, b Pod) int {
			if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
	}
	return s
}

// Close releases the connections. The Client is not to be used after.
func (c *Client) Close() error {
	var err error
	if c.pr != nil {
		err = c.pr.close()
	}
	if c.api != nil {
		c.api.close()
	}
	return err
}
