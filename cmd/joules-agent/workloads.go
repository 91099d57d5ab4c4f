package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/kube"
	"github.com/joules-energy/joules/nvml"
	"github.com/joules-energy/joules/workload"
)

// workloads builds what names the GPUs' workloads: a simulated site's
// placement, or the workload resolver over the kubelet, the API server and
// scontrol where the configuration asks for any; nil: processes are named
// by their cgroup alone. The resolver, when there is one, is also a source
// (the CPUs of the host and its workloads) and must be run.
func workloads(logger *slog.Logger, cfg config.Agent, sysfs string) (nvml.Workloads, *workload.Resolver, error) {
	g, w := cfg.Sources.NVML, cfg.Workloads
	if g.Simulate.Value != "" && g.SimulateSite.Value != "" {
		sim, err := nvml.SimulatedWorkloads(g.Simulate.Value, g.SimulateSite.Value, cfg.Labels["host"], g.SimulateModel.Value)
		return sim, nil, err
	}
	k := w.Kubernetes
	if len(w.Labels) == 0 && k.PodResourcesSocket.Value == "" && k.APIServer.Value == "" && w.Slurm.Scontrol.Value == "" {
		return nil, nil, nil
	}
	labels := map[string]string{}
	for name, key := range w.Labels {
		labels[name] = key.Value
	}
	rc := workload.Config{Labels: labels, Scontrol: w.Slurm.Scontrol.Value, SysFS: sysfs, Logger: logger.With("collector", "workloads")}
	if k.PodResourcesSocket.Value != "" || k.APIServer.Value != "" {
		client, err := kube.New(kube.Config{PodResourcesSocket: k.PodResourcesSocket.Value, APIServer: k.APIServer.Value, TokenFile: k.TokenFile.Value,
			// The resolver says when to refresh; kube's cache only spaces
			// the refreshes an unknown pod asks for.
			CAFile: k.CAFile.Value, NodeName: k.NodeName.Value, RefreshEvery: min(w.Refresh.Duration, 5*time.Second)}, logger.With("collector", "kubernetes"))
		if err != nil {
			return nil, nil, fmt.Errorf("workloads.kubernetes: %w", err)
		}
		rc.Pods = client
	}
	r := workload.New(rc)
	return r, r, nil
}
