package accounting

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/fsutil"
)

// stateVersion changes when the checkpoint's layout does; an older
// checkpoint is then set aside, not misread.
const stateVersion = 7

// state is what a checkpoint holds: everything accounting needs to go on
// after a restart without losing or counting twice.
type state struct {
	Version   int
	Saved     time.Time
	Series    map[string]*series
	RAPLWrap  map[string]float64
	Windows   [nLevels]map[int64]*window
	Entities  *entities
	Rolling   map[scopeKey]*rollingPUE
	Stats     Stats
	Watermark int64
	Released  [nLevels]int64 // per level, the latest end of a window let go
	Pending   []pendingPoint
	Progress  int64 // in a cluster, what the partition published
	Ledger    *ledger
}

// pendingPoint is a derived point not yet handed to the output.
type pendingPoint struct {
	Measurement string
	Tags        []aggregator.Tag
	Fields      []pendingField
	Time        time.Time
}

type pendingField struct {
	Key  string
	Kind lineprotocol.ValueKind
	F    float64
	I    int64
	S    string
	B    bool
}

// MarshalState encodes everything accounting needs to go on: the
// checkpoint a file or, in a cluster, the state store holds.
func (a *Accountant) MarshalState() ([]byte, time.Time, error) {
	a.mu.Lock()
	st := state{Version: stateVersion, Saved: a.now(), Series: a.series, RAPLWrap: a.raplWrap, Entities: a.ents,
		Rolling: a.rolling, Stats: a.stats, Watermark: a.watermark, Progress: a.progress, Ledger: a.ledger}
	for i, lv := range a.levels {
		st.Windows[i] = lv.windows
		st.Released[i] = lv.Released
	}
	for _, p := range a.pending {
		pp := pendingPoint{Measurement: p.Measurement, Tags: p.Tags, Time: p.Time}
		for _, f := range p.Fields {
			pf := pendingField{Key: f.Key, Kind: f.Value.Kind()}
			switch pf.Kind {
			case lineprotocol.Float:
				pf.F = f.Value.FloatV()
			case lineprotocol.Int:
				pf.I = f.Value.IntV()
			case lineprotocol.String:
				pf.S = f.Value.StringV()
			case lineprotocol.Bool:
				pf.B = f.Value.BoolV()
			}
			pp.Fields = append(pp.Fields, pf)
		}
		st.Pending = append(st.Pending, pp)
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(&st)
	a.mu.Unlock()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("encode accounting state: %w", err)
	}
	return buf.Bytes(), st.Saved, nil
}

// Save writes the state to path atomically (a temporary file, fsync,
// rename), so a crash leaves the old checkpoint or the new one.
func (a *Accountant) Save(path string) error {
	raw, saved, err := a.MarshalState()
	if err != nil {
		return err
	}
	if err := fsutil.WriteAtomic(path, raw); err != nil {
		return err
	}
	a.mu.Lock()
	a.checkpointed = saved
	a.mu.Unlock()
	return nil
}

// Load restores the state saved at path. A missing file is a first start.
// A checkpoint that cannot be read is moved aside (its name says so) and
// accounting starts afresh: the next point of each series is then a new
// baseline, so the energy between the checkpoint and that point is not
// counted, and the error says so.
func (a *Accountant) Load(path string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read accounting state: %w", err)
	}
	if err := a.UnmarshalState(raw); err != nil {
		aside, rerr := fsutil.MoveAside(path, a.now())
		if rerr != nil {
			return fmt.Errorf("accounting state %s is unreadable (%v) and cannot be moved aside: %w; remove it to start accounting afresh", path, err, rerr)
		}
		return fmt.Errorf("accounting state %s is unreadable (%w): moved to %s, accounting starts afresh", path, err, aside)
	}
	return nil
}

