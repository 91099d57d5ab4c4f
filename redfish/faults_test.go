package redfish

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// faultyBMC serves rackmount1 and returns a source on a clock the test moves.
func faultyBMC(t *testing.T, mutate ...func(*Config)) (*redfishsim.BMC, *Source, *clock) {
	t.Helper()
	bmc, src, _ := startBMC(t, "bmc1", mockupDir(t, "dmtf-public-rackmount1"), mutate...)
	c := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	src.now = c.now
	if _, err := collectWithin(t, src, 10*time.Second); err != nil {
		t.Fatalf("healthy poll: %v", err)
	}
	return bmc, src, c
}

func TestFaultLatencyStillReads(t *testing.T) {
	bmc, src, _ := faultyBMC(t)
	bmc.SetFault(redfishsim.Fault{Latency: 20 * time.Millisecond})
	samples, err := collectWithin(t, src, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := value(samples, "joules_redfish_up"); v != 1 {
		t.Error("slow BMC not up")
	}
}

// staleCheck asserts a failed poll kept the last good values, said how old
// they are, and reported the BMC down.
func staleCheck(t *testing.T, samples []collector.Sample, err error, reason string, src *Source) {
	t.Helper()
	if err == nil {
		t.Fatal("no error from a failing BMC")
	}
	if _, ok := value(samples, "joules_redfish_host_power_watts"); !ok {
		t.Error("last good host power not kept")
	}
	if v, _ := value(samples, "joules_redfish_up"); v != 0 {
		t.Error("failing BMC reported up")
	}
	if age, ok := value(samples, "joules_redfish_data_age_seconds"); !ok || age <= 0 {
		t.Errorf("data age = %v (%v), want > 0", age, ok)
	}
	if n, _ := value(samples, "joules_redfish_poll_errors_total", "reason="+reason); n < 1 {
		t.Errorf("no poll error counted with reason %s: %v", reason, err)
	}
}

func TestFaultHangKeepsLastGoodValues(t *testing.T) {
	bmc, src, clk := faultyBMC(t)
	bmc.SetFault(redfishsim.Fault{Hang: true})
	defer bmc.SetFault(redfishsim.Fault{})
	clk.add(10 * time.Second)
	start := time.Now()
	samples, err := collectWithin(t, src, 1500*time.Millisecond)
	if time.Since(start) > 1500*time.Millisecond {
		t.Errorf("poll of a hung BMC took %s, past its deadline", time.Since(start))
	}
	staleCheck(t, samples, err, "timeout", src)
}

func TestFault5xx(t *testing.T) {
	bmc, src, clk := faultyBMC(t)
	bmc.SetFault(redfishsim.Fault{Status: http.StatusServiceUnavailable})
	clk.add(10 * time.Second)
	samples, err := collectWithin(t, src, 5*time.Second)
	staleCheck(t, samples, err, "server_error", src)
}

func TestFaultMalformedJSON(t *testing.T) {
	bmc, src, clk := faultyBMC(t)
	bmc.SetFault(redfishsim.Fault{Malformed: true})
	clk.add(10 * time.Second)
	samples, err := collectWithin(t, src, 5*time.Second)
	staleCheck(t, samples, err, "garbage", src)
	if !strings.Contains(err.Error(), "not a valid Redfish resource") {
		t.Errorf("error does not say what is wrong: %v", err)
	}
}

func TestFaultSessionExpiryRelogsIn(t *testing.T) {
	bmc, src, _ := faultyBMC(t)
	bmc.ExpireSessions()
	samples, err := collectWithin(t, src, 5*time.Second)
	if err != nil {
		t.Fatalf("poll after session expiry: %v", err)
	}
	if v, _ := value(samples, "joules_redfish_up"); v != 1 {
		t.Error("not up after re-login")
	}
}

func TestFaultDroppedFieldsFallBack(t *testing.T) {
	bmc, src, _ := faultyBMC(t)
	// Without EnvironmentMetrics.PowerWatts rackmount1's next total is its
	// one installed PSU's input (Bay2 is Absent); without that too, the
	// legacy PowerControl.
	bmc.SetFault(redfishsim.Fault{DropFields: []string{"PowerWatts", "InputPowerWatts"}})
	samples, err := collectWithin(t, src, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := value(samples, "joules_redfish_host_power_watts", "source=power_control"); !ok {
		t.Errorf("without EnvironmentMetrics.PowerWatts host power should fall back to the legacy PowerControl: %v", series(samples, "joules_redfish_host_power"))
	}
}

func TestCircuitBreakerLeavesFailingBMCAlone(t *testing.T) {
	bmc, src, clk := faultyBMC(t)
	bmc.SetFault(redfishsim.Fault{Status: http.StatusInternalServerError})
	for range 3 {
		clk.add(10 * time.Second)
		_, _ = collectWithin(t, src, 5*time.Second)
	}
	before := bmc.Requests()
	clk.add(10 * time.Second)
	samples, err := collectWithin(t, src, 5*time.Second)
	if !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("err = %v, want ErrCircuitOpen after 3 failures", err)
	}
	if bmc.Requests() != before {
		t.Errorf("%d requests sent while the circuit is open", bmc.Requests()-before)
	}
	if v, _ := value(samples, "joules_redfish_circuit_open"); v != 1 {
		t.Error("circuit_open gauge not 1")
	}
	if _, ok := value(samples, "joules_redfish_host_power_watts"); !ok {
		t.Error("last good values dropped while the circuit is open")
	}
	bmc.SetFault(redfishsim.Fault{})
	clk.add(time.Minute)
	samples, err = collectWithin(t, src, 5*time.Second)
	if err != nil {
		t.Fatalf("after the backoff and the BMC healed: %v", err)
	}
	if v, _ := value(samples, "joules_redfish_circuit_open"); v != 0 {
		t.Error("circuit still open after a good poll")
	}
}

func TestBasicAuthAndBadCredentials(t *testing.T) {
	_, src, _ := startBMC(t, "basic", mockupDir(t, "gigabyte-h262-z63"), func(c *Config) { c.BasicAuth = true })
	if _, err := collectWithin(t, src, 5*time.Second); err != nil {
		t.Fatalf("basic auth: %v", err)
	}
	_, bad, _ := startBMC(t, "bad", mockupDir(t, "gigabyte-h262-z63"), func(c *Config) { c.Password = "wrong" })
	_, err := collectWithin(t, bad, 5*time.Second)
	if err == nil || errorReason(err) != "auth" {
		t.Errorf("wrong password: err = %v (reason %q), want an auth error", err, errorReason(err))
	}
}

func TestTLSVerifiedByDefault(t *testing.T) {
	_, src, _ := startBMC(t, "tls", mockupDir(t, "gigabyte-h262-z63"), func(c *Config) { c.CAFile = "" })
	_, err := collectWithin(t, src, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed BMC without its CA: err = %v, want a certificate error", err)
	}
	_, insecure, _ := startBMC(t, "tls", mockupDir(t, "gigabyte-h262-z63"), func(c *Config) { c.CAFile, c.InsecureSkipVerify = "", true })
	if _, err := collectWithin(t, insecure, 5*time.Second); err != nil {
		t.Errorf("explicit opt-out of verification: %v", err)
	}
}

// TestHangingBMCDelaysNothing hangs a BMC for 60 s inside a runner next to a
// fast source and a /metrics endpoint: the fast source keeps its cadence,
// scrapes keep answering, and the BMC's last good values stay published
// with a growing age.
func TestHangingBMCDelaysNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 60 s")
	}
	bmc, src, _ := startBMC(t, "hung", mockupDir(t, "dmtf-public-rackmount1"))
	runner := collector.NewRunner(slog.New(slog.DiscardHandler), map[string]string{"host": "n1"})
	var fast atomic.Int64
	must(t, runner.Add(collector.Registration{Name: "redfish", Target: "hung", Interval: 2 * time.Second, Timeout: 2 * time.Second, Source: src}))
	must(t, runner.Add(collector.Registration{Name: "nvml", Interval: 100 * time.Millisecond, Source: collector.SourceFunc(func(context.Context) ([]collector.Sample, error) {
		return []collector.Sample{{Name: "joules_test_passes_total", Kind: collector.Counter, Value: float64(fast.Add(1))}}, nil
	})}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runner.Run(ctx)
	srv := httptest.NewServer(exporters.NewHandler(runner, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	scrape := func() string {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(scrape(), "joules_redfish_host_power_watts"); {
		if time.Now().After(deadline) {
			t.Fatal("BMC never read before the hang")
		}
		time.Sleep(50 * time.Millisecond)
	}

	bmc.SetFault(redfishsim.Fault{Hang: true})
	defer bmc.SetFault(redfishsim.Fault{})
	hangStart := time.Now()
	passesBefore := fast.Load()
	scrapes := 0
	var body string
	for time.Since(hangStart) < 60*time.Second {
		body = scrape()
		scrapes++
		time.Sleep(500 * time.Millisecond)
	}
	passes := fast.Load() - passesBefore
	if passes < 500 { // 600 expected at 100 ms; leave room for a loaded machine
		t.Errorf("fast source ran %d times in the 60 s hang, want about 600", passes)
	}
	if scrapes < 100 {
		t.Errorf("only %d scrapes answered in 60 s", scrapes)
	}
	for _, want := range []string{"joules_redfish_host_power_watts{", `joules_source_up{host="n1",source="redfish",target="hung"} 0`, `joules_redfish_up{bmc="hung",host="n1",role="host"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("after 60 s of hang the exposition lacks %q", want)
		}
	}
	if !strings.Contains(body, "joules_redfish_data_age_seconds{") {
		t.Error("no data age while the BMC hangs")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
