package accounting

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/joules-energy/joules/aggregator"
)

// agentBatch is one sample of hosts as agents send them: per GPU the
// agent's GPU metrics (3 of 20 feed accounting: energy, SM activity,
// utilization; gauges false: only those 3), per host its BMC energy and
// power, RAPL and work counters. 31 hosts are about 5,000 lines. With
// workloads, each GPU's share per workload as well: a Slurm job on GPUs
// 0–3 of every pair of hosts, a pod on each of 4–6, two pods sharing GPU 7.
func agentBatch(at time.Time, hosts int, gauges, workloads bool) (body []byte, lines int) {
	var b bytes.Buffer
	ns := at.UnixNano()
	other := []string{"joules_gpu_power_watts", "joules_gpu_power_instant_watts", "joules_gpu_power_limit_watts", "joules_gpu_temperature_celsius",
		"joules_gpu_memory_temperature_celsius", "joules_gpu_memory_used_bytes", "joules_gpu_memory_total_bytes", "joules_gpu_performance_state",
		"joules_gpu_memory_utilization_ratio", "joules_gpu_sm_occupancy_ratio", "joules_gpu_tensor_activity_ratio", "joules_gpu_dram_bandwidth_utilization_ratio",
		"joules_gpu_pcie_link_generation", "joules_gpu_pcie_link_width", "joules_gpu_up", "joules_gpu_power_enforced_limit_watts", "joules_gpu_power_default_limit_watts"}
	if !gauges {
		other = nil
	}
	for host := range hosts {
		topo := fmt.Sprintf("hall=h%d,host=gpu-%04d,rack=r%03d,site=dc1", host/256, host, host/16)
		for gpu := range 8 {
			tags := fmt.Sprintf("gpu=%d,%s,model=NVIDIA\\ H200,simulated=true,uuid=GPU-%04d-%d", gpu, topo, host, gpu)
			fmt.Fprintf(&b, "joules_gpu_energy_joules_total,%s,method=counter value=%d %d\n", tags, ns/2e6, ns) // 500 W
			fmt.Fprintf(&b, "joules_gpu_sm_activity_ratio,%s value=0.8 %d\n", tags, ns)
			fmt.Fprintf(&b, "joules_gpu_utilization_ratio,%s value=0.9 %d\n", tags, ns)
			for _, g := range other {
				fmt.Fprintf(&b, "%s,%s value=612.5 %d\n", g, tags, ns)
			}
			lines += 3 + len(other)
			if !workloads {
				continue
			}
			switch {
			case gpu < 4:
				fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,label_team=research,workload=%d,workload_kind=slurm_job value=1 %d\n", tags, 1000+host/2, ns)
				lines++
			case gpu < 7:
				fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,label_model=llama,namespace=serving,owner=vllm,owner_kind=Deployment,workload=serving/vllm-%d-%d,workload_kind=k8s_pod value=1 %d\n", tags, host, gpu, ns)
				lines++
			default:
				for i, share := range []float64{0.7, 0.3} {
					fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,namespace=research,workload=research/nb-%d-%d,workload_kind=k8s_pod value=%g %d\n", tags, host, i, share, ns)
				}
				lines += 2
			}
		}
		fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=bmc,chassis=1,%s,method=counter,role=host,source=environment_metrics value=%d %d\n", topo, ns/1e5, ns)
		fmt.Fprintf(&b, "joules_redfish_host_power_watts,bmc=bmc,chassis=1,chassis_type=RackMount,%s,role=host,source=environment_metrics value=6100 %d\n", topo, ns)
		fmt.Fprintf(&b, "node_rapl_package_joules_total,%s,index=0,path=/sys/class/powercap/intel-rapl:0 value=%d %d\n", topo, ns/1e8%262143, ns)
		fmt.Fprintf(&b, "joules_work_total,%s,kind=generation,unit=token,workload=vllm value=%d %d\n", topo, ns/1e7, ns)
		lines += 4
	}
	return b.Bytes(), lines
}

// discardSink takes bodies as received, as the output does.
type discardSink struct{}

func (discardSink) Write([]aggregator.Point) error { return nil }

