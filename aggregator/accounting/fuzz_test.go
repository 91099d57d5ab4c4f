package accounting

import (
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// FuzzAccounting feeds arbitrary line protocol (seconds since t0) to the
// accountant and closes its windows: nothing panics or hangs, and every
// energy written is finite and not negative, every coverage within 0–1,
// every PUE finite and positive.
func FuzzAccounting(f *testing.F) {
	f.Add([]byte("joules_gpu_energy_joules_total,host=a,gpu=0,site=s value=5 0\njoules_gpu_energy_joules_total,host=a,gpu=0,site=s value=1 30\n"))
	f.Add([]byte("joules_redfish_host_power_watts,host=a,role=host,site=s value=500 0\njoules_redfish_host_power_watts,host=a,role=host,site=s value=-500 20\n"))
	f.Add([]byte("joules_redfish_equipment_energy_joules_total,bmc=f,equipment=1,role=facility_input,site=s value=0 0\njoules_redfish_equipment_energy_joules_total,bmc=f,equipment=1,role=facility_input,site=s value=1e308 9999999999\n"))
	f.Add([]byte("node_rapl_package_joules_total,host=a,path=/p value=10 0\njoules_rapl_max_energy_range_joules,host=a,path=/p value=-3 1\nnode_rapl_package_joules_total,host=a,path=/p value=1 2\n"))
	f.Add([]byte("joules_work_total,host=a,unit=token value=1 -9999999999\njoules_work_total,host=a,unit=token value=2 9999999999\njoules_gpu_sm_activity_ratio,host=a,gpu=0 value=7 3\n"))
	f.Add([]byte("joules_redfish_host_energy_joules_total,host=a,role=host,site=s value=0 0\njoules_gpu_energy_joules_total,host=a,gpu=0,site=s value=0 0\n" +
		"joules_gpu_workload_share_ratio,host=a,gpu=0,site=s,workload=1,workload_kind=slurm_job value=0.7 0\njoules_gpu_workload_share_ratio,host=a,gpu=0,site=s,workload=p,workload_kind=k8s_pod value=0.6 0\n" +
		"joules_redfish_host_energy_joules_total,host=a,role=host,site=s value=1000 10\njoules_gpu_energy_joules_total,host=a,gpu=0,site=s value=1500 10\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := New(Config{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Hour)
		a.now = func() time.Time { return now }
		points, _ := decodeLines(body, t0)
		points = points[:min(len(points), 200)]
		a.Process(points)
		for _, at := range []time.Duration{time.Hour, 3 * time.Hour, 50 * time.Hour} {
			now = t0.Add(at)
			for _, p := range a.Tick(now) {
				for _, fl := range p.Fields {
					if fl.Value.Kind() != lineprotocol.Float {
						continue
					}
					v := fl.Value.FloatV()
					bad := math.IsNaN(v) || math.IsInf(v, 0)
					switch fl.Key {
					case "joules", "idle_joules", "facility_joules", "it_joules", "work", "gpu_joules", "host_share_joules":
						bad = bad || v < 0
					case "coverage", "facility_coverage", "it_coverage":
						bad = bad || v < 0 || v > 1
					case "pue":
						bad = bad || v <= 0
					}
					if bad {
						t.Fatalf("%s: %s = %v", describe(&p), fl.Key, v)
					}
				}
			}
		}
	})
}
