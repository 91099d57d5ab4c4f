package report

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
)

// Row is one record of a Flux result: its time and its columns (tags, and
// fields where the query pivoted them).
type Row struct {
	Time   time.Time
	Values map[string]any
}

// Querier runs a Flux query. The report asks it only for joules' derived
// measurements (docs/SCHEMA.md).
type Querier interface {
	Query(ctx context.Context, flux string) ([]Row, error)
}

// Influx queries InfluxDB 2.x, or 1.8 with flux-enabled, through
// influxdb-client-go's Flux API.
type Influx struct {
	client influxdb2.Client
	org    string
	url    string
}

// NewInflux connects lazily: errors come with the first query.
func NewInflux(serverURL, org, token string, timeout time.Duration) *Influx {
	opts := influxdb2.DefaultOptions().SetHTTPRequestTimeout(uint(timeout.Seconds()))
	return &Influx{client: influxdb2.NewClientWithOptions(serverURL, token, opts), org: org, url: serverURL}
}

// Close releases the client.
func (in *Influx) Close() { in.client.Close() }

// Query implements Querier.
func (in *Influx) Query(ctx context.Context, flux string) ([]Row, error) {
	res, err := in.client.QueryAPI(in.org).Query(ctx, flux)
	if err != nil {
		return nil, in.explain(err)
	}
	defer res.Close()
	var rows []Row
	for res.Next() {
		rec := res.Record()
		rows = append(rows, Row{Time: rec.Time(), Values: rec.Values()})
	}
	if err := res.Err(); err != nil {
		return nil, in.explain(err)
	}
	return rows, nil
}

// explain names the server and what to check.
func (in *Influx) explain(err error) error {
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &ue) || errors.As(err, &ne):
		return fmt.Errorf("cannot reach InfluxDB at %s (%w): check --influx.url and that InfluxDB runs", in.url, err)
	case strings.Contains(err.Error(), "unauthorized") || strings.Contains(err.Error(), "401"):
		return fmt.Errorf("InfluxDB at %s refused the token (%w): check --influx.token-file", in.url, err)
	}
	return fmt.Errorf("InfluxDB at %s: %w", in.url, err)
}
