package accounting

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/joules-energy/joules/internal/schema"
)

// scopeKey names a site (Hall empty) or a hall for PUE and work rates.
type scopeKey struct{ Scope, Site, Hall string }

func (sk scopeKey) where() string {
	if sk.Scope == schema.ScopeHall {
		return "hall " + sk.Hall
	}
	return "site " + sk.Site
}

// pueResult is PUE over one window or range of one scope.
type pueResult struct {
	Key                                    scopeKey
	PUE, Facility, IT                      float64
	OK                                     bool
	Category                               int // 0: an estimate (hosts measured by their components), no ISO category
	Estimate                               bool
	ITMeter                                string // ups_output, pdu_output, it_input or hosts
	Coverage, FacilityCoverage, ITCoverage float64
	Reason                                 string
}

// reach is what a meter is upstream of: the site, a hall, or racks of a
// hall, and on which feed.
type reach struct {
	Site, Hall string
	Racks      []string
	SiteWide   bool
	HallWide   bool
	Feed       string // "": every feed
}

// reachOf is what the configuration says a meter feeds, else what its
// labels suggest: its rack, else its hall, else its site.
func (a *Accountant) reachOf(k meterKey) reach {
	r := reach{Site: k.Site}
	if m, ok := a.cfg.meterConfig(k); ok && !m.Feeds.empty() {
		f := m.Feeds
		r.Feed = f.Feed
		switch {
		case f.Site:
			r.SiteWide = true
			return r
		case len(f.Racks) > 0:
			r.Hall, r.Racks = cmp.Or(f.Hall, k.Hall), f.Racks
			return r
		case f.Hall != "":
			r.Hall, r.HallWide = f.Hall, true
			return r
		}
	}
	switch {
	case k.Rack != "":
		r.Hall, r.Racks = k.Hall, []string{k.Rack}
	case k.Hall != "":
		r.Hall, r.HallWide = k.Hall, true
	default:
		r.SiteWide = true
	}
	return r
}

// feeds says whether the meter is upstream of a host (on some feed).
func (r reach) feeds(h Topology) bool {
	return h.Site == r.Site && (r.SiteWide || h.Hall == r.Hall && (r.HallWide || slices.Contains(r.Racks, h.Rack)))
}

// within says whether all the meter feeds is inside a scope.
func (r reach) within(sk scopeKey) bool {
	return r.Site == sk.Site && (sk.Scope == schema.ScopeSite || !r.SiteWide && r.Hall == sk.Hall)
}

// meterTypes is, per role, the order in which the kinds of equipment of
// one endpoint count: an endpoint that reports a transfer switch feeding a
// rack PDU measures the same energy twice, so only the items of its first
// kind in this order count. A chassis-level reading counts only where the
// endpoint reports no equipment.
var meterTypes = map[string][]string{
	roleFacilityInput: {"electrical_bus", "transfer_switch", "floor_pdu", "rack_pdu", "power_shelf", "chassis"},
	roleUPSOutput:     {"electrical_bus", "transfer_switch", "floor_pdu", "rack_pdu", "power_shelf", "chassis"},
	rolePDUOutput:     {"rack_pdu", "floor_pdu", "power_shelf", "transfer_switch", "electrical_bus", "chassis"},
	roleITInput:       {"power_shelf", "rack_pdu", "floor_pdu", "transfer_switch", "electrical_bus", "chassis"},
}

// countedMeters keeps, of each endpoint and role, the meters of the kind
// that counts.
func countedMeters(meters []meterResult) []meterResult {
	type endpoint struct{ site, hall, rack, bmc, role string }
	rank := func(k meterKey) int {
		if i := slices.Index(meterTypes[k.Role], k.Type); i >= 0 {
			return i
		}
		return len(meterTypes[k.Role]) // an unknown kind counts last
	}
	best := map[endpoint]int{}
	for _, m := range meters {
		e := endpoint{m.key.Site, m.key.Hall, m.key.Rack, m.key.BMC, m.key.Role}
		if r, ok := best[e]; !ok || rank(m.key) < r {
			best[e] = rank(m.key)
		}
	}
	return slices.DeleteFunc(meters, func(m meterResult) bool {
		return rank(m.key) != best[endpoint{m.key.Site, m.key.Hall, m.key.Rack, m.key.BMC, m.key.Role}]
	})
}

// scopes lists the sites and halls the window knows.
func (d *deriver) scopes() (sites, halls []scopeKey) {
	seen := map[scopeKey]bool{}
	add := func(site, hall string) {
		for _, sk := range []scopeKey{{Scope: schema.ScopeSite, Site: site}, {Scope: schema.ScopeHall, Site: site, Hall: hall}} {
			if sk.Scope == schema.ScopeHall && hall == "" || seen[sk] {
				continue
			}
			seen[sk] = true
			if sk.Scope == schema.ScopeSite {
				sites = append(sites, sk)
			} else {
				halls = append(halls, sk)
			}
		}
	}
	for _, h := range d.r.Hosts {
		add(h.Key.Site, h.Key.Hall)
	}
	for _, m := range d.r.Meters {
		add(m.key.Site, m.key.Hall)
	}
	byName := func(x, y scopeKey) int { return strings.Compare(x.Site+"\x00"+x.Hall, y.Site+"\x00"+y.Hall) }
	slices.SortFunc(sites, byName)
	slices.SortFunc(halls, byName)
	return sites, halls
}

