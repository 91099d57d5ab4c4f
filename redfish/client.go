// Package redfish reads server power, PSUs, thermals and energy from BMCs,
// and power, energy, voltage and current from facility power equipment
// (PDUs, transfer switches, power shelves, electrical buses), through
// Redfish with github.com/stmcginnis/gofish. Every schema generation is read:
// EnvironmentMetrics, PowerSubsystem, the legacy Power and Thermal
// resources, ThermalSubsystem and Sensors.
package redfish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/netutil"
)

// Config describes one BMC or power-equipment meter.
type Config struct {
	Name     string // the bmc label
	Endpoint string // https://host[:port]
	Username string
	Password string // read from a file or the environment by the caller; never logged
	// BasicAuth sends credentials with every request instead of opening a
	// Redfish session.
	BasicAuth bool
	// CAFile verifies the BMC's certificate against this CA bundle; the
	// system roots otherwise.
	CAFile string
	// InsecureSkipVerify turns TLS verification off. Only by explicit opt-in.
	InsecureSkipVerify bool
	// Timeout bounds one HTTP request (default 5 s).
	Timeout time.Duration
	// MaxConcurrentRequests caps requests in flight to this BMC (default 4).
	MaxConcurrentRequests int
	// Role is put on every sample: host, facility_input, ups_output, pdu_output, it_input.
	Role string
	// Rediscover is how often the resource paths are found again (default 1 h);
	// they are also found again after a poll fails.
	Rediscover time.Duration
	// Counters continues the energy counters across BMC resets and agent
	// restarts (default: in memory only).
	Counters *energy.Store
	// MaxWatts bounds the energy steps of a meter (role other than host):
	// the most it can carry (default 100 MW). A host's bound is its PSUs'
	// capacity where the BMC reports it, else 20 kW.
	MaxWatts float64
}

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 4
	}
	if c.Role == "" {
		c.Role = "host"
	}
	if c.Rediscover <= 0 {
		c.Rediscover = time.Hour
	}
	if c.Counters == nil {
		c.Counters = energy.NewMemoryStore()
	}
	if c.MaxWatts <= 0 {
		c.MaxWatts = energy.DefaultMeterWatts
	}
}

// httpClient builds the HTTP client: per-request timeout, TLS verified unless
// the config opts out, connections kept alive.
func (c *Config) httpClient() (*http.Client, error) {
	tlsConfig, err := netutil.ClientTLS(c.CAFile, c.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: c.Timeout,
		MaxIdleConnsPerHost: c.MaxConcurrentRequests,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: transport, Timeout: c.Timeout}, nil
}

// conn is one kept-alive Redfish session (or basic-auth client) to a BMC.
type conn struct {
	cfg      Config
	http     *http.Client
	api      *gofish.APIClient
	requests atomic.Int64
}

func newConn(cfg Config) (*conn, error) {
	hc, err := cfg.httpClient()
	if err != nil {
		return nil, err
	}
	return &conn{cfg: cfg, http: hc}, nil
}

// login opens the session (or checks basic auth by reading the service root).
func (c *conn) login(ctx context.Context) error {
	c.logout()
	c.requests.Add(2) // service root, and the session POST
	// The session outlives this poll's context (logout uses it); each request
	// is still bounded by the HTTP client's timeout.
	api, err := gofish.ConnectContext(context.WithoutCancel(ctx), gofish.ClientConfig{
		Endpoint:              strings.TrimSuffix(c.cfg.Endpoint, "/"),
		Username:              c.cfg.Username,
		Password:              c.cfg.Password,
		BasicAuth:             c.cfg.BasicAuth,
		HTTPClient:            c.http,
		NoModifyTransport:     true,
		ReuseConnections:      true,
		MaxConcurrentRequests: int64(c.cfg.MaxConcurrentRequests),
	})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c.api = api
	return nil
}

// logout ends the session, if any; errors are of no consequence.
func (c *conn) logout() {
	if c.api != nil {
		c.api.Logout()
		c.api = nil
	}
}

// getJSON fetches one resource into v, logging in first where needed and
// once more when the BMC answers 401 (an expired session).
func (c *conn) getJSON(ctx context.Context, path string, v any) error {
	if c.api == nil {
		if err := c.login(ctx); err != nil {
			return err
		}
	}
	err := c.fetch(ctx, path, v)
	if statusOf(err) == http.StatusUnauthorized {
		if lerr := c.login(ctx); lerr != nil {
			return fmt.Errorf("re-login after 401: %w", lerr)
		}
		err = c.fetch(ctx, path, v)
	}
	return err
}

func (c *conn) fetch(ctx context.Context, path string, v any) error {
	c.requests.Add(1)
	resp, err := c.api.WithContext(ctx).Get(path)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &garbageError{path: path, err: err}
	}
	return nil
}

// garbageError is a BMC answer that is not the JSON it should be.
type garbageError struct {
	path string
	err  error
}

func (e *garbageError) Error() string {
	return fmt.Sprintf("GET %s: the BMC answered something that is not a valid Redfish resource: %v", e.path, e.err)
}

func (e *garbageError) Unwrap() error { return e.err }

// statusOf returns the HTTP status of a gofish error, or 0.
func statusOf(err error) int {
	var re *schemas.Error
	if errors.As(err, &re) {
		return re.HTTPReturnedStatusCode
	}
	return 0
}

// errorReason classifies an error for joules_redfish_poll_errors_total.
func errorReason(err error) string {
	var ge *garbageError
	var ne interface{ Timeout() bool }
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ge):
		return "garbage"
	case statusOf(err) == http.StatusUnauthorized || statusOf(err) == http.StatusForbidden:
		return "auth"
	case statusOf(err) == http.StatusNotFound:
		return "not_found"
	case statusOf(err) >= 500:
		return "server_error"
	case statusOf(err) > 0:
		return "client_error"
	default:
		return "connection"
	}
}

// link is an OData reference.
type link struct {
	ID string `json:"@odata.id"`
}

// collection is a Redfish resource collection.
type collection struct {
	Members []link `json:"Members"`
}
