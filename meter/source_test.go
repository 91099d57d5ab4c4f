package meter

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
)

// fakeDevice answers each Read with the next of its polls.
type fakeDevice struct {
	polls []fakePoll
	n     int
	reqs  int64
}

type fakePoll struct {
	readings []Reading
	problems []Problem
	err      error
	hang     bool // block until the context ends
}

func (d *fakeDevice) Read(ctx context.Context) ([]Reading, []Problem, error) {
	p := d.polls[min(d.n, len(d.polls)-1)]
	d.n++
	d.reqs += 2
	if p.hang {
		<-ctx.Done()
		return nil, nil, &PollError{Reason: "timeout", Err: ctx.Err()}
	}
	return p.readings, p.problems, p.err
}
func (d *fakeDevice) Requests() int64 { return d.reqs }
func (d *fakeDevice) Close() error    { return nil }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestSource(dev Device, c *clock) *Source {
	s := NewSource(Config{Protocol: "snmp", Name: "pdu-a", Role: "pdu_output", EquipmentType: "rack_pdu", MaxWatts: 10_000,
		Interval: 10 * time.Second, Counters: energy.NewMemoryStore()}, dev)
	s.now = c.now
	return s
}

func find(samples []collector.Sample, name string, labels ...string) (collector.Sample, bool) {
outer:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range s.Labels {
				if l.Name == labels[i] && l.Value == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		return s, true
	}
	return collector.Sample{}, false
}

func TestPowerWithoutACounterIsIntegratedAndLabelledSo(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	dev := &fakeDevice{polls: []fakePoll{
		{readings: []Reading{{Quantity: Power, Row: "1", Value: 1000}}},
		{readings: []Reading{{Quantity: Power, Row: "1", Value: 3000}}},
	}}
	s := newTestSource(dev, c)
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(10 * time.Second)
	out, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A trapezoid: (1000 + 3000) / 2 W over 10 s.
	e, ok := find(out, "joules_snmp_equipment_energy_joules_total", "method", "integrated", "equipment", "1", "role", "pdu_output", "device", "pdu-a", "equipment_type", "rack_pdu")
	if !ok || e.Value != 20_000 || e.Kind != collector.Counter {
		t.Fatalf("integrated energy %+v (found %v), want 20000 J", e, ok)
	}
	if p, ok := find(out, "joules_snmp_equipment_power_watts", "equipment", "1"); !ok || p.Value != 3000 {
		t.Errorf("power %+v, want 3000 W", p)
	}
}

func TestEnergyCounterIsContinuedAcrossAWrapAndAReboot(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	const wrap = 4294967296 * 3600.0 // a 32-bit Wh register, in J
	step := func(v float64) fakePoll {
		return fakePoll{readings: []Reading{{Quantity: Energy, Row: "1", Value: v, Wrap: wrap}, {Quantity: Power, Row: "1", Value: 500}}}
	}
	dev := &fakeDevice{polls: []fakePoll{
		step(wrap - 3600*2), // 2 Wh below the top
		step(3600 * 1),      // wrapped: 2 Wh + 1 Wh counted
		step(3600 * 4),      // +3 Wh
		step(3600 * 0.5),    // the meter rebooted and lost its count: the 0.5 Wh since is counted
	}}
	s := newTestSource(dev, c)
	var total float64
	for range dev.polls {
		out, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		e, ok := find(out, "joules_snmp_equipment_energy_joules_total", "method", "counter")
		if !ok {
			t.Fatal("no counter energy")
		}
		if _, integrated := find(out, "joules_snmp_equipment_energy_joules_total", "method", "integrated"); integrated {
			t.Error("power is integrated although the row has a counter")
		}
		total = e.Value
		c.t = c.t.Add(10 * time.Second)
	}
	// The total starts at the first reading and adds what each step counted.
	want := wrap - 3600*2 + 3600*(2+1) + 3600*3 + 3600*0.5
	if math.Abs(total-want) > 1e-3 {
		t.Errorf("total %v J, want %v J (counted %v J, want %v J)", total, want, total-(wrap-7200), want-(wrap-7200))
	}
}

