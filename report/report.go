// Package report builds energy reports from the derived measurements the
// aggregator's accounting writes to InfluxDB (docs/SCHEMA.md): energy by
// hall, rack, host and GPU, PUE, idle GPU energy, work per joule,
// reconciliation, carbon and cost, with the data gaps said out loud. It
// renders them as one self-contained HTML page with SVG charts, Markdown,
// CSV and JSON.
package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Options choose what a report covers.
type Options struct {
	Bucket                 string
	From, To               time.Time
	Site, Hall, Rack, Host string // filters; empty: all
	// Resolution of the accounting windows to read (1m, 1h, 1d, or the
	// aggregator's window); empty: the finest the range has.
	Resolution string
	TopN       int // rows of the host, GPU and workload tables (10)
	// By groups the workload section: "workload" (the default), or a
	// workload label's name (team, model: the tag label_<name>).
	By string
	// Job narrows the workload section to one Slurm job.
	Job    string
	Carbon Carbon
	Price  Price
	Now    func() time.Time
}

// Build queries InfluxDB and computes the report. An empty range (no
// accounting data) is an error that says what was looked for.
func Build(ctx context.Context, q Querier, opt Options) (*Report, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.TopN <= 0 {
		opt.TopN = 10
	}
	if !opt.From.Before(opt.To) {
		return nil, fmt.Errorf("range: --from %s is not before --to %s", opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339))
	}
	if opt.Bucket == "" {
		return nil, errors.New("no bucket: give --influx.bucket (InfluxDB 1.8: db/rp)")
	}
	b := &builder{q: q, opt: opt, ctx: ctx}
	r := &Report{Generated: opt.Now().UTC(), From: opt.From.UTC(), To: opt.To.UTC(),
		Filters: Filters{Site: opt.Site, Hall: opt.Hall, Rack: opt.Rack, Host: opt.Host}}
	r.Scope = b.scope()
	r.Title = b.title()
	res, err := b.resolution()
	if err != nil {
		return nil, err
	}
	size, ok := parseResolution(res)
	if !ok || size > 24*time.Hour {
		return nil, fmt.Errorf("resolution %q: give the accounting's window (1m, 5m…), 1h or 1d", res)
	}
	if len(opt.Price.TimeOfUse) > 0 && size > time.Hour {
		return nil, fmt.Errorf("time-of-use prices need windows of an hour or less, not %s: add --resolution 1h", res)
	}
	r.Resolution = res
	b.res, b.size = res, size
	if err := b.windows(r); err != nil {
		return nil, err
	}
	b.rangePUE(r)
	b.headline(r)
	b.series(r)
	for _, step := range []func(*Report) error{b.halls, b.entities, b.gpus, b.work, b.reconciliation, b.carbonAndCost, b.workloadSection} {
		if err := step(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type builder struct {
	q    Querier
	opt  Options
	ctx  context.Context
	res  string
	size time.Duration // of res
	// the windows of the report's scope, by start
	windowsRead []window
	intensity   []ValuePt // the grid's carbon intensity series, if one is asked for
}

func (b *builder) scope() string {
	switch {
	case b.opt.Host != "":
		return "host"
	case b.opt.Rack != "":
		return "rack"
	case b.opt.Hall != "":
		return "hall"
	}
	return "site"
}

func (b *builder) title() string {
	parts := []string{"Energy report"}
	for _, f := range []struct{ k, v string }{{"site", b.opt.Site}, {"hall", b.opt.Hall}, {"rack", b.opt.Rack}, {"host", b.opt.Host}} {
		if f.v != "" {
			parts = append(parts, f.k+" "+f.v)
		}
	}
	return strings.Join(parts, " — ")
}
