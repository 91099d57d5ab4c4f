package aggregator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes ingest and output state on the aggregator's /metrics.
type Collector struct {
	in  *Ingest
	out *Output
}

// NewCollector returns a prometheus.Collector over ingest and output.
// (in may be nil: a cluster member that takes no writes.)
func NewCollector(in *Ingest, out *Output) *Collector { return &Collector{in: in, out: out} }

var (
	descRequests    = prometheus.NewDesc("joules_ingest_requests_total", "Write requests received.", nil, nil)
	descPoints      = prometheus.NewDesc("joules_ingest_points_total", "Points accepted (durably spooled).", nil, nil)
	descBadLines    = prometheus.NewDesc("joules_ingest_bad_lines_total", "Lines refused as malformed (answered 400 with their line numbers); good lines of the same request were kept.", nil, nil)
	descUnauth      = prometheus.NewDesc("joules_ingest_unauthorized_total", "Requests refused for a missing or wrong token.", nil, nil)
	descTooLarge    = prometheus.NewDesc("joules_ingest_too_large_total", "Requests refused as too large (body, decompressed body).", nil, nil)
	descFailed      = prometheus.NewDesc("joules_ingest_failed_total", "Requests answered 503 because the output spool failed.", nil, nil)
	descThrottled   = prometheus.NewDesc("joules_ingest_throttled_total", "Requests answered 429 because their client went over limits.requests_per_second.", nil, nil)
	descWritten     = prometheus.NewDesc("joules_output_written_points_total", "Points written to InfluxDB.", nil, nil)
	descRetries     = prometheus.NewDesc("joules_output_retries_total", "Failed InfluxDB writes that are retried.", nil, nil)
	descDead        = prometheus.NewDesc("joules_output_dead_letter_lines_total", "Lines InfluxDB refused for good (4xx), kept in the dead-letter file.", nil, nil)
	descDropped     = prometheus.NewDesc("joules_output_spool_dropped_points_total", "Points dropped because the output spool was full (oldest first).", nil, nil)
	descSpoolPoints = prometheus.NewDesc("joules_output_spool_points", "Points waiting in the output spool for InfluxDB.", nil, nil)
	descSpoolBytes  = prometheus.NewDesc("joules_output_spool_bytes", "Bytes in the output spool.", nil, nil)
	descSpoolAge    = prometheus.NewDesc("joules_output_spool_oldest_age_seconds", "Age of the oldest point waiting for InfluxDB.", nil, nil)
	descLatency     = prometheus.NewDesc("joules_output_latency_seconds", "Time from a request's oldest sample to its write into InfluxDB, over the last 4,096 requests.", []string{"quantile"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descPoints, descBadLines, descUnauth, descTooLarge, descFailed, descThrottled, descWritten, descRetries, descDead, descDropped, descSpoolPoints, descSpoolBytes, descSpoolAge, descLatency} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if c.in != nil { // a cluster member without the ingest role has none
		counter(descRequests, c.in.Stats.Requests.Load())
		counter(descPoints, c.in.Stats.Points.Load())
		counter(descBadLines, c.in.Stats.BadLines.Load())
		counter(descUnauth, c.in.Stats.Unauthorized.Load())
		counter(descTooLarge, c.in.Stats.TooLarge.Load())
		counter(descFailed, c.in.Stats.Failed.Load())
		counter(descThrottled, c.in.Stats.Throttled.Load())
	}
	counter(descWritten, c.out.Written.Load())
	counter(descRetries, c.out.Retries.Load())
	counter(descDead, c.out.DeadLettered.Load())
	counter(descDropped, c.out.SpoolDropped.Load())
	st := c.out.SpoolStats()
	ch <- prometheus.MustNewConstMetric(descSpoolPoints, prometheus.GaugeValue, float64(st.Points))
	ch <- prometheus.MustNewConstMetric(descSpoolBytes, prometheus.GaugeValue, float64(st.Bytes))
	age := 0.0
	if !st.Oldest.IsZero() {
		age = time.Since(st.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descSpoolAge, prometheus.GaugeValue, age)
	for _, q := range []struct {
		phi   float64
		label string
	}{{0.5, "0.5"}, {0.99, "0.99"}} {
		if v, n := c.out.Latency.Quantile(q.phi); n > 0 {
			ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, v.Seconds(), q.label)
		}
	}
}
