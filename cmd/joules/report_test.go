package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestReportRefusesWhatItCannotReport(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"range backwards", []string{"--from=-1h", "--to=-2h"}, 2, "is not before"},
		{"no time", []string{"--from", "yesterday"}, 2, `"yesterday" is no time: write`},
		{"bad tariff", []string{"--price.tou", "0-7:0.1,8-24:0.2"}, 2, "hour 7 has no price"},
		{"bad format", []string{"--format", "pdf"}, 2, "enum value must be one of html,md,csv,json"},
		{"unreachable InfluxDB", []string{"--influx.url", "http://127.0.0.1:1", "--timeout", "2s"}, 1, "cannot reach InfluxDB at http://127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"report"}, tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("a failed report wrote %q", stdout.String())
			}
		})
	}
}

func TestReportOfAnEmptyRange(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	var stdout, stderr bytes.Buffer
	from := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	code := run([]string{"report", "--influx.url", db.URL, "--influx.bucket", db.Bucket, "--from", from, "--format", "json"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no accounting data in bucket") || !strings.Contains(stderr.String(), "is the aggregator's accounting on") {
		t.Errorf("exit %d, stderr %q; want 1 and what was looked for", code, stderr.String())
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now": now, "-24h": now.Add(-24 * time.Hour), "-7d": now.AddDate(0, 0, -7), "2026-03-01": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"2026-03-01T06:30:00+01:00": time.Date(2026, 3, 1, 5, 30, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-0h", "-7x", "-d", "tomorrow", ""} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
}
