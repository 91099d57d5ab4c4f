package nvml

import (
	"fmt"
	"time"

	"github.com/joules-energy/joules/internal/sitemodel"
)

// SimulatedSite returns a simulated server of the named model whose GPUs
// follow host's share of the site model seeded by site: utilization,
// power, clocks, temperatures and the energy counter (the model's exact
// integral of power since its epoch) are those every other simulator of
// the same site (the Redfish simulator's BMCs and PDUs, the inference
// servers) computes for this host at the same instant.
func SimulatedSite(model, site, host string) (Library, error) {
	spec, ok := simModels[model]
	if !ok {
		return nil, fmt.Errorf("unknown simulated server %q (known: %v)", model, SimulatedModels())
	}
	server, ok := sitemodel.ServerNamed(model)
	if !ok {
		return nil, fmt.Errorf("simulated server %q has no site model", model)
	}
	return simulateSite(spec, sitemodel.NewHost(site, host, server), site+"/"+host, time.Now)
}

func simulateSite(spec simModel, h *sitemodel.Host, seed string, now func() time.Time) (Library, error) {
	srv := simulateLoad(spec, seedOf(seed), siteSim{h: h, nvlinks: spec.nvlinks, clock: now})
	if len(srv.Devices) != h.Server.GPUs {
		return nil, fmt.Errorf("simulated server has %d GPUs, its site model %d", len(srv.Devices), h.Server.GPUs)
	}
	return srv, nil
}

// siteSim drives the GPUs by a host of the site model.
type siteSim struct {
	h       *sitemodel.Host
	nvlinks int
	clock   func() time.Time
}

func (s siteSim) now() time.Time { return s.clock() }

func (s siteSim) utilization(i int, t time.Time) float64 { return s.h.At(t).GPUUtilization[i] }

func (s siteSim) watts(i int, t time.Time) float64 { return s.h.At(t).GPU[i] }

// instantWatts is the model's power too: it holds each second's power.
func (s siteSim) instantWatts(i int, t time.Time) float64 { return s.watts(i, t) }

// counters are the model's integrals; NVLink carries 100 GB/s at full
// utilization, as the load model's GPUs do.
func (s siteSim) counters(i int) func(time.Time) (uint64, uint64) {
	return func(t time.Time) (uint64, uint64) {
		mj, utilSeconds := s.h.GPUEnergy(i, t)
		return mj, uint64(utilSeconds * 100e6 / float64(s.nvlinks))
	}
}

// SimulatedWorkloads are the workloads of host's GPUs in the simulated
// site seeded by site (sitemodel's Workloads): what the kubelet and Slurm
// would say of a real host, for demos and tests. model is what the host's
// inference pod serves, as its inference simulator says.
func SimulatedWorkloads(server, site, host, model string) (Workloads, error) {
	s, ok := sitemodel.ServerNamed(server)
	if !ok {
		return nil, fmt.Errorf("simulated server %q has no site model", server)
	}
	return siteWorkloads{h: sitemodel.NewHost(site, host, s), model: model}, nil
}

type siteWorkloads struct {
	h     *sitemodel.Host
	model string
}

func (siteWorkloads) OfProcess(Cgroup) (Workload, bool) { return Workload{}, false }

func (s siteWorkloads) OnGPU(_ string, index int, now time.Time) []Workload {
	all := s.h.Workloads(now, s.model)
	if index < 0 || index >= len(all) {
		return nil
	}
	var out []Workload
	for _, w := range all[index] {
		nw := Workload{Kind: w.Kind, ID: w.ID, Share: w.Share}
		for _, t := range w.Tags {
			nw.Tags = append(nw.Tags, lbl(t[0], t[1]))
		}
		out = append(out, nw)
	}
	return out
}