func (discardSink) WriteLines([]byte, int, lineprotocol.Precision, time.Time) error { return nil }

// BenchmarkIngestAccounting is one 5,084-line agent request through the
// real ingest handler with accounting off and on. Each iteration sends the
// next second's batch, so accounting does real steps, not duplicates.
func BenchmarkIngestAccounting(b *testing.B) {
	const batches = 256
	bodies := make([][]byte, batches)
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var lines int
	for i := range bodies {
		bodies[i], lines = agentBatch(start.Add(time.Duration(i)*time.Second), 31, true, false)
	}
	withLoads := make([][]byte, batches)
	var loadLines int
	for i := range withLoads {
		withLoads[i], loadLines = agentBatch(start.Add(time.Duration(i)*time.Second), 31, true, true)
	}
	for _, run := range []struct {
		name   string
		on     bool
		bodies [][]byte
		lines  int
	}{{"accounting-off", false, bodies, lines}, {"accounting-on", true, bodies, lines}, {"accounting-on-workloads", true, withLoads, loadLines}} {
		on, bodies, lines := run.on, run.bodies, run.lines
		b.Run(run.name, func(b *testing.B) {
			var processors []aggregator.Processor
			if on {
				a, err := New(Config{}, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				a.now = func() time.Time { return start }
				processors = append(processors, a)
			}
			in := aggregator.NewIngest([]string{"t"}, aggregator.Limits{}, discardSink{}, slog.New(slog.DiscardHandler), processors...)
			b.ReportAllocs()
			t0 := time.Now()
			i := 0
			for b.Loop() {
				// Past the pre-built batches the timestamps repeat and
				// accounting takes the duplicate path: keep b.N within
				// them for the figure (-benchtime=256x).
				req := httptest.NewRequest(http.MethodPost, "/api/v2/write", bytes.NewReader(bodies[i%batches]))
				req.Header.Set("Authorization", "Token t")
				w := httptest.NewRecorder()
				in.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Fatal(w.Code, w.Body.String())
				}
				i++
			}
			b.ReportMetric(float64(lines*b.N)/time.Since(t0).Seconds(), "lines/s")
		})
	}
}

// BenchmarkAccountingMemory feeds 128 hosts (eight GPUs each: 20,992 raw
// series, 3,584 of them accounting inputs) one point per series every 10 s
// for 70 minutes, closing windows as it goes, so the windows kept for late
// points (max_lateness 1h) are at their steady state; it reports the heap
// accounting holds per accounting series and per raw series.
func BenchmarkAccountingMemory(b *testing.B) {
	for _, lateness := range []time.Duration{time.Hour, 15 * time.Minute} {
		b.Run("max_lateness="+lateness.String(), func(b *testing.B) { accountingMemory(b, lateness, false) })
	}
	for _, lateness := range []time.Duration{time.Hour, 15 * time.Minute} {
		b.Run("max_lateness="+lateness.String()+"/workloads", func(b *testing.B) { accountingMemory(b, lateness, true) })
	}
}

func accountingMemory(b *testing.B, lateness time.Duration, workloads bool) {
	for b.Loop() {
		start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a, _ := New(Config{MaxLateness: lateness}, slog.New(slog.DiscardHandler))
		now := start
		a.now = func() time.Time { return now }
		in := aggregator.NewIngest([]string{"t"}, aggregator.Limits{}, discardSink{}, slog.New(slog.DiscardHandler), a)
		raw := 0
		for step := range 420 {
			now = start.Add(time.Duration(step) * 10 * time.Second)
			body, lines := agentBatch(now, 128, true, workloads)
			raw = lines
			req := httptest.NewRequest(http.MethodPost, "/api/v2/write", bytes.NewReader(body))
			req.Header.Set("Authorization", "Token t")
			w := httptest.NewRecorder()
			in.ServeHTTP(w, req)
			a.Tick(now)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		series := a.Series()
		b.ReportMetric(float64(series), "series")
		held := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(held/float64(series), "heap-bytes/accounting-series")
		b.ReportMetric(held/float64(raw), "heap-bytes/raw-series")
		runtime.KeepAlive(a)
	}
}
