package config

import (
	"strings"
	"testing"
	"time"
)

func TestWorkloadsSection(t *testing.T) {
	cfg, err := LoadAgent(writeConfig(t, `workloads:
  labels: {team: team, model: app.kubernetes.io/model}
  kubernetes:
    pod_resources_socket: /var/lib/kubelet/pod-resources/kubelet.sock
    api_server: in-cluster
  slurm: {scontrol: /usr/bin/scontrol}
`), "h")
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Workloads
	if w.Labels["model"].Value != "app.kubernetes.io/model" || w.Kubernetes.APIServer.Value != "in-cluster" || w.Slurm.Scontrol.Value != "/usr/bin/scontrol" || w.Refresh.Duration != 10*time.Second {
		t.Errorf("workloads %+v", w)
	}
	_, err = LoadAgent(writeConfig(t, "workloads:\n  labels:\n    Team: team\n    cost: \"\"\n  kubernetes: {api_server: kube.local}\n"), "h")
	for _, want := range []string{`line 3: workloads.labels: "Team" is no tag name`, "line 4: workloads.labels.cost: say which pod label", `line 5: workloads.kubernetes.api_server "kube.local": say in-cluster or the server's URL`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	_, err = LoadAgent(writeConfig(t, "workloads:\n  refresh: 0s\n"), "h")
	if err == nil || !strings.Contains(err.Error(), "line 2: workloads.refresh 0s: at least 1s") {
		t.Errorf("refresh 0s: %v", err)
	}
	_, err = LoadAgent(writeConfig(t, "workloads: {kubernetes: {pod_resource_socket: /x}}\n"), "h")
	if err == nil || !strings.Contains(err.Error(), "pod_resource_socket") {
		t.Errorf("a misspelt key: %v", err)
	}
}
