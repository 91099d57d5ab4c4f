package report

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Carbon is the grid's carbon intensity: a constant, or a series in
// InfluxDB (field value, gCO2e/kWh) read as a step function.
type Carbon struct {
	GramsPerKWh float64
	Measurement string
}

// Price is the energy price: per kWh, or time of use.
type Price struct {
	PerKWh    float64
	TimeOfUse []Tariff
	Currency  string
	Location  *time.Location // for the hours of TimeOfUse; UTC if nil
}

// Tariff is a price from one hour of the day (inclusive) to another
// (exclusive), in Price.Location.
type Tariff struct {
	FromHour, ToHour int
	PerKWh           float64
}

// ParseTimeOfUse reads tariffs like "0-7:0.08,7-19:0.16,19-24:0.11"; they
// must cover the day once.
func ParseTimeOfUse(s string) ([]Tariff, error) {
	var out []Tariff
	covered := make([]bool, 24)
	for _, part := range strings.Split(s, ",") {
		hours, price, ok := strings.Cut(strings.TrimSpace(part), ":")
		from, to, ok2 := strings.Cut(hours, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("time-of-use tariff %q: write FROM-TO:PRICE, e.g. 7-19:0.16", part)
		}
		t := Tariff{}
		var err1, err2, err3 error
		t.FromHour, err1 = strconv.Atoi(from)
		t.ToHour, err2 = strconv.Atoi(to)
		t.PerKWh, err3 = strconv.ParseFloat(price, 64)
		if err := errors.Join(err1, err2, err3); err != nil || t.FromHour < 0 || t.ToHour > 24 || t.FromHour >= t.ToHour || t.PerKWh < 0 {
			return nil, fmt.Errorf("time-of-use tariff %q: hours 0-24 with FROM < TO and a price ≥ 0", part)
		}
		for h := t.FromHour; h < t.ToHour; h++ {
			if covered[h] {
				return nil, fmt.Errorf("time-of-use tariffs %q: hour %d is priced twice", s, h)
			}
			covered[h] = true
		}
		out = append(out, t)
	}
	if i := slices.Index(covered, false); i >= 0 {
		return nil, fmt.Errorf("time-of-use tariffs %q: hour %d has no price", s, i)
	}
	return out, nil
}

func (p Price) at(t time.Time) (float64, bool) {
	if len(p.TimeOfUse) == 0 {
		return p.PerKWh, p.PerKWh > 0
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	h := t.In(loc).Hour()
	for _, tr := range p.TimeOfUse {
		if h >= tr.FromHour && h < tr.ToHour {
			return tr.PerKWh, true
		}
	}
	return 0, false
}

// carbonAndCost prices each window's energy: facility energy where the
// window has it (the grid's view), else IT energy, and says which.
func (b *builder) carbonAndCost(r *Report) error {
	var intensity []ValuePt
	if m := b.opt.Carbon.Measurement; m != "" {
		rows, err := b.query(fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %s and r._field == "value")
  |> group()
  |> sort(columns: ["_time"])`, fluxString(b.opt.Bucket), b.opt.From.Add(-24*time.Hour).UTC().Format(time.RFC3339Nano), b.stop(), fluxString(m)))
		if err != nil {
			return err
		}
		for _, row := range rows {
			intensity = append(intensity, ValuePt{Time: row.Time, Value: num(row.Values["_value"])})
		}
		if len(intensity) == 0 {
			r.Gaps = append(r.Gaps, fmt.Sprintf("no carbon intensity in measurement %q for the range: carbon not computed", m))
		}
	}
	b.intensity = intensity
	carbonOn := b.carbonOn()
	priceOn := b.priceOn()
	if !carbonOn && !priceOn {
		return nil
	}
	var grams, cost float64
	facilityWindows, itWindows, before := 0, 0, 0
	for _, w := range b.windowsRead {
		// per site: a site's facility energy where it has a reading, else
		// its IT energy (a site without a facility meter is not priced at
		// another site's)
		kwh := 0.0
		for _, e := range w.sites {
			if e.facility > 0 {
				kwh += e.facility / JoulesPerKWh
				facilityWindows++
			} else {
				kwh += e.it / JoulesPerKWh
				itWindows++
			}
		}
		if carbonOn {
			g, early := b.gramsAt(w.start)
			if early {
				before++
			}
			grams += kwh * g
		}
		if priceOn {
			p, _ := b.opt.Price.at(w.start)
			cost += kwh * p
		}
	}
	basis := "facility energy"
	switch {
	case facilityWindows == 0:
		basis = "IT energy (no facility meter: the grid supplied more)"
	case itWindows > 0:
		basis = fmt.Sprintf("facility energy, IT energy for %d site-windows without a facility reading", itWindows)
	}
	if carbonOn {
		src := fmt.Sprintf("%g gCO2e/kWh", b.opt.Carbon.GramsPerKWh)
		if len(intensity) > 0 {
			src = "grid intensity series " + strconv.Quote(b.opt.Carbon.Measurement)
		}
		r.Carbon = &Amount{Value: grams / 1000, Unit: "kg CO2e", Basis: basis + "; " + src}
		if before > 0 {
			r.Gaps = append(r.Gaps, fmt.Sprintf("%d windows precede the first carbon intensity value: its first value is used", before))
		}
	}
	if priceOn {
		cur := b.opt.Price.Currency
		if cur == "" {
			cur = "currency units"
		}
		src := fmt.Sprintf("%g per kWh", b.opt.Price.PerKWh)
		if len(b.opt.Price.TimeOfUse) > 0 {
			src = "time-of-use tariff"
		}
		r.Cost = &Amount{Value: math.Round(cost*100) / 100, Unit: cur, Basis: basis + "; " + src}
	}
	return nil
}

func (b *builder) carbonOn() bool { return b.opt.Carbon.GramsPerKWh > 0 || len(b.intensity) > 0 }

func (b *builder) priceOn() bool { return b.opt.Price.PerKWh > 0 || len(b.opt.Price.TimeOfUse) > 0 }

// gramsAt is the carbon intensity of a window starting at t (gCO2e/kWh):
// the constant, or the series' value in force then; early says the window
// precedes the series, whose first value is used.
func (b *builder) gramsAt(t time.Time) (g float64, early bool) {
	if len(b.intensity) == 0 {
		return b.opt.Carbon.GramsPerKWh, false
	}
	i := sort.Search(len(b.intensity), func(i int) bool { return b.intensity[i].Time.After(t) }) - 1
	if i < 0 {
		return b.intensity[0].Value, true
	}
	return b.intensity[i].Value, false
}
