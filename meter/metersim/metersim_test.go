package metersim

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/meter"
	"github.com/joules-energy/joules/modbus"
	"github.com/joules-energy/joules/snmp"
)

func values(readings []meter.Reading) map[string]float64 {
	out := map[string]float64{}
	for _, r := range readings {
		out[string(r.Quantity)+"/"+r.Row] = r.Value
	}
	return out
}

// serve runs an SNMP agent with community demo until the test ends.
func serve(t *testing.T, objects []Object) (*SNMPAgent, context.Context) {
	t.Helper()
	agent, err := NewSNMPAgent("127.0.0.1:0", "demo", objects, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return agent, ctx
}

func TestTheSimulatedRaritanPDUReadsAsTheProfileSays(t *testing.T) {
	agent, ctx := serve(t, RaritanPDU(func(time.Time) float64 { return 4600 }, 4))
	p, err := snmp.ShippedProfile("raritan-pdu2")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := snmp.NewDevice(snmp.Config{Address: agent.Addr(), Community: "demo", Timeout: time.Second}, p)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	readings, problems, err := dev.Read(ctx)
	if err != nil || len(problems) != 0 {
		t.Fatalf("err %v, problems %v", err, problems)
	}
	got := values(readings)
	// 4600 W at 230 V is 20 A (20000 in thousandths); each of 4 outlets 1150 W, 5 A.
	for key, want := range map[string]float64{
		"power/1.1": 4600, "phase_current/1.1": 20, "phase_voltage/1.1": 230,
		"outlet_power/1": 1150, "outlet_power/4": 1150, "outlet_current/2": 5,
	} {
		if math.Abs(got[key]-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got["energy/1.1"]; ok {
		t.Error("the simulated PX2 has no energy sensor, yet one was read")
	}
	wrong, _ := snmp.NewDevice(snmp.Config{Address: agent.Addr(), Community: "public", Timeout: 200 * time.Millisecond}, p)
	defer wrong.Close()
	if _, _, err := wrong.Read(ctx); meter.Reason(err) != "timeout" {
		t.Errorf("a wrong community: %v, want no answer", err)
	}
}

func TestTheSimulatedPM5000ReadsAsItsMapSays(t *testing.T) {
	const watts, joules = 40000.0, 1e10
	srv, err := NewModbusServer(testenv.FreeAddr(t), PM5000(func(time.Time) float64 { return watts }, func(time.Time) float64 { return joules }))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	m, err := modbus.ShippedMap("schneider-pm5000")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := modbus.NewDevice(modbus.Config{Address: srv.Addr(), Timeout: time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	readings, problems, err := dev.Read(context.Background())
	if err != nil || len(problems) != 0 {
		t.Fatalf("err %v, problems %v", err, problems)
	}
	got := values(readings)
	wh := math.Floor(joules / 3600)
	for key, want := range map[string]float64{
		"power/1": 40000, "energy/1": wh * 3600,
		"phase_power/1": float64(float32(40.0/3)) * 1000, "phase_voltage/2": 230, "phase_current/3": float64(float32(40000.0 / 3 / 230)),
	} {
		if math.Abs(got[key]-want) > 1e-9*want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}

func TestTheSimulatedUPSReadsAsUPSMIBSays(t *testing.T) {
	agent, ctx := serve(t, UPSMIB(func(time.Time) float64 { return 30000 }, func(time.Time) float64 { return 31500 }, 100000))
	p, _ := snmp.ShippedProfile("ups-mib")
	dev, _ := snmp.NewDevice(snmp.Config{Address: agent.Addr(), Community: "demo", Timeout: time.Second}, p)
	defer dev.Close()
	readings, problems, err := dev.Read(ctx)
	if err != nil || len(problems) != 0 {
		t.Fatalf("err %v, problems %v", err, problems)
	}
	got := values(readings)
	// 10 kW a line, 30 % of a third of 100 kW; 10000 / 230 A in tenths.
	for key, want := range map[string]float64{"power/1": 30000, "ups_output_power/2": 10000, "ups_input_power/3": 10500, "ups_load/1": 0.30,
		"phase_voltage/1": 230, "phase_current/3": math.Round(10000*10/230.0) / 10} {
		if math.Abs(got[key]-want) > 1e-9*want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
