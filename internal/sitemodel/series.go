package sitemodel

import (
	"sync"
	"time"
)

// Every power of the model is constant over a whole second of wall-clock
// time (NVML's and most BMCs' power readings are one-second averages too)
// and held in integer milliwatts, so an energy counter is an exact integer
// sum (milliwatt-seconds are millijoules): the same in every process that
// asks, whatever it asked before, and never going backwards. Every
// second's values depend only on the time of day (UTC), so a day's sums,
// computed once, give the integral from the epoch to any instant at the
// cost of at most one minute of steps.

const (
	day            = 86400
	minutesPerDay  = day / 60
	cachedMinutes  = 8
	microsPerSec   = 1_000_000
	nanosPerSecond = 1_000_000_000
)

// Epoch is when every counter of the model starts: the simulated site's
// commissioning. Counters asked for an earlier time read zero.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// series is a vector of integer quantities, one value per second of the
// day, the same every day.
type series struct {
	width int
	// step writes the quantities of second tod (0..86399) of the day into out.
	step func(tod int, out []int64)

	once   sync.Once
	prefix []int64 // (minutesPerDay+1) × width: sums over the day's first m minutes

	mu      sync.Mutex
	minutes map[int][]int64 // recently used minutes of the day: 60 × width steps each
	order   []int           // of the cached minutes, oldest first
}

func newSeries(width int, step func(tod int, out []int64)) *series {
	return &series{width: width, step: step, minutes: map[int][]int64{}}
}

// at returns the quantities at t.
func (s *series) at(t time.Time) []int64 {
	out := make([]int64, s.width)
	s.step(int(floorMod(t.Unix(), day)), out)
	return out
}

// table returns the per-minute prefix sums of one day, built on first use.
func (s *series) table() []int64 {
	s.once.Do(func() {
		w := s.width
		p := make([]int64, (minutesPerDay+1)*w)
		v := make([]int64, w)
		for m := range minutesPerDay {
			next := p[(m+1)*w : (m+2)*w]
			copy(next, p[m*w:(m+1)*w])
			for sec := range 60 {
				s.step(m*60+sec, v)
				for j, x := range v {
					next[j] += x
				}
			}
		}
		s.prefix = p
	})
	return s.prefix
}

// minute returns the 60 steps of minute m of the day, from a small cache:
// the counters of one instant are asked for many times.
func (s *series) minute(m int) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.minutes[m]; ok {
		return v
	}
	v := make([]int64, 60*s.width)
	for sec := range 60 {
		s.step(m*60+sec, v[sec*s.width:(sec+1)*s.width])
	}
	if len(s.order) == cachedMinutes {
		delete(s.minutes, s.order[0])
		s.order = s.order[1:]
	}
	s.minutes[m] = v
	s.order = append(s.order, m)
	return v
}

// integral returns each quantity summed from the epoch to t, in its unit
// times seconds (milliwatts give millijoules), rounded down.
func (s *series) integral(t time.Time) []int64 {
	out := make([]int64, s.width)
	ns := t.Sub(Epoch).Nanoseconds()
	if ns <= 0 {
		return out
	}
	k := ns / nanosPerSecond
	fracMicros := (ns % nanosPerSecond) / 1000
	days, tod := k/day, int(k%day)
	m, sec := tod/60, tod%60
	w := s.width
	p := s.table()
	steps := s.minute(m)
	for j := range out {
		v := days*p[minutesPerDay*w+j] + p[m*w+j]
		for i := range sec {
			v += steps[i*w+j]
		}
		out[j] = v + steps[sec*w+j]*fracMicros/microsPerSec
	}
	return out
}

func floorMod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}
