package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/report"
)

// reportCmd is `joules report`.
type reportCmd struct {
	cmd                               *kingpin.CmdClause
	from, to                          *string
	site, hall, rack, host            *string
	format, out                       *string
	configFile                        *string
	influxURL, org, bucket, tokenFile *string
	resolution                        *string
	top                               *int
	timeout                           *time.Duration
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
	c.configFile = f("config.file", "Read the InfluxDB connection from the influx section of this aggregator configuration.").String()
	c.influxURL = f("influx.url", "InfluxDB URL (default: the config file's, else $JOULES_INFLUX_URL, else http://127.0.0.1:8086).").Envar("JOULES_INFLUX_URL").String()
	c.org = f("influx.org", "InfluxDB 2.x organisation.").Envar("JOULES_INFLUX_ORG").String()
	c.bucket = f("influx.bucket", "Bucket (InfluxDB 1.8: db/rp).").Envar("JOULES_INFLUX_BUCKET").String()
	c.tokenFile = f("influx.token-file", "File holding the InfluxDB token (1.8: user:password); $JOULES_INFLUX_TOKEN works too.").String()
	c.resolution = f("resolution", "Accounting windows to read (1m, 1h, 1d); default: the finest in the range.").String()
	c.top = f("top", "Rows in the host and GPU tables.").Default("10").Int()
	c.timeout = f("timeout", "Timeout of each InfluxDB query.").Default("60s").Duration()
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
	opt := report.Options{Site: *c.site, Hall: *c.hall, Rack: *c.rack, Host: *c.host, Resolution: *c.resolution, TopN: *c.top,
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

// connection gathers InfluxDB's URL, org, bucket and token: flags, then the
// environment, then the aggregator's configuration file.
func (c *reportCmd) connection() (serverURL, org, bucket, token string, err error) {
	serverURL, org, bucket = *c.influxURL, *c.org, *c.bucket
	if *c.configFile != "" {
		cfg, err := config.LoadAggregator(*c.configFile)
		if err != nil {
			return "", "", "", "", fmt.Errorf("--config.file: %w", err)
		}
		serverURL = cmp.Or(serverURL, cfg.Influx.URL.Value)
		org = cmp.Or(org, cfg.Influx.Org)
		bucket = cmp.Or(bucket, cfg.Influx.Bucket)
		if *c.tokenFile == "" {
			if token, err = cfg.Influx.Token(); err != nil {
				return "", "", "", "", fmt.Errorf("--config.file: influx token: %w", err)
			}
		}
	}
	serverURL = cmp.Or(serverURL, "http://127.0.0.1:8086")
	bucket = cmp.Or(bucket, "joules/autogen")
	if *c.tokenFile != "" {
		raw, err := os.ReadFile(*c.tokenFile)
		if err != nil {
			return "", "", "", "", fmt.Errorf("--influx.token-file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	} else if token == "" {
		token = os.Getenv("JOULES_INFLUX_TOKEN")
	}
	return serverURL, org, bucket, token, nil
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
