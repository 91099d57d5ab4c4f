package sitemodel

import (
	"hash/fnv"
	"math"
	"time"
)

// Host is one server of the site: its GPUs' utilization, and from it the
// power of every part and of the whole at the PSU inputs.
//
// Utilization is decided per minute of the day: the host's inference
// server has no requests in some minutes (more at night: every GPU idle),
// single GPUs idle in a few more, and in the others each GPU runs at the
// minute's level (higher in the afternoon) plus a five-minute wave, its
// own offset and a fast ripple. No term ever needs clamping.
type Host struct {
	Name   string
	Server Server

	key       uint64
	slowPhase float64
	gpuPhase  []float64
	gpuOffset []float64
	minutes   []hostMinute // per minute of the day
	s         *series
}

// hostMinute is what one minute of the day decides for a host.
type hostMinute struct {
	level float64 // utilization of a busy GPU before its waves
	idle  []bool  // per GPU
	fansW float64 // fans follow the minute's load, not each second's
}

// Quantities of a host's series, in this order: GPU power (mW) per GPU,
// CPU, fans, other, DC total, PSU input (mW), GPU utilization (millionths)
// per GPU, mean GPU utilization (millionths).
const (
	hCPU = iota
	hFans
	hOther
	hDC
	hInput
	hostParts
)

// Fractions of the waves a busy GPU's utilization is made of.
const (
	utilMean, utilDiurnal, utilJitter = 0.55, 0.18, 0.06
	utilSlow, utilSlowPeriod          = 0.10, 300.0
	utilRipple, utilRipplePeriod      = 0.03, 9.0
	utilOffset                        = 0.05
	gpuIdleShare                      = 0.04 // minutes one GPU idles alone
)

// NewHost returns host name of the site seeded by seed, on server. The
// same seed, name and server give the same host in every process.
func NewHost(seed, name string, server Server) *Host {
	h := &Host{Name: name, Server: server, key: hashString(seed + "\x00" + name)}
	h.slowPhase = 2 * math.Pi * unit(h.key, 1, 0)
	for i := range server.GPUs {
		h.gpuPhase = append(h.gpuPhase, 2*math.Pi*unit(h.key, 2, uint64(i)))
		h.gpuOffset = append(h.gpuOffset, utilOffset*(2*unit(h.key, 3, uint64(i))-1))
	}
	h.minutes = make([]hostMinute, minutesPerDay)
	for m := range h.minutes {
		tod := float64(m * 60)
		hm := hostMinute{idle: make([]bool, server.GPUs)}
		// Peaks at 16:00 UTC; idle minutes most likely at 03:00.
		hm.level = utilMean + utilDiurnal*math.Sin(2*math.Pi*(tod-10*3600)/day) + utilJitter*(2*unit(h.key, 4, uint64(m))-1)
		pIdle := 0.06 + 0.16*(1+math.Cos(2*math.Pi*(tod-3*3600)/day))/2
		hostIdle := unit(h.key, 5, uint64(m)) < pIdle
		load := 0.0
		for i := range server.GPUs {
			hm.idle[i] = hostIdle || unit(h.key, 6, uint64(m*server.GPUs+i)) < gpuIdleShare
			if !hm.idle[i] {
				load += hm.level + h.gpuOffset[i]
			}
		}
		if server.GPUs > 0 {
			load /= float64(server.GPUs)
		}
		speed := 0.3 + 0.6*load
		hm.fansW = server.FanMaxWatts * speed * speed * speed
		h.minutes[m] = hm
	}
	g := server.GPUs
	h.s = newSeries(2*g+hostParts+1, h.step)
	return h
}

func (h *Host) idxUtil(i int) int { return h.Server.GPUs + hostParts + i }
func (h *Host) idxMeanUtil() int  { return 2*h.Server.GPUs + hostParts }

