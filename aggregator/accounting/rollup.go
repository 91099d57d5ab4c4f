package accounting

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/joules-energy/joules/aggregator"
)

// Rollup derives a cluster's windows from the partials of its partitions:
// a window is derived once every partition has published up to its end
// (or, for a partition nobody serves, once wait has passed), written again
// when a partial of it changes, and let go after MaxLateness, as one
// process does. It keeps the rolling PUE and what /metrics shows.
type Rollup struct {
	acct       *Accountant // configuration, rolling PUE, latest values, stats
	partitions int
	wait       time.Duration

	windows   [nLevels]map[int64]*rollWindow
	released  [nLevels]int64
	progress  []int64  // per partition: every window ending then or before is published
	gens      []uint64 // per partition: the newest ownership generation seen
	watermark int64
	rstats    RollupStats
}

// RollupStats counts what the roll-up saw.
type RollupStats struct {
	Partials   int64 // taken in
	Superseded int64 // from a former owner of a partition: ignored
	Late       int64 // for a window already let go: ignored
	Incomplete int64 // windows derived before every partition had published
}

// rollWindow holds a window's partials as they came (encoded: a decoded
// partial is five times its size), decoded only to derive the window.
type rollWindow struct {
	Parts   map[int]storedPartial
	Written bool
	Dirty   bool
}

type storedPartial struct {
	Gen uint64
	Raw []byte
}

// NewRollup returns the roll-up of a cluster of partitions partitions.
func NewRollup(cfg Config, partitions int, wait time.Duration, logger *slog.Logger) (*Rollup, error) {
	if partitions < 1 {
		return nil, fmt.Errorf("partitions %d: at least 1", partitions)
	}
	a, err := New(cfg, logger)
	if err != nil {
		return nil, err
	}
	r := &Rollup{acct: a, partitions: partitions, wait: wait}
	r.reset()
	return r, nil
}

func (r *Rollup) reset() {
	for i := range r.windows {
		r.windows[i] = map[int64]*rollWindow{}
		r.released[i] = 0
	}
	r.progress = make([]int64, r.partitions)
	r.gens = make([]uint64, r.partitions)
	r.watermark = 0
}

// Add takes a partition's partial; one from an older generation of its
// partition than the one held is ignored.
func (r *Rollup) Add(p *Partial) error {
	raw, err := MarshalPartial(p)
	if err != nil {
		return err
	}
	return r.add(p, raw)
}

// AddEncoded takes a partial as MarshalPartial encoded it.
func (r *Rollup) AddEncoded(raw []byte) error {
	p, err := UnmarshalPartial(raw)
	if err != nil {
		return err
	}
	return r.add(p, raw)
}

func (r *Rollup) add(p *Partial, raw []byte) error {
	if p.Partition < 0 || p.Partition >= r.partitions {
		return fmt.Errorf("partial %s: partition %d of %d", p.Key(), p.Partition, r.partitions)
	}
	r.acct.mu.Lock()
	defer r.acct.mu.Unlock()
	lv := r.acct.levels[p.Level]
	if p.Size != lv.size || p.W.Slots != levelSlots[lv.id] || p.Start != lv.start(p.Start) {
		return fmt.Errorf("partial %s: a window of %s from %s does not match this roll-up's %s windows: every worker needs the same accounting.window",
			p.Key(), time.Duration(p.Size), time.Unix(0, p.Start).UTC().Format(time.RFC3339), time.Duration(lv.size))
	}
	if p.End() <= r.released[p.Level] {
		r.rstats.Late++
		return nil
	}
	if p.Gen < r.gens[p.Partition] {
		r.rstats.Superseded++ // a former owner, still publishing after its successor began
		return nil
	}
	r.gens[p.Partition] = p.Gen
	rw := r.windows[p.Level][p.Start]
	if rw == nil {
		rw = &rollWindow{Parts: map[int]storedPartial{}}
		r.windows[p.Level][p.Start] = rw
	}
	if old, ok := rw.Parts[p.Partition]; ok && old.Gen > p.Gen {
		r.rstats.Superseded++
		return nil
	}
	rw.Parts[p.Partition] = storedPartial{Gen: p.Gen, Raw: raw}
	rw.Dirty = true
	r.rstats.Partials++
	r.watermark = max(r.watermark, p.Watermark)
	return nil
}

// Progress records that a partition's owner of generation gen published
// every window ending at t or before; a former owner's is ignored.
func (r *Rollup) Progress(partition int, t int64, gen uint64) {
	if partition < 0 || partition >= r.partitions {
		return
	}
	r.acct.mu.Lock()
	defer r.acct.mu.Unlock()
	if gen < r.gens[partition] {
		r.rstats.Superseded++
		return
	}
	r.gens[partition] = gen
	r.progress[partition] = max(r.progress[partition], t)
}

