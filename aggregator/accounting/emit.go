package accounting

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// emitter turns window results into derived points (docs/SCHEMA.md).
type emitter struct {
	out []aggregator.Point
	t   time.Time
	res string
}

// points appends the points of one window.
func (e *emitter) window(r *windowResult) {
	e.t, e.res = r.Start, r.Res
	for _, g := range r.GPUs {
		if g.Energy {
			e.emit(schema.Energy, e.topo(g.Key.Topology, schema.TagScope, schema.ScopeGPU, schema.TagKind, schema.KindGPU, schema.TagGPU, g.Key.GPU),
				num(schema.FieldJoules, g.Joules), num(schema.FieldCoverage, g.Coverage), num(schema.FieldIdleJoules, g.IdleJoules),
				str(schema.FieldReason, implausibleNote(g.Implausible)))
		}
		if g.HasActivity {
			signal := "utilization"
			if g.SM {
				signal = "sm_activity"
			}
			e.emit(schema.Activity, e.topo(g.Key.Topology, schema.TagScope, schema.ScopeGPU, schema.TagGPU, g.Key.GPU),
				num(schema.FieldActivity, g.Activity), num(schema.FieldWatts, g.Watts), num(schema.FieldPerWatt, g.Activity/g.Watts), str(schema.FieldSignal, signal))
		}
	}
	for _, h := range r.Hosts {
		e.emit(schema.Energy, e.topo(h.Key, schema.TagScope, schema.ScopeHost, schema.TagKind, schema.KindIT),
			num(schema.FieldJoules, h.IT), num(schema.FieldCoverage, h.Coverage), str(schema.FieldSource, h.source()), boolean(schema.FieldLowerBound, h.LowerBound),
			str(schema.FieldReason, implausibleNote(h.Implausible)))
		if h.GPUs > 0 {
			e.emit(schema.Energy, e.topo(h.Key, schema.TagScope, schema.ScopeHost, schema.TagKind, schema.KindGPU), num(schema.FieldJoules, h.GPU))
		}
		if h.HasCPU {
			e.emit(schema.Energy, e.topo(h.Key, schema.TagScope, schema.ScopeHost, schema.TagKind, schema.KindCPU), num(schema.FieldJoules, h.CPU))
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(r.Sums), compareHosts) {
		s := r.Sums[k]
		scope := scopeOf(k)
		e.emit(schema.Energy, e.topo(k, schema.TagScope, scope, schema.TagKind, schema.KindIT), num(schema.FieldJoules, s.IT), num(schema.FieldCoverage, s.Coverage/float64(s.Hosts)),
			boolean(schema.FieldLowerBound, s.Estimated > 0), integer(schema.FieldHosts, s.Hosts), integer(schema.FieldHostsReporting, s.Reporting),
			str(schema.FieldReason, implausibleNote(s.Implausible)))
		e.emit(schema.Energy, e.topo(k, schema.TagScope, scope, schema.TagKind, schema.KindGPU), num(schema.FieldJoules, s.GPU))
		e.emit(schema.Energy, e.topo(k, schema.TagScope, scope, schema.TagKind, schema.KindCPU), num(schema.FieldJoules, s.CPU))
	}
	for _, m := range r.Meters {
		e.emit(schema.Energy, tags(schema.TagResolution, e.res, schema.TagScope, schema.ScopeMeter, schema.TagKind, m.key.Role, schema.TagSite, m.key.Site, schema.TagHall, m.key.Hall,
			schema.TagRack, m.key.Rack, schema.TagMeter, m.key.name()),
			num(schema.FieldJoules, m.joules), num(schema.FieldCoverage, m.coverage), str(schema.FieldReason, implausibleNote(m.implausible)))
	}
	for _, p := range r.PUEs {
		e.pue(p, e.res)
	}
	for _, w := range r.Work {
		var t []aggregator.Tag
		switch w.Scope {
		case schema.ScopeGPU:
			t = e.topo(w.Topo, schema.TagScope, schema.ScopeGPU, schema.TagGPU, w.GPU, schema.TagUnit, w.Unit)
		case schema.ScopeHost:
			t = e.topo(w.Topo, schema.TagScope, schema.ScopeHost, schema.TagUnit, w.Unit)
		case schema.ScopeModel:
			t = tags(schema.TagResolution, e.res, schema.TagScope, w.Scope, schema.TagSite, w.Topo.Site, schema.TagUnit, w.Unit, schema.TagModel, w.Model)
		default:
			t = tags(schema.TagResolution, e.res, schema.TagScope, w.Scope, schema.TagSite, w.Topo.Site, schema.TagHall, w.Topo.Hall, schema.TagUnit, w.Unit)
		}
		fields := []aggregator.Field{num(schema.FieldWork, w.Work), num(schema.FieldITJoules, w.Joules)}
		if w.Joules > 0 {
			fields = append(fields, num(schema.FieldPerJoule, w.Work/w.Joules))
			if w.PUE.OK {
				fields = append(fields, num(schema.FieldPerFacilityJoule, w.Work/w.Joules/w.PUE.PUE))
			}
		}
		e.emit(schema.Work, t, fields...)
	}
	for _, l := range r.Loads {
		e.load(l, r.Sums[Topology{Site: l.Key.Site}].IT)
	}
	for _, rc := range r.Recon {
		fields := []aggregator.Field{num(schema.FieldReferenceJoules, rc.Reference), num(schema.FieldPartsJoules, rc.Parts), num(schema.FieldRemainderJoules, rc.Reference-rc.Parts)}
		if rc.Reference > 0 {
			fields = append(fields, num(schema.FieldRemainderRatio, (rc.Reference-rc.Parts)/rc.Reference))
		}
		e.emit(schema.Reconciliation, e.topo(rc.Topo, schema.TagScope, rc.Scope, schema.TagKind, rc.Kind), fields...)
	}
}

// pue appends a PUE point. Every PUE joules writes is interim: ISO/IEC
// 30134-2's PUE is over twelve months; the report says which its range is.
func (e *emitter) pue(r pueResult, resolution string) {
	fields := []aggregator.Field{num(schema.FieldFacilityJoules, r.Facility), num(schema.FieldITJoules, r.IT), integer(schema.FieldCategory, r.Category),
		num(schema.FieldCoverage, r.Coverage), num(schema.FieldFacilityCoverage, r.FacilityCoverage), num(schema.FieldITCoverage, r.ITCoverage),
		boolean(schema.FieldEstimate, r.Estimate), boolean(schema.FieldInterim, true), str(schema.FieldITMeter, r.ITMeter)}
	if r.OK {
		fields = append(fields, num(schema.FieldPUE, r.PUE))
	}
	// Always written, empty when there is nothing to say: a revised window
	// must not keep the reason of its first writing (InfluxDB merges the
	// fields of a series at one time).
	fields = append(fields, str(schema.FieldReason, r.Reason))
	e.emit(schema.PUE, tags(schema.TagResolution, resolution, schema.TagScope, r.Key.Scope, schema.TagSite, r.Key.Site, schema.TagHall, r.Key.Hall), fields...)
}

func implausibleNote(n int32) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d implausible steps not counted (beyond what the device can draw)", n)
}

