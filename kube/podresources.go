package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// maxPodResourcesMsg is what the kubelet's own client accepts: a node with
// hundreds of pods answers List with more than gRPC's default 4 MiB.
const maxPodResourcesMsg = 16 << 20

// podResources reads the kubelet's pod-resources API.
type podResources struct {
	path    string
	timeout time.Duration
	conn    *grpc.ClientConn
	client  podresourcesv1.PodResourcesListerClient
}

// prPod is one pod as the kubelet's allocations show it.
type prPod struct {
	namespace, name string
	cpus            int      // exclusive CPUs (CPU manager's static policy)
	devices         []string // GPU and MIG UUIDs, each once
}

func newPodResources(path string, timeout time.Duration) (*podResources, error) {
	// NewClient does not connect: the socket may appear later, as when the
	// kubelet restarts.
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPodResourcesMsg)))
	if err != nil {
		return nil, err
	}
	return &podResources{path: path, timeout: timeout, conn: conn, client: podresourcesv1.NewPodResourcesListerClient(conn)}, nil
}

func (p *podResources) list(ctx context.Context) ([]prPod, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
		// A kubelet that restarted closed the connection under the call;
		// the second try dials afresh and finds it, or says why not.
		resp, err = p.client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	}
	if err != nil {
		return nil, p.explain(err)
	}
	out := make([]prPod, 0, len(resp.GetPodResources()))
	for _, pr := range resp.GetPodResources() {
		out = append(out, fromPodResources(pr))
	}
	return out, nil
}

func fromPodResources(pr *podresourcesv1.PodResources) prPod {
	p := prPod{namespace: pr.GetNamespace(), name: pr.GetName()}
	cpus := map[int64]bool{}
	for _, id := range pr.GetCpuIds() {
		cpus[id] = true
	}
	seen := map[string]bool{}
	for _, c := range pr.GetContainers() {
		for _, id := range c.GetCpuIds() {
			cpus[id] = true
		}
		for _, d := range c.GetDevices() {
			if !gpuResource(d.GetResourceName()) {
				continue
			}
			for _, id := range d.GetDeviceIds() {
				id = deviceUUID(id)
				if id != "" && !seen[id] {
					seen[id] = true
					p.devices = append(p.devices, id)
				}
			}
		}
	}
	p.cpus = len(cpus)
	return p
}

// gpuResource says whether the NVIDIA device plugin's resource holds GPUs
// or MIG devices: nvidia.com/gpu, nvidia.com/gpu.shared (time-slicing with
// renamed resources) and nvidia.com/mig-<profile>.
func gpuResource(name string) bool {
	r, ok := strings.CutPrefix(name, "nvidia.com/")
	return ok && (r == "gpu" || r == "gpu.shared" || strings.HasPrefix(r, "mig-"))
}

// deviceUUID strips the replica suffix ("GPU-…::3") that the device plugin
// adds to a time-sliced GPU's IDs, so that every pod sharing it is found
// under its UUID.
func deviceUUID(id string) string {
	if i := strings.Index(id, "::"); i >= 0 {
		return id[:i]
	}
	return id
}

// explain turns a gRPC failure into what the operator should do.
func (p *podResources) explain(err error) error {
	st := status.Convert(err)
	msg := st.Message()
	cause, hint := msg, ""
	switch {
	case strings.Contains(msg, "no such file or directory"):
		cause = "no such socket"
		hint = fmt.Sprintf(": mount %s into the agent's pod (a hostPath volume) and check that the kubelet runs", filepath.Dir(p.path))
	case strings.Contains(msg, "connection refused"):
		cause = "connection refused"
		hint = fmt.Sprintf(": mount %s into the agent's pod (a hostPath volume) and check that the kubelet runs", filepath.Dir(p.path))
	case strings.Contains(msg, "permission denied"):
		cause = "permission denied"
		hint = ": the agent needs read and write access to the socket: run it as root"
	case strings.Contains(msg, "EOF") || strings.Contains(msg, "connection closed"):
		cause = "the kubelet closed the connection"
		hint = ": it may be restarting"
	case st.Code() == codes.Unimplemented:
		hint = ": this kubelet does not serve pod-resources v1 (Kubernetes 1.20 or later does)"
	case st.Code() == codes.DeadlineExceeded:
		cause = fmt.Sprintf("no answer within %v", p.timeout)
	}
	return fmt.Errorf("kubelet pod-resources socket %s: %s%s", p.path, cause, hint)
}

func (p *podResources) close() error { return p.conn.Close() }
