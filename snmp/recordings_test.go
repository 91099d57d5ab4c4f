package snmp

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/meter"
)

// serveRecordings copies the named recordings of real devices into a
// folder and serves them with snmpsimd; each file's community is its name.
func serveRecordings(t *testing.T, names ...string) *testenv.SNMPAgent {
	t.Helper()
	src := filepath.Join(testenv.SharedTestdata(t), "snmp")
	dir := t.TempDir()
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(src, n+".snmprec"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n+".snmprec"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return testenv.StartSNMPSim(t, dir, names[0])
}

type want struct {
	q     meter.Quantity
	row   string
	value float64
}

// The expected values are the recorded integers that SOURCE.md (beside the
// recordings) gives, scaled by hand with the unit the MIB gives.
var recordings = []struct {
	file, profile string
	want          []want
	problems      []string // reading@OID: reason
	absent        []meter.Quantity
}{
	{file: "apc_ap8959eu3", profile: "apc-rpdu2", want: []want{
		{meter.Power, "1", 27 * 10},              // 0.27 kW
		{meter.Energy, "1", 19677 * 0.1 * 3.6e6}, // 1967.7 kWh
		{meter.PowerFactor, "1", 0.82},
		{meter.PhasePower, "1", 250},
		{meter.PhaseVoltage, "1", 231},
		{meter.PhaseCurrent, "1", 1.3},
	}, absent: []meter.Quantity{meter.OutletPower}},
	{file: "raritan-pdu_px2", profile: "raritan-pdu2", want: []want{
		{meter.Power, "1.1", 138},
		{meter.PhaseCurrent, "1.1", 0.680},
		{meter.PhaseVoltage, "1.1", 233},
		{meter.OutletPower, "3", 68}, {meter.OutletPower, "10", 35}, {meter.OutletPower, "11", 35}, {meter.OutletPower, "1", 0},
	}, absent: []meter.Quantity{meter.Energy}},
	{file: "sentry4", profile: "sentry4", want: []want{
		{meter.Power, "1.1", 1701}, {meter.Power, "2.1", 1265},
		{meter.Energy, "1.1", 893.7 * 3.6e6}, {meter.Energy, "2.1", 2565.9 * 3.6e6},
		{meter.PowerFactor, "1.1", 0.95}, {meter.PowerFactor, "2.1", 0.96},
	}},
	{file: "eatonpdu_2", profile: "eaton-epdu", want: []want{
		{meter.Power, "0.1", 1584},
		{meter.Energy, "0.1", 8185493 * 3600.0},
		{meter.PowerFactor, "0.1", 0.946}, // inputTotalPowerFactor.0.1 = 946 (thousandths)
		{meter.PhasePower, "1.1", 1589},
		{meter.OutletPower, "1", 80}, {meter.OutletPower, "2", 142},
		{meter.OutletEnergy, "1", 785621 * 3600.0},
	}, problems: []string{"phase_power_factor@1.3.6.1.4.1.534.6.6.7.3.4.1.7: out_of_range"}, absent: []meter.Quantity{meter.PhasePF}},
	{file: "vertiv-pdu_mg02e4w1", profile: "vertiv-geist", want: []want{
		{meter.Power, "1", 1017},
		{meter.Energy, "1", 8483906 * 3600.0},
		{meter.PowerFactor, "1", 0.95},
		{meter.PhasePower, "1", 198}, {meter.PhasePower, "2", 436}, {meter.PhasePower, "3", 382},
		{meter.PhaseEnergy, "1", 2353700 * 3600.0}, {meter.PhaseEnergy, "2", 2262146 * 3600.0}, {meter.PhaseEnergy, "3", 3868060 * 3600.0},
	}},
	{file: "eaton-mgeups_93ps", profile: "ups-mib", want: []want{
		{meter.Power, "1", 400 + 1100 + 1600},
		{meter.UPSOutputPower, "1", 400}, {meter.UPSOutputPower, "2", 1100}, {meter.UPSOutputPower, "3", 1600},
		{meter.UPSLoad, "1", 0.07}, {meter.UPSLoad, "2", 0.19}, {meter.UPSLoad, "3", 0.29},
		{meter.UPSInputPower, "1", 0}, {meter.UPSInputPower, "2", 0}, {meter.UPSInputPower, "3", 0},
	}},
	{file: "apc_smx750", profile: "apc-ups", want: []want{
		{meter.Power, "1", 333},
		{meter.UPSLoad, "1", 0.762},
		{meter.PhaseVoltage, "1", 246.1},
		{meter.PhaseCurrent, "1", 2.2},
	}, absent: []meter.Quantity{meter.Energy}},
}

func TestShippedProfilesReadRecordingsOfRealDevices(t *testing.T) {
	var names []string
	for _, r := range recordings {
		names = append(names, r.file)
	}
	agent := serveRecordings(t, names...)
	covered := map[string]bool{}
	for _, rec := range recordings {
		t.Run(rec.file, func(t *testing.T) {
			covered[rec.profile] = true
			p, err := ShippedProfile(rec.profile)
			if err != nil {
				t.Fatal(err)
			}
			dev, err := NewDevice(Config{Address: agent.Addr, Community: rec.file, Timeout: 2 * time.Second}, p)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			readings, problems, err := dev.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, r := range readings {
				got[string(r.Quantity)+"/"+r.Row] = r.Value
			}
			for _, w := range rec.want {
				v, ok := got[string(w.q)+"/"+w.row]
				if !ok {
					t.Errorf("no %s for row %s; got %v", w.q, w.row, got)
					continue
				}
				if math.Abs(v-w.value) > 1e-9*max(1, math.Abs(w.value)) {
					t.Errorf("%s row %s = %v, want %v", w.q, w.row, v, w.value)
				}
			}
			for _, q := range rec.absent {
				for k := range got {
					if strings.HasPrefix(k, string(q)+"/") {
						t.Errorf("%s is not in the recording, yet read %s", q, k)
					}
				}
			}
			var reasons []string
			for _, p := range problems {
				reasons = append(reasons, p.Reading+": "+p.Reason)
			}
			if !slices.Equal(reasons, rec.problems) {
				t.Errorf("problems %v, want %v (%v)", reasons, rec.problems, problems)
			}
		})
	}
	for _, name := range Shipped() {
		if !covered[name] {
			t.Errorf("shipped profile %s is not tested against a recording", name)
		}
	}
}

// The outlets of the Raritan recording add up to its inlet, and those of
// the Eaton ePDU to what SOURCE.md says they sum to.
func TestOutletsAddUpAsRecorded(t *testing.T) {
	agent := serveRecordings(t, "raritan-pdu_px2", "eatonpdu_2")
	for _, c := range []struct {
		file, profile string
		watts, wh     float64
	}{{"raritan-pdu_px2", "raritan-pdu2", 138, 0}, {"eatonpdu_2", "eaton-epdu", 1568, 8000253}} {
		p, _ := ShippedProfile(c.profile)
		dev, err := NewDevice(Config{Address: agent.Addr, Community: c.file}, p)
		if err != nil {
			t.Fatal(err)
		}
		readings, _, err := dev.Read(context.Background())
		dev.Close()
		if err != nil {
			t.Fatal(err)
		}
		var watts, joules float64
		var n int
		for _, r := range readings {
			switch r.Quantity {
			case meter.OutletPower:
				watts += r.Value
				n++
			case meter.OutletEnergy:
				joules += r.Value
			}
		}
		if watts != c.watts || math.Abs(joules-c.wh*3600) > 1e-6 {
			t.Errorf("%s: %d outlets sum to %v W and %v J, want %v W and %v J", c.file, n, watts, joules, c.watts, c.wh*3600)
		}
	}
}

// An APC PDU without outlet metering: the first poll walks its three
// outlet columns and finds them empty (two requests each: the GETBULK, and
// the GET gosnmp sends when a walk leaves its column at once); later polls
// leave them alone for an hour and send one GETBULK for each of the six
// device and phase columns.
func TestEmptyColumnsAreNotWalkedOnEveryPoll(t *testing.T) {
	agent := serveRecordings(t, "apc_ap8959eu3")
	p, _ := ShippedProfile("apc-rpdu2")
	dev, err := NewDevice(Config{Address: agent.Addr, Community: "apc_ap8959eu3"}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	clock := time.Unix(1_800_000_000, 0)
	dev.now = func() time.Time { return clock }
	var sent []int64
	for _, step := range []time.Duration{0, 10 * time.Second, time.Hour} {
		clock = clock.Add(step)
		before := dev.Requests()
		if _, _, err := dev.Read(context.Background()); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, dev.Requests()-before)
	}
	if want := []int64{6 + 3*2, 6, 6 + 3*2}; !slices.Equal(sent, want) {
		t.Errorf("requests per poll %v, want %v (the empty columns walked again after an hour)", sent, want)
	}
}

func ExampleShipped() {
	fmt.Println(strings.Join(Shipped(), "\n"))
	// Output:
	// apc-rpdu2
	// apc-ups
	// eaton-epdu
	// raritan-pdu2
	// sentry4
	// ups-mib
	// vertiv-geist
}
