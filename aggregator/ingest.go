package aggregator

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

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
// retries.
type Sink interface {
	Write(points []Point) error
}

// LineSink is a Sink that can also take a request's lines as they came:
// when every line of a body is good, carries its own timestamp and no
// processor changed a point, ingest hands over the body instead of points
// to encode again, which was a third of the aggregator's CPU.
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
	parsed, bad, asIs := in.parse(body, prec)
	points := parsed
	for _, p := range in.processors {
		points = p.Process(points)
	}
	if len(points) > 0 {
		// A processor that drops or changes points returns another slice.
		unchanged := len(points) == len(parsed) && &points[0] == &parsed[0]
		var err error
		if ls, ok := in.sink.(LineSink); ok && asIs && unchanged {
			err = ls.WriteLines(body, len(points), prec, oldestTime(points))
		} else {
			err = in.sink.Write(points)
		}
		if err != nil {
			in.Stats.Failed.Add(1)
			in.log.Error("cannot accept points: the output spool failed", "err", err)
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the aggregator cannot store points now: "+err.Error())
			return
		}
	}
	in.Stats.Points.Add(int64(len(points)))
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
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("partial write: %d lines accepted, %d refused: %s", len(points), len(bad), strings.Join(msgs, "; ")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody reads the body within the limits, gunzipping it if needed.
func (in *Ingest) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.ContentLength > in.limits.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes is over the limit of %d", r.ContentLength, in.limits.MaxBodyBytes)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.limits.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is over the limit of %d bytes", in.limits.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if !strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		return raw, 0, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("body says gzip but is not: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, in.limits.MaxDecompressedBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("gunzip body: %w", err)
	}
	if int64(len(out)) > in.limits.MaxDecompressedBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body decompresses to more than the limit of %d bytes", in.limits.MaxDecompressedBytes)
	}
	return out, 0, nil
}

// lineError names a bad line and what is wrong with it.
type lineError struct {
	line int64
	err  error
}

func (e lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }

// parse reads every line; a bad line is reported and skipped, the next one
// parsed as usual. Line numbers count from 1 over the body as sent. asIs
// says the body may be stored as it is: every line good and timestamped,
// and no carriage return (the decoder takes CRLF, InfluxDB 1.8 may not).
func (in *Ingest) parse(body []byte, prec lineprotocol.Precision) (points []Point, bad []lineError, asIs bool) {
	// An over-long line becomes a comment, so the decoder skips it and the
	// numbers of the lines after it stay exact.
	lines := 1
	for start := 0; start <= len(body); lines++ {
		end := bytes.IndexByte(body[start:], '\n')
		if end < 0 {
			end = len(body) - start
		}
		if end > in.limits.MaxLineBytes {
			body[start] = '#'
			bad = append(bad, lineError{int64(lines), fmt.Errorf("line of %d bytes is longer than the limit of %d", end, in.limits.MaxLineBytes)})
		}
		start += end + 1
	}
	asIs = len(bad) == 0 && bytes.IndexByte(body, '\r') < 0
	dec := lineprotocol.NewDecoderWithBytes(body)
	now := in.now().Truncate(prec.Duration())
	points = make([]Point, 0, lines)
	// Size the shared arrays from the first line, so they rarely grow: a
	// growing array of pointers is copied under the garbage collector's
	// write barrier, which was most of the cost.
	tagsPerLine, fieldsPerLine := shape(body)
	a := &arena{tags: make([]Tag, 0, (tagsPerLine+1)*lines), fields: make([]Field, 0, (fieldsPerLine+1)*lines), names: map[string]string{}}
	for dec.Next() {
		p, err := readPoint(dec, prec, body, a)
		if err != nil {
			asIs = false
			var de *lineprotocol.DecodeError
			if errors.As(err, &de) {
				bad = append(bad, lineError{de.Line, de.Err})
			} else {
				bad = append(bad, lineError{0, err})
			}
			continue
		}
		if p.Time.IsZero() {
			// No timestamp: the time of arrival, which the body does not hold.
			p.Time, asIs = now, false
		}
		points = append(points, p)
	}
	slices.SortFunc(bad, func(a, b lineError) int { return int(a.line - b.line) })
	return points, bad, asIs
}

// readPoint reads one line. Names and values that lie unescaped in the body
// become strings without a copy (the body is never written after parsing);
// tags and fields of all points share two growing arrays. Both matter: the
// aggregator parses hundreds of thousands of lines a second.
// A line without a timestamp gets the zero time (no line protocol
// timestamp is that far in the past).
func readPoint(dec *lineprotocol.Decoder, prec lineprotocol.Precision, body []byte, a *arena) (Point, error) {
	m, err := dec.Measurement()
	if err != nil {
		return Point{}, err
	}
	p := Point{Measurement: a.str(m, body)}
	start := len(a.tags)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return Point{}, err
		}
		if k == nil {
			break
		}
		a.tags = append(a.tags, Tag{a.str(k, body), a.str(v, body)})
	}
	p.Tags = a.tags[start:len(a.tags):len(a.tags)]
	// Line protocol allows tags in any order; InfluxDB's identity and the
	// encoder want them sorted by key.
	if !slices.IsSortedFunc(p.Tags, compareTags) {
		slices.SortFunc(p.Tags, compareTags)
	}
	fstart := len(a.fields)
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return Point{}, err
		}
		if k == nil {
			break
		}
		if v.Kind() == lineprotocol.String {
			// A string field's bytes may be the decoder's own buffer.
			v, _ = lineprotocol.StringValue(strings.Clone(v.StringV()))
		}
		a.fields = append(a.fields, Field{a.str(k, body), v})
	}
	p.Fields = a.fields[fstart:len(a.fields):len(a.fields)]
	if p.Time, err = dec.Time(prec, time.Time{}); err != nil {
		return Point{}, err
	}
	return p, nil
}

// shape counts the tags and fields of the first line.
func shape(body []byte) (tags, fields int) {
	dec := lineprotocol.NewDecoderWithBytes(body)
	if !dec.Next() {
		return 0, 0
	}
	if _, err := dec.Measurement(); err != nil {
		return 0, 0
	}
	for {
		k, _, err := dec.NextTag()
		if err != nil || k == nil {
			break
		}
		tags++
	}
	for {
		k, _, _, err := dec.NextFieldBytes()
		if err != nil || k == nil {
			break
		}
		fields++
	}
	return tags, fields
}

func compareTags(a, b Tag) int { return strings.Compare(a.Key, b.Key) }

// arena holds what the points of one request share.
type arena struct {
	tags   []Tag
	fields []Field
	names  map[string]string // repeated keys and measurements, copied once
}

// str returns b as a string: without a copy when b lies inside body (the
// decoder hands out such slices for unescaped text), else a copy, interned
// for the keys and measurements that repeat on every line.
func (a *arena) str(b, body []byte) string {
	if len(b) == 0 {
		return ""
	}
	if inside(b, body) {
		return unsafe.String(&b[0], len(b))
	}
	if s, ok := a.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(a.names) < 4096 {
		a.names[s] = s
	}
	return s
}

func inside(b, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(&body[0]))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(body))
}
