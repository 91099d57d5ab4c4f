package exporters

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/joules-energy/joules/internal/netutil"
)

// What a writer's endpoint is: its URL, the client that reaches it, what its
// answers mean, and a probe for --config.probe.

const writePath = "/api/v2/write"

// WriteURL returns the write endpoint of a writer's url: the server's base
// URL (https://agg.example:9561, or one with a path prefix behind a proxy),
// or the same ending in /api/v2/write, as Telegraf's InfluxDB v2 output
// takes. The result has no query; org, bucket and precision are added by
// the writer.
func WriteURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q must be the server's base URL, http(s)://host[:port]", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url %q: leave out the query; org and bucket have keys of their own", u.Redacted())
	}
	base := strings.TrimSuffix(strings.TrimRight(u.Path, "/"), writePath)
	// InfluxDB 1.x's /write, or the write path given twice: either way
	// nothing would answer at base + /api/v2/write.
	if strings.HasSuffix(base, "/write") || strings.HasSuffix(base, "/api/v2") {
		return nil, fmt.Errorf("url %q: give the server's base URL (https://host:port), or one ending in %s; the writer speaks the InfluxDB v2 write API (InfluxDB 1.8 serves it too)", u.Redacted(), writePath)
	}
	u.Path, u.RawPath = base+writePath, ""
	return u, nil
}

func writeQuery(cfg StreamConfig) url.Values {
	q := url.Values{"precision": {"ms"}}
	if cfg.Org != "" {
		q.Set("org", cfg.Org)
	}
	if cfg.Bucket != "" {
		q.Set("bucket", cfg.Bucket)
	}
	return q
}

