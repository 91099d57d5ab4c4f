package accounting

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"fmt"
	"time"
)

// A Partial is one partition's share of one closed window: what its hosts,
// GPUs, meters and work measured, and the entities that count in it, keyed
// by name. In a cluster each worker accounts for some partitions of the
// hosts and publishes their partials; the roll-up merges the partials of a
// window from every partition and derives it as one process would
// (rollup.go). Every sum in a window is additive, so the merge is exact.
type Partial struct {
	Partition int
	// Gen is the generation of the partition's ownership: a successor's
	// partials replace a former owner's, never the other way round.
	Gen   uint64
	Level int
	Start int64 // unix ns
	Size  int64 // ns
	// Watermark is the partition's newest point when it was published
	// (unix ns): the roll-up lets a window go by the newest point, as one
	// process does, never by the wall clock alone.
	Watermark int64
	// Ents holds the entities of the window and those expected in it, by
	// ids of this partial only.
	Ents *entities
	W    *window
}

// Key names the window and partition: a partial published again for it
// replaces the last.
func (p *Partial) Key() string {
	return fmt.Sprintf("%d.%d.%d", p.Level, p.Start, p.Partition)
}

// End is the end of the partial's window, unix ns.
func (p *Partial) End() int64 { return p.Start + p.Size }

// MarshalPartial encodes a partial for the wire and for the roll-up's
// memory: gob, gzipped (a partition's entity names repeat; a partial of 160
// hosts of 8 GPUs is 210 KB as gob, 42 KB gzipped).
func MarshalPartial(p *Partial) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if err := gob.NewEncoder(zw).Encode(p); err != nil {
		return nil, fmt.Errorf("encode partial %s: %w", p.Key(), err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("encode partial %s: %w", p.Key(), err)
	}
	return buf.Bytes(), nil
}

// UnmarshalPartial decodes what MarshalPartial encoded.
func UnmarshalPartial(raw []byte) (*Partial, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode partial: %w", err)
	}
	var p Partial
	if err := gob.NewDecoder(zr).Decode(&p); err != nil {
		return nil, fmt.Errorf("decode partial: %w", err)
	}
	if p.Ents == nil || p.W == nil || p.Level < 0 || p.Level >= int(nLevels) {
		return nil, fmt.Errorf("decode partial %s: incomplete", p.Key())
	}
	p.Ents.fill()
	p.W.fill()
	return &p, nil
}

// TickPartials is Tick for one partition of a cluster: the windows Tick
// would write become partials instead, and progress is the time up to
// which every window of every level is in them (a window ending then or
// before, with no partial, had nothing in this partition).
func (a *Accountant) TickPartials(now time.Time, partition int, gen uint64) (parts []*Partial, progress int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := now.UnixNano()
	progress = a.levels[levelWindow].start(n - int64(a.cfg.Grace))
	a.closeWindows(n, func(lv *level, w *window) { parts = append(parts, a.partialOf(lv, w, partition, gen)) })
	// A window in which this partition measured nothing still names the
	// entities expected in it, as one process's window would.
	if a.progress != 0 {
		for _, lv := range a.levels {
			for ws := lv.start(a.progress); ws+lv.size <= progress; ws += lv.size {
				if ws+lv.size <= max(a.progress, lv.Released) || lv.windows[ws] != nil {
					continue
				}
				p := a.partialOf(lv, newWindow(ws, lv.size, levelSlots[lv.id]), partition, gen)
				if len(p.Ents.Hosts)+len(p.Ents.Meters) > 0 {
					parts = append(parts, p)
				}
			}
		}
	}
	a.progress = max(a.progress, progress)
	return parts, progress
}

