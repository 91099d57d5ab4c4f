// Package clustertest holds what the tier's tests compare against: the
// derived points one process makes of the same input.
package clustertest

import (
	"log/slog"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
)

// OneProcess runs bodies of line protocol (nanosecond timestamps) through
// one accountant and closes every window up to now: what a single
// aggregator derives from them. It returns the derived points and how
// many lines the bodies hold.
func OneProcess(cfg accounting.Config, bodies [][]byte, now time.Time) ([]aggregator.Point, int, error) {
	a, err := accounting.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, 0, err
	}
	lines := 0
	for _, b := range bodies {
		var d aggregator.Decoder
		points, n, _, err := d.Decode(b)
		if err != nil {
			return nil, 0, err
		}
		lines += n
		a.Process(points)
	}
	return a.Tick(now), lines, nil
}
