package redfishsim

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func tree(t *testing.T) string {
	dir := t.TempDir()
	write := func(p, body string) {
		f := filepath.Join(dir, p, "index.json")
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, []byte(body), 0o644)
	}
	write("", `{"@odata.id": "/redfish/v1/", "Chassis": {"@odata.id": "/redfish/v1/Chassis"}}`)
	write("Chassis/1/EnvironmentMetrics", `{"PowerWatts": {"Reading": 400}, "EnergyJoules": {"Reading": 1000000}, "EnergykWh": {"Reading": 10}}`)
	return dir
}

func get(t *testing.T, srv *httptest.Server, path string, auth bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if auth {
		req.SetBasicAuth("u", "p")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestEnergyFollowsPower(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	bmc, err := New("b", tree(t), Options{Username: "u", Password: "p", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bmc)
	defer srv.Close()
	reading := func(body map[string]any, key string) float64 { return body[key].(map[string]any)["Reading"].(float64) }

	_, first := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true)
	var joules float64
	for range 60 { // a minute in 1 s steps: energy = trapezoids of power
		p0 := reading(first, "PowerWatts")
		now = now.Add(time.Second)
		_, next := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true)
		joules += (p0 + reading(next, "PowerWatts")) / 2
		first = next
	}
	_, start := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true)
	got := reading(start, "EnergyJoules") - 1e6
	if d := got - joules; d > 0.01*joules || d < -0.01*joules {
		t.Errorf("energy counter rose %v J over a minute; power integrates to %v J", got, joules)
	}
	if kwh := reading(start, "EnergykWh") - 10; kwh*3.6e6-got > 1 || got-kwh*3.6e6 > 1 {
		t.Errorf("EnergykWh (%v kWh) disagrees with EnergyJoules (%v J)", kwh, got)
	}
}

func TestAuthAndSessions(t *testing.T) {
	bmc, _ := New("b", tree(t), Options{Username: "u", Password: "p"})
	srv := httptest.NewServer(bmc)
	defer srv.Close()
	if code, _ := get(t, srv, "/redfish/v1/", false); code != http.StatusOK {
		t.Errorf("service root without credentials: %d, want 200", code)
	}
	if code, _ := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", false); code != http.StatusUnauthorized {
		t.Errorf("resource without credentials: %d, want 401", code)
	}
	resp, err := http.Post(srv.URL+"/redfish/v1/SessionService/Sessions", "application/json", strings.NewReader(`{"UserName":"u","Password":"p"}`))
	if err != nil || resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Auth-Token") == "" {
		t.Fatalf("login: %v %v", err, resp)
	}
	token := resp.Header.Get("X-Auth-Token")
	use := func() int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/redfish/v1/Chassis/1/EnvironmentMetrics", nil)
		req.Header.Set("X-Auth-Token", token)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if code := use(); code != http.StatusOK {
		t.Errorf("with session: %d", code)
	}
	bmc.ExpireSessions()
	if code := use(); code != http.StatusUnauthorized {
		t.Errorf("expired session: %d, want 401", code)
	}
}

func TestFaults(t *testing.T) {
	bmc, _ := New("b", tree(t), Options{Username: "u", Password: "p"})
	srv := httptest.NewServer(bmc)
	defer srv.Close()
	bmc.SetFault(Fault{Status: http.StatusServiceUnavailable})
	if code, _ := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true); code != http.StatusServiceUnavailable {
		t.Errorf("5xx fault: %d", code)
	}
	bmc.SetFault(Fault{DropFields: []string{"EnergyJoules"}})
	if _, body := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true); body["EnergyJoules"] != nil || body["PowerWatts"] == nil {
		t.Errorf("dropped field still there, or others gone: %v", body)
	}
	bmc.SetFault(Fault{Malformed: true})
	if code, body := get(t, srv, "/redfish/v1/Chassis/1/EnvironmentMetrics", true); code != http.StatusOK || body != nil {
		t.Errorf("malformed fault answered %d with parseable %v", code, body)
	}
	bmc.SetFault(Fault{Hang: true})
	client := http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/redfish/v1/", nil)
	if _, err := client.Do(req); err == nil {
		t.Error("hung BMC answered")
	}
	bmc.SetFault(Fault{})
	if code, _ := get(t, srv, "/redfish/v1/", false); code != http.StatusOK {
		t.Errorf("healed BMC: %d", code)
	}
}

