package aggregator

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// lineError names a bad line and what is wrong with it.
type lineError struct {
	line int64
	err  error
}

func (e lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }

// errSlowPath ends the quick pass over a body that cannot be stored as it
// is; the full pass then names every bad line.
var errSlowPath = errors.New("not a body to store as it is")

// parse reads every line; a bad line is reported and skipped, the next one
// parsed as usual. Line numbers count from 1 over the body as sent. asIs
// says the body may be stored as it is: every line good and timestamped,
// and no carriage return (the decoder takes CRLF, InfluxDB 1.8 may not).
//
// When every processor says which measurements' values it reads (reads is
// not nil), a first pass parses only those values and checks the others'
// syntax: parsing numbers nobody reads was a sixth of the aggregator's
// CPU. A body that turns out not to be storable as it is, is parsed again
// in full, with every value, for encoding.
func (in *Ingest) parse(body []byte, prec lineprotocol.Precision) (points []Point, bad []lineError, asIs bool) {
	// An over-long line becomes a comment, so the decoder skips it and the
	// numbers of the lines after it stay exact.
	lines := 0
	for start := 0; start <= len(body); {
		lines++
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
	now := in.now().Truncate(prec.Duration())
	if len(bad) == 0 && in.reads != nil && bytes.IndexByte(body, '\r') < 0 {
		if points, ok := in.parseLines(body, prec, lines, now, in.reads, nil); ok {
			return points, nil, true
		}
	}
	points, _ = in.parseLines(body, prec, lines, now, nil, &bad)
	slices.SortFunc(bad, func(a, b lineError) int { return int(a.line - b.line) })
	return points, bad, false
}

// parseLines decodes body. With reads, values are parsed for the
// measurements it names and only checked for the others, and the first
// line that is bad or has no timestamp ends the pass (ok false); without,
// every value is parsed and bad lines go to bad.
func (in *Ingest) parseLines(body []byte, prec lineprotocol.Precision, lines int, now time.Time, reads func(string) bool, bad *[]lineError) ([]Point, bool) {
	dec := lineprotocol.NewDecoderWithBytes(body)
	points := make([]Point, 0, lines)
	// Size the shared arrays from the first line, so they rarely grow: a
	// growing array of pointers is copied under the garbage collector's
	// write barrier, which was most of the cost.
	tagsPerLine, fieldsPerLine := shape(body)
	a := &arena{tags: make([]Tag, 0, (tagsPerLine+1)*lines), fields: make([]Field, 0, (fieldsPerLine+1)*lines), names: map[string]string{}}
	for dec.Next() {
		p, err := readPoint(dec, prec, body, a, reads)
		if err != nil {
			if reads != nil {
				return nil, false
			}
			var de *lineprotocol.DecodeError
			if errors.As(err, &de) {
				*bad = append(*bad, lineError{de.Line, de.Err})
			} else {
				*bad = append(*bad, lineError{0, err})
			}
			continue
		}
		if p.Time.IsZero() {
			if reads != nil {
				return nil, false
			}
			// No timestamp: the time of arrival, which the body does not hold.
			p.Time = now
		}
		points = append(points, p)
	}
	return points, true
}

// readPoint reads one line. Names and values that lie unescaped in the body
// become strings without a copy (the body is never written after parsing);
// tags and fields of all points share two growing arrays. Both matter: the
// aggregator parses hundreds of thousands of lines a second. A line without
// a timestamp gets the zero time (no line protocol timestamp is that far in
// the past). With reads, the values of a measurement it does not name are
// checked, not parsed, and left zero.
func readPoint(dec *lineprotocol.Decoder, prec lineprotocol.Precision, body []byte, a *arena, reads func(string) bool) (Point, error) {
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
	values := reads == nil || reads(p.Measurement)
	fstart := len(a.fields)
	for {
		var k []byte
		var v lineprotocol.Value
		if values {
			k, v, err = dec.NextField()
		} else {
			var kind lineprotocol.ValueKind
			var raw []byte
			k, kind, raw, err = dec.NextFieldBytes()
			if err == nil && k != nil && !validValue(kind, raw) {
				err = errSlowPath
			}
		}
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

// validValue says whether raw parses as a value of kind, without parsing
// the plain decimal numbers agents send: those are valid and finite when
// short enough. Anything else takes the full parse.
func validValue(kind lineprotocol.ValueKind, raw []byte) bool {
	switch kind {
	case lineprotocol.Float:
		if plainDecimal(raw, true, 300) {
			return true
		}
	case lineprotocol.Int:
		if plainDecimal(raw, false, 18) {
			return true
		}
	case lineprotocol.Uint:
		if len(raw) > 0 && raw[0] != '-' && plainDecimal(raw, false, 19) {
			return true
		}
	}
	_, err := lineprotocol.NewValueFromBytes(kind, raw)
	return err == nil
}

// plainDecimal: an optional minus, at most maxDigits digits, and with
// point a decimal point with digits after it.
func plainDecimal(b []byte, point bool, maxDigits int) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	digits, dots := 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && point:
			dots++
		default:
			return false
		}
	}
	return digits > 0 && digits <= maxDigits && dots <= 1
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
