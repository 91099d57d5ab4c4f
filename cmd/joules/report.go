package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/report"
)

// reportCmd is `joules report`.
type reportCmd struct {
	cmd                    *kingpin.CmdClause
	from, to               *string
	site, hall, rack, host *string
	format, out            *string
	*influxFlags
	resolution                        *string
	top                               *int
	by, job                           *string
	carbon                            *float64
	carbonSeries                      *string
	price                             *float64
	priceTOU, priceTimezone, currency *string
}

func newReportCmd(app *kingpin.Application) *reportCmd {
	c := &reportCmd{cmd: app.Command("report", "Write an energy report from InfluxDB: HTML with charts, Markdown, CSV or JSON.")}
	f := c.cmd.Flag
	c.from = f("from", "Start: RFC 3339 (2026-03-01T00:00:00Z), a date (2026-03-01, UTC), or relative to now (--from=-24h, --from=-7d).").Default("-24h").String()
	c.to = f("to", "End, in the same forms; now by default.").Default("now").String()
	c.site = f("site", "Only this site.").String()
	c.hall = f("hall", "Only this hall.").String()
	c.rack = f("rack", "Only this rack.").String()
	c.host = f("host", "Only this host.").String()
	c.format = f("format", "html, md, csv or json.").Default("html").Enum(report.Formats...)
	c.out = f("out", "Write the report here; - for standard output.").Default("-").String()
	c.influxFlags = newInfluxFlags(c.cmd)
	c.resolution = f("resolution", "Accounting windows to read (1m, 1h, 1d); default: the finest in the range.").String()
	c.top = f("top", "Rows in the host, GPU and workload tables.").Default("10").Int()
	c.by = f("by", "Group the workload section by workload, or by a workload label: team, model, or any label the agents were given (workloads.labels).").Default("workload").String()
	c.job = f("job", "Only this Slurm job in the workload section (its id).").String()
	c.carbon = f("carbon.intensity", "Grid carbon intensity in gCO2e/kWh (a constant).").Default("0").Float64()
	c.carbonSeries = f("carbon.measurement", "Measurement in the same bucket holding the grid's intensity (field value, gCO2e/kWh) over time.").String()
	c.price = f("price", "Energy price per kWh (a constant).").Default("0").Float64()
	c.priceTOU = f("price.tou", "Time-of-use prices per kWh by hour of day, e.g. 0-7:0.08,7-19:0.16,19-24:0.11.").String()
	c.priceTimezone = f("price.timezone", "Time zone of --price.tou's hours (IANA name).").Default("UTC").String()
	c.currency = f("currency", "Currency of the prices, e.g. EUR.").String()
	return c
}

// parseWhen reads a report time relative to now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		rel := strings.TrimPrefix(s, "-")
		if days, ok := strings.CutSuffix(rel, "d"); ok {
			var n int
			if _, err := fmt.Sscanf(days, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == days {
				return now.AddDate(0, 0, -n), nil
			}
		}
		if d, err := time.ParseDuration(rel); err == nil && d > 0 {
			return now.Add(-d), nil
		}
	default:
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t, nil
		}
		if t, err := time.Parse(time.DateOnly, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is no time: write 2026-03-01T00:00:00Z, 2026-03-01, now, -24h or -7d", s)
}

func (c *reportCmd) options(now time.Time) (report.Options, error) {
	by := strings.TrimPrefix(*c.by, "label_")
	if by != "workload" && !validLabel(by) {
		return report.Options{}, fmt.Errorf("--by %q: say workload, or a workload label's name (team, model)", *c.by)
	}
	opt := report.Options{Site: *c.site, Hall: *c.hall, Rack: *c.rack, Host: *c.host, Resolution: *c.resolution, TopN: *c.top, By: by, Job: *c.job,
		Carbon: report.Carbon{GramsPerKWh: *c.carbon, Measurement: *c.carbonSeries}, Price: report.Price{PerKWh: *c.price, Currency: *c.currency}}
	var err error
	if opt.From, err = parseWhen(*c.from, now); err != nil {
		return opt, fmt.Errorf("--from: %w", err)
	}
	if opt.To, err = parseWhen(*c.to, now); err != nil {
		return opt, fmt.Errorf("--to: %w", err)
	}
	if !opt.From.Before(opt.To) {
		return opt, fmt.Errorf("--from %s is not before --to %s", opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339))
	}
	if *c.carbon < 0 || *c.price < 0 || *c.top < 1 {
		return opt, fmt.Errorf("--carbon.intensity and --price must not be negative, --top at least 1")
	}
	if *c.priceTOU != "" {
		if opt.Price.TimeOfUse, err = report.ParseTimeOfUse(*c.priceTOU); err != nil {
			return opt, fmt.Errorf("--price.tou: %w", err)
		}
		if opt.Price.Location, err = time.LoadLocation(*c.priceTimezone); err != nil {
			return opt, fmt.Errorf("--price.timezone: %w", err)
		}
	}
	return opt, nil
}

// run writes the report; 1 when nothing could be reported.
func (c *reportCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "joules report: %v\n", err)
		return code
	}
	opt, err := c.options(time.Now())
	if err != nil {
		return fail(2, err)
	}
	serverURL, org, bucket, token, err := c.connection()
	if err != nil {
		return fail(2, err)
	}
	opt.Bucket = bucket
	db := report.NewInflux(serverURL, org, token, *c.timeout)
	defer db.Close()
	r, err := report.Build(ctx, db, opt)
	if err != nil {
		return fail(1, err)
	}
	var buf bytes.Buffer
	if err := report.Write(&buf, r, *c.format); err != nil {
		return fail(1, err)
	}
	if *c.out == "-" {
		_, err = stdout.Write(buf.Bytes())
	} else {
		err = writeFileAtomic(*c.out, buf.Bytes())
		if err == nil {
			abs, _ := filepath.Abs(*c.out)
			fmt.Fprintf(stderr, "joules report: wrote %s (%s, %s to %s)\n", abs, *c.format, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
		}
	}
	if err != nil {
		return fail(1, err)
	}
	if len(r.Gaps) > 0 {
		fmt.Fprintf(stderr, "joules report: %d data gaps flagged in the report\n", len(r.Gaps))
	}
	return 0
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("--out: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}
