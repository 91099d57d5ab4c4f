// Package redfishsim serves Redfish mockup trees (the DMTF mockup layout:
// <path>/index.json) as live BMCs: session and basic authentication,
// readings that move with a load model (energy counters consistent with
// power), or, bound to a Meter, the power and energy of a point of a
// simulated site in every resource that reports them, and faults injected
// per BMC. The agent's tests run it in process; `joules sim redfish` and
// `joules sim site` run many from one process for the demo and load tests.
package redfishsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what a BMC does wrong. The zero value is a healthy BMC.
type Fault struct {
	Latency    time.Duration // added to every response
	Hang       bool          // answer nothing until the client gives up or the fault is cleared
	Status     int           // answer every resource request with this HTTP status (500, 503, …)
	Malformed  bool          // answer resource requests with truncated JSON
	DropFields []string      // remove these keys wherever they appear (e.g. "Reading", "PowerWatts")
}

// Options configure a BMC.
type Options struct {
	Username, Password string
	// NominalWatts is the power used for energy counters in documents that
	// carry no power reading of their own (default 500).
	NominalWatts float64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Scale multiplies every power, current and energy reading the mockup
	// holds (default 1): one mockup can then stand for a meter that carries
	// more, such as a facility meter upstream of the PDU it was taken from.
	Scale float64
	// LoadOf names the BMC whose load this one follows (default its own
	// name): BMCs with the same LoadOf move together, as a facility meter
	// follows the IT load it feeds.
	LoadOf string
	// Meter, when set, is what the BMC measures: every power, energy and
	// capacity reading the mockup has of its host (or of its power
	// equipment) comes from the meter instead, consistently across
	// resources; Scale and the load factor then move only the rest.
	Meter Meter
}

// BMC is one simulated Redfish service.
type BMC struct {
	Name string
	root string
	opts Options

	start time.Time
	phase float64

	mu       sync.Mutex
	fault    Fault
	unhang   chan struct{}
	sessions map[string]string // token → session id
	docs     map[string]any    // parsed mockup documents by resource path

	requests atomic.Int64

	plan *meterPlan // with Options.Meter: the readings that come from it
}

// New returns a BMC serving the mockup tree at dir.
func New(name, dir string, opts Options) (*BMC, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("redfish mockup %s: no index.json at its root (the DMTF mockup layout): %w", dir, err)
	}
	if opts.NominalWatts <= 0 {
		opts.NominalWatts = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Scale <= 0 {
		opts.Scale = 1
	}
	if opts.LoadOf == "" {
		opts.LoadOf = name
	}
	h := fnv.New64a()
	h.Write([]byte(opts.LoadOf))
	b := &BMC{
		Name: name, root: dir, opts: opts,
		start:    opts.Now(),
		phase:    float64(h.Sum64()%1000) / 1000 * 2 * math.Pi,
		unhang:   make(chan struct{}),
		sessions: map[string]string{},
		docs:     map[string]any{},
	}
	if opts.Meter != nil {
		plan, err := newMeterPlan(b)
		if err != nil {
			return nil, fmt.Errorf("redfish mockup %s: %w", dir, err)
		}
		b.plan = plan
	}
	return b, nil
}

// SetFault replaces the BMC's fault; the zero Fault heals it.
func (b *BMC) SetFault(f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fault.Hang && !f.Hang {
		close(b.unhang)
		b.unhang = make(chan struct{})
	}
	b.fault = f
}

// ExpireSessions invalidates every session, as a BMC does on a timeout or
// reboot: the next request with an old token gets 401.
func (b *BMC) ExpireSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sessions = map[string]string{}
}

// Requests is how many HTTP requests the BMC has received.
func (b *BMC) Requests() int64 { return b.requests.Load() }

// LoadFactor is the share (0.5..1) of each mockup power reading served at t.
func (b *BMC) LoadFactor(t time.Time) float64 {
	s := t.Sub(b.start).Seconds()
	return 0.75 + 0.25*math.Sin(2*math.Pi*s/120+b.phase)
}

