package workload

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/schema"
	"github.com/joules-energy/joules/kube"
	"github.com/joules-energy/joules/nvml"
)

// apiServer serves one node's pods as the Kubernetes API server does.
func apiServer(t *testing.T, pods ...corev1.Pod) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" || r.URL.Query().Get("fieldSelector") != "spec.nodeName=n1" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: pods})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func vllmPod() corev1.Pod {
	controller := true
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vllm-6d4cf56db6-x7k2p", Namespace: "serving", UID: "0f3b2c1a-1111-2222-3333-444455556666",
			Labels:          map[string]string{"pod-template-hash": "6d4cf56db6", "team": "serving", "app.kubernetes.io/model": "llama-3-8b"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "vllm-6d4cf56db6", Controller: &controller}}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "vllm", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// scontrol writes a stand-in for scontrol that prints what Slurm 23.11's
// `scontrol show job --oneliner 4242` prints for a two-node job.
func scontrol(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scontrol")
	out := "JobId=4242 JobName=train-7b UserId=alice(1000) GroupId=alice(1000) MCS_label=N/A Priority=1 Nice=0 Account=physics QOS=normal " +
		"JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:10:00 TimeLimit=1-00:00:00 " +
		"Partition=gpu AllocNode:Sid=login1:12345 NodeList=gpu-[01-02] BatchHost=gpu-01 NumNodes=2 NumCPUs=64 NumTasks=16 CPUs/Task=4 " +
		"TRES=cpu=64,mem=512G,node=2,billing=64,gres/gpu=16 Comment=team=vision model=llama-3-8b Command=/home/alice/train.sh WorkDir=/home/alice"
	if err := os.WriteFile(path, []byte("#!/bin/sh\n[ \"$1 $2 $3 $4\" = \"show job --oneliner 4242\" ] || exit 1\necho '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func tagsOf(w nvml.Workload) map[string]string {
	m := map[string]string{}
	for _, l := range w.Tags {
		if l.Value != "" {
			m[l.Name] = l.Value
		}
	}
	return m
}

func TestPodsAndJobsAreNamedWithTheirLabels(t *testing.T) {
	pods, err := kube.New(kube.Config{APIServer: apiServer(t, vllmPod()), NodeName: "n1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sysfs := t.TempDir()
	os.MkdirAll(filepath.Join(sysfs, "devices/system/cpu"), 0o755)
	os.WriteFile(filepath.Join(sysfs, "devices/system/cpu/online"), []byte("0-31,64-95\n"), 0o644)
	r := New(Config{Labels: map[string]string{"team": "team", "model": "app.kubernetes.io/model"}, Pods: pods, Scontrol: scontrol(t), SysFS: sysfs})

	// Before the first refresh a job is named by its id alone: a GPU
	// pass never waits for scontrol or the API server.
	if w, ok := r.OfProcess(nvml.Cgroup{SlurmJob: "4242"}); !ok || w.Kind != schema.WorkloadSlurmJob || w.ID != "4242" || len(tagsOf(w)) != 0 {
		t.Errorf("job before refresh: %+v", w)
	}
	r.Refresh(context.Background())
	w, _ := r.OfProcess(nvml.Cgroup{PodUID: "0f3b2c1a-1111-2222-3333-444455556666"})
	want := map[string]string{"namespace": "serving", "owner_kind": "Deployment", "owner": "vllm", "label_team": "serving", "label_model": "llama-3-8b"}
	if w.Kind != schema.WorkloadK8sPod || w.ID != "serving/vllm-6d4cf56db6-x7k2p" || !equalMaps(tagsOf(w), want) {
		t.Errorf("pod: %s %s %v, want serving/vllm-6d4cf56db6-x7k2p %v", w.Kind, w.ID, tagsOf(w), want)
	}
	j, _ := r.OfProcess(nvml.Cgroup{SlurmJob: "4242"})
	if got := tagsOf(j); !equalMaps(got, map[string]string{"label_team": "vision", "label_model": "llama-3-8b"}) {
		t.Errorf("job's labels from its comment: %v", got)
	}
	if u, ok := r.OfProcess(nvml.Cgroup{Unit: "tgi.service"}); !ok || u.Kind != schema.WorkloadSystemdUnit || u.ID != "tgi.service" {
		t.Errorf("unit: %+v", u)
	}
	samples, _ := r.Collect(context.Background())
	got := map[string]float64{}
	for _, s := range samples {
		got[s.Name+" "+labelOf(s.Labels, schema.TagWorkload)] = s.Value
	}
	// 96 - 64 + 1 + 31 - 0 + 1 CPUs; the pod's request; the job's 64 CPUs over 2 nodes.
	if got[schema.HostCPUs+" "] != 64 || got[schema.WorkloadCPUs+" serving/vllm-6d4cf56db6-x7k2p"] != 8 || got[schema.WorkloadCPUs+" 4242"] != 32 || len(got) != 3 {
		t.Errorf("CPUs: %v", got)
	}
	// Off the GPUs for two collections: the workloads no longer hold CPUs
	// of the host (after one, they still may: a collection can fall
	// between two GPU passes).
	r.Collect(context.Background())
	again, _ := r.Collect(context.Background())
	if len(again) != 1 || again[0].Name != schema.HostCPUs {
		t.Errorf("after the workloads left the GPUs: %v", again)
	}
}

func labelOf(ls []collector.Label, name string) string {
	if i := slices.IndexFunc(ls, func(l collector.Label) bool { return l.Name == name }); i >= 0 {
		return ls[i].Value
	}
	return ""
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestParseJobFields(t *testing.T) {
	j := parseJob("JobId=7 JobName=a b UserId=bob(1001) Account=ml NumNodes=1 NumCPUs=8 Comment=team=x;cost_centre=42 Partition=p\n")
	for key, want := range map[string]string{"team": "x", "cost_centre": "42", "user": "bob", "account": "ml", "name": "a b", "partition": "p", "missing": ""} {
		if got := j.value(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if j.cpusPerNode() != 8 {
		t.Errorf("CPUs per node %v", j.cpusPerNode())
	}
}
