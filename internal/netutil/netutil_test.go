package netutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientTLSRefusesAFileWithoutCertificates(t *testing.T) {
	if cfg, err := ClientTLS("", false); err != nil || cfg.RootCAs != nil || cfg.InsecureSkipVerify {
		t.Fatalf("no CA file: %+v, %v; want the system roots, verified", cfg, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := ClientTLS(bad, false); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("err = %v", err)
	}
	if _, err := ClientTLS(filepath.Join(t.TempDir(), "missing.pem"), false); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("err = %v", err)
	}
}

func TestConnectionAdviceSaysWhatToChange(t *testing.T) {
	err := ConnectionAdvice(errors.New("http: server gave HTTP response to HTTPS client"), "BMC")
	if !strings.Contains(err.Error(), "the BMC speaks plain HTTP; use http://") {
		t.Errorf("got %v", err)
	}
	if err := ConnectionAdvice(errors.New("connection refused"), "server"); !strings.Contains(err.Error(), "that the server is up") {
		t.Errorf("got %v", err)
	}
}