// step computes second tod of the day.
func (h *Host) step(tod int, out []int64) {
	sv, g := h.Server, h.Server.GPUs
	hm := &h.minutes[tod/60]
	s := float64(tod)
	slow := utilSlow * math.Sin(2*math.Pi*s/utilSlowPeriod+h.slowPhase)
	var gpuMW, utilSum int64
	for i := range g {
		var micro int64
		if !hm.idle[i] {
			u := hm.level + slow + h.gpuOffset[i] + utilRipple*math.Sin(2*math.Pi*s/utilRipplePeriod+h.gpuPhase[i])
			micro = int64(math.Round(u * 1e6))
		}
		u := float64(micro) / 1e6
		w := milli(sv.GPUIdleWatts + (sv.GPUMaxWatts-sv.GPUIdleWatts)*u)
		out[i] = w
		out[h.idxUtil(i)] = micro
		gpuMW += w
		utilSum += micro
	}
	mean := 0.0
	if g > 0 {
		out[h.idxMeanUtil()] = utilSum / int64(g)
		mean = float64(utilSum) / float64(g) / 1e6
	}
	// The CPUs feed the GPUs: busier with them.
	cpu := milli(sv.CPUIdleWatts + (sv.CPUMaxWatts-sv.CPUIdleWatts)*(0.08+0.5*mean))
	fans := milli(hm.fansW)
	other := milli(sv.OtherIdleWatts + (sv.OtherMaxWatts-sv.OtherIdleWatts)*mean)
	dc := gpuMW + cpu + fans + other
	out[g+hCPU], out[g+hFans], out[g+hOther], out[g+hDC] = cpu, fans, other, dc
	dcW := float64(dc) / 1000
	eff := PSUEfficiency(dcW / sv.PSUCapacityWatts())
	out[g+hInput] = milli(dcW / eff)
}

// HostPower is a host's power at an instant, in watts, and its GPUs'
// utilization (0..1).
type HostPower struct {
	GPUUtilization []float64
	GPU            []float64
	CPU            float64 // all sockets
	Fans           float64
	Other          float64 // memory, NICs, NVSwitches, drives
	DC             float64 // the PSUs' output: the sum of the above
	Input          float64 // the PSUs' input: what the BMC reports
	Utilization    float64 // mean over the GPUs
}

// HostEnergy is a host's energy from the epoch to an instant, in joules,
// and its GPUs' utilization integrated over time (seconds at 100 %).
type HostEnergy struct {
	GPUUtilizationSeconds []float64
	GPU                   []float64
	CPU, Fans, Other, DC  float64
	Input                 float64
	UtilizationSeconds    float64 // of the mean over the GPUs
}

// At returns the host's power at t.
func (h *Host) At(t time.Time) HostPower {
	d := h.decode(h.s.at(t))
	return HostPower{GPUUtilization: d.util, GPU: d.gpu, CPU: d.cpu, Fans: d.fans, Other: d.other, DC: d.dc, Input: d.input, Utilization: d.mean}
}

// Energy returns the host's energy from the epoch to t.
func (h *Host) Energy(t time.Time) HostEnergy {
	d := h.decode(h.s.integral(t))
	return HostEnergy{GPUUtilizationSeconds: d.util, GPU: d.gpu, CPU: d.cpu, Fans: d.fans, Other: d.other, DC: d.dc, Input: d.input, UtilizationSeconds: d.mean}
}

// decoded is a vector of the host's series in watts (or joules) and
// utilization (or its integral).
type decoded struct {
	gpu, util                         []float64
	cpu, fans, other, dc, input, mean float64
}

func (h *Host) decode(v []int64) decoded {
	g := h.Server.GPUs
	d := decoded{gpu: make([]float64, g), util: make([]float64, g)}
	for i := range g {
		d.gpu[i] = float64(v[i]) / 1000
		d.util[i] = float64(v[h.idxUtil(i)]) / 1e6
	}
	d.cpu, d.fans, d.other = float64(v[g+hCPU])/1000, float64(v[g+hFans])/1000, float64(v[g+hOther])/1000
	d.dc, d.input = float64(v[g+hDC])/1000, float64(v[g+hInput])/1000
	d.mean = float64(v[h.idxMeanUtil()]) / 1e6
	return d
}

// GPUEnergy returns GPU i's energy counter at t in millijoules (NVML's
// unit), exact, and its utilization integrated over time (seconds at
// 100 %).
func (h *Host) GPUEnergy(i int, t time.Time) (millijoules uint64, utilizationSeconds float64) {
	v := h.s.integral(t)
	return uint64(v[i]), float64(v[h.idxUtil(i)]) / 1e6
}

// MeanUtilization is the host's mean GPU utilization over a day.
func (h *Host) MeanUtilization() float64 {
	p := h.s.table()
	return float64(p[minutesPerDay*h.s.width+h.idxMeanUtil()]) / 1e6 / day
}

// milli rounds watts to milliwatts.
func milli(w float64) int64 { return int64(math.Round(w * 1000)) }

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// unit returns a number in [0, 1) drawn from the key and two indices
// (splitmix64's finaliser).
func unit(key, a, b uint64) float64 {
	x := key ^ (a * 0x9e3779b97f4a7c15) ^ (b * 0xbf58476d1ce4e5b9)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
