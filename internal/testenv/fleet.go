package testenv

import (
	"bytes"
	"fmt"
	"time"
)

// RecordedSite is a site's agents' lines over minutes: hosts with BMC
// counters and GPUs, a UPS and a facility meter, every 10 s, ending
// before now so that every window can close.
func RecordedSite(sites []string, hosts int, from time.Time, minutes int) [][]byte {
	var batches [][]byte
	for s := range minutes * 6 {
		at := from.Add(time.Duration(s) * 10 * time.Second)
		sec := at.Sub(from).Seconds()
		var b bytes.Buffer
		for _, site := range sites {
			for h := range hosts {
				host := fmt.Sprintf("%s-n%02d", site, h)
				rack := fmt.Sprintf("r%d", h%3)
				w := 2000 + 100*float64(h)
				fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=%s-bmc,chassis=1,hall=h1,host=%s,method=counter,rack=%s,role=host,site=%s value=%g %d\n", host, host, rack, site, 5e6+w*sec, at.UnixNano())
				for g := range 2 {
					fmt.Fprintf(&b, "joules_gpu_energy_joules_total,gpu=%d,hall=h1,host=%s,rack=%s,site=%s,uuid=GPU-%s-%d value=%g %d\n", g, host, rack, site, host, g, 1e6+(300+float64(g)*20)*sec, at.UnixNano())
				}
				// Workloads: a Slurm job on GPU 0 of each pair of hosts
				// (so across partitions), two pods sharing GPU 1 of every
				// other host, the others idle.
				gpu := func(g int) string {
					return fmt.Sprintf("gpu=%d,hall=h1,host=%s,rack=%s,site=%s,uuid=GPU-%s-%d", g, host, rack, site, host, g)
				}
				fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,label_team=t%d,workload=%d,workload_kind=slurm_job value=1 %d\n", gpu(0), (h/2)%2, 100+h/2, at.UnixNano())
				if h%2 == 0 {
					fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,namespace=ml,workload=ml/a-%d,workload_kind=k8s_pod value=0.6 %d\n", gpu(1), h, at.UnixNano())
					fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s,namespace=ml,workload=ml/b-%d,workload_kind=k8s_pod value=0.4 %d\n", gpu(1), h, at.UnixNano())
				}
			}
			fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=ups,equipment=1,equipment_type=ups,host=%s-mgmt,method=counter,role=ups_output,site=%s value=%g %d\n", site, site, 1e8+float64(hosts)*2600*sec, at.UnixNano())
			fmt.Fprintf(&b, "joules_modbus_equipment_energy_joules_total,device=facility,equipment=main,equipment_type=meter,host=%s-mgmt,method=counter,role=facility_input,site=%s value=%g %d\n", site, site, 2e8+float64(hosts)*3500*sec, at.UnixNano())
		}
		batches = append(batches, b.Bytes())
	}
	return batches
}
