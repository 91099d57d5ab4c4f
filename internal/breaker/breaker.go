// Package breaker stops polling a device that keeps failing, so that a
// dead BMC or meter costs one timeout per backoff, not one per poll.
package breaker

import "time"

// Breaker opens after Threshold failures in a row, for Base, doubling on
// each further failure up to Max; one success closes it. It is not safe
// for concurrent use: each device's poller owns one.
type Breaker struct {
	Threshold int
	Base, Max time.Duration

	failures  int
	backoff   time.Duration
	openUntil time.Time
}

// New returns the breaker every poller uses: three failures open it for
// 30 s, doubling up to 5 minutes.
func New() Breaker { return Breaker{Threshold: 3, Base: 30 * time.Second, Max: 5 * time.Minute} }

// Open says whether polling is suspended at now, and until when.
func (b *Breaker) Open(now time.Time) (time.Time, bool) { return b.openUntil, now.Before(b.openUntil) }

// Fail records a failure; it reports whether the circuit opened now.
func (b *Breaker) Fail(now time.Time) bool {
	b.failures++
	if b.failures < b.Threshold {
		return false
	}
	if b.backoff == 0 {
		b.backoff = b.Base
	} else {
		b.backoff = min(2*b.backoff, b.Max)
	}
	b.openUntil = now.Add(b.backoff)
	return true
}

// Backoff is how long the circuit last opened for.
func (b *Breaker) Backoff() time.Duration { return b.backoff }

// OK records a success: the circuit closes and the backoff starts again.
func (b *Breaker) OK() { b.failures, b.backoff, b.openUntil = 0, 0, time.Time{} }