func TestAFailingMeterKeepsItsLastValuesWithTheirAgeAndBacksOff(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	down := fakePoll{err: &PollError{Reason: "auth", Err: errors.New("wrong key")}}
	dev := &fakeDevice{polls: []fakePoll{{readings: []Reading{{Quantity: Power, Row: "1", Value: 700}}}, down, down, down}}
	s := newTestSource(dev, c)
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	read := c.t
	var out []collector.Sample
	var err error
	for range 3 {
		c.t = c.t.Add(10 * time.Second)
		out, err = s.Collect(context.Background())
		if err == nil {
			t.Fatal("a failed poll returned no error")
		}
	}
	if p, ok := find(out, "joules_snmp_equipment_power_watts"); !ok || p.Value != 700 || !p.Time.Equal(read) {
		t.Errorf("last good power %+v, want 700 W read at %v", p, read)
	}
	if a, _ := find(out, "joules_snmp_data_age_seconds"); a.Value != 30 {
		t.Errorf("data age %v, want 30 s", a.Value)
	}
	if u, _ := find(out, "joules_snmp_up"); u.Value != 0 {
		t.Errorf("up %v after a failure", u.Value)
	}
	if e, _ := find(out, "joules_snmp_poll_errors_total", "reason", "auth"); e.Value != 3 {
		t.Errorf("auth errors %v, want 3", e.Value)
	}
	if o, _ := find(out, "joules_snmp_circuit_open"); o.Value != 1 {
		t.Error("the circuit is not open after three failures in a row")
	}
	c.t = c.t.Add(time.Second)
	polls := dev.n
	if _, err := s.Collect(context.Background()); !errors.Is(err, ErrCircuitOpen) || dev.n != polls {
		t.Errorf("with the circuit open: err %v, device polled %d more times", err, dev.n-polls)
	}
}

func TestAHungMeterIsGivenUpOnBeforeTheDeadline(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	dev := &fakeDevice{polls: []fakePoll{{readings: []Reading{{Quantity: Power, Row: "1", Value: 50}}}, {hang: true}}}
	s := newTestSource(dev, c)
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	out, err := s.Collect(ctx)
	if Reason(err) != "timeout" {
		t.Fatalf("err %v, want a timeout", err)
	}
	if time.Now().After(deadline) {
		t.Error("the poll outlived the runner's deadline")
	}
	if _, ok := find(out, "joules_snmp_equipment_power_watts"); !ok {
		t.Error("the last good power is not published while the meter hangs")
	}
}

func TestProblemsAreCountedByReadingAndReason(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	bad := []Problem{{Reading: "power_factor@1.2.3", Reason: ReasonOutOfRange, Err: errors.New("-0.946 is below 0")}}
	dev := &fakeDevice{polls: []fakePoll{{readings: []Reading{{Quantity: Power, Row: "1", Value: 1}}, problems: bad}}}
	s := newTestSource(dev, c)
	var out []collector.Sample
	for range 2 {
		out, _ = s.Collect(context.Background())
	}
	if p, ok := find(out, "joules_snmp_reading_problems_total", "reading", "power_factor@1.2.3", "reason", "out_of_range"); !ok || p.Value != 2 {
		t.Errorf("problems %+v, want 2", p)
	}
	if r, _ := find(out, "joules_snmp_poll_requests"); r.Value != 2 {
		t.Errorf("poll requests %v, want 2", r.Value)
	}
	if r, _ := find(out, "joules_snmp_requests_total"); r.Value != 4 {
		t.Errorf("requests %v, want 4", r.Value)
	}
}

