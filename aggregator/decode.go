package aggregator

import (
	"bytes"
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Decoder parses bodies of line protocol whose every line has its time:
// what a cluster's ingest publishes, read back by its workers. It reuses
// its buffers from one body to the next, so the points of a body are good
// until the next Decode.
type Decoder struct {
	// Precision of the bodies' timestamps (default nanoseconds).
	Precision lineprotocol.Precision
	// Reads, when set, names the measurements whose points are wanted;
	// the other lines are only checked.
	Reads func(measurement string) bool
	a     arena
}

// Decode returns the wanted points of body, how many lines it holds and
// the oldest time of any; an error names the first bad line.
func (d *Decoder) Decode(body []byte) (points []Point, lines int, oldest time.Time, err error) {
	if d.a.names == nil {
		d.a.names = map[string]string{}
	}
	d.a.reset()
	if d.Reads != nil {
		if res, ok := quickParse(body, d.Precision, d.Reads, &d.a); ok {
			return res.points, res.lines, res.oldest, nil
		}
		d.a.reset()
	}
	var bad []lineError
	points = fullParse(body, d.Precision, bytes.Count(body, []byte{'\n'})+1, time.Time{}, &bad, &d.a)
	if len(bad) > 0 {
		return nil, 0, time.Time{}, fmt.Errorf("%w (and %d more bad lines)", bad[0], len(bad)-1)
	}
	for _, p := range points {
		if p.Time.IsZero() {
			return nil, 0, time.Time{}, fmt.Errorf("point %q has no time", p.Measurement)
		}
	}
	if len(points) > 0 {
		oldest = oldestTime(points)
	}
	return points, len(points), oldest, nil
}

// PrecisionName is the write API's name of a precision (ns, us, ms, s).
func PrecisionName(p lineprotocol.Precision) string { return precisionNames[p] }

// ParsePrecision reads a precision's name; ok false for an unknown one.
func ParsePrecision(name string) (lineprotocol.Precision, bool) {
	p, ok := precisions[name]
	return p, ok
}

// Encode appends points to buf as line protocol at nanosecond precision
// and returns it, with how many points it holds and the first error of
// those it could not write.
func Encode(buf []byte, points []Point) ([]byte, int, error) {
	var enc lineprotocol.Encoder
	enc.SetBuffer(buf)
	n, err := encode(&enc, points)
	return enc.Bytes(), n, err
}