// partialOf copies a window and the entities that count in it under ids
// of their own. Call with a.mu held; the cells are shared with the window
// until the partial is encoded.
func (a *Accountant) partialOf(lv *level, w *window, partition int, gen uint64) *Partial {
	end, forget := w.Start+lv.size, w.Start-int64(a.cfg.ForgetAfter)
	src := a.ents
	sub := newEntities()
	hosts := map[uint32]uint32{}
	host := func(id uint32) uint32 {
		if nid, ok := hosts[id]; ok {
			return nid
		}
		nid := sub.host(src.Hosts[id])
		sub.HostSeen[nid] = src.HostSeen[id]
		if n, ok := src.HostSeries[id]; ok {
			sub.HostSeries[nid] = n
		}
		hosts[id] = nid
		return nid
	}
	gpus := map[uint32]uint32{}
	gpu := func(id uint32) uint32 {
		if nid, ok := gpus[id]; ok {
			return nid
		}
		host(src.GPUHost[id])
		nid := sub.gpu(src.GPUs[id])
		sub.GPUSeen[nid], sub.GPUSM[nid], sub.GPUIdle[nid], sub.GPULimit[nid] = src.GPUSeen[id], src.GPUSM[id], src.GPUIdle[id], src.GPULimit[id]
		gpus[id] = nid
		return nid
	}
	meters := map[uint32]uint32{}
	meter := func(id uint32) uint32 {
		if nid, ok := meters[id]; ok {
			return nid
		}
		nid := sub.meter(src.Meters[id])
		sub.MeterSeen[nid] = src.MeterSeen[id]
		if n, ok := src.MeterSeries[id]; ok {
			sub.MeterSeries[nid] = n
		}
		meters[id] = nid
		return nid
	}
	nw := newWindow(w.Start, w.Size, w.Slots)
	nw.Written = w.Written
	nw.HasLoads = w.HasLoads || len(src.Loads) > 0
	for id, acc := range w.Hosts {
		nw.Hosts[host(id)] = acc
	}
	for id, acc := range w.GPUs {
		nw.GPUs[gpu(id)] = acc
	}
	for id, acc := range w.Meters {
		nw.Meters[meter(id)] = acc
	}
	for id, v := range w.Work {
		nw.Work[sub.work(src.Works[id])] = v
	}
	for id, v := range w.Loads {
		nw.Loads[sub.load(src.Loads[id])] = v
	}
	for id, v := range w.HostCPUs {
		nw.HostCPUs[host(id)] = v
	}
	for id, p := range src.HostSeen {
		if p.expected(end, forget) {
			host(uint32(id))
		}
	}
	for id, p := range src.GPUSeen {
		if p.expected(end, forget) {
			gpu(uint32(id))
		}
	}
	for id, p := range src.MeterSeen {
		if p.expected(end, forget) {
			meter(uint32(id))
		}
	}
	for k, id := range src.GPUAlias {
		if nid, ok := gpus[id]; ok {
			sub.GPUAlias[k] = nid
		}
	}
	return &Partial{Partition: partition, Gen: gen, Level: int(lv.id), Start: w.Start, Size: lv.size, Watermark: a.watermark, Ents: sub, W: nw}
}

// fill gives a decoded entity table the maps gob leaves nil.
func (e *entities) fill() {
	e.HostIDs, e.GPUIDs, e.MeterIDs, e.WorkIDs = orEmpty(e.HostIDs), orEmpty(e.GPUIDs), orEmpty(e.MeterIDs), orEmpty(e.WorkIDs)
	e.GPUAlias, e.HostSeries, e.MeterSeries, e.Capacity = orEmpty(e.GPUAlias), orEmpty(e.HostSeries), orEmpty(e.MeterSeries), orEmpty(e.Capacity)
	e.LoadIDs, e.Shares = orEmpty(e.LoadIDs), orEmpty(e.Shares)
	for len(e.LoadSeen) < len(e.Loads) {
		e.LoadSeen = append(e.LoadSeen, presence{})
	}
	for len(e.GPUSeen) < len(e.GPUs) {
		e.GPUSeen = append(e.GPUSeen, presence{})
	}
	for len(e.GPULimit) < len(e.GPUs) {
		e.GPULimit = append(e.GPULimit, 0)
	}
	for len(e.GPUSM) < len(e.GPUs) {
		e.GPUSM = append(e.GPUSM, false)
	}
	for len(e.GPUIdle) < len(e.GPUs) {
		e.GPUIdle = append(e.GPUIdle, false)
	}
	for len(e.GPUHost) < len(e.GPUs) {
		e.GPUHost = append(e.GPUHost, e.host(e.GPUs[len(e.GPUHost)].Topology))
	}
	for len(e.HostSeen) < len(e.Hosts) {
		e.HostSeen = append(e.HostSeen, presence{})
	}
	for len(e.MeterSeen) < len(e.Meters) {
		e.MeterSeen = append(e.MeterSeen, presence{})
	}
}