// A scaled BMC serves the mockup's power, current and energy multiplied by
// its factor; following another BMC's load, it moves in step with it.
func TestScale(t *testing.T) {
	dir := t.TempDir()
	write := func(p, body string) {
		f := filepath.Join(dir, p, "index.json")
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", `{"@odata.id": "/redfish/v1/"}`)
	write("Metrics", `{"PowerWatts": {"Reading": 6438, "ApparentVA": 6300}, "EnergykWh": {"Reading": 56438}, "TemperatureCelsius": {"Reading": 31}}`)
	write("Circuit", `{"CurrentAmps": {"Reading": 5.19}, "Voltage": {"Reading": 118.2},
		"PolyPhaseCurrentAmps": {"Line1": {"Reading": 8.02}}, "PolyPhasePowerWatts": {"Line1ToNeutral": {"Reading": 198.4, "ApparentVA": 200, "PowerFactor": 0.99}}}`)
	write("Sensor", `{"ReadingType": "Current", "Reading": 2.74}`)

	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	const factor = 1.35
	pdu, _ := New("pdu-a", dir, Options{Username: "u", Password: "p", Now: clock})
	facility, _ := New("facility", dir, Options{Username: "u", Password: "p", Now: clock, Scale: factor, LoadOf: "pdu-a"})
	alone, _ := New("facility", dir, Options{Username: "u", Password: "p", Now: clock, Scale: factor})
	servers := map[string]*httptest.Server{}
	for name, b := range map[string]*BMC{"pdu": pdu, "facility": facility, "alone": alone} {
		servers[name] = httptest.NewServer(b)
		defer servers[name].Close()
	}
	at := func(m map[string]any, keys ...string) float64 {
		var v any = m
		for _, k := range keys {
			v = v.(map[string]any)[k]
		}
		return v.(float64)
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s: %v, want %v (±%v)", what, got, want, tol)
		}
	}

	// Alone, the scaled power stays within the load model's range (0.5..1)
	// of factor × the mockup's value.
	for range 12 {
		_, m := get(t, servers["alone"], "/redfish/v1/Metrics", true)
		if p := at(m, "PowerWatts", "Reading"); p < 0.5*factor*6438-0.01 || p > factor*6438+0.01 {
			t.Errorf("scaled power %v W outside [%v, %v]", p, 0.5*factor*6438, factor*6438)
		}
		now = now.Add(10 * time.Second)
	}

	// Following the PDU's load, every electrical reading is factor × the PDU's.
	for range 12 {
		_, pm := get(t, servers["pdu"], "/redfish/v1/Metrics", true)
		_, fm := get(t, servers["facility"], "/redfish/v1/Metrics", true)
		near("power", at(fm, "PowerWatts", "Reading"), factor*at(pm, "PowerWatts", "Reading"), 0.02)
		near("apparent power", at(fm, "PowerWatts", "ApparentVA"), factor*6300, 0.01)
		near("energy", at(fm, "EnergykWh", "Reading"), factor*at(pm, "EnergykWh", "Reading"), 1e-6)
		near("temperature (not scaled)", at(fm, "TemperatureCelsius", "Reading"), at(pm, "TemperatureCelsius", "Reading"), 0)

		_, pc := get(t, servers["pdu"], "/redfish/v1/Circuit", true)
		_, fc := get(t, servers["facility"], "/redfish/v1/Circuit", true)
		near("current", at(fc, "CurrentAmps", "Reading"), factor*at(pc, "CurrentAmps", "Reading"), 0.01)
		near("phase current", at(fc, "PolyPhaseCurrentAmps", "Line1", "Reading"), factor*8.02, 0.01)
		near("phase power", at(fc, "PolyPhasePowerWatts", "Line1ToNeutral", "Reading"), factor*198.4, 0.01)
		near("phase apparent power", at(fc, "PolyPhasePowerWatts", "Line1ToNeutral", "ApparentVA"), factor*200, 0.01)
		near("power factor (not scaled)", at(fc, "PolyPhasePowerWatts", "Line1ToNeutral", "PowerFactor"), 0.99, 0)
		near("voltage (not scaled)", at(fc, "Voltage", "Reading"), 118.2, 0)

		_, ps := get(t, servers["pdu"], "/redfish/v1/Sensor", true)
		_, fs := get(t, servers["facility"], "/redfish/v1/Sensor", true)
		near("current sensor", at(fs, "Reading"), factor*at(ps, "Reading"), 0.01)
		now = now.Add(7 * time.Second)
	}

	// The unscaled PDU serves the mockup's constants untouched.
	_, pc := get(t, servers["pdu"], "/redfish/v1/Circuit", true)
	near("unscaled current", at(pc, "CurrentAmps", "Reading"), 5.19, 0)
	near("unscaled phase power", at(pc, "PolyPhasePowerWatts", "Line1ToNeutral", "Reading"), 198.4, 0)
}
