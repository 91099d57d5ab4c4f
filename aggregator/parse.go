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

// parsed is what parse made of a body.
type parsed struct {
	points []Point
	bad    []lineError
	// asIs: the body may be stored as it is. Every line is good, has a
	// timestamp and nothing InfluxDB 1.8 reads otherwise than the decoder
	// (a repeated tag key, a hex float); there is no comment and no
	// carriage return (the decoder takes CRLF, InfluxDB 1.8 may not).
	// points then holds only the points of the measurements a processor
	// reads; lines counts them all, and oldest is the earliest time of any.
	asIs   bool
	lines  int
	oldest time.Time
}

// parse reads every line; a bad line is reported and skipped, the next one
// parsed as usual. Line numbers count from 1 over the body as sent.
//
// When every processor says which measurements' values it reads
// (in.reads is set), a first pass keeps only the points of those and
// checks the other lines' syntax: building and parsing what nobody reads
// was half of the aggregator's CPU. A body that turns out not to be
// storable as it is, is parsed again in full, every point with every
// value, for encoding.
func (in *Ingest) parse(body []byte, prec lineprotocol.Precision, a *arena) parsed {
	var bad []lineError
	// An over-long line becomes a comment, so the decoder skips it and the
	// numbers of the lines after it stay exact.
	lines, comments := 0, false
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
		// InfluxDB 1.8 reads quotes and backslashes inside a comment: one
		// with an odd quote swallows the lines after it, silently, even
		// into the next request of the same write. A body with a comment
		// is never stored as it is.
		if line := bytes.TrimLeft(body[start:start+end], " \t"); len(line) > 0 && line[0] == '#' {
			comments = true
		}
		start += end + 1
	}
	if len(bad) == 0 && !comments && in.reads != nil && bytes.IndexByte(body, '\r') < 0 {
		if res, ok := quickParse(body, prec, in.reads, a); ok {
			return res
		}
		a.reset()
	}
	res := parsed{bad: bad}
	res.points = fullParse(body, prec, lines, in.now().Truncate(prec.Duration()), &res.bad, a)
	slices.SortFunc(res.bad, func(a, b lineError) int { return int(a.line - b.line) })
	return res
}

// quickParse keeps the points of the measurements reads names and checks
// the other lines; the first line that is bad or has no timestamp ends it
// (ok false).
func quickParse(body []byte, prec lineprotocol.Precision, reads func(string) bool, a *arena) (res parsed, ok bool) {
	dec := lineprotocol.NewDecoderWithBytes(body)
	for dec.Next() {
		p, keep, err := readPoint(dec, prec, body, a, reads)
		if err != nil || p.Time.IsZero() {
			return parsed{}, false
		}
		if res.lines == 0 || p.Time.Before(res.oldest) {
			res.oldest = p.Time
		}
		res.lines++
		if keep {
			a.points = append(a.points, p)
		}
	}
	res.points, res.asIs = a.points, true
	return res, true
}

// fullParse decodes every line with every value; bad lines go to bad, and
// a line without a timestamp gets now.
func fullParse(body []byte, prec lineprotocol.Precision, lines int, now time.Time, bad *[]lineError, a *arena) []Point {
	dec := lineprotocol.NewDecoderWithBytes(body)
	// Size the shared arrays from the first line, so they rarely grow: a
	// growing array of pointers is copied under the garbage collector's
	// write barrier, which was most of the cost.
	tagsPerLine, fieldsPerLine := shape(body)
	a.points = slices.Grow(a.points, lines)
	a.tags = slices.Grow(a.tags, (tagsPerLine+1)*lines)
	a.fields = slices.Grow(a.fields, (fieldsPerLine+1)*lines)
	points := a.points
	for dec.Next() {
		p, _, err := readPoint(dec, prec, body, a, nil)
		if err != nil {
			var de *lineprotocol.DecodeError
			if errors.As(err, &de) {
				*bad = append(*bad, lineError{de.Line, de.Err})
			} else {
				*bad = append(*bad, lineError{0, err})
			}
			continue
		}
		if p.Time.IsZero() {
			// No timestamp: the time of arrival, which the body does not hold.
			p.Time = now
		}
		points = append(points, p)
	}
	a.points = points
	return points
}

