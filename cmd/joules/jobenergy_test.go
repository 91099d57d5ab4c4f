package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// jobWindows writes what the accounting writes for Slurm job 77 over three
// minutes on two hosts: 1.2 MJ of IT energy a minute (0.9 MJ of its GPUs'),
// 1.68 MJ at the facility (PUE 1.4), and the site's IT energy.
func jobWindows(t *testing.T, db *testenv.InfluxDB, from time.Time) {
	t.Helper()
	var b strings.Builder
	for i := range 3 {
		ns := from.Add(time.Duration(i) * time.Minute).UnixNano()
		fmt.Fprintf(&b, "joules_workload_energy,label_team=vision,resolution=1m,scope=site,site=s1,workload=77,workload_kind=slurm_job joules=1.2e6,gpu_joules=0.9e6,host_share_joules=0.3e6,facility_joules=1.68e6,pue=1.4,coverage=1,share=0.5,hosts=2i,rule=\"gpu_energy\",reason=\"\" %d\n", ns)
		fmt.Fprintf(&b, "joules_energy,kind=it,resolution=1m,scope=site,site=s1 joules=2.4e6,coverage=1 %d\n", ns)
	}
	// An hour window, as if written: a long range must still read the
	// job at its own windows (an hour's may not be written yet, and the
	// one here says something else to tell them apart).
	fmt.Fprintf(&b, "joules_workload_energy,label_team=vision,resolution=1h,scope=site,site=s1,workload=77,workload_kind=slurm_job joules=9e9,gpu_joules=9e9,coverage=1,hosts=2i %d\n", from.Truncate(time.Hour).UnixNano())
	fmt.Fprintf(&b, "joules_energy,kind=it,resolution=1h,scope=site,site=s1 joules=9e9,coverage=1 %d\n", from.Truncate(time.Hour).UnixNano())
	resp, err := http.Post(db.URL+"/api/v2/write?bucket="+db.Bucket+"&precision=ns", "text/plain", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: %s", resp.Status)
	}
}

func TestJobEnergy(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	from := time.Now().Add(-time.Hour).Truncate(time.Minute).UTC()
	jobWindows(t, db, from)
	conn := []string{"--influx.url", db.URL, "--influx.bucket", db.Bucket}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		// 3 × 1.2 MJ = 1 kWh; 3 × 0.9 MJ = 0.75 kWh; 3 × 1.68 MJ = 1.4 kWh.
		{[]string{"77", "--format", "comment"}, 0, "energy_kwh=1.000,gpu_kwh=0.750,facility_kwh=1.400,energy_coverage=1.000\n"},
		{[]string{"77"}, 0, "job 77: 1.000 kWh IT (GPUs 0.750, share of its hosts 0.250), 1.400 kWh at the facility; on 2 hosts"},
		{[]string{"77", "--format", "comment", "--from=-30d"}, 0, "energy_kwh=1.000,"},
		{[]string{"78"}, 1, "no Slurm job 78 in bucket"},
		{[]string{"seventy"}, 2, `job "seventy": give the Slurm job's id`},
		{[]string{"123_4"}, 2, "for an array task its own SLURM_JOB_ID"},
	} {
		var stdout, stderr bytes.Buffer
		args := append(append([]string{"job-energy"}, tc.args...), conn...)
		if !slices.ContainsFunc(tc.args, func(a string) bool { return strings.HasPrefix(a, "--from") }) {
			args = append(args, "--from", from.Add(-time.Minute).Format(time.RFC3339))
		}
		code := run(args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("job-energy %v: exit %d, %q %q; want %d and %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out)
		}
	}
}

// The Slurm epilog puts the job's energy after its comment, with the real
// joules and stand-ins for Slurm's commands.
func TestSlurmEpilogAddsTheJobsEnergyToItsComment(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	from := time.Now().Add(-time.Hour).Truncate(time.Minute).UTC()
	jobWindows(t, db, from)
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "joules"), ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	updates := filepath.Join(t.TempDir(), "updates")
	os.WriteFile(filepath.Join(bin, "sacct"), []byte("#!/bin/sh\necho 'team=vision'\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "scontrol"), []byte("#!/bin/sh\necho \"$@\" >> "+updates+"\n"), 0o755)
	cmd := exec.Command("sh", filepath.Join(testenv.RepoRoot(t), "packaging", "slurm", "epilog-joules.sh"))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "SLURM_JOB_ID=77", "JOULES_EPILOG_WAIT=0",
		"JOULES_INFLUX_URL="+db.URL, "JOULES_INFLUX_BUCKET="+db.Bucket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("epilog: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(updates)
	if want := "update job=77 comment=team=vision,energy_kwh=1.000,gpu_kwh=0.750,facility_kwh=1.400,energy_coverage=1.000\n"; string(got) != want {
		t.Errorf("scontrol got %q, want %q (epilog said %s)", got, want, out)
	}
	// A job joules has no energy of: the epilog says so and succeeds.
	again := exec.Command(cmd.Args[0], cmd.Args[1:]...)
	again.Env = append(cmd.Env, "SLURM_JOB_ID=78")
	out, err = again.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "epilog-joules: job 78: joules job-energy: no Slurm job 78") {
		t.Errorf("epilog for a job without energy: %v, %s", err, out)
	}
}
