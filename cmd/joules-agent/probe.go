package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/redfish"
)

// checkWriters checks the writers' URLs as the writers will read them, so
// that --config.check names a URL that would never deliver.
func checkWriters(file string, cfg config.Agent) error {
	var errs []error
	for _, w := range writerConfigs(cfg) {
		if w.cfg.URL.Value == "" {
			continue
		}
		if _, err := exporters.WriteURL(w.cfg.URL.Value); err != nil {
			err = fmt.Errorf("line %d: exporters.%s: %w", w.cfg.URL.Line, w.name, err)
			if file != "" {
				err = fmt.Errorf("%s: %w", file, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// probe tries every endpoint the configuration names, the way the agent
// will reach it, and prints one line each: what answered, or what to
// change. It returns the exit code: 1 when any endpoint fails. Secrets are
// read and sent, never printed.
func probe(ctx context.Context, out io.Writer, cfg config.Agent, meters []meterDevice) int {
	fmt.Fprintln(out, "# endpoint probe")
	failed := 0
	report := func(what, url, found string, err error) {
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(out, "FAIL %s %s: %v\n", what, url, err)
		default:
			fmt.Fprintf(out, "ok   %s %s: %s\n", what, url, found)
		}
	}
	writers := 0
	for _, w := range writerConfigs(cfg) {
		if w.cfg.URL.Value == "" {
			continue
		}
		writers++
		what := "exporters." + w.name
		token, err := w.cfg.Token()
		if err != nil {
			report(what, w.cfg.URL.Value, "", fmt.Errorf("token: %w", err))
			continue
		}
		res := exporters.Probe(ctx, w.stream(token))
		report(what, res.URL, res.Found, res.Err)
	}
	for _, r := range cfg.Sources.Redfish {
		found, err := redfish.Probe(ctx, redfishConfig(r, "", nil), r.Password)
		report(fmt.Sprintf("sources.redfish %s", r.Name.Value), r.Endpoint.Value, found, err)
	}
	for _, m := range meters {
		found, err := probeMeter(ctx, m)
		report("sources."+m.protocol+" "+m.name, m.address, found, err)
	}
	if writers == 0 && len(cfg.Sources.Redfish) == 0 && len(cfg.Sources.SNMP) == 0 && len(cfg.Sources.Modbus) == 0 {
		fmt.Fprintln(out, "no writer, BMC or meter configured: nothing to probe")
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d endpoint(s) failed\n", failed)
		return 1
	}
	return 0
}