func (e *emitter) emit(measurement string, t []aggregator.Tag, fields ...aggregator.Field) {
	e.out = append(e.out, aggregator.Point{Measurement: measurement, Tags: t, Fields: fields, Time: e.t})
}

// topo is the tags of an entity at this window's resolution: its topology
// and the pairs given.
func (e *emitter) topo(k Topology, kv ...string) []aggregator.Tag {
	return tags(append([]string{schema.TagResolution, e.res, schema.TagSite, k.Site, schema.TagHall, k.Hall, schema.TagRack, k.Rack, schema.TagHost, k.Host}, kv...)...)
}

// tags builds sorted tags from key, value pairs, leaving out empty values.
func tags(kv ...string) []aggregator.Tag {
	t := make([]aggregator.Tag, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			t = append(t, aggregator.Tag{Key: kv[i], Value: kv[i+1]})
		}
	}
	slices.SortFunc(t, func(x, y aggregator.Tag) int { return strings.Compare(x.Key, y.Key) })
	return t
}

func num(key string, v float64) aggregator.Field {
	val, ok := lineprotocol.FloatValue(v)
	if !ok {
		val, _ = lineprotocol.FloatValue(0)
	}
	return aggregator.Field{Key: key, Value: val}
}

func integer(key string, v int) aggregator.Field {
	return aggregator.Field{Key: key, Value: lineprotocol.IntValue(int64(v))}
}

func str(key, v string) aggregator.Field {
	val, _ := lineprotocol.StringValue(v)
	return aggregator.Field{Key: key, Value: val}
}

func boolean(key string, v bool) aggregator.Field {
	return aggregator.Field{Key: key, Value: lineprotocol.BoolValue(v)}
}