// readPoint reads one line. Names and values that lie unescaped in the body
// become strings without a copy (the body is never written after parsing);
// tags and fields of all points share two growing arrays. Both matter: the
// aggregator parses hundreds of thousands of lines a second. A line without
// a timestamp gets the zero time (no line protocol timestamp is that far in
// the past). With reads, a line of a measurement it does not name is only
// checked: keep is false and nothing of it is kept but its time.
func readPoint(dec *lineprotocol.Decoder, prec lineprotocol.Precision, body []byte, a *arena, reads func(string) bool) (p Point, keep bool, err error) {
	m, err := dec.Measurement()
	if err != nil {
		return Point{}, false, err
	}
	p.Measurement = a.str(m, body)
	keep = reads == nil || reads(p.Measurement)
	if !keep {
		return skipLine(dec, prec, a)
	}
	start := len(a.tags)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return Point{}, false, err
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
	if reads != nil {
		for i := 1; i < len(p.Tags); i++ {
			if p.Tags[i].Key == p.Tags[i-1].Key {
				return Point{}, false, errSlowPath // InfluxDB 1.8 refuses a key twice
			}
		}
	}
	fstart := len(a.fields)
	for {
		k, v, err := nextField(dec, reads != nil)
		if err != nil {
			return Point{}, false, err
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
		return Point{}, false, err
	}
	return p, true, nil
}

// nextField reads a field with its value. In the quick pass (quick) a
// value that is not storable as it is ends the pass; the full pass reads
// through NextField, whose errors name the line.
func nextField(dec *lineprotocol.Decoder, quick bool) ([]byte, lineprotocol.Value, error) {
	if !quick {
		return dec.NextField()
	}
	k, kind, raw, err := dec.NextFieldBytes()
	if err != nil || k == nil {
		return k, lineprotocol.Value{}, err
	}
	if !influxSyntax(kind, raw) {
		return nil, lineprotocol.Value{}, errSlowPath
	}
	v, err := lineprotocol.NewValueFromBytes(kind, raw)
	return k, v, err
}

// skipLine checks the rest of a line nobody reads: its tags, the syntax of
// its values, and its time, which it returns.
func skipLine(dec *lineprotocol.Decoder, prec lineprotocol.Precision, a *arena) (Point, bool, error) {
	a.keys, a.keyEnds = a.keys[:0], a.keyEnds[:0]
	for {
		k, _, err := dec.NextTag()
		if err != nil {
			return Point{}, false, err
		}
		if k == nil {
			break
		}
		// InfluxDB 1.8 refuses a line with a key twice (the encoder drops
		// such a point): the full parse decides. Lines have few tags.
		for i, from := range a.keyEnds {
			start := 0
			if i > 0 {
				start = a.keyEnds[i-1]
			}
			if bytes.Equal(a.keys[start:from], k) {
				return Point{}, false, errSlowPath
			}
		}
		a.keys = append(a.keys, k...)
		a.keyEnds = append(a.keyEnds, len(a.keys))
	}
	for {
		k, kind, raw, err := dec.NextFieldBytes()
		if err != nil {
			return Point{}, false, err
		}
		if k == nil {
			break
		}
		if !storable(kind, raw) {
			return Point{}, false, errSlowPath
		}
	}
	t, err := dec.Time(prec, time.Time{})
	return Point{Time: t}, false, err
}

// storable says whether raw is a value of kind that InfluxDB 1.8 reads as
// the decoder does, so a body holding it may be stored as it is. The plain
// decimals agents send are checked without parsing (valid and finite when
// short enough); other numbers take the library's parse, except forms
// strconv accepts and InfluxDB 1.8 does not (hex, underscores), which take
// the full parse and are encoded again.
func storable(kind lineprotocol.ValueKind, raw []byte) bool {
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
	if !influxSyntax(kind, raw) {
		return false
	}
	_, err := lineprotocol.NewValueFromBytes(kind, raw)
	return err == nil
}

// influxSyntax is false for the numbers strconv takes and InfluxDB 1.8 does
// not: a float is digits, a point, an exponent and signs, nothing else.
func influxSyntax(kind lineprotocol.ValueKind, raw []byte) bool {
	return kind != lineprotocol.Float || !bytes.ContainsFunc(raw, func(r rune) bool { return !strings.ContainsRune("0123456789.eE+-", r) })
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

// arena holds what the points of one request share. Arenas are reused
// from request to request (buffers), so the arrays reach the size of the
// requests and stay there.
type arena struct {
	points []Point
	tags   []Tag
	fields []Field
	names  map[string]string // repeated keys and measurements, copied once
	// keys and keyEnds hold the tag keys of the line being checked.
	keys    []byte
	keyEnds []int
}

// reset empties a, dropping the strings it held (they point into a body
// that goes back to its pool).
func (a *arena) reset() {
	a.keys, a.keyEnds = a.keys[:0], a.keyEnds[:0]
	clear(a.points)
	clear(a.tags)
	clear(a.fields)
	clear(a.names)
	a.points, a.tags, a.fields = a.points[:0], a.tags[:0], a.fields[:0]
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