// newClient builds the writer's HTTP client: TLS verified against CAFile
// (the system roots otherwise), the optional client certificate, redirects
// not followed (a redirected POST arrives as a GET, or not at all: the
// answer is reported instead, with where it points).
func newClient(cfg StreamConfig) (*http.Client, error) {
	tlsConfig, err := netutil.ClientTLS(cfg.CAFile, cfg.InsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("exporters.%s: %w", cfg.Name, err)
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("exporters.%s: client certificate: %w", cfg.Name, err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	var transport http.RoundTripper = &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}
	if cfg.transport != nil {
		transport = cfg.transport
	}
	return &http.Client{
		Timeout: cfg.Timeout, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// verdict is what an answer to a write means.
type verdict int

const (
	delivered     verdict = iota // 204
	rejected                     // 400 from the write API: the good lines kept, the bad refused for good
	throttled                    // 429, 503: retry after a while
	unauthorized                 // 401, 403 from the write API: the token
	misconfigured                // not an InfluxDB v2 write API: the URL
	serverFailed                 // anything else: retry
)

// ConfigError is an answer that shows the URL does not reach an InfluxDB
// v2 write API (or reaches one without the bucket): retrying cannot help
// until the configuration changes.
type ConfigError struct {
	Status string // the HTTP status line's text, "404 Not Found"
	Fix    string // what to change
}

func (e *ConfigError) Error() string { return e.Status + ": " + e.Fix }

// judge reads an answer to a write. InfluxDB 2.x, InfluxDB 1.8 and the
// aggregator answer a write with 204, and every error of theirs with a JSON
// body; an HTML page, a 200, a redirect, a 404 or a 405 comes from
// something else at that URL (or, with a JSON 404, a bucket that does not
// exist). The returned error is a *ConfigError for misconfigured.
func judge(name string, resp *http.Response, body []byte) (verdict, error) {
	key := "exporters." + name + ".url"
	status := resp.Status
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	isJSON := ct == "application/json" || bytes.HasPrefix(bytes.TrimSpace(body), []byte("{"))
	page := ""
	if ct == "text/html" || bytes.Contains(bytes.ToLower(body[:min(len(body), 512)]), []byte("<html")) {
		page = " (an HTML page)"
	}
	other := func(what string) (verdict, error) {
		return misconfigured, &ConfigError{Status: status, Fix: what + "; set " + key + " to the aggregator's or InfluxDB's base URL, https://host:port, or one ending in " + writePath}
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusNoContent:
		return delivered, nil
	case code/100 == 2:
		return other("answered" + page + " where an InfluxDB v2 write API answers 204 No Content: the URL reaches another service")
	case code/100 == 3:
		if loc := resp.Header.Get("Location"); loc != "" {
			return misconfigured, &ConfigError{Status: status, Fix: fmt.Sprintf("the server redirects to %s; set %s to that server's base URL", redact(loc), key)}
		}
		return other("a redirect")
	case code == http.StatusBadRequest && isJSON:
		return rejected, fmt.Errorf("%s: %s", status, body)
	case code == http.StatusBadRequest:
		return other("a 400 that is not the write API's" + page + " (plain HTTP to an HTTPS port, or the reverse?)")
	case (code == http.StatusUnauthorized || code == http.StatusForbidden) && page == "":
		return unauthorized, fmt.Errorf("%s: the token was refused; check token_file: %s", status, body)
	case code == http.StatusNotFound && isJSON:
		return misconfigured, &ConfigError{Status: status, Fix: fmt.Sprintf("the write API says %s; check exporters.%s.bucket and org (InfluxDB 1.8: bucket is database/retention-policy, the database must exist)", apiMessage(body), name)}
	case code == http.StatusNotFound:
		return other("nothing answers at " + resp.Request.URL.Path + page)
	case code == http.StatusMethodNotAllowed:
		return other(resp.Request.URL.Path + " takes no POST" + page + ": the URL reaches another service")
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return throttled, fmt.Errorf("%s: %s", status, body)
	case code < 500 && page != "":
		return other("answered" + page)
	default:
		return serverFailed, fmt.Errorf("%s: %s", status, body)
	}
}

// apiMessage is the message of an InfluxDB error body: 2.x's and the
// aggregator's {"code","message"}, 1.8's {"error"}.
func apiMessage(body []byte) string {
	var e struct{ Message, Error string }
	if json.Unmarshal(body, &e) == nil && cmp.Or(e.Message, e.Error) != "" {
		return fmt.Sprintf("%q", cmp.Or(e.Message, e.Error))
	}
	return fmt.Sprintf("%q", strings.TrimSpace(string(body)))
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// ProbeResult is what a probe of a writer's endpoint found.
type ProbeResult struct {
	URL   string // the write URL, without its query or any password
	Found string // what answered, when it could be told
	Err   error  // nil: the endpoint takes writes; otherwise what to change
}

// Probe asks a writer's server what it is (GET /health, which InfluxDB and
// the aggregator serve) and sends it an empty write with the writer's
// token, which InfluxDB and the aggregator answer 204 when the URL, token
// and bucket are right. It writes nothing and needs no spool.
func Probe(ctx context.Context, cfg StreamConfig) ProbeResult {
	cfg.defaults()
	u, err := WriteURL(cfg.URL)
	if err != nil {
		return ProbeResult{URL: cfg.URL, Err: err}
	}
	res := ProbeResult{URL: u.Redacted()}
	client, err := newClient(cfg)
	if err != nil {
		res.Err = err
		return res
	}
	res.Found = identify(ctx, client, *u)
	u.RawQuery = writeQuery(cfg).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		res.Err = err
		return res
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		res.Err = netutil.ConnectionAdvice(err, "server")
		return res
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	answer := ""
	switch v, err := judge(cfg.Name, resp, body); v {
	case delivered:
		answer = "an empty write was answered 204 No Content"
	case rejected:
		// InfluxDB 2.x refuses an empty write ("writing requires points")
		// after checking the token and bucket: the write API is there.
		answer = "an empty write was refused as empty, as InfluxDB 2.x does"
	default:
		res.Err = err
	}
	if answer != "" {
		res.Found = strings.TrimPrefix(res.Found+"; "+answer, "; ")
	}
	return res
}

// identify names the server from its /health, or says why it cannot.
func identify(ctx context.Context, client *http.Client, u url.URL) string {
	u.Path = strings.TrimSuffix(u.Path, writePath) + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct{ Name, Version, Status string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h) != nil || h.Name == "" {
		return fmt.Sprintf("GET /health: %s", resp.Status)
	}
	found := h.Name
	if h.Version != "" {
		found += " " + h.Version
	}
	return found + " (health " + cmp.Or(h.Status, "unknown") + ")"
}