func TestSpecScalesChecksAndSums(t *testing.T) {
	lo, hi := 0.0, 1.0
	s := Spec{Reading: PowerFactor, Scale: 0.001, Min: &lo, Max: &hi}
	if err := s.Validate("pf"); err != nil {
		t.Fatal(err)
	}
	got, problems := s.Build("pf@x", []Row{{"1", 946}, {"2", -946}})
	if len(got) != 1 || math.Abs(got[0].Value-0.946) > 1e-12 || len(problems) != 1 || problems[0].Reason != ReasonOutOfRange {
		t.Errorf("got %+v, problems %+v", got, problems)
	}
	sum := Spec{Reading: Power, Scale: 1, Sum: true}
	_ = sum.Validate("sum")
	got, _ = sum.Build("p@x", []Row{{"1", 400}, {"2", 1100}, {"3", 1600}})
	if len(got) != 1 || got[0].Value != 3100 || got[0].Row != "1" {
		t.Errorf("sum %+v, want one row of 3100", got)
	}
	neg := -1.0
	got, _ = (&Spec{Reading: Power, Scale: 1, Sum: true, Row: "1", Min: &lo}).Build("p@x", []Row{{"1", 400}, {"2", neg}})
	if len(got) != 0 {
		t.Errorf("a sum with a row out of range was published: %+v", got)
	}
	for _, bad := range []Spec{{Reading: "watts", Scale: 1}, {Reading: Power}, {Reading: Power, Scale: 1, WrapBits: 32}, {Reading: Energy, Scale: 1, WrapBits: 32, Sum: true}} {
		if err := bad.Validate("r"); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
	if w := (&Spec{Reading: Energy, Scale: 3600, WrapBits: 32}).Wrap(); w != 4294967296*3600 {
		t.Errorf("wrap %v", w)
	}
}

func TestAMeterThatGivesNothingOfItsProfileIsDown(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	none := []Problem{{Reading: "power@1.2.3", Reason: ReasonMissing, Err: errors.New("no such object")}}
	s := newTestSource(&fakeDevice{polls: []fakePoll{{problems: none}}}, c)
	out, err := s.Collect(context.Background())
	if Reason(err) != "no_readings" {
		t.Fatalf("err %v, want reason no_readings", err)
	}
	if u, _ := find(out, "joules_snmp_up"); u.Value != 0 {
		t.Error("a meter that read nothing of its profile is up")
	}
}

// A row whose counter is unreadable for one poll keeps one series: its
// power is not integrated into a second one for that poll.
func TestARowWithACounterIsNeverIntegrated(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	dev := &fakeDevice{polls: []fakePoll{
		{readings: []Reading{{Quantity: Energy, Row: "1", Value: 1e6}, {Quantity: Power, Row: "1", Value: 500}}},
		{readings: []Reading{{Quantity: Power, Row: "1", Value: 500}}},
	}}
	s := newTestSource(dev, c)
	for range 2 {
		out, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := find(out, "joules_snmp_equipment_energy_joules_total", "method", "integrated"); ok {
			t.Fatal("a row with a counter was integrated")
		}
		c.t = c.t.Add(10 * time.Second)
	}
}

// Power is integrated across up to three intervals; a longer gap is left
// out and starts a new epoch.
func TestAGapOfMoreThanThreeIntervalsIsNotIntegrated(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	p := fakePoll{readings: []Reading{{Quantity: Power, Row: "1", Value: 100}}}
	s := NewSource(Config{Protocol: "snmp", Name: "ups", Role: "ups_output", EquipmentType: "ups", MaxWatts: 1e4, Interval: time.Second,
		Counters: energy.NewMemoryStore()}, &fakeDevice{polls: []fakePoll{p}})
	s.now = c.now
	var joules []float64
	var epochs []string
	for _, step := range []time.Duration{0, 3 * time.Second, 4 * time.Second} {
		c.t = c.t.Add(step)
		out, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		e, _ := find(out, "joules_snmp_equipment_energy_joules_total", "method", "integrated")
		joules = append(joules, e.Value)
		for _, l := range e.Labels {
			if l.Name == "epoch" {
				epochs = append(epochs, l.Value)
			}
		}
	}
	// 3 s at 100 W counted; the 4 s gap is not.
	if joules[1] != 300 || joules[2] != 300 || epochs[0] != epochs[1] || epochs[1] == epochs[2] {
		t.Errorf("energy %v, epochs %v: want 0, 300, 300 J and a new epoch after the 4 s gap", joules, epochs)
	}
}
