package aggregator

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Limits bound what one write request may cost.
type Limits struct {
	MaxBodyBytes         int64 // as sent (compressed or not); default 16 MiB
	MaxDecompressedBytes int64 // after gzip; default 128 MiB (a gzip bomb gets 413)
	MaxLineBytes         int   // default 64 KiB
	// RequestsPerSecond and Burst bound the requests of each client (IP
	// address); 0 requests per second: no bound.
	RequestsPerSecond float64
	Burst             int
}

func (l *Limits) defaults() {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 16 << 20
	}
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = 128 << 20
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = 64 << 10
	}
}

// Sink takes the accepted points of one request and returns once they are
// durable (spooled); an error fails the request with 503, so the writer
// retries. The points, their tags, fields and strings lie in the request's
// buffers, which are reused once it is answered: a sink copies what it
// keeps.
type Sink interface {
	Write(points []Point) error
}

// LineSink is a Sink that can also take a request's lines as they came:
// when every line of a body is good and carries its own timestamp, and
// every processor is Selective, ingest hands over the body instead of
// points to encode again, which was a third of the aggregator's CPU.
type LineSink interface {
	Sink
	WriteLines(lines []byte, points int, prec lineprotocol.Precision, oldest time.Time) error
}

// Ingest serves POST /api/v2/write as InfluxDB does, so agents, Telegraf or
// any InfluxDB client can write to the aggregator.
type Ingest struct {
	tokens     [][]byte
	limits     Limits
	processors []Processor
	sink       Sink
	log        *slog.Logger
	now        func() time.Time
	clients    *clientLimits
	// reads names the measurements whose values a processor reads; nil
	// when some processor reads every value.
	reads func(measurement string) bool
	bufs  buffers

	Stats IngestStats
}

// IngestStats counts what ingest saw.
type IngestStats struct {
	Requests, Points, BadLines, Unauthorized, TooLarge, Failed, Throttled atomic.Int64
}

// NewIngest returns the write handler. Tokens are compared in constant
// time; with none, every request is refused (there is no anonymous write).
func NewIngest(tokens []string, limits Limits, sink Sink, logger *slog.Logger, processors ...Processor) *Ingest {
	limits.defaults()
	in := &Ingest{limits: limits, processors: processors, sink: sink, log: logger, now: time.Now,
		clients: newClientLimits(limits.RequestsPerSecond, limits.Burst)}
	// Values may be left unparsed only where the body itself is stored.
	if _, ok := sink.(LineSink); ok {
		in.reads = readsOf(processors)
	}
	for _, t := range tokens {
		if t != "" {
			in.tokens = append(in.tokens, []byte(t))
		}
	}
	return in
}

type influxError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    int64  `json:"line,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Platform-Error-Code", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(influxError{Code: code, Message: msg})
}

func (in *Ingest) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Token ")
	if !ok {
		token, ok = strings.CutPrefix(h, "Bearer ")
	}
	if !ok {
		return false
	}
	match := 0
	for _, t := range in.tokens {
		match |= subtle.ConstantTimeCompare([]byte(token), t)
	}
	return match == 1
}

var precisions = map[string]lineprotocol.Precision{
	"": lineprotocol.Nanosecond, "ns": lineprotocol.Nanosecond, "us": lineprotocol.Microsecond,
	"ms": lineprotocol.Millisecond, "s": lineprotocol.Second,
}

// precisionNames are the write API's names of the precisions.
var precisionNames = [...]string{lineprotocol.Nanosecond: "ns", lineprotocol.Microsecond: "us", lineprotocol.Millisecond: "ms", lineprotocol.Second: "s"}

// ServeHTTP parses a write request. Good lines are kept even when others
// are bad; the answer then is 400 naming each bad line and why.
func (in *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.Stats.Requests.Add(1)
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", "write with POST")
		return
	}
	// Before the token check: a flood of unauthenticated requests is bounded too.
	if ok, wait := in.clients.allow(r, in.now()); !ok {
		in.Stats.Throttled.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "too many requests", fmt.Sprintf("more than %g requests a second from %s; retry after %s", in.limits.RequestsPerSecond, r.RemoteAddr, wait.Round(time.Millisecond)))
		return
	}
	if !in.authorized(r) {
		in.Stats.Unauthorized.Add(1)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid token is required: Authorization: Token <token>")
		return
	}
	prec, ok := precisions[r.URL.Query().Get("precision")]
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("precision %q: use ns, us, ms or s", r.URL.Query().Get("precision")))
		return
	}
	body, status, err := in.readBody(w, r)
	// Strings of the points parsed below point into body: it goes back to
	// the pool only once the request is answered and the points are gone.
	defer in.bufs.put(body)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			in.Stats.TooLarge.Add(1)
		}
		code := "invalid"
		if status == http.StatusRequestEntityTooLarge {
			code = "request too large"
		}
		writeError(w, status, code, err.Error())
		return
	}
	a := in.bufs.arena()
	defer in.bufs.putArena(a)
	res := in.parse(body, prec, a)
	points := res.points
	for _, p := range in.processors {
		points = p.Process(points)
	}
	accepted := len(points)
	var spoolErr error
	switch {
	case res.asIs:
		// Every processor is Selective: it saw the points whose values it
		// reads, and the body holds them all.
		accepted = res.lines
		if accepted > 0 {
			spoolErr = in.sink.(LineSink).WriteLines(body, accepted, prec, res.oldest)
		}
	case accepted > 0:
		spoolErr = in.sink.Write(points)
	}
	if spoolErr != nil {
		in.Stats.Failed.Add(1)
		in.log.Error("cannot accept points: the output spool failed", "err", spoolErr)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the aggregator cannot store points now: "+spoolErr.Error())
		return
	}
	bad := res.bad
	in.Stats.Points.Add(int64(accepted))
	if len(bad) > 0 {
		in.Stats.BadLines.Add(int64(len(bad)))
		msgs := make([]string, 0, min(len(bad), 20))
		for i, b := range bad {
			if i == 20 {
				msgs = append(msgs, fmt.Sprintf("and %d more bad lines", len(bad)-20))
				break
			}
			msgs = append(msgs, b.Error())
		}
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("partial write: %d lines accepted, %d refused: %s", accepted, len(bad), strings.Join(msgs, "; ")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readsOf is what the processors read, or nil if one does not say.
func readsOf(processors []Processor) func(string) bool {
	var sel []Selective
	for _, p := range processors {
		s, ok := p.(Selective)
		if !ok {
			return nil
		}
		sel = append(sel, s)
	}
	return func(m string) bool {
		for _, s := range sel {
			if s.ReadsValues(m) {
				return true
			}
		}
		return false
	}
}