// Behind lists the partitions that have not published up to t.
func (r *Rollup) Behind(t int64) []int {
	r.acct.mu.Lock()
	defer r.acct.mu.Unlock()
	var out []int
	for p, at := range r.progress {
		if at < t {
			out = append(out, p)
		}
	}
	return out
}

// Tick derives the windows every partition has published, or whose wait
// for the others has passed, and those a partial changed since, and
// returns their points.
func (r *Rollup) Tick(now time.Time) []aggregator.Point {
	a := r.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	n := now.UnixNano()
	var e emitter
	for _, lv := range a.levels {
		for _, ws := range slices.Sorted(maps.Keys(r.windows[lv.id])) {
			rw := r.windows[lv.id][ws]
			end := ws + lv.size
			complete := r.complete(end)
			if (complete || end+int64(a.cfg.Grace+r.wait) <= n) && (!rw.Written || rw.Dirty) {
				if res := r.derive(lv, ws, rw); res != nil {
					if rw.Written {
						a.stats.Revisions++
					}
					if !complete {
						r.rstats.Incomplete++
					}
					a.emitWindow(&e, lv, res)
				}
				rw.Written, rw.Dirty = true, false
			}
			if rw.Written && end+int64(a.cfg.MaxLateness) < min(n, r.watermark) {
				delete(r.windows[lv.id], ws)
				r.released[lv.id] = max(r.released[lv.id], end)
				a.letGo(lv.id, ws)
			}
		}
	}
	a.prune(n)
	return e.out
}

func (r *Rollup) complete(end int64) bool {
	for _, at := range r.progress {
		if at < end {
			return false
		}
	}
	return true
}

// derive merges a window's partials, in partition order, and derives it;
// nil when no partition measured anything in it (the partials only name
// the entities expected there).
func (r *Rollup) derive(lv *level, ws int64, rw *rollWindow) *windowResult {
	ents := newEntities()
	w := newWindow(ws, lv.size, levelSlots[lv.id])
	data := false
	for _, p := range slices.Sorted(maps.Keys(rw.Parts)) {
		part, err := UnmarshalPartial(rw.Parts[p].Raw)
		if err != nil { // it was decoded when it came: memory gone bad
			r.acct.log.Error("a kept partial no longer decodes: the window is derived without it", "partition", p, "err", err)
			continue
		}
		data = data || len(part.W.Hosts)+len(part.W.GPUs)+len(part.W.Meters)+len(part.W.Work) > 0
		merge(ents, w, part)
	}
	if !data {
		return nil
	}
	scratch := &Accountant{cfg: r.acct.cfg, ents: ents}
	return scratch.derive(lv, w)
}

// Stats returns the roll-up's counts.
func (r *Rollup) Stats() RollupStats {
	r.acct.mu.Lock()
	defer r.acct.mu.Unlock()
	return r.rstats
}

// rollupState is what the roll-up's checkpoint holds.
type rollupState struct {
	Version    int
	Partitions int
	Windows    [nLevels]map[int64]*rollWindow
	Released   [nLevels]int64
	Progress   []int64
	Gens       []uint64
	Watermark  int64
	Rolling    map[scopeKey]*rollingPUE
	Ledger     *ledger
	Stats      Stats
	RStats     RollupStats
}

// MarshalState encodes the roll-up's state for its checkpoint.
func (r *Rollup) MarshalState() ([]byte, error) {
	a := r.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	st := rollupState{Version: stateVersion, Partitions: r.partitions, Windows: r.windows, Released: r.released, Progress: r.progress, Gens: r.gens,
		Watermark: r.watermark, Rolling: a.rolling, Ledger: a.ledger, Stats: a.stats, RStats: r.rstats}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
		return nil, fmt.Errorf("encode roll-up state: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalState restores what MarshalState encoded. A state of another
// number of partitions is refused: the partitions' keys changed with it.
func (r *Rollup) UnmarshalState(raw []byte) error {
	var st rollupState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&st); err != nil {
		return fmt.Errorf("decode roll-up state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("roll-up state version %d, this aggregator reads %d", st.Version, stateVersion)
	}
	if st.Partitions != r.partitions {
		return fmt.Errorf("roll-up state of %d partitions, configured %d", st.Partitions, r.partitions)
	}
	a := r.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	r.reset()
	for i := range st.Windows {
		for ws, rw := range st.Windows[i] {
			rw.Parts = orEmpty(rw.Parts)
			r.windows[i][ws] = rw
		}
	}
	r.released, r.watermark, r.rstats = st.Released, st.Watermark, st.RStats
	copy(r.progress, st.Progress)
	copy(r.gens, st.Gens)
	a.rolling, a.stats = orEmpty(st.Rolling), st.Stats
	if st.Ledger != nil {
		a.ledger = st.Ledger
		a.ledger.fill()
	}
	for _, rp := range a.rolling {
		rp.Windows, rp.Days = orEmpty(rp.Windows), orEmpty(rp.Days)
	}
	return nil
}