// meterSum sums the meters of a role in a scope: a hall takes the meters
// of the hall; a site takes its site-wide meters when it has any (the
// others are downstream of them), else all of its meters.
func (d *deriver) meterSum(sk scopeKey, role string) (joules, coverage float64, used []meterResult) {
	siteWide := false
	if sk.Scope == schema.ScopeSite {
		for _, m := range d.r.Meters {
			if m.key.Role == role && m.reach.Site == sk.Site && m.reach.SiteWide {
				siteWide = true
			}
		}
	}
	for _, m := range d.r.Meters {
		if m.key.Role != role || !m.reach.within(sk) || siteWide && !m.reach.SiteWide {
			continue
		}
		joules += m.joules
		coverage += m.coverage
		used = append(used, m)
	}
	if len(used) > 0 {
		coverage /= float64(len(used))
	}
	return joules, coverage, used
}

// unfed counts the hosts of a scope that the meters do not meter on every
// power feed: a PDU on one feed of an A+B rack meters half of it.
func (d *deriver) unfed(sk scopeKey, meters []meterResult) int {
	feeds := d.a.cfg.PowerFeeds
	if len(feeds) == 0 {
		feeds = []string{""}
	}
	n := 0
	for _, h := range d.r.Hosts {
		if h.Key.Site != sk.Site || sk.Scope == schema.ScopeHall && h.Key.Hall != sk.Hall {
			continue
		}
		for _, f := range feeds {
			if !slices.ContainsFunc(meters, func(m meterResult) bool { return m.reach.feeds(h.Key) && (m.reach.Feed == "" || m.reach.Feed == f) }) {
				n++
				break
			}
		}
	}
	return n
}

// pue computes PUE (a site) or pPUE (a hall) as ISO/IEC 30134-2 defines
// it: facility energy over IT energy in the same window, with the
// category where the IT energy was measured. Any PUE over less than a
// year is an interim value; the emitter says so.
func (d *deriver) pue(sk scopeKey) pueResult {
	r := pueResult{Key: sk}
	f, fCov, facilityMeters := d.meterSum(sk, roleFacilityInput)
	r.Facility, r.FacilityCoverage = f, fCov
	hosts := d.r.Sums[Topology{Site: sk.Site, Hall: sk.Hall}]
	var notes []string
	for _, c := range []struct {
		role     string
		category int
	}{{roleUPSOutput, 1}, {rolePDUOutput, 2}, {roleITInput, 3}} {
		j, cov, used := d.meterSum(sk, c.role)
		if len(used) == 0 {
			continue
		}
		if n := d.unfed(sk, used); n > 0 {
			notes = append(notes, fmt.Sprintf("%s meters do not meter %d of its hosts on every feed: not used", c.role, n))
			continue
		}
		// The meters feed these hosts: they cannot read much less than the
		// hosts draw. If they do, a feed or a rack is not metered.
		if hosts.IT > 0 && j < (1-d.a.cfg.MeterCheck)*hosts.IT {
			notes = append(notes, fmt.Sprintf("%s meters read %.0f %% less than the hosts they feed (%.6g J against %.6g J): not used", c.role, 100*(1-j/hosts.IT), j, hosts.IT))
			continue
		}
		r.IT, r.ITCoverage, r.Category, r.ITMeter = j, cov, c.category, c.role
		break
	}
	if r.ITMeter == "" && hosts.Hosts > 0 {
		r.IT, r.ITCoverage, r.ITMeter = hosts.IT, hosts.Coverage/float64(hosts.Hosts), schema.ITMeterHosts
		if hosts.Estimated > 0 {
			r.Estimate = true // GPUs + CPU measure no IT equipment input: no category
			notes = append(notes, fmt.Sprintf("%d of %d hosts' IT energy is partly GPUs + CPU (a lower bound): an estimate with no ISO/IEC 30134-2 category, and an upper bound of the PUE", hosts.Estimated, hosts.Hosts))
		} else {
			r.Category = 3
		}
	}
	r.Coverage = min(r.FacilityCoverage, r.ITCoverage)
	switch {
	case len(facilityMeters) == 0:
		r.Reason = "no facility_input meter in " + sk.where()
	case fCov == 0:
		r.Reason = "the facility_input meters of " + sk.where() + " sent no data in this window"
	case r.ITMeter == "":
		r.Reason = "no IT energy in " + sk.where() + ": no ups_output, pdu_output or it_input meter and no host"
	case r.ITCoverage == 0 || r.IT <= 0:
		r.Reason = "the IT energy sources of " + sk.where() + " sent no data in this window"
	case r.Facility < r.IT:
		r.Reason = fmt.Sprintf("%sfacility below IT (%.6g J against %.6g J): a meter is missing, misplaced or wrong", schema.ReasonImplausible, r.Facility, r.IT)
	default:
		r.PUE, r.OK = r.Facility/r.IT, true
		if r.Coverage < 1 {
			notes = append(notes, fmt.Sprintf("partial data: facility coverage %.4g, IT coverage %.4g", r.FacilityCoverage, r.ITCoverage))
		}
		if n := hosts.Implausible + d.meterImplausible(sk); n > 0 {
			notes = append(notes, fmt.Sprintf("%d implausible steps not counted", n))
		}
	}
	if r.OK {
		r.Reason = strings.Join(notes, "; ")
	} else if len(notes) > 0 && r.Reason != "" {
		r.Reason += "; " + strings.Join(notes, "; ")
	}
	return r
}

func (d *deriver) meterImplausible(sk scopeKey) int32 {
	var n int32
	for _, m := range d.r.Meters {
		if m.reach.within(sk) {
			n += m.implausible
		}
	}
	return n
}
