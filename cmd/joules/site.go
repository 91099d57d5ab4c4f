package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

// siteCmd is `joules sim site`: one simulated site, every BMC, PDU, UPS
// and facility meter of it served from one process, all from the site
// model that the agents' simulated GPUs and the inference simulators
// compute too.
type siteCmd struct {
	cmd                   *kingpin.CmdClause
	seed, serverName      *string
	hosts, hostBMCs, pdus *[]string
	ups, facility         *string
	pueFrom, pueTo        *string
	serve                 bmcServer
	meters                siteMeters
}

func newSiteCmd(sim *kingpin.CmdClause) *siteCmd {
	c := &siteCmd{cmd: sim.Command("site", "Serve a simulated site's BMCs, rack PDUs, UPS and facility meter as Redfish services, one port each, "+
		"their readings from one deterministic power model (GPUs, CPUs, fans, PSUs, PDU and UPS losses, cooling) that the agents' "+
		"sources.nvml.simulate_site and joules sim inference --site compute as well.")}
	f := c.cmd.Flag
	c.seed = f("site", "The site's seed: every process given the same one (and the same hosts) computes the same site.").Required().String()
	c.hosts = f("host", "A host as NAME=RACK. Repeatable; the racks are those named.").Required().Strings()
	c.serverName = f("server", "The hosts' simulated server.").Default("dgxh200").Enum(sitemodel.ServerNames()...)
	c.hostBMCs = f("bmc", "Serve host NAME's BMC (named NAME-bmc) from a mockup tree, as NAME=MOCKUP_DIR. Repeatable.").Strings()
	c.pdus = f("pdu", "Serve rack RACK's PDU (named pdu-RACK; its readings are the PDU's output, its mains the input) from a mockup, as RACK=MOCKUP_DIR. Repeatable.").Strings()
	c.ups = f("ups", "Serve the UPS (named ups; its readings are the UPS output, its mains or PSUs' inputs the input) from this mockup.").String()
	c.facility = f("facility", "Serve the facility meter (named facility) from this mockup.").String()
	c.pueFrom = f("pue.from", "Print the model's PUE from this time (RFC 3339, or relative: -90s) to --pue.to, and exit.").String()
	c.pueTo = f("pue.to", "End of --pue.from's range.").Default("now").String()
	c.serve = addBMCServerFlags(c.cmd)
	addSiteMeterFlags(c)
	return c
}

// model builds the site from the flags.
func (c *siteCmd) model() (*sitemodel.Model, error) {
	site := sitemodel.Site{Seed: *c.seed}
	rackIndex := map[string]int{}
	for _, h := range *c.hosts {
		name, rack, ok := strings.Cut(h, "=")
		if !ok || name == "" || rack == "" {
			return nil, fmt.Errorf("--host %q: write it NAME=RACK", h)
		}
		i, seen := rackIndex[rack]
		if !seen {
			i = len(site.Racks)
			rackIndex[rack] = i
			site.Racks = append(site.Racks, sitemodel.Rack{Name: rack})
		}
		site.Racks[i].Hosts = append(site.Racks[i].Hosts, sitemodel.RackHost{Name: name, Server: *c.serverName})
	}
	return sitemodel.New(site)
}

// bmcs lists the BMCs to serve, each bound to its meter of the model.
func (c *siteCmd) bmcs(m *sitemodel.Model) ([]string, map[string]redfishsim.Options, error) {
	var specs []string
	opts := map[string]redfishsim.Options{}
	add := func(name, dir string, meter redfishsim.Meter) {
		specs = append(specs, name+"="+filepath.Clean(dir))
		opts[name] = redfishsim.Options{Meter: meter}
	}
	for _, b := range *c.hostBMCs {
		host, dir, ok := strings.Cut(b, "=")
		if !ok || dir == "" || m.Host(host) == nil {
			return nil, nil, fmt.Errorf("--bmc %q: write it HOST=MOCKUP_DIR with HOST one of the --host names", b)
		}
		add(host+"-bmc", dir, hostMeter{m.Host(host)})
	}
	racks := map[string]bool{}
	for _, r := range m.Site().Racks {
		racks[r.Name] = true
	}
	for _, p := range *c.pdus {
		rack, dir, ok := strings.Cut(p, "=")
		if !ok || dir == "" || !racks[rack] {
			return nil, nil, fmt.Errorf("--pdu %q: write it RACK=MOCKUP_DIR with RACK one of the --host racks", p)
		}
		add("pdu-"+rack, dir, chainMeter{m, func(c sitemodel.Chain) (float64, float64) { return c.PDUInput[rack], c.PDUOutput[rack] }})
	}
	if *c.ups != "" {
		add("ups", *c.ups, chainMeter{m, func(c sitemodel.Chain) (float64, float64) { return c.UPSInput, c.UPSOutput }})
	}
	if *c.facility != "" {
		add("facility", *c.facility, chainMeter{m, func(c sitemodel.Chain) (float64, float64) { return c.Facility, c.Facility }})
	}
	if len(specs) == 0 {
		return nil, nil, fmt.Errorf("nothing to serve: give --bmc, --pdu, --ups or --facility (the Redfish services; --snmp-pdu and --modbus-facility come beside them)")
	}
	return specs, opts, nil
}

