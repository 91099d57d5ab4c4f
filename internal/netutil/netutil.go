// Package netutil holds what the agent's HTTP clients share: TLS verified
// against a CA file or the system roots, and advice on what to change when
// a connection fails before any answer.
package netutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// ClientTLS is a client's TLS configuration: the server's certificate
// verified against the PEM bundle at caFile (the system roots when it is
// empty), unless insecure says otherwise.
func ClientTLS(caFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in only
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// ConnectionAdvice says what to change for an error before any answer
// from peer ("server", "BMC").
func ConnectionAdvice(err error, peer string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is printed beside it
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w: set ca_file to the CA that signed the %s's certificate", err, peer)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: use a host name the %s's certificate names", err, peer)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"): // net/http's words, not a type
		return fmt.Errorf("%w: the %s speaks plain HTTP; use http://", err, peer)
	default:
		return fmt.Errorf("%w: check the host and port, and that the %s is up", err, peer)
	}
}
