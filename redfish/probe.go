package redfish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/joules-energy/joules/internal/netutil"
)

// Probe reads a BMC's service root (which needs no credentials) with the
// client the source uses, then logs in as the source will, and out again.
// It says what answered, or what to change. The password is read only once
// the service root answered, so a wrong endpoint is named first.
func Probe(ctx context.Context, cfg Config, password func() (string, error)) (string, error) {
	cfg.defaults()
	c, err := newConn(cfg)
	if err != nil {
		return "", err
	}
	endpoint := strings.TrimSuffix(cfg.Endpoint, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/redfish/v1/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", netutil.ConnectionAdvice(err, "BMC")
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var root struct {
		RedfishVersion, Vendor, Product string
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &root) != nil || root.RedfishVersion == "" {
		return "", fmt.Errorf("GET /redfish/v1/ answered %s with no Redfish service root: set endpoint to the BMC's base URL, https://host[:port]", resp.Status)
	}
	found := "Redfish " + root.RedfishVersion
	if who := strings.TrimSpace(root.Vendor + " " + root.Product); who != "" {
		found += " (" + who + ")"
	}

	if c.cfg.Password, err = password(); err != nil {
		return found, fmt.Errorf("password: %w", err)
	}
	err = c.login(ctx)
	if err == nil {
		defer c.logout()
		// With basic auth nothing has checked the credentials yet.
		var resp *http.Response
		if resp, err = c.api.Get("/redfish/v1/Chassis"); resp != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		if s := statusOf(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
			return found, fmt.Errorf("the BMC refused the login (%d): check username and the password's file or variable", s)
		}
		return found, fmt.Errorf("login: %w", err)
	}
	how := "session"
	if cfg.BasicAuth {
		how = "basic auth"
	}
	return found + "; logged in (" + how + ")", nil
}