func (c *siteCmd) run(ctx context.Context, logger *slog.Logger, stdout, stderr io.Writer) int {
	m, err := c.model()
	if err != nil {
		fmt.Fprintf(stderr, "joules sim site: %v\n", err)
		return 2
	}
	now := time.Now()
	if *c.pueFrom != "" {
		from, err1 := parseWhen(*c.pueFrom, now)
		to, err2 := parseWhen(*c.pueTo, now)
		if err1 != nil || err2 != nil || !to.After(from) {
			fmt.Fprintf(stderr, "joules sim site: --pue.from %q --pue.to %q: want two times, the second later\n", *c.pueFrom, *c.pueTo)
			return 2
		}
		ups, pdu := m.PUE(from, to)
		fmt.Fprintf(stdout, "pue_ups_output %.4f\npue_pdu_output %.4f\n", ups, pdu)
		return 0
	}
	specs, opts, err := c.bmcs(m)
	if err != nil {
		fmt.Fprintf(stderr, "joules sim site: %v\n", err)
		return 2
	}
	day := now.UTC().Truncate(24 * time.Hour)
	dayUPS, dayPDU := m.PUE(day, day.Add(24*time.Hour))
	nextUPS, nextPDU := m.PUE(now, now.Add(10*time.Minute))
	at := m.At(now)
	var it float64
	for _, w := range at.PDUOutput {
		it += w
	}
	logger.Info("SIMULATED site: every reading below comes from its model", "site", *c.seed, "hosts", len(*c.hosts), "racks", len(m.Site().Racks),
		"pue_ups_output_today", fmt.Sprintf("%.3f", dayUPS), "pue_pdu_output_today", fmt.Sprintf("%.3f", dayPDU),
		"pue_ups_output_next_10m", fmt.Sprintf("%.3f", nextUPS), "pue_pdu_output_next_10m", fmt.Sprintf("%.3f", nextPDU),
		"it_watts_now", fmt.Sprintf("%.0f", it), "facility_watts_now", fmt.Sprintf("%.0f", at.Facility),
		"outdoor_celsius_now", fmt.Sprintf("%.1f", m.OutdoorCelsius(now)))
	if err := c.meters.start(ctx, m, c, logger, stdout); err != nil {
		fmt.Fprintf(stderr, "joules sim site: %v\n", err)
		return 2
	}
	if err := c.serve.serve(ctx, logger, specs, opts, stdout); err != nil {
		fmt.Fprintf(stderr, "joules sim site: %v\n", err)
		return 1
	}
	return 0
}

// hostMeter is a host's PSUs: input is what its BMC reports, output the
// DC its parts draw.
type hostMeter struct{ h *sitemodel.Host }

func (m hostMeter) Power(t time.Time) redfishsim.MeterPower {
	p := m.h.At(t)
	return redfishsim.MeterPower{Input: p.Input, Output: p.DC, CPU: p.CPU, Fans: p.Fans,
		Capacity: m.h.Server.PSUCapacityWatts()}
}

func (m hostMeter) Energy(t time.Time) redfishsim.MeterEnergy {
	e := m.h.Energy(t)
	return redfishsim.MeterEnergy{Input: e.Input, Output: e.DC}
}

// chainMeter is a point of the site's power chain past the hosts.
type chainMeter struct {
	m     *sitemodel.Model
	inOut func(sitemodel.Chain) (input, output float64)
}

func (c chainMeter) Power(t time.Time) redfishsim.MeterPower {
	in, out := c.inOut(c.m.At(t))
	return redfishsim.MeterPower{Input: in, Output: out}
}

func (c chainMeter) Energy(t time.Time) redfishsim.MeterEnergy {
	in, out := c.inOut(c.m.Energy(t))
	return redfishsim.MeterEnergy{Input: in, Output: out}
}

// siteHost is a host's GPUs as the inference simulator follows them.
type siteHost struct{ h *sitemodel.Host }

func (s siteHost) Utilization(t time.Time) float64        { return s.h.At(t).Utilization }
func (s siteHost) UtilizationSeconds(t time.Time) float64 { return s.h.Energy(t).UtilizationSeconds }
func (s siteHost) MeanUtilization() float64               { return s.h.MeanUtilization() }
