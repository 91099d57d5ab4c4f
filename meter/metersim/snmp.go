// Package metersim serves simulated facility meters over the protocols
// real ones speak: an SNMP v2c agent and a Modbus TCP server whose values
// come from functions of time (the demo's site model). They exist for the
// demo and for tests that need moving values; the recordings of real
// devices are served by Debian's snmpsimd.
package metersim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"
)

// Object is one OID the agent serves: its type and its value at a time.
type Object struct {
	OID   string
	Type  gosnmp.Asn1BER // Integer, Gauge32, Counter32, Counter64, OctetString
	Value func(t time.Time) any
}

// SNMPAgent answers GET, GETNEXT and GETBULK of SNMP v2c for one
// community from a table of objects.
type SNMPAgent struct {
	community string
	objects   []object // sorted by OID
	conn      net.PacketConn
	log       *slog.Logger
}

type object struct {
	Object
	arcs []uint32
}

// NewSNMPAgent listens on addr (UDP) and serves objects to community.
func NewSNMPAgent(addr, community string, objects []Object, logger *slog.Logger) (*SNMPAgent, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &SNMPAgent{community: community, log: logger}
	for _, o := range objects {
		arcs, err := parseOID(o.OID)
		if err != nil {
			return nil, err
		}
		o.OID = "." + strings.TrimPrefix(o.OID, ".")
		a.objects = append(a.objects, object{o, arcs})
	}
	slices.SortFunc(a.objects, func(x, y object) int { return slices.Compare(x.arcs, y.arcs) })
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	a.conn = conn
	return a, nil
}

// Addr is where the agent listens.
func (a *SNMPAgent) Addr() string { return a.conn.LocalAddr().String() }

// Serve answers requests until ctx ends.
func (a *SNMPAgent) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { a.conn.Close() })
	defer stop()
	buf := make([]byte, 65535)
	decoder := &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: a.community}
	for {
		n, peer, err := a.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		req, err := decoder.SnmpDecodePacket(buf[:n])
		if err != nil || req.Version != gosnmp.Version2c || req.Community != a.community {
			continue // as agents do: a wrong community gets no answer
		}
		resp, err := a.answer(req, time.Now()).MarshalMsg()
		if err != nil {
			a.log.Warn("SNMP answer not encoded", "err", err)
			continue
		}
		_, _ = a.conn.WriteTo(resp, peer)
	}
}

func (a *SNMPAgent) answer(req *gosnmp.SnmpPacket, now time.Time) *gosnmp.SnmpPacket {
	resp := &gosnmp.SnmpPacket{Version: req.Version, Community: req.Community, PDUType: gosnmp.GetResponse, RequestID: req.RequestID}
	switch req.PDUType {
	case gosnmp.GetRequest:
		for _, v := range req.Variables {
			resp.Variables = append(resp.Variables, a.get(v.Name, now))
		}
	case gosnmp.GetNextRequest:
		for _, v := range req.Variables {
			resp.Variables = append(resp.Variables, a.next(v.Name, now))
		}
	case gosnmp.GetBulkRequest:
		nonRep := min(int(req.NonRepeaters), len(req.Variables))
		for _, v := range req.Variables[:nonRep] {
			resp.Variables = append(resp.Variables, a.next(v.Name, now))
		}
		reps := req.Variables[nonRep:]
		cursor := make([]string, len(reps))
		for i, v := range reps {
			cursor[i] = v.Name
		}
		for range min(int(req.MaxRepetitions), 100) {
			for i := range reps {
				pdu := a.next(cursor[i], now)
				resp.Variables = append(resp.Variables, pdu)
				cursor[i] = pdu.Name
			}
		}
	default:
		resp.Error = gosnmp.GenErr
	}
	return resp
}

func (a *SNMPAgent) get(oid string, now time.Time) gosnmp.SnmpPDU {
	arcs, err := parseOID(oid)
	if err != nil {
		return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.NoSuchObject}
	}
	i, found := slices.BinarySearchFunc(a.objects, arcs, func(o object, t []uint32) int { return slices.Compare(o.arcs, t) })
	if !found {
		return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.NoSuchInstance}
	}
	return a.objects[i].pdu(now)
}

func (a *SNMPAgent) next(oid string, now time.Time) gosnmp.SnmpPDU {
	arcs, err := parseOID(oid)
	if err != nil {
		return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.EndOfMibView}
	}
	i, found := slices.BinarySearchFunc(a.objects, arcs, func(o object, t []uint32) int { return slices.Compare(o.arcs, t) })
	if found {
		i++
	}
	if i >= len(a.objects) {
		return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.EndOfMibView}
	}
	return a.objects[i].pdu(now)
}

func (o object) pdu(now time.Time) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: o.OID, Type: o.Type, Value: o.Value(now)}
}

