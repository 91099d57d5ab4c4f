package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/netutil"
)

// checkWriters checks the writers' URLs as the writers will read them, so
// that --config.check names a URL that would never deliver.
func checkWriters(file string, cfg config.Agent) error {
	var errs []error
	for _, w := range []struct {
		name string
		url  config.String
	}{{"stream", cfg.Exporters.Stream.URL}, {"influx", cfg.Exporters.Influx.URL}} {
		if w.url.Value == "" {
			continue
		}
		if _, err := exporters.WriteURL(w.url.Value); err != nil {
			err = fmt.Errorf("line %d: exporters.%s: %w", w.url.Line, w.name, err)
			if file != "" {
				err = fmt.Errorf("%s: %w", file, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// probeTimeout bounds each endpoint's probe when its config sets none.
const probeTimeout = 10 * time.Second

// probe tries every endpoint the configuration names, the way the agent
// will reach it, and prints one line each: what answered, or what to
// change. It returns the exit code: 1 when any endpoint fails. Secrets are
// read and sent, never printed.
func probe(ctx context.Context, out io.Writer, cfg config.Agent) int {
	fmt.Fprintln(out, "# endpoint probe")
	failed := 0
	report := func(what, url, found string, err error) {
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(out, "FAIL %s %s: %v\n", what, url, err)
		default:
			fmt.Fprintf(out, "ok   %s %s: %s\n", what, url, found)
		}
	}
	writers := 0
	for _, w := range writerConfigs(cfg) {
		if w.cfg.URL.Value == "" {
			continue
		}
		writers++
		what := "exporters." + w.name
		token, err := w.cfg.Token()
		if err != nil {
			report(what, w.cfg.URL.Value, "", fmt.Errorf("token: %w", err))
			continue
		}
		res := exporters.Probe(ctx, exporters.StreamConfig{
			Name: w.name, URL: w.cfg.URL.Value, Org: w.cfg.Org, Bucket: w.cfg.Bucket, Token: token,
			CAFile: w.cfg.CAFile, CertFile: w.cfg.CertFile, KeyFile: w.cfg.KeyFile, InsecureSkipVerify: w.cfg.InsecureSkipVerify,
			Timeout: w.cfg.Timeout.Duration,
		})
		report(what, res.URL, res.Found, res.Err)
	}
	for _, r := range cfg.Sources.Redfish {
		found, err := probeBMC(ctx, r)
		report(fmt.Sprintf("sources.redfish %s", r.Name.Value), r.Endpoint.Value, found, err)
	}
	if writers == 0 && len(cfg.Sources.Redfish) == 0 {
		fmt.Fprintln(out, "no writer and no BMC configured: nothing to probe")
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d endpoint(s) failed\n", failed)
		return 1
	}
	return 0
}

// probeBMC reads a BMC's service root (which needs no credentials) and logs
// in as the agent will, then out again.
func probeBMC(ctx context.Context, r config.RedfishSource) (string, error) {
	timeout := r.Timeout.Duration
	if timeout <= 0 {
		timeout = probeTimeout
	}
	client, err := bmcClient(r, timeout)
	if err != nil {
		return "", err
	}
	endpoint := strings.TrimSuffix(r.Endpoint.Value, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/redfish/v1/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
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

	password, err := r.Password()
	if err != nil {
		return found, fmt.Errorf("password: %w", err)
	}
	api, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint: endpoint, Username: r.Username, Password: password, BasicAuth: r.BasicAuth,
		HTTPClient: client, NoModifyTransport: true,
	})
	if err == nil {
		defer api.Logout()
		// With basic auth nothing has checked the credentials yet.
		var resp *http.Response
		if resp, err = api.Get("/redfish/v1/Chassis"); resp != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		var re *schemas.Error
		if errors.As(err, &re) && (re.HTTPReturnedStatusCode == http.StatusUnauthorized || re.HTTPReturnedStatusCode == http.StatusForbidden) {
			return found, fmt.Errorf("the BMC refused the login (%d): check username and the password's file or variable", re.HTTPReturnedStatusCode)
		}
		return found, fmt.Errorf("login: %w", err)
	}
	how := "session"
	if r.BasicAuth {
		how = "basic auth"
	}
	return found + "; logged in (" + how + ")", nil
}

// bmcClient is the client the Redfish source uses: TLS verified against
// ca_file, or the system roots, unless insecure_skip_verify.
func bmcClient(r config.RedfishSource, timeout time.Duration) (*http.Client, error) {
	tlsConfig, err := netutil.ClientTLS(r.CAFile, r.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}}, nil
}