// loadIntegral is ∫ LoadFactor dt from the start to t, in seconds.
func (b *BMC) loadIntegral(t time.Time) float64 {
	s := t.Sub(b.start).Seconds()
	return 0.75*s - 0.25*120/(2*math.Pi)*(math.Cos(2*math.Pi*s/120+b.phase)-math.Cos(b.phase))
}

func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	b.mu.Lock()
	fault, unhang := b.fault, b.unhang
	b.mu.Unlock()
	if fault.Hang {
		select {
		case <-r.Context().Done():
		case <-unhang:
		case <-time.After(10 * time.Minute):
		}
		return
	}
	if fault.Latency > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(fault.Latency):
		}
	}
	p := strings.TrimSuffix(path.Clean(r.URL.Path), "/")
	switch {
	case p == "/redfish":
		writeJSON(w, http.StatusOK, map[string]string{"v1": "/redfish/v1/"})
		return
	case p == "/redfish/v1" && r.Method == http.MethodGet:
		b.serveDoc(w, p, Fault{DropFields: fault.DropFields}) // the service root needs no authentication
		return
	case p == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodPost:
		b.login(w, r)
		return
	}
	id, ok := b.authorized(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "no valid session or credentials")
		return
	}
	if r.Method == http.MethodDelete && strings.HasPrefix(p, "/redfish/v1/SessionService/Sessions/") {
		b.mu.Lock()
		for token, sid := range b.sessions {
			if sid == path.Base(p) {
				delete(b.sessions, token)
			}
		}
		b.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", "the simulator serves GET only")
		return
	}
	if fault.Status != 0 {
		writeError(w, fault.Status, "Base.1.0.InternalError", "injected fault")
		return
	}
	if p == "/redfish/v1/SessionService/Sessions/"+id {
		writeJSON(w, http.StatusOK, map[string]any{"@odata.id": p, "Id": id, "UserName": b.opts.Username})
		return
	}
	b.serveDoc(w, p, fault)
}

func (b *BMC) login(w http.ResponseWriter, r *http.Request) {
	var creds struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&creds); err != nil || !b.credentialsOK(creds.UserName, creds.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "bad credentials")
		return
	}
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	id := token[:8]
	b.mu.Lock()
	b.sessions[token] = id
	b.mu.Unlock()
	loc := "/redfish/v1/SessionService/Sessions/" + id
	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusCreated, map[string]any{"@odata.id": loc, "Id": id, "UserName": creds.UserName})
}