func parseOID(oid string) ([]uint32, error) {
	parts := strings.Split(strings.TrimPrefix(oid, "."), ".")
	arcs := make([]uint32, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("OID %q: %w", oid, err)
		}
		arcs[i] = uint32(n)
	}
	return arcs, nil
}

// RaritanPDU lays a PDU out as a Raritan PX2 without an energy sensor
// does (PDU2-MIB, the snmp package's raritan-pdu2 profile): inlet 1.1's
// active power (W), current and voltage from power W at t, and outlets
// sharing the power, each value an integer with its decimal digits beside
// it. With no activeEnergy the agent integrates the power.
func RaritanPDU(power func(time.Time) float64, outlets int) []Object {
	const (
		inletValue, inletDigits   = "1.3.6.1.4.1.13742.6.5.2.3.1.4.1.1.", "1.3.6.1.4.1.13742.6.3.3.4.1.7.1.1."
		outletValue, outletDigits = "1.3.6.1.4.1.13742.6.5.4.3.1.4.1.", "1.3.6.1.4.1.13742.6.3.5.4.1.7.1."
		current, voltage, active  = "1", "4", "5"
		volts                     = 230.0
	)
	fixed := func(v any) func(time.Time) any { return func(time.Time) any { return v } }
	scaled := func(share, scale float64) func(time.Time) any {
		return func(t time.Time) any { return uint32(math.Round(power(t) * share * scale)) }
	}
	objects := []Object{
		{OID: "1.3.6.1.2.1.1.1.0", Type: gosnmp.OctetString, Value: fixed("SIMULATED Raritan PX2 (joules demo)")},
		{OID: "1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: func(t time.Time) any { return uint32(t.Unix() % (1 << 31)) }},
		{OID: inletDigits + current, Type: gosnmp.Gauge32, Value: fixed(uint32(3))},
		{OID: inletDigits + voltage, Type: gosnmp.Gauge32, Value: fixed(uint32(0))},
		{OID: inletDigits + active, Type: gosnmp.Gauge32, Value: fixed(uint32(0))},
		{OID: inletValue + current, Type: gosnmp.Gauge32, Value: scaled(1, 1000/volts)},
		{OID: inletValue + voltage, Type: gosnmp.Gauge32, Value: fixed(uint32(volts))},
		{OID: inletValue + active, Type: gosnmp.Gauge32, Value: scaled(1, 1)},
	}
	for o := 1; o <= outlets; o++ {
		n := strconv.Itoa(o) + "."
		share := 1 / float64(outlets)
		objects = append(objects,
			Object{OID: outletDigits + n + current, Type: gosnmp.Gauge32, Value: fixed(uint32(3))},
			Object{OID: outletDigits + n + active, Type: gosnmp.Gauge32, Value: fixed(uint32(0))},
			Object{OID: outletValue + n + current, Type: gosnmp.Gauge32, Value: scaled(share, 1000/volts)},
			Object{OID: outletValue + n + active, Type: gosnmp.Gauge32, Value: scaled(share, 1)})
	}
	return objects
}

// UPSMIB lays a three-phase UPS out on the standard UPS-MIB (RFC 1628, the
// snmp package's ups-mib profile): output power (W), load, voltage and
// current per line from the output power at t, input true power per line
// from the input power, the lines sharing both alike.
func UPSMIB(output, input func(time.Time) float64, ratedWatts float64) []Object {
	const in, out = "1.3.6.1.2.1.33.1.3.3.1.", "1.3.6.1.2.1.33.1.4.4.1."
	line := func(f func(time.Time) float64, scale float64) func(time.Time) any {
		return func(t time.Time) any { return int(math.Round(f(t) / 3 * scale)) }
	}
	objects := []Object{
		{OID: "1.3.6.1.2.1.1.1.0", Type: gosnmp.OctetString, Value: func(time.Time) any { return "SIMULATED UPS (joules demo)" }},
		{OID: "1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: func(t time.Time) any { return uint32(t.Unix() % (1 << 31)) }},
	}
	for i := 1; i <= 3; i++ {
		n := strconv.Itoa(i)
		objects = append(objects,
			Object{OID: in + "5." + n, Type: gosnmp.Integer, Value: line(input, 1)},
			Object{OID: out + "2." + n, Type: gosnmp.Integer, Value: func(time.Time) any { return 230 }},
			Object{OID: out + "3." + n, Type: gosnmp.Integer, Value: line(output, 10.0/230)},
			Object{OID: out + "4." + n, Type: gosnmp.Integer, Value: line(output, 1)},
			Object{OID: out + "5." + n, Type: gosnmp.Integer, Value: line(output, 3*100/ratedWatts)})
	}
	return objects
}
