package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

// TestIngestOverTLS serves ingest and /metrics over TLS with
// exporter-toolkit's web configuration: an agent that verifies the
// certificate delivers everything, and plain HTTP gets no answer.
func TestIngestOverTLS(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	if err := p.agg.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cert, caPEM, err := redfishsim.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, webFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "web.yml")
	os.WriteFile(certFile, caPEM, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(webFile, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile)), 0o600)

	p.agg = testenv.StartProcess(t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+p.aggCfg, "--web.listen-address="+p.aggAddr, "--web.config.file="+webFile)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.agg.Logs(), "TLS is enabled") {
		if time.Now().After(deadline) {
			t.Fatalf("the aggregator did not start with TLS:\n%s", p.agg.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := http.Get("http://" + p.aggAddr + "/health"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plain HTTP answered 200 on the TLS listener")
	}
	agentCfg, _ := os.ReadFile(p.agentCfg)
	tlsCfg := strings.Replace(string(agentCfg), "url: http://"+p.aggAddr, "url: https://"+p.aggAddr+"\n    ca_file: "+certFile, 1)
	if tlsCfg == string(agentCfg) {
		t.Fatal("could not point the agent at https")
	}
	os.WriteFile(p.agentCfg, []byte(tlsCfg), 0o600)
	p.startAgent()
	p.waitAgent(30*time.Second, "a delivery over TLS", "joules_stream_sent_points_total{", positive)
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	produced := producedPoints(t, p.agent.Logs())
	if produced == 0 {
		t.Fatal("the agent produced nothing")
	}
	waitTotal(t, p.db, produced, 30*time.Second)
}
