package sitemodel

import (
	"slices"
	"sort"
)

// Server is a host's hardware: what its parts draw idle and at full load,
// and its power supplies.
type Server struct {
	GPUs                          int
	GPUIdleWatts, GPUMaxWatts     float64 // each GPU: idle and TDP
	CPUSockets                    int
	CPUIdleWatts, CPUMaxWatts     float64 // all sockets together
	FanMaxWatts                   float64 // all fans at full speed (power goes with the cube of speed)
	OtherIdleWatts, OtherMaxWatts float64 // memory, NICs, NVSwitches, drives, BMC
	PSUs                          int     // sharing the load
	PSURatedWatts                 float64 // each
}

// PSUCapacityWatts is what the server's PSUs can deliver together.
func (s Server) PSUCapacityWatts() float64 { return float64(s.PSUs) * s.PSURatedWatts }

// servers are the simulated DGX systems: GPU idle power and TDP as the
// NVML simulator has them, CPUs, fans and PSUs after the DGX data sheets.
var servers = map[string]Server{
	"dgxa100": {GPUs: 8, GPUIdleWatts: 55, GPUMaxWatts: 400, CPUSockets: 2, CPUIdleWatts: 120, CPUMaxWatts: 450,
		FanMaxWatts: 1000, OtherIdleWatts: 400, OtherMaxWatts: 700, PSUs: 6, PSURatedWatts: 3000},
	"dgxh100": {GPUs: 8, GPUIdleWatts: 75, GPUMaxWatts: 700, CPUSockets: 2, CPUIdleWatts: 140, CPUMaxWatts: 700,
		FanMaxWatts: 1400, OtherIdleWatts: 500, OtherMaxWatts: 900, PSUs: 6, PSURatedWatts: 3300},
	"dgxh200": {GPUs: 8, GPUIdleWatts: 75, GPUMaxWatts: 700, CPUSockets: 2, CPUIdleWatts: 140, CPUMaxWatts: 700,
		FanMaxWatts: 1400, OtherIdleWatts: 500, OtherMaxWatts: 900, PSUs: 6, PSURatedWatts: 3300},
	"dgxb200": {GPUs: 8, GPUIdleWatts: 120, GPUMaxWatts: 1000, CPUSockets: 2, CPUIdleWatts: 140, CPUMaxWatts: 700,
		FanMaxWatts: 1800, OtherIdleWatts: 600, OtherMaxWatts: 1000, PSUs: 6, PSURatedWatts: 3300},
}

// ServerNamed returns the named server ("dgxh200", "dgxh100", "dgxb200",
// "dgxa100").
func ServerNamed(name string) (Server, bool) {
	s, ok := servers[name]
	return s, ok
}

// ServerNames lists the servers ServerNamed knows.
func ServerNames() []string {
	names := make([]string, 0, len(servers))
	for n := range servers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// psuCurve is a PSU's efficiency by its share of rated load, after the
// 80 PLUS Titanium points (90 % at 10 %, 94 % at 20 %, 96 % at 50 %, 94 %
// at 100 %), straight lines between them.
var psuCurve = [][2]float64{{0, 0.80}, {0.10, 0.90}, {0.20, 0.94}, {0.50, 0.96}, {1.00, 0.94}}

// PSUEfficiency returns a PSU's efficiency (DC out over AC in) at a share
// of its rated load; beyond full load it stays at the full-load value.
func PSUEfficiency(load float64) float64 {
	i, _ := slices.BinarySearchFunc(psuCurve, load, func(p [2]float64, x float64) int {
		switch {
		case p[0] < x:
			return -1
		case p[0] > x:
			return 1
		}
		return 0
	})
	switch {
	case i == 0:
		return psuCurve[0][1]
	case i == len(psuCurve):
		return psuCurve[len(psuCurve)-1][1]
	}
	a, b := psuCurve[i-1], psuCurve[i]
	return a[1] + (b[1]-a[1])*(load-a[0])/(b[0]-a[0])
}
