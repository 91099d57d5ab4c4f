package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/report"
)

// jobEnergyCmd is `joules job-energy`: a finished Slurm job's energy, for
// an epilog to put into the job's accounting comment (docs/ACCOUNTING.md).
type jobEnergyCmd struct {
	cmd            *kingpin.CmdClause
	job            *string
	from, to, site *string
	resolution     *string
	format         *string
	*influxFlags
}

func newJobEnergyCmd(app *kingpin.Application) *jobEnergyCmd {
	c := &jobEnergyCmd{cmd: app.Command("job-energy", "Print a Slurm job's energy: its GPUs', its share of its hosts', and the facility's by the interim PUE.")}
	f := c.cmd.Flag
	c.job = c.cmd.Arg("job", "The job's id.").Required().String()
	c.from = f("from", "Look back to here (as joules report's --from); the job's windows in the range count.").Default("-30d").String()
	c.to = f("to", "Up to here.").Default("now").String()
	c.site = f("site", "Only this site.").String()
	c.resolution = f("resolution", "Accounting windows to read (1m, 1h); default: the finest in the range.").String()
	c.format = f("format", "text (a line for people), comment (key=value pairs for scontrol update … comment=) or json.").Default("text").Enum("text", "comment", "json")
	c.influxFlags = newInfluxFlags(c.cmd)
	return c
}

// jobEnergy is what the command prints.
type jobEnergy struct {
	Job          string    `json:"job"`
	ITkWh        float64   `json:"it_kwh"`
	GPUkWh       float64   `json:"gpu_kwh"`
	HostSharekWh float64   `json:"host_share_kwh"`
	FacilitykWh  *float64  `json:"facility_kwh"`
	Hosts        int       `json:"hosts"`
	Coverage     float64   `json:"coverage"`
	First        time.Time `json:"first_window"`
	Last         time.Time `json:"last_window"`
	Resolution   string    `json:"resolution"`
}

func (c *jobEnergyCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "joules job-energy: %v\n", err)
		return code
	}
	if !validJobID(*c.job) {
		return fail(2, fmt.Errorf("job %q: give the Slurm job's id (digits; for an array task its own SLURM_JOB_ID, as its cgroup names it)", *c.job))
	}
	now := time.Now()
	from, err := parseWhen(*c.from, now)
	if err != nil {
		return fail(2, fmt.Errorf("--from: %w", err))
	}
	to, err := parseWhen(*c.to, now)
	if err != nil {
		return fail(2, fmt.Errorf("--to: %w", err))
	}
	serverURL, org, bucket, token, err := c.connection()
	if err != nil {
		return fail(2, err)
	}
	db := report.NewInflux(serverURL, org, token, *c.timeout)
	defer db.Close()
	ws, err := report.WorkloadEnergy(ctx, db, report.Options{Bucket: bucket, From: from, To: to, Site: *c.site, Resolution: *c.resolution, Job: *c.job})
	if err != nil {
		return fail(1, err)
	}
	if len(ws.Rows) == 0 {
		return fail(1, fmt.Errorf("no energy of job %s from %s to %s", *c.job, from.Format(time.RFC3339), to.Format(time.RFC3339)))
	}
	r := ws.Rows[0]
	e := jobEnergy{Job: *c.job, ITkWh: r.ITkWh, GPUkWh: r.GPUkWh, HostSharekWh: r.HostSharekWh, FacilitykWh: r.FacilitykWh, Hosts: r.Hosts,
		Coverage: r.Coverage, First: r.First, Last: r.Last}
	switch *c.format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(e)
	case "comment":
		parts := []string{fmt.Sprintf("energy_kwh=%.3f", e.ITkWh), fmt.Sprintf("gpu_kwh=%.3f", e.GPUkWh)}
		if e.FacilitykWh != nil {
			parts = append(parts, fmt.Sprintf("facility_kwh=%.3f", *e.FacilitykWh))
		}
		parts = append(parts, fmt.Sprintf("energy_coverage=%.3f", e.Coverage))
		_, err = fmt.Fprintln(stdout, strings.Join(parts, ","))
	default:
		fac := "no facility meter"
		if e.FacilitykWh != nil {
			fac = fmt.Sprintf("%.3f kWh at the facility", *e.FacilitykWh)
		}
		_, err = fmt.Fprintf(stdout, "job %s: %.3f kWh IT (GPUs %.3f, share of its hosts %.3f), %s; on %d hosts, %s to %s, coverage %.1f %%\n",
			e.Job, e.ITkWh, e.GPUkWh, e.HostSharekWh, fac, e.Hosts, e.First.UTC().Format(time.RFC3339), e.Last.UTC().Format(time.RFC3339), 100*e.Coverage)
	}
	if err != nil {
		return fail(1, err)
	}
	return 0
}

// validJobID says whether s is a Slurm job id as a job's cgroup names it:
// digits (an array task has an id of its own, SLURM_JOB_ID).
func validJobID(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
