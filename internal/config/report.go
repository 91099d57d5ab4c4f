package config

import (
	"fmt"
	"io"

	"github.com/prometheus/exporter-toolkit/web"
)

// Report ends a daemon's configuration step the same way for the agent and
// the aggregator: the web configuration file (TLS, basic auth) is checked
// too; any error goes to stderr with every problem and exit code 1; with
// check, the effective configuration goes to stdout and exit code 0. done
// says whether the command ends here.
func Report(stdout, stderr io.Writer, program, webConfigFile string, err error, check bool, effective func() ([]byte, error)) (code int, done bool) {
	if err == nil && webConfigFile != "" {
		if werr := web.Validate(webConfigFile); werr != nil {
			err = fmt.Errorf("%s: %w", webConfigFile, werr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", program, err)
		return 1, true
	}
	if !check {
		return 0, false
	}
	out, err := effective()
	if err != nil {
		fmt.Fprintf(stderr, "%s: render configuration: %v\n", program, err)
		return 1, true
	}
	fmt.Fprintf(stdout, "# effective configuration (defaults filled in)\n%s", out)
	return 0, true
}