func (w *window) fill() {
	w.Hosts, w.GPUs, w.Meters, w.Work = orEmpty(w.Hosts), orEmpty(w.GPUs), orEmpty(w.Meters), orEmpty(w.Work)
	w.Loads, w.HostCPUs = orEmpty(w.Loads), orEmpty(w.HostCPUs)
}

// merge adds a partial's window and entities into a merged window and
// table: sums add, presence spans both, counts of series add.
func merge(into *entities, w *window, p *Partial) {
	src := p.Ents
	hosts := make([]uint32, len(src.Hosts))
	for id, k := range src.Hosts {
		nid := into.host(k)
		into.HostSeen[nid] = into.HostSeen[nid].union(src.HostSeen[id])
		if n, ok := src.HostSeries[uint32(id)]; ok {
			into.HostSeries[nid] = addCounts(into.HostSeries[nid], n)
		}
		hosts[id] = nid
	}
	gpus := make([]uint32, len(src.GPUs))
	for id, k := range src.GPUs {
		nid := into.gpu(k)
		into.GPUSeen[nid] = into.GPUSeen[nid].union(src.GPUSeen[id])
		into.GPUSM[nid] = into.GPUSM[nid] || src.GPUSM[id]
		gpus[id] = nid
	}
	meters := make([]uint32, len(src.Meters))
	for id, k := range src.Meters {
		nid := into.meter(k)
		into.MeterSeen[nid] = into.MeterSeen[nid].union(src.MeterSeen[id])
		if n, ok := src.MeterSeries[uint32(id)]; ok {
			into.MeterSeries[nid] = addCounts(into.MeterSeries[nid], n)
		}
		meters[id] = nid
	}
	for k, id := range src.GPUAlias {
		into.GPUAlias[k] = gpus[id]
	}
	for id, acc := range p.W.Hosts {
		update(w.Hosts, hosts[id], func(h *hostAcc) {
			for i := range h.Src {
				h.Src[i] = addCells(h.Src[i], acc.Src[i])
			}
			h.CPU.add(acc.CPU.Joules, acc.CPU.Seconds)
			h.Implausible += acc.Implausible
		})
	}
	for id, acc := range p.W.GPUs {
		update(w.GPUs, gpus[id], func(g *gpuAcc) {
			g.Energy.add(acc.Energy.Joules, acc.Energy.Seconds)
			g.IdleJoules += acc.IdleJoules
			g.ActivitySum += acc.ActivitySum
			g.ActivityN += acc.ActivityN
			g.SM = g.SM || acc.SM
			g.Implausible += acc.Implausible
		})
	}
	for id, acc := range p.W.Meters {
		update(w.Meters, meters[id], func(m *meterAcc) {
			for i := range m.Src {
				m.Src[i] = addCells(m.Src[i], acc.Src[i])
			}
			m.Implausible += acc.Implausible
		})
	}
	for id, v := range p.W.Work {
		w.Work[into.work(src.Works[id])] += v
	}
	for id, v := range p.W.Loads {
		update(w.Loads, into.load(src.Loads[id]), func(l *loadAcc) { l.add(v) })
	}
	w.HasLoads = w.HasLoads || p.W.HasLoads
	for id, v := range p.W.HostCPUs {
		update(w.HostCPUs, hosts[id], func(m *mean) { m.Sum += v.Sum; m.N += v.N })
	}
}

func addCounts[N [nHostKinds]int | [nMeterKinds]int](a, b N) N {
	for i := range len(a) {
		a[i] += b[i]
	}
	return a
}

// addCells adds b's slots to a's; a is copied, never changed in place (it
// may be a partial's).
func addCells(a, b cells) cells {
	switch {
	case b == nil:
		return a
	case a == nil:
		return append(cells(nil), b...)
	}
	out := append(cells(nil), a...)
	for i := range min(len(out), len(b)) {
		out[i].J += b[i].J
		out[i].S += b[i].S
		out[i].G += b[i].G
	}
	return out
}

// union is the presence of an entity seen by either.
func (p presence) union(q presence) presence {
	switch {
	case !q.Seen:
		return p
	case !p.Seen:
		return q
	}
	return presence{First: min(p.First, q.First), Last: max(p.Last, q.Last), Seen: true}
}
