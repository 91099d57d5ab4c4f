package redfishsim

import (
	"encoding/json"
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