// UnmarshalState restores a state MarshalState encoded; on an error the
// accountant is left as it was.
func (a *Accountant) UnmarshalState(raw []byte) error {
	var st state
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&st); err != nil {
		return err
	}
	if st.Version != stateVersion {
		return fmt.Errorf("version %d, this aggregator reads %d", st.Version, stateVersion)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reset()
	a.series, a.raplWrap, a.rolling, a.stats, a.watermark = orEmpty(st.Series), orEmpty(st.RAPLWrap), orEmpty(st.Rolling), st.Stats, st.Watermark
	a.progress = st.Progress
	if st.Ledger != nil {
		a.ledger = st.Ledger
		a.ledger.fill()
	}
	for _, s := range a.series {
		if s.PendT != 0 {
			a.pended[s] = struct{}{}
		}
	}
	if e := st.Entities; e != nil {
		e.fill()
		a.ents = e
	}
	for i, lv := range a.levels {
		lv.windows = orEmpty(st.Windows[i])
		lv.Released = st.Released[i]
		for ws, w := range lv.windows {
			if w.Size != lv.size || w.Slots != levelSlots[lv.id] { // the window setting changed since
				delete(lv.windows, ws)
				continue
			}
			w.fill()
		}
	}
	for _, r := range a.rolling {
		r.Windows, r.Days = orEmpty(r.Windows), orEmpty(r.Days)
	}
	for _, pp := range st.Pending {
		p := aggregator.Point{Measurement: pp.Measurement, Tags: pp.Tags, Time: pp.Time}
		for _, f := range pp.Fields {
			switch f.Kind {
			case lineprotocol.Float:
				p.Fields = append(p.Fields, num(f.Key, f.F))
			case lineprotocol.Int:
				p.Fields = append(p.Fields, aggregator.Field{Key: f.Key, Value: lineprotocol.IntValue(f.I)})
			case lineprotocol.String:
				p.Fields = append(p.Fields, str(f.Key, f.S))
			case lineprotocol.Bool:
				p.Fields = append(p.Fields, boolean(f.Key, f.B))
			}
		}
		a.pending = append(a.pending, p)
	}
	a.checkpointed = st.Saved
	return nil
}

// gob leaves empty maps nil.
func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

// Run closes windows every second and writes their points to sink, and
// saves the state to stateFile every checkpointEvery and when ctx ends
// (stateFile empty: no checkpoints). Call it after ingest has stopped
// calling Process for the final save to hold everything.
func (a *Accountant) Run(ctx context.Context, sink aggregator.Sink, stateFile string, checkpointEvery time.Duration) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSave := a.now()
	for {
		select {
		case <-ctx.Done():
			a.flush(sink)
			if stateFile != "" {
				if err := a.Save(stateFile); err != nil {
					a.log.Error("cannot save accounting state: the next start goes on from the last checkpoint", "file", stateFile, "err", err)
				}
			}
			return
		case <-tick.C:
		}
		points := a.Tick(a.now())
		a.mu.Lock()
		a.pending = append(a.pending, points...)
		if over := len(a.pending) - maxPending; over > 0 {
			a.log.Error("the output has refused derived points for long: the oldest are dropped", "points", over)
			a.stats.DroppedDerived += int64(over)
			a.pending = append(a.pending[:0], a.pending[over:]...)
		}
		a.mu.Unlock()
		a.flush(sink)
		if stateFile != "" && a.now().Sub(lastSave) >= checkpointEvery {
			if err := a.Save(stateFile); err != nil {
				a.log.Error("cannot save accounting state", "file", stateFile, "err", err)
			}
			lastSave = a.now()
		}
	}
}

// Derived points waiting for the output: handed over in chunks, and kept
// up to a bound while the output refuses them (its spool is full or broken).
const (
	flushPoints = 50_000
	maxPending  = 2_000_000
)

// flush hands pending derived points to the output, a chunk a tick; on
// failure they stay pending (and in the checkpoint) and are tried again.
func (a *Accountant) flush(sink aggregator.Sink) {
	a.mu.Lock()
	pending := a.pending[:min(len(a.pending), flushPoints)]
	a.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	if err := sink.Write(pending); err != nil {
		a.log.Error("cannot write derived points; they are kept and retried", "points", len(pending), "err", err)
		return
	}
	a.mu.Lock()
	a.pending = a.pending[len(pending):]
	a.mu.Unlock()
}
