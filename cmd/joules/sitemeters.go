package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/meter/metersim"
)

// siteMeters are the meters of `joules sim site` served over SNMP and
// Modbus, as real PDUs and facility meters are, in place of Redfish ones.
type siteMeters struct {
	snmpPDUs       *[]string
	snmpUPS        *string
	modbusFacility *string
}

func addSiteMeterFlags(c *siteCmd) {
	f := c.cmd.Flag
	c.meters.snmpPDUs = f("snmp-pdu", "Serve rack RACK's PDU over SNMP v2c (community public) as a Raritan PX2 without an energy sensor (the raritan-pdu2 profile; the agent integrates its power), as RACK=HOST:PORT: its power is the PDU's output. Repeatable; not with --pdu for the same rack.").Strings()
	c.meters.snmpUPS = f("snmp-ups", "Serve the UPS over SNMP v2c (community public) on the standard UPS-MIB (the ups-mib profile) at HOST:PORT: its output and input power, three lines; not with --ups.").String()
	c.meters.modbusFacility = f("modbus-facility", "Serve the facility meter over Modbus TCP at HOST:PORT as a Schneider PM5000 (the schneider-pm5000 register map); not with --facility.").String()
}

// chainValue is one point of the chain's power (W) and energy (J) as functions of time.
func chainValue(m *sitemodel.Model, pick func(sitemodel.Chain) float64) (power, energy func(time.Time) float64) {
	return func(t time.Time) float64 { return pick(m.At(t)) }, func(t time.Time) float64 { return pick(m.Energy(t)) }
}

// start serves the meters until ctx ends; it returns once each listens.
func (s siteMeters) start(ctx context.Context, m *sitemodel.Model, c *siteCmd, logger *slog.Logger, stdout io.Writer) error {
	racks := map[string]bool{}
	for _, r := range m.Site().Racks {
		racks[r.Name] = true
	}
	for _, p := range *c.pdus {
		rack, _, _ := strings.Cut(p, "=")
		for _, q := range *s.snmpPDUs {
			if r, _, _ := strings.Cut(q, "="); r == rack {
				return fmt.Errorf("rack %s has a PDU from --pdu and --snmp-pdu: give it one", rack)
			}
		}
	}
	for _, p := range *s.snmpPDUs {
		rack, addr, ok := strings.Cut(p, "=")
		if !ok || addr == "" || !racks[rack] {
			return fmt.Errorf("--snmp-pdu %q: write it RACK=HOST:PORT with RACK one of the --host racks", p)
		}
		power, _ := chainValue(m, func(c sitemodel.Chain) float64 { return c.PDUOutput[rack] })
		agent, err := metersim.NewSNMPAgent(addr, "public", metersim.RaritanPDU(power, 12), logger)
		if err != nil {
			return fmt.Errorf("--snmp-pdu %s: %w", p, err)
		}
		go func() {
			if err := agent.Serve(ctx); err != nil {
				logger.Error("SNMP PDU stopped", "rack", rack, "err", err)
			}
		}()
		logger.Info("SIMULATED SNMP PDU", "name", "pdu-"+rack, "address", agent.Addr(), "profile", "raritan-pdu2")
		fmt.Fprintf(stdout, "pdu-%s snmp://%s\n", rack, agent.Addr())
	}
	if addr := *s.snmpUPS; addr != "" {
		if *c.ups != "" {
			return fmt.Errorf("the UPS comes from --ups and --snmp-ups: give one")
		}
		output, _ := chainValue(m, func(c sitemodel.Chain) float64 { return c.UPSOutput })
		input, _ := chainValue(m, func(c sitemodel.Chain) float64 { return c.UPSInput })
		// Rated at twice today's load, in whole 10 kW: the load reads about half.
		rated := math.Ceil(2*output(time.Now())/10e3) * 10e3
		agent, err := metersim.NewSNMPAgent(addr, "public", metersim.UPSMIB(output, input, rated), logger)
		if err != nil {
			return fmt.Errorf("--snmp-ups %s: %w", addr, err)
		}
		go func() {
			if err := agent.Serve(ctx); err != nil {
				logger.Error("SNMP UPS stopped", "err", err)
			}
		}()
		logger.Info("SIMULATED SNMP UPS", "name", "ups", "address", agent.Addr(), "profile", "ups-mib", "rated_watts", rated)
		fmt.Fprintf(stdout, "ups snmp://%s\n", agent.Addr())
	}
	if addr := *s.modbusFacility; addr != "" {
		if *c.facility != "" {
			return fmt.Errorf("the facility meter comes from --facility and --modbus-facility: give one")
		}
		power, energy := chainValue(m, func(c sitemodel.Chain) float64 { return c.Facility })
		srv, err := metersim.NewModbusServer(addr, metersim.PM5000(power, energy))
		if err != nil {
			return fmt.Errorf("--modbus-facility %s: %w", addr, err)
		}
		context.AfterFunc(ctx, func() { _ = srv.Stop() })
		logger.Info("SIMULATED Modbus facility meter", "name", "facility", "address", srv.Addr(), "register_map", "schneider-pm5000")
		fmt.Fprintf(stdout, "facility modbus://%s\n", srv.Addr())
	}
	return nil
}