func (b *BMC) credentialsOK(user, pass string) bool {
	return subtle.ConstantTimeCompare([]byte(user), []byte(b.opts.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(b.opts.Password)) == 1
}

// authorized accepts a live session token or basic authentication, and
// returns the session id when there is one.
func (b *BMC) authorized(r *http.Request) (string, bool) {
	if token := r.Header.Get("X-Auth-Token"); token != "" {
		b.mu.Lock()
		defer b.mu.Unlock()
		id, ok := b.sessions[token]
		return id, ok
	}
	if user, pass, ok := r.BasicAuth(); ok {
		return "", b.credentialsOK(user, pass)
	}
	return "", false
}

func (b *BMC) serveDoc(w http.ResponseWriter, p string, fault Fault) {
	doc, err := b.load(p)
	if err != nil {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no resource at "+p)
		return
	}
	if fault.Malformed {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"@odata.id": "` + p + `", "Members": [{"@odata.id": `))
		return
	}
	now := b.opts.Now()
	live := b.animate(doc, now, drop(fault.DropFields))
	if b.plan != nil {
		b.applyMeter(p, doc, live, now)
	}
	writeJSON(w, http.StatusOK, live)
}

// load reads and caches one mockup document.
func (b *BMC) load(p string) (any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if doc, ok := b.docs[p]; ok {
		return doc, nil
	}
	rel := strings.TrimPrefix(p, "/redfish/v1")
	file := filepath.Join(b.root, filepath.FromSlash(rel), "index.json")
	if !strings.HasPrefix(filepath.Clean(file), filepath.Clean(b.root)) {
		return nil, os.ErrNotExist
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("mockup %s: %w", file, err)
	}
	b.docs[p] = doc
	return doc, nil
}

func drop(fields []string) map[string]bool {
	m := map[string]bool{}
	for _, f := range fields {
		m[f] = true
	}
	return m
}

// Numbers the load model moves: power in watts, scaled by the load factor.
var powerFields = map[string]bool{
	"PowerConsumedWatts": true, "PowerInputWatts": true, "PowerOutputWatts": true, "LastPowerOutputWatts": true,
	"AverageConsumedWatts": true, "MinConsumedWatts": true, "MaxConsumedWatts": true,
}

// Excerpts ({"Reading": …}) of power, scaled by the load factor.
var powerExcerpts = map[string]bool{"PowerWatts": true, "InputPowerWatts": true, "OutputPowerWatts": true}

// Numbers only Options.Scale changes: currents, each phase of a polyphase
// power reading, and the apparent and reactive power beside a power reading.
var (
	currentExcerpts  = map[string]bool{"CurrentAmps": true, "InputCurrentAmps": true, "OutputCurrentAmps": true}
	apparentReactive = map[string]bool{"ApparentVA": true, "ReactiveVAR": true, "ApparentkVAh": true, "ReactivekVARh": true}
	// phaseKey is the key a polyphase reading's phases ({"Line1": {"Reading": …}}) are walked under.
	phaseKey = map[string]string{"PolyPhasePowerWatts": "phase power", "PolyPhaseCurrentAmps": "CurrentAmps"}
)

// animate returns a copy of doc with readings moved to time t.
func (b *BMC) animate(doc any, t time.Time, dropped map[string]bool) any {
	f := b.LoadFactor(t)
	integral := b.loadIntegral(t)
	scale := b.opts.Scale
	// Energy in a document follows the document's own power where it has one.
	nominal := b.opts.NominalWatts
	if m, ok := doc.(map[string]any); ok {
		if pw, ok := m["PowerWatts"].(map[string]any); ok {
			if v, ok := pw["Reading"].(float64); ok && v > 0 {
				nominal = v
			}
		}
	}
	var walk func(key string, v any) any
	walk = func(key string, v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			readingType, _ := x["ReadingType"].(string)
			for k, c := range x {
				if dropped[k] {
					continue
				}
				if pk, ok := phaseKey[key]; ok {
					out[k] = walk(pk, c)
					continue
				}
				out[k] = walk(k, c)
			}
			if r, ok := out["Reading"].(float64); ok {
				switch {
				case powerExcerpts[key] || readingType == "Power":
					out["Reading"] = round(r * f * scale)
				case key == "EnergyJoules" || readingType == "EnergyJoules":
					out["Reading"] = round((r + nominal*integral) * scale)
				case key == "EnergykWh" || readingType == "EnergykWh":
					out["Reading"] = (r + nominal*integral/3.6e6) * scale
				case scale != 1 && (key == "phase power" || currentExcerpts[key] || readingType == "Current"):
					out["Reading"] = round(r * scale)
				case readingType == "Temperature":
					out["Reading"] = round(r + 3*math.Sin(2*math.Pi*t.Sub(b.start).Seconds()/60+b.phase))
				}
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, c := range x {
				out[i] = walk(key, c)
			}
			return out
		case float64:
			switch {
			case powerFields[key]:
				return round(x * f * scale)
			case scale != 1 && apparentReactive[key]:
				return round(x * scale)
			case key == "ReadingCelsius":
				return round(x + 3*math.Sin(2*math.Pi*t.Sub(b.start).Seconds()/60+b.phase))
			}
		}
		return v
	}
	return walk("", doc)
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, id, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": id, "message": msg}})
}
