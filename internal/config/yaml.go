// Package config loads the YAML configuration files of joules: strict
// decoding (an unknown key is an error naming it and its line), a default for
// every field, and one Validate that reports every problem at once.
package config

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "1s", "250ms", "2m" in YAML. It
// remembers its line so Validate can point at it.
type Duration struct {
	time.Duration
	Line int
}

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.Line = n.Line
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return typeError("line %d: invalid duration %q: write it like 1s, 500ms or 2m", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// String is a string value that remembers its line.
type String struct {
	Value string
	Line  int
}

// UnmarshalYAML takes any scalar.
func (s *String) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError("line %d: expected a single value", n.Line)
	}
	s.Value, s.Line = n.Value, n.Line
	return nil
}

// MarshalYAML writes the plain value.
func (s String) MarshalYAML() (any, error) { return s.Value, nil }

// Strings is a scalar or a list of scalars.
type Strings struct {
	Values []string
	Line   int
}

// UnmarshalYAML takes a scalar or a sequence of scalars.
func (s *Strings) UnmarshalYAML(n *yaml.Node) error {
	s.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		s.Values = []string{n.Value}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return typeError("line %d: expected a value or a list of values", c.Line)
			}
			s.Values = append(s.Values, c.Value)
		}
	default:
		return typeError("line %d: expected a value or a list of values", n.Line)
	}
	return nil
}

// MarshalYAML writes a single value as a scalar.
func (s Strings) MarshalYAML() (any, error) {
	if len(s.Values) == 1 {
		return s.Values[0], nil
	}
	return s.Values, nil
}

// typeError lets the decoder go on after a bad value, so one pass reports
// every problem of the file.
func typeError(format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(format, args...)}}
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// decodeStrict decodes one YAML document into v, rejecting unknown keys.
// An empty document leaves v as it is. sections maps Go type names to the
// YAML paths users see, so errors name "sources.node" and not a Go type.
func decodeStrict(r io.Reader, v any, sections map[string]string) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		msg = unknownField.ReplaceAllStringFunc(msg, func(m string) string {
			parts := unknownField.FindStringSubmatch(m)
			where := sections[strings.TrimPrefix(parts[2], "config.")]
			if where == "" {
				where = "this section"
			}
			return fmt.Sprintf("unknown key %q in %s (check its spelling and indentation)", parts[1], where)
		})
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ValidLabelName reports whether name can be a Prometheus label and an InfluxDB tag key.
func ValidLabelName(name string) bool {
	return labelName.MatchString(name) && !strings.HasPrefix(name, "__")
}
