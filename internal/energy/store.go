package energy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/joules-energy/joules/internal/fsutil"
)

// Store keeps the continuation state of every counter and integrator an
// agent publishes, by a key its source chooses, and saves it to a file so
// that a restarted agent continues its totals instead of starting them
// again from the raw hardware value. Sources on different goroutines share
// one Store. Without a directory the state lives in memory only.
type Store struct {
	path string
	log  *slog.Logger
	now  func() time.Time // the clock of pruning; time.Now when nil

	mu    sync.Mutex
	state storeState
	dirty bool
}

type storeState struct {
	Version     int                    `json:"version"`
	Counters    map[string]*Counter    `json:"counters"`
	Integrators map[string]*Integrator `json:"integrators"`
}

const storeVersion = 1

// StoreFile is the file a Store keeps in its directory.
const StoreFile = "counters.json"

// NewMemoryStore keeps state in memory only.
func NewMemoryStore() *Store {
	return &Store{log: slog.New(slog.DiscardHandler), state: emptyState()}
}

func emptyState() storeState {
	return storeState{Version: storeVersion, Counters: map[string]*Counter{}, Integrators: map[string]*Integrator{}}
}

// OpenStore loads the state saved in dir (created if missing). A file
// that cannot be read is moved aside and the store starts empty: every
// counter then gets a new epoch, which tells the aggregator not to take
// the step across the restart as measured. That, and a directory that
// cannot be written, are errors the caller logs; the returned Store works
// either way (in memory when it cannot save).
func OpenStore(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: logger, state: emptyState()}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return s, fmt.Errorf("counter state directory %s: %w; counters are continued in memory only and start again after a restart", dir, err)
	}
	s.path = filepath.Join(dir, StoreFile)
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err == nil {
		var st storeState
		if err = json.Unmarshal(raw, &st); err == nil && st.Version != storeVersion {
			err = fmt.Errorf("version %d, this agent reads %d", st.Version, storeVersion)
		}
		if err == nil {
			if st.Counters != nil {
				s.state.Counters = st.Counters
			}
			if st.Integrators != nil {
				s.state.Integrators = st.Integrators
			}
			return s, nil
		}
	}
	aside, rerr := fsutil.MoveAside(s.path, time.Now())
	if rerr != nil {
		return s, fmt.Errorf("counter state %s is unreadable (%v) and cannot be moved aside (%w): remove it", s.path, err, rerr)
	}
	return s, fmt.Errorf("counter state %s is unreadable (%w): moved to %s; counters start new epochs", s.path, err, aside)
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// Path is the state file ("" in memory).
func (s *Store) Path() string { return s.path }

// Counter continues the hardware counter named key: the total, its epoch
// and what the reading was.
func (s *Store) Counter(key string, raw float64, hardware string, at time.Time, b Bound) (float64, string, Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.state.Counters[key]
	if c == nil {
		c = &Counter{}
		s.state.Counters[key] = c
	}
	total, ev := c.Update(raw, hardware, at, b)
	s.dirty = true
	return total, c.Epoch, ev
}

// Integrate adds a power reading to the integrator named key and returns
// the energy so far and its epoch.
func (s *Store) Integrate(key string, watts float64, at time.Time, maxGap time.Duration, maxWatts float64) (float64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.state.Integrators[key]
	if e == nil {
		e = &Integrator{}
		s.state.Integrators[key] = e
	}
	e.MaxGap, e.MaxWatts = maxGap, maxWatts
	joules := e.Add(watts, at)
	s.dirty = true
	return joules, e.Epoch
}

// Flush saves the state when it changed: a temporary file, fsync, rename,
// so a crash leaves the old state or the new one.
func (s *Store) Flush() error {
	s.mu.Lock()
	if s.path == "" || !s.dirty {
		s.mu.Unlock()
		return nil
	}
	s.prune()
	raw, err := json.Marshal(&s.state)
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode counter state: %w", err)
	}
	if err := fsutil.WriteAtomic(s.path, raw); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	return nil
}

// forgetAfter is how long a counter nobody updates is kept (a GPU taken
// out, a BMC removed from the configuration).
const forgetAfter = 30 * 24 * time.Hour

// prune forgets what nobody updated for forgetAfter. By the clock of the
// flush: one reading stamped far ahead must not make every other counter
// look old.
func (s *Store) prune() {
	before := s.clock().UnixNano() - int64(forgetAfter)
	for k, c := range s.state.Counters {
		if c.Seen && c.LastTime < before {
			delete(s.state.Counters, k)
		}
	}
	for k, e := range s.state.Integrators {
		if e.LastTime != 0 && e.LastTime < before {
			delete(s.state.Integrators, k)
		}
	}
}

// Run saves the state every interval and once more when ctx ends.
func (s *Store) Run(ctx context.Context, every time.Duration) {
	if s.path == "" {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	logged := false
	for {
		select {
		case <-ctx.Done():
			if err := s.Flush(); err != nil {
				s.log.Error("cannot save counter state: after the restart counters start new epochs", "file", s.path, "err", err)
			}
			return
		case <-tick.C:
		}
		if err := s.Flush(); err != nil {
			if !logged {
				s.log.Error("cannot save counter state; retrying", "file", s.path, "err", err)
				logged = true
			}
		} else {
			logged = false
		}
	}
}
