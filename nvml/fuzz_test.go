package nvml

import "testing"

// FuzzParseCgroup reads arbitrary /proc/PID/cgroup contents.
func FuzzParseCgroup(f *testing.F) {
	f.Add("0::/system.slice/slurmstepd.scope/job_77/step_0\n")
	f.Add("12:memory:/kubepods/besteffort/pod0f3b2c1a-1111-2222-3333-444455556666/x\n1:name=systemd:/a.service\n")
	f.Add("::\n0::\n")
	f.Fuzz(func(t *testing.T, content string) {
		w := parseCgroup(content)
		if w.SlurmJob != "" && w.PodUID != "" && w.Unit != "" {
			t.Fatalf("a job, a pod and a unit at once: %+v", w)
		}
	})
}
