package modbus

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/meter"
)

func shippedMap(t *testing.T, name string) *Map {
	t.Helper()
	m, err := ShippedMap(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newDevice(t *testing.T, cfg Config, m *Map) *Device {
	t.Helper()
	d, err := NewDevice(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func read(t *testing.T, d *Device) ([]meter.Reading, []meter.Problem) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, ps, err := d.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return rs, ps
}

// want is a reading expected: quantity/row → value, and its Wrap.
type want struct {
	value, wrap float64
}

func checkReadings(t *testing.T, got []meter.Reading, wants map[string]want) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range got {
		key := string(r.Quantity) + "/" + r.Row
		if seen[key] {
			t.Errorf("%s given twice", key)
		}
		seen[key] = true
		w, ok := wants[key]
		if !ok {
			t.Errorf("unexpected reading %s = %g", key, r.Value)
			continue
		}
		if !near(r.Value, w.value) {
			t.Errorf("%s = %.12g, want %.12g", key, r.Value, w.value)
		}
		if !near(r.Wrap, w.wrap) {
			t.Errorf("%s wraps at %.12g, want %.12g", key, r.Wrap, w.wrap)
		}
	}
	for key := range wants {
		if !seen[key] {
			t.Errorf("reading %s missing", key)
		}
	}
}

func near(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*max(math.Abs(a), math.Abs(b))
}

func checkProblems(t *testing.T, got []meter.Problem, wants map[string]string) {
	t.Helper()
	have := map[string]string{}
	for _, p := range got {
		have[p.Reading] = p.Reason
		if p.Err == nil {
			t.Errorf("problem %s (%s) has no error", p.Reading, p.Reason)
		}
	}
	for what, reason := range wants {
		if have[what] != reason {
			t.Errorf("problem %s: reason %q, want %q (all: %v)", what, have[what], reason, got)
		}
	}
	if len(got) != len(wants) {
		t.Errorf("problems %v, want %v", got, wants)
	}
}

func TestShippedMaps(t *testing.T) {
	if got, want := ShippedMaps(), []string{"schneider-pm5000", "socomec-diris", "sunspec-meter"}; !slices.Equal(got, want) {
		t.Fatalf("ShippedMaps() = %v, want %v", got, want)
	}
	for _, name := range ShippedMaps() {
		m := shippedMap(t, name)
		if m.Name != name || m.EquipmentType != "meter" {
			t.Errorf("%s: name %q, equipment_type %q", name, m.Name, m.EquipmentType)
		}
	}
	_, err := ShippedMap("nope")
	if err == nil || !strings.Contains(err.Error(), "sunspec-meter") || !strings.Contains(err.Error(), "register_map_file") {
		t.Errorf("ShippedMap(nope) = %v, want the names shipped and register_map_file", err)
	}
}

// schneiderValues serves a PM5000's registers (wire address = listed
// register − 1), float32 high word first.
func schneiderValues(f *fakeMeter, energyWh int64) {
	f.set(2999, slices.Concat(f32(10.5), f32(11.25), f32(12))...)       // Current A, B, C (A)
	f.set(3027, slices.Concat(f32(230.5), f32(231.25), f32(229.75))...) // Voltage A-N, B-N, C-N (V)
	f.set(3053, slices.Concat(f32(4.25), f32(4.125), f32(4), f32(12.5))...)
	f.set(3203, i64(energyWh)...) // Active Energy Delivered (Wh)
}

var schneiderWants = map[string]want{
	"power/1":         {12500, 0},
	"phase_power/1":   {4250, 0},
	"phase_power/2":   {4125, 0},
	"phase_power/3":   {4000, 0},
	"phase_current/1": {10.5, 0},
	"phase_current/2": {11.25, 0},
	"phase_current/3": {12, 0},
	"phase_voltage/1": {230.5, 0},
	"phase_voltage/2": {231.25, 0},
	"phase_voltage/3": {229.75, 0},
	"energy/1":        {123456789 * 3600, 0}, // Wh → J: 444444440400
}

func TestSchneiderPM5000(t *testing.T) {
	f, addr := startMeter(t)
	schneiderValues(f, 123456789)
	d := newDevice(t, Config{Address: addr, UnitID: 3}, shippedMap(t, "schneider-pm5000"))
	rs, ps := read(t, d)
	checkReadings(t, rs, schneiderWants)
	checkProblems(t, ps, nil)
	// Four reads: currents, voltages, powers (gaps of 22 and 20 registers
	// between them) and the energy.
	wantReads := []served{{3, false, 2999, 6}, {3, false, 3027, 6}, {3, false, 3053, 8}, {3, false, 3203, 4}}
	if got := f.served(); !slices.Equal(got, wantReads) {
		t.Errorf("served %v, want %v", got, wantReads)
	}
	if d.Requests() != 4 {
		t.Errorf("Requests() = %d, want 4", d.Requests())
	}
}

func TestSocomecDIRIS(t *testing.T) {
	f, addr := startMeter(t)
	f.set(50520, slices.Concat(u32(23012), u32(23105), u32(22998))...) // V1..V3, V/100
	f.set(50528, slices.Concat(u32(10500), u32(11250), u32(0))...)     // I1..I3, mA
	f.set(50536, s32(1234)...)                                         // ΣP, kW/100
	f.set(50544, slices.Concat(s32(411), s32(-250), s32(1073))...)     // P1..P3, kW/100
	f.set(50780, u32(98765)...)                                        // Ea+, kWh
	d := newDevice(t, Config{Address: addr}, shippedMap(t, "socomec-diris"))
	rs, ps := read(t, d)
	checkReadings(t, rs, map[string]want{
		"power/1":         {12340, 0},
		"phase_power/1":   {4110, 0},
		"phase_power/2":   {-2500, 0},
		"phase_power/3":   {10730, 0},
		"phase_current/1": {10.5, 0},
		"phase_current/2": {11.25, 0},
		"phase_current/3": {0, 0},
		"phase_voltage/1": {230.12, 0},
		"phase_voltage/2": {231.05, 0},
		"phase_voltage/3": {229.98, 0},
		// 98765 kWh × 3.6e6 J/kWh; a 32-bit counter of kWh wraps at 2^32 kWh.
		"energy/1": {355554000000, 4294967296 * 3600000},
	})
	checkProblems(t, ps, nil)
	// 50520 to 50549 in one read (gaps of 2, 2 and 6), the energy in another.
	wantReads := []served{{1, false, 50520, 30}, {1, false, 50780, 2}}
	if got := f.served(); !slices.Equal(got, wantReads) {
		t.Errorf("served %v, want %v", got, wantReads)
	}
}

// sunspecLayout serves the SunSpec marker, the common model and model
// 203's header, and model 203's values with negative scale factors.
func sunspecLayout(f *fakeMeter) {
	f.set(40000, 0x5375, 0x6e53, 1, 66) // 'SunS', common model ID 1, length 66
	f.set(40070, 203, 105)              // model 203, length 105
	f.set(40072, 3280, 1050, 1125, 1105, s16(-2))
	f.set(40077, 2300, 2301, 2312, 2298)
	f.set(40085, s16(-1))                               // V_SF
	f.set(40088, 12345, 4115, 4120, s16(-500), s16(-1)) // W, WphA..C, W_SF
	f.set(40116, u32(1234567)...)                       // TotWhImp
	f.set(40124, 1)                                     // TotWh_SF
}

func TestSunSpecMeter(t *testing.T) {
	f, addr := startMeter(t)
	sunspecLayout(f)
	d := newDevice(t, Config{Address: addr}, shippedMap(t, "sunspec-meter"))
	rs, ps := read(t, d)
	checkReadings(t, rs, map[string]want{
		"power/1":         {1234.5, 0},                           // 12345 × 10^-1
		"phase_power/1":   {411.5, 0},                            // 4115 × 10^-1
		"phase_power/2":   {412, 0},                              // 4120 × 10^-1
		"phase_power/3":   {-50, 0},                              // -500 × 10^-1: exporting
		"phase_current/1": {10.5, 0},                             // 1050 × 10^-2
		"phase_current/2": {11.25, 0},                            // 1125 × 10^-2
		"phase_current/3": {11.05, 0},                            // 1105 × 10^-2
		"phase_voltage/1": {230.1, 0},                            // 2301 × 10^-1
		"phase_voltage/2": {231.2, 0},                            // 2312 × 10^-1
		"phase_voltage/3": {229.8, 0},                            // 2298 × 10^-1
		"energy/1":        {44444412000, 4294967296 * 10 * 3600}, // 1234567 × 10^1 Wh × 3600; wraps at 2^32 × 10 Wh
	})
	checkProblems(t, ps, nil)
	// The layout check once per connection (two reads), then the model in
	// two reads (23 registers between W_SF and TotWhImp).
	wantReads := []served{{1, false, 40000, 4}, {1, false, 40070, 2}, {1, false, 40073, 20}, {1, false, 40116, 9}}
	if got := f.served(); !slices.Equal(got, wantReads) {
		t.Errorf("served %v, want %v", got, wantReads)
	}
	read(t, d)
	if d.Requests() != 6 {
		t.Errorf("Requests() after two polls = %d, want 6 (the layout checked once)", d.Requests())
	}
}

func TestSunSpecLayoutMismatch(t *testing.T) {
	f, addr := startMeter(t)
	sunspecLayout(f)
	f.set(40070, 201, 105) // a single-phase meter's model
	d := newDevice(t, Config{Address: addr}, shippedMap(t, "sunspec-meter"))
	_, _, err := d.Read(context.Background())
	var pe *meter.PollError
	if !errors.As(err, &pe) || pe.Reason != "protocol" || !strings.Contains(err.Error(), "not laid out as the map assumes") {
		t.Fatalf("Read = %v, want a protocol PollError saying the device is not laid out as the map assumes", err)
	}
	f.set(40000, 0, 0)
	_, _, err = d.Read(context.Background())
	if !errors.As(err, &pe) || pe.Reason != "protocol" {
		t.Fatalf("Read without 'SunS' = %v, want a protocol PollError", err)
	}
}

// A user's map from a file: low word first by default, one value high
// word first, one byte-swapped, one in the input registers.
func TestUserMapWordOrder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "meter.yml")
	if err := os.WriteFile(file, []byte(`
# A test meter.
name: test-low-first
description: low word first
word_order: low_first
readings:
  - {reading: power, address: 100, type: float32, unit: W, scale: 1}
  - {reading: energy, address: 102, type: uint32, unit: Wh, scale: 3600, wrap_bits: 32}
  - {reading: phase_voltage, address: 104, type: uint16, byte_order: little, unit: 0.1 V, scale: 0.1}
  - {reading: phase_current, address: 106, type: float32, word_order: high_first, unit: A, scale: 1}
  - {reading: phase_power, address: 5, table: input, type: int32, unit: W, scale: 1}
  - {reading: power_factor, address: 110, type: float64, unit: "", scale: 1}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMap(file)
	if err != nil {
		t.Fatal(err)
	}
	f, addr := startMeter(t)
	p := math.Float32bits(1500.25)
	f.set(100, uint16(p), uint16(p>>16)) // low word first
	f.set(102, 0x2345, 0x0001)           // 0x00012345 = 74565 Wh, low word first
	f.set(104, 0x0109)                   // 0x0901 = 2305 with its bytes swapped
	f.set(106, f32(16.5)...)             // high word first
	pf := math.Float64bits(0.97)
	f.set(110, uint16(pf), uint16(pf>>16), uint16(pf>>32), uint16(pf>>48))
	f.setInput(5, 0xFB50, 0xFFFF) // -1200 = 0xFFFFFB50, low word first
	d := newDevice(t, Config{Address: addr}, m)
	rs, ps := read(t, d)
	checkReadings(t, rs, map[string]want{
		"power/1":         {1500.25, 0},
		"energy/1":        {74565 * 3600, 4294967296 * 3600},
		"phase_voltage/1": {230.5, 0},
		"phase_current/1": {16.5, 0},
		"phase_power/1":   {-1200, 0},
		"power_factor/1":  {0.97, 0},
	})
	checkProblems(t, ps, nil)
}

func TestIllegalDataAddress(t *testing.T) {
	t.Run("a value of its own", func(t *testing.T) {
		f, addr := startMeter(t)
		schneiderValues(f, 123456789)
		f.setIllegal([2]uint16{3203, 3206}) // no energy register (a PM5100 configured without)
		d := newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000"))
		rs, ps := read(t, d)
		wants := maps(schneiderWants)
		delete(wants, "energy/1")
		checkReadings(t, rs, wants)
		checkProblems(t, ps, map[string]string{"energy@3203": meter.ReasonMissing})
		if d.Requests() != 4 {
			t.Errorf("Requests() = %d, want 4", d.Requests())
		}
	})
	t.Run("optional", func(t *testing.T) {
		f, addr := startMeter(t)
		schneiderValues(f, 123456789)
		f.setIllegal([2]uint16{3203, 3206})
		m := shippedMap(t, "schneider-pm5000")
		for i := range m.Readings {
			m.Readings[i].Optional = m.Readings[i].Reading == meter.Energy
		}
		d := newDevice(t, Config{Address: addr}, m)
		_, ps := read(t, d)
		checkProblems(t, ps, nil)
	})
	t.Run("inside a block", func(t *testing.T) {
		f, addr := startMeter(t)
		schneiderValues(f, 123456789)
		f.setIllegal([2]uint16{3055, 3056}) // phase B's power
		d := newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000"))
		rs, ps := read(t, d)
		wants := maps(schneiderWants)
		delete(wants, "phase_power/2")
		checkReadings(t, rs, wants)
		checkProblems(t, ps, map[string]string{"phase_power@3055": meter.ReasonMissing})
		// 4 reads, then the refused block's 4 values one by one.
		if d.Requests() != 8 {
			t.Errorf("Requests() = %d, want 8", d.Requests())
		}
		before := len(f.served())
		rs, ps = read(t, d)
		checkReadings(t, rs, wants)
		checkProblems(t, ps, map[string]string{"phase_power@3055": meter.ReasonMissing})
		// The next poll reads that block value by value straight away.
		if d.Requests() != 15 {
			t.Errorf("Requests() after two polls = %d, want 15", d.Requests())
		}
		want := []served{{1, false, 2999, 6}, {1, false, 3027, 6}, {1, false, 3053, 2}, {1, false, 3055, 2}, {1, false, 3057, 2}, {1, false, 3059, 2}, {1, false, 3203, 4}}
		if got := f.served()[before:]; !slices.Equal(got, want) {
			t.Errorf("second poll served %v, want %v", got, want)
		}
	})
}

func maps(m map[string]want) map[string]want {
	out := make(map[string]want, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestNotImplementedAndOutOfRange(t *testing.T) {
	t.Run("sunspec", func(t *testing.T) {
		f, addr := startMeter(t)
		sunspecLayout(f)
		f.set(40074, 0x8000)  // AphB: int16 not implemented
		f.set(40075, s16(-5)) // AphC: below min 0
		d := newDevice(t, Config{Address: addr}, shippedMap(t, "sunspec-meter"))
		rs, ps := read(t, d)
		checkProblems(t, ps, map[string]string{
			"phase_current@40074": meter.ReasonMissing,
			"phase_current@40075": meter.ReasonOutOfRange,
		})
		if len(rs) != 9 {
			t.Errorf("%d readings, want the 9 others", len(rs))
		}
	})
	t.Run("scale factor not implemented", func(t *testing.T) {
		f, addr := startMeter(t)
		sunspecLayout(f)
		f.set(40092, 0x8000) // W_SF
		d := newDevice(t, Config{Address: addr}, shippedMap(t, "sunspec-meter"))
		rs, ps := read(t, d)
		checkProblems(t, ps, map[string]string{
			"power@40088": meter.ReasonMissing, "phase_power@40089": meter.ReasonMissing,
			"phase_power@40090": meter.ReasonMissing, "phase_power@40091": meter.ReasonMissing,
		})
		if len(rs) != 7 {
			t.Errorf("%d readings, want the 7 others", len(rs))
		}
	})
	t.Run("float NaN and acc32 zero", func(t *testing.T) {
		f, addr := startMeter(t)
		schneiderValues(f, 123456789)
		f.set(3031, f32(float32(math.NaN()))...) // Voltage C-N on a delta system
		d := newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000"))
		_, ps := read(t, d)
		checkProblems(t, ps, map[string]string{"phase_voltage@3031": meter.ReasonMissing})

		g, addr2 := startMeter(t)
		sunspecLayout(g)
		g.set(40116, 0, 0) // TotWhImp: acc32 not accumulated
		d2 := newDevice(t, Config{Address: addr2}, shippedMap(t, "sunspec-meter"))
		_, ps = read(t, d2)
		checkProblems(t, ps, map[string]string{"energy@40116": meter.ReasonMissing})
	})
}

// silentListener accepts connections and never answers.
type silentListener struct {
	l        net.Listener
	accepted chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	conns    []net.Conn
}

func startSilent(t *testing.T) *silentListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{l: l, accepted: make(chan struct{}, 16), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.accepted <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			_ = c.Close()
		}
	})
	return s
}

func (s *silentListener) waitAccept(t *testing.T) {
	t.Helper()
	select {
	case <-s.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
}

func reason(err error) string {
	var pe *meter.PollError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return "not a PollError: " + err.Error()
}

func TestTimeout(t *testing.T) {
	t.Run("the poll's deadline", func(t *testing.T) {
		s := startSilent(t)
		// A request timeout far beyond the poll's: the context bounds it.
		d := newDevice(t, Config{Address: s.l.Addr().String(), Timeout: time.Minute}, shippedMap(t, "schneider-pm5000"))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := d.Read(ctx)
		elapsed := time.Since(start)
		if err == nil || reason(err) != "timeout" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Read = %v, want a timeout PollError wrapping the deadline", err)
		}
		if meter.Reason(err) != "timeout" {
			t.Errorf("meter.Reason = %q", meter.Reason(err))
		}
		if deadline, _ := ctx.Deadline(); time.Since(deadline) > time.Second {
			t.Errorf("Read returned %s after its deadline (took %s)", time.Since(deadline), elapsed)
		}
		s.waitAccept(t)
		// The failed poll dropped the connection: the next opens another.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel2()
		if _, _, err := d.Read(ctx2); reason(err) != "timeout" {
			t.Fatalf("second Read = %v, want timeout", err)
		}
		s.waitAccept(t)
	})
	t.Run("the request's timeout", func(t *testing.T) {
		s := startSilent(t)
		d := newDevice(t, Config{Address: s.l.Addr().String(), Timeout: 200 * time.Millisecond}, shippedMap(t, "schneider-pm5000"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, err := d.Read(ctx)
		if reason(err) != "timeout" || !errors.Is(err, mb.ErrRequestTimedOut) {
			t.Fatalf("Read = %v, want a timeout PollError wrapping the library's request timeout", err)
		}
	})
	t.Run("a context already done", func(t *testing.T) {
		d := newDevice(t, Config{Address: "127.0.0.1:1"}, shippedMap(t, "schneider-pm5000"))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := d.Read(ctx); reason(err) != "timeout" || d.Requests() != 0 {
			t.Fatalf("Read = %v, requests %d; want timeout and no request", err, d.Requests())
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	d := newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = d.Read(ctx)
	if reason(err) != "connection" || meter.Reason(err) != "connection" {
		t.Fatalf("Read = %v, want a connection PollError", err)
	}
}

func TestException(t *testing.T) {
	f, addr := startMeter(t)
	schneiderValues(f, 123456789)
	f.setException(mb.ErrServerDeviceBusy)
	d := newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000"))
	_, _, err := d.Read(context.Background())
	if reason(err) != "protocol" || !errors.Is(err, mb.ErrServerDeviceBusy) {
		t.Fatalf("Read = %v, want a protocol PollError", err)
	}
	f.setException(nil)
	rs, _ := read(t, d)
	checkReadings(t, rs, schneiderWants)
}

// source polls dev through the meter package, as the agent does.
func source(dev meter.Device) *meter.Source {
	return meter.NewSource(meter.Config{Protocol: "modbus", Name: "fm", Role: "facility_input", EquipmentType: "meter",
		MaxWatts: 1e6, Interval: 10 * time.Second, Counters: energy.NewMemoryStore()}, dev)
}

func collect(t *testing.T, s *meter.Source) []collector.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	samples, err := s.Collect(ctx)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return samples
}

func sample(t *testing.T, samples []collector.Sample, name string, labels ...string) float64 {
	t.Helper()
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		ok := true
		for i := 0; i < len(labels); i += 2 {
			if !slices.Contains(s.Labels, collector.Label{Name: labels[i], Value: labels[i+1]}) {
				ok = false
			}
		}
		if ok {
			return s.Value
		}
	}
	t.Fatalf("no sample %s %v", name, labels)
	return 0
}

func TestSourceCounterWraps(t *testing.T) {
	f, addr := startMeter(t)
	sunspecLayout(f)
	f.set(40124, 0)                      // TotWh_SF: Wh as they are
	f.set(40116, u32(4294967296-100)...) // 100 Wh below the 32-bit range
	s := source(newDevice(t, Config{Address: addr}, shippedMap(t, "sunspec-meter")))
	const energyName = "joules_modbus_equipment_energy_joules_total"
	if got, want := sample(t, collect(t, s), energyName, "method", "counter"), (4294967296.0-100)*3600; got != want {
		t.Fatalf("first energy = %.0f J, want %.0f", got, want)
	}
	f.set(40116, u32(50)...) // wrapped: 100 Wh to the top, 50 beyond
	samples := collect(t, s)
	if got, want := sample(t, samples, energyName, "method", "counter"), (4294967296.0-100)*3600+150*3600; got != want {
		t.Errorf("energy after the wrap = %.0f J, want %.0f (150 Wh more)", got, want)
	}
	if sample(t, samples, "joules_modbus_up") != 1 {
		t.Error("up != 1")
	}
	if got := sample(t, samples, "joules_modbus_equipment_power_watts", "equipment", "1"); got != 1234.5 {
		t.Errorf("power = %g, want 1234.5", got)
	}
}

func TestSourceCounterReset(t *testing.T) {
	f, addr := startMeter(t)
	schneiderValues(f, 5000000)
	s := source(newDevice(t, Config{Address: addr}, shippedMap(t, "schneider-pm5000")))
	const energyName = "joules_modbus_equipment_energy_joules_total"
	if got := sample(t, collect(t, s), energyName, "method", "counter"); got != 5000000*3600 {
		t.Fatalf("first energy = %.0f J, want %d", got, 5000000*3600)
	}
	f.set(3203, i64(3)...) // the meter rebooted: its counter is at 3 Wh
	// 3 Wh since the restart is within what 1 MW allows: counted.
	if got, want := sample(t, collect(t, s), energyName, "method", "counter"), float64(5000000*3600+3*3600); got != want {
		t.Errorf("energy after the reset = %.0f J, want %.0f", got, want)
	}
}

func TestValidation(t *testing.T) {
	_, err := ParseMap([]byte(`
name: typo
readings:
  - {reading: power, adress: 1, type: int16, scale: 1}
`), "typo.yml")
	if err == nil || !strings.Contains(err.Error(), "adress") || !strings.Contains(err.Error(), "typo.yml") {
		t.Errorf("unknown field: %v, want the field and the file named", err)
	}

	_, err = ParseMap([]byte(`
name: bad
word_order: middle_first
expect:
  - {address: 10}
readings:
  - {reading: power, address: 10, type: int33, scale: 1}
  - {reading: energy, address: 20, type: uint32}
  - {reading: phase_power, type: int16, scale: 1}
  - {reading: phase_current, address: 65535, type: uint32, scale: 1}
  - {reading: phase_voltage, address: 30, type: float32, scale: 1, scale_register: 31}
  - {reading: energy, row: "2", address: 40, type: uint16, scale: 1, wrap_bits: 32}
  - {reading: power, address: 50, type: int16, scale: 1}
  - {reading: phase_power, row: "2", address: 60, type: int16, scale: 1, table: coils}
  - {reading: phase_power, row: "3", address: 70, scale: 1}
`), "bad.yml")
	if err == nil {
		t.Fatal("bad map accepted")
	}
	for _, want := range []string{
		`word_order "middle_first" is not high_first or low_first`,
		`expect[0]: values: give 1 to 125`,
		`readings[0] (power): type "int33" is not one of`,
		`readings[1] (energy): scale must be a positive number`,
		`readings[2] (phase_power): address is required`,
		`readings[3] (phase_current): address 65535`,
		`readings[4] (phase_voltage): scale_register is for integer registers`,
		`readings[5] (energy): wrap_bits 32 is wider than a uint16`,
		`readings[6] (power): reading power row 1 is also readings[0]`,
		`readings[7] (phase_power): table "coils" is not holding or input`,
		`readings[8] (phase_power): type is required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	if _, err := ParseMap([]byte("description: nothing\n"), "empty.yml"); err == nil ||
		!strings.Contains(err.Error(), "name is required") || !strings.Contains(err.Error(), "reads nothing") {
		t.Errorf("empty map: %v", err)
	}
	if _, err := LoadMap(filepath.Join(t.TempDir(), "absent.yml")); err == nil {
		t.Error("LoadMap of an absent file succeeded")
	}
	if _, err := NewDevice(Config{Address: "meter"}, &Map{Name: "x"}); err == nil {
		t.Error("NewDevice took a map without readings")
	}
}

func TestAddress(t *testing.T) {
	m := shippedMap(t, "sunspec-meter")
	for in, want := range map[string]string{
		"10.0.0.5":           "10.0.0.5:502",
		"meter.example:1502": "meter.example:1502",
		"tcp://meter":        "meter:502",
		"::1":                "[::1]:502",
		"[fe80::1]":          "[fe80::1]:502",
		"[fe80::1]:5020":     "[fe80::1]:5020",
	} {
		d, err := NewDevice(Config{Address: in}, m)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if d.addr != want || d.cfg.UnitID != 1 || d.cfg.Timeout != 2*time.Second {
			t.Errorf("%q: address %q unit %d timeout %s, want %q unit 1 timeout 2s", in, d.addr, d.cfg.UnitID, d.cfg.Timeout, want)
		}
	}
	for _, bad := range []string{"", "meter:http", "meter:0", ":502"} {
		if _, err := NewDevice(Config{Address: bad}, m); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
