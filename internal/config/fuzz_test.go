package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadAgent feeds arbitrary files to the agent's config loader: it may
// refuse them, with an error, but must not panic, and what it accepts must
// pass Validate and render.
func FuzzLoadAgent(f *testing.F) {
	for _, seed := range []string{
		"",
		"labels: {site: dc1}\nsources: {node: {interval: 1s, collectors: [netdev]}}\n",
		"sources:\n  redfish:\n    - {name: b, endpoint: https://x, role: host}\n",
		"sources: {nvml: {interval: 50ms}}\n",
		"sources:\n  snmp:\n    - {name: p, address: 10.0.0.2, profile: apc-rpdu2, role: pdu_output, version: 3, v3: {username: u}}\n",
		"sources:\n  modbus:\n    - {name: m, address: \"10.0.0.3:502\", register_map: schneider-pm5000, role: facility_input, unit_id: 7}\n",
		"exporters: {stream: {url: http://a:1, token_env: NOPE}}\n",
		"labels: [1, 2]\n",
		"{{{{",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(dir, "agent.yml")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadAgent(path, "h")
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v", err)
		}
		if _, err := cfg.Effective(); err != nil {
			t.Fatalf("accepted a config that does not render: %v", err)
		}
	})
}
