// Package collector holds the sample model, the Source contract, the runner
// that drives sources on their own cadence, and the host sources.
package collector

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Kind says how a sample's value behaves over time.
type Kind uint8

const (
	// Gauge values go up and down.
	Gauge Kind = iota
	// Counter values only rise, except on a reset or wrap of the hardware.
	Counter
	// Untyped values come from sources that do not say (node_exporter's untyped metrics).
	Untyped
)

func (k Kind) String() string {
	switch k {
	case Gauge:
		return "gauge"
	case Counter:
		return "counter"
	default:
		return "untyped"
	}
}

// Label is one name/value pair of a sample.
type Label struct {
	Name, Value string
}

// Sample is one reading of one series.
type Sample struct {
	Name   string // Prometheus-style name with base unit, e.g. joules_gpu_power_watts
	Help   string // one line saying what the series means
	Kind   Kind
	Value  float64
	Labels []Label   // sorted by name
	Time   time.Time // when the hardware was read
}

// SortLabels orders labels by name, as Sample requires.
func SortLabels(ls []Label) {
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
}

// ErrAbsent is returned (possibly wrapped) by a source whose hardware is not
// present on this host. The runner logs it once at info level, not as an error.
var ErrAbsent = errors.New("hardware absent")

// Source reads one hardware domain synchronously. Collect must honour ctx's
// deadline where it can; the runner abandons a call that overruns it. A
// source may return samples together with an error (the last good values of
// a BMC that stopped answering, with their age): the runner publishes them
// and reports the source down.
type Source interface {
	Collect(ctx context.Context) ([]Sample, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) ([]Sample, error)

// Collect calls f.
func (f SourceFunc) Collect(ctx context.Context) ([]Sample, error) { return f(ctx) }
