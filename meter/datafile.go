package meter

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DataFiles are the data files a protocol ships inside the agent (SNMP
// profiles, Modbus register maps): *.yml in one folder of an embedded FS.
type DataFiles struct {
	FS      fs.FS
	Dir     string
	Kind    string // "snmp profile": what the errors call one
	FileKey string // the configuration key for the user's own: profile_file
}

// Names lists the shipped files' names, sorted, without .yml.
func (d DataFiles) Names() []string {
	entries, _ := fs.ReadDir(d.FS, d.Dir)
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yml"); ok {
			names = append(names, name)
		}
	}
	return names
}

// Read returns the shipped file of that name.
func (d DataFiles) Read(name string) ([]byte, error) {
	if !slices.Contains(d.Names(), name) {
		return nil, fmt.Errorf("%s %q is not one the agent ships (%s): name one of them, or give %s", d.Kind, name, strings.Join(d.Names(), ", "), d.FileKey)
	}
	return fs.ReadFile(d.FS, path.Join(d.Dir, name+".yml"))
}

// ReadFile reads a user's data file; kind names it in the error.
func ReadFile(kind, file string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return raw, nil
}

// Parse decodes a data file strictly (an unknown field is an error naming
// it and its line) and validates it; where names the file in errors.
func Parse[T any, PT interface {
	*T
	Validate() error
}](raw []byte, where string) (*T, error) {
	var v T
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := PT(&v).Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &v, nil
}
