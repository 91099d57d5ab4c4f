package meter

import "fmt"

// Row is one raw value of a reading: the row it names and the device's number.
type Row struct {
	Name string
	Raw  float64
}

// Build turns a spec's raw rows into readings: scaled, range-checked, and
// summed when the spec says so. what names the reading in problems (its
// quantity and address).
func (s *Spec) Build(what string, rows []Row) ([]Reading, []Problem) {
	var out []Reading
	var problems []Problem
	sum, n := 0.0, 0
	for _, r := range rows {
		v, err := s.Value(r.Raw)
		if err != nil {
			problems = append(problems, Problem{Reading: what, Reason: ReasonOutOfRange, Err: fmt.Errorf("row %s: %w", r.Name, err)})
			continue
		}
		if s.Sum {
			sum += v
			n++
			continue
		}
		out = append(out, Reading{Quantity: s.Reading, Row: r.Name, Value: v, Wrap: s.Wrap(), Resolution: s.Scale})
	}
	if s.Sum && n > 0 && n == len(rows) {
		// A sum with a row missing would read low: published only whole.
		out = append(out, Reading{Quantity: s.Reading, Row: s.Row, Value: sum, Resolution: s.Scale})
	}
	return out, problems
}
