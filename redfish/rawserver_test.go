package redfish

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
)

// rawBMC serves a DMTF-layout mockup as it is written, so tests can expect
// the numbers in its files: /redfish/v1/X is X/index.json, readings do not
// move, any credentials are accepted. A document in override replaces the
// file at its path (relative to /redfish/v1, "" for the service root); a
// nil one makes the path answer 404.
type rawBMC struct {
	src *Source
	log *bytes.Buffer // the source's log, as text
	at  time.Time     // the clock of the next poll

	mu       sync.Mutex
	override map[string]any
}

// set replaces one document from the next request on.
func (b *rawBMC) set(rel string, doc any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.override[rel] = doc
}

func serveRaw(t *testing.T, name, dir string, override map[string]any) *rawBMC {
	t.Helper()
	b := &rawBMC{log: &bytes.Buffer{}, at: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), override: map[string]any{}}
	for k, v := range override {
		b.override[k] = v
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "read-only mockup", http.StatusMethodNotAllowed)
			return
		}
		rel, ok := strings.CutPrefix(strings.TrimSuffix(r.URL.Path, "/"), "/redfish/v1")
		if !ok {
			http.NotFound(w, r)
			return
		}
		rel = strings.TrimPrefix(rel, "/")
		var body []byte
		b.mu.Lock()
		doc, found := b.override[rel]
		b.mu.Unlock()
		if found {
			if doc == nil {
				http.NotFound(w, r)
				return
			}
			body, _ = json.Marshal(doc)
		} else {
			raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel), "index.json"))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			body = raw
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	logger := slog.New(slog.NewTextHandler(b.log, nil)) // polls run on the test's goroutine
	src, err := NewSource(Config{Name: name, Endpoint: srv.URL, Username: "any", Password: "any", BasicAuth: true, Timeout: 2 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	src.now = func() time.Time { return b.at }
	b.src = src
	return b
}

// poll reads the BMC once at the fixed clock, then moves the clock 10 s.
func (b *rawBMC) poll(t *testing.T) []collector.Sample {
	t.Helper()
	samples, err := collectWithin(t, b.src, 10*time.Second)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	b.at = b.at.Add(10 * time.Second)
	return samples
}

// pollRaw serves a mockup as written and polls it twice, 10 s apart: the
// second poll is a steady one (no discovery) that sees the same readings.
func pollRaw(t *testing.T, name, dir string, override map[string]any) ([]collector.Sample, *rawBMC) {
	t.Helper()
	b := serveRaw(t, name, dir, override)
	b.poll(t)
	return b.poll(t), b
}

// readDoc reads one document of a mockup, for a test to change it.
func readDoc(t *testing.T, dir, rel string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return doc
}

// withoutMembers is a collection document without the members whose path
// ends in one of the names.
func withoutMembers(t *testing.T, dir, rel string, names ...string) map[string]any {
	t.Helper()
	doc := readDoc(t, dir, rel)
	var kept []any
	for _, m := range doc["Members"].([]any) {
		id := m.(map[string]any)["@odata.id"].(string)
		drop := false
		for _, n := range names {
			drop = drop || strings.HasSuffix(id, "/"+n)
		}
		if !drop {
			kept = append(kept, m)
		}
	}
	doc["Members"], doc["Members@odata.count"] = kept, len(kept)
	return doc
}
