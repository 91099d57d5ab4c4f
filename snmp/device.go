package snmp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/joules-energy/joules/meter"
)

// Config is how to reach one device.
type Config struct {
	Address   string // host or host:port (161)
	Version   string // "2c" or "3"
	Community string
	V3        V3
	Timeout   time.Duration // one request (default 2 s)
	Retries   int
}

// V3 is the user-based security of SNMP v3.
type V3 struct {
	Username      string
	SecurityLevel string // noAuthNoPriv, authNoPriv, authPriv
	AuthProtocol  string // MD5, SHA, SHA224, SHA256, SHA384, SHA512
	AuthPassword  string
	PrivProtocol  string // DES, AES, AES192, AES256, AES192C, AES256C
	PrivPassword  string
	ContextName   string
}

var authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{
	"MD5": gosnmp.MD5, "SHA": gosnmp.SHA, "SHA224": gosnmp.SHA224, "SHA256": gosnmp.SHA256, "SHA384": gosnmp.SHA384, "SHA512": gosnmp.SHA512,
}

var privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{
	"DES": gosnmp.DES, "AES": gosnmp.AES, "AES192": gosnmp.AES192, "AES256": gosnmp.AES256, "AES192C": gosnmp.AES192C, "AES256C": gosnmp.AES256C,
}

// AuthProtocols and PrivProtocols name what V3 accepts.
var (
	AuthProtocols = []string{"MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"}
	PrivProtocols = []string{"DES", "AES", "AES192", "AES256", "AES192C", "AES256C"}
	Levels        = []string{"noAuthNoPriv", "authNoPriv", "authPriv"}
)

// Device reads one SNMP device with a profile. It is used by one poll at
// a time (the meter source's lock).
type Device struct {
	profile  *Profile
	client   *gosnmp.GoSNMP
	open     bool
	requests atomic.Int64
	now      func() time.Time
	// absent holds the columns a walk found empty, until when they are
	// not walked again: a PDU without outlet metering would otherwise cost
	// two requests a column on every poll. Only columns that optional
	// readings alone use: a required one (power, on a card still booting)
	// is walked every poll.
	absent   map[string]time.Time
	optional map[string]bool // column → only optional readings use it
}

// recheckAbsent is how long an empty column is left alone.
const recheckAbsent = time.Hour

// NewDevice returns the device; the socket opens on the first poll.
func NewDevice(cfg Config, p *Profile) (*Device, error) {
	host, port := cfg.Address, uint16(161)
	if h, ps, err := net.SplitHostPort(cfg.Address); err == nil {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("address %q: port %q is not a port number: %w", cfg.Address, ps, err)
		}
		host, port = h, uint16(n)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	c := &gosnmp.GoSNMP{
		Target: host, Port: port, Transport: "udp", Community: cfg.Community,
		Timeout: cfg.Timeout, Retries: cfg.Retries, MaxOids: gosnmp.MaxOids, MaxRepetitions: 25,
	}
	switch cfg.Version {
	case "", "2c":
		c.Version = gosnmp.Version2c
	case "3":
		c.Version = gosnmp.Version3
		c.SecurityModel = gosnmp.UserSecurityModel
		c.ContextName = cfg.V3.ContextName
		usm := &gosnmp.UsmSecurityParameters{UserName: cfg.V3.Username}
		switch cfg.V3.SecurityLevel {
		case "noAuthNoPriv":
			c.MsgFlags = gosnmp.NoAuthNoPriv
		case "authNoPriv", "authPriv":
			c.MsgFlags = gosnmp.AuthNoPriv
			auth, ok := authProtocols[cfg.V3.AuthProtocol]
			if !ok {
				return nil, fmt.Errorf("v3 auth_protocol %q is not one of %s", cfg.V3.AuthProtocol, strings.Join(AuthProtocols, ", "))
			}
			usm.AuthenticationProtocol = auth
			usm.AuthenticationPassphrase = cfg.V3.AuthPassword
			if cfg.V3.SecurityLevel == "authPriv" {
				c.MsgFlags = gosnmp.AuthPriv
				priv, ok := privProtocols[cfg.V3.PrivProtocol]
				if !ok {
					return nil, fmt.Errorf("v3 priv_protocol %q is not one of %s", cfg.V3.PrivProtocol, strings.Join(PrivProtocols, ", "))
				}
				usm.PrivacyProtocol = priv
				usm.PrivacyPassphrase = cfg.V3.PrivPassword
			}
		default:
			return nil, fmt.Errorf("v3 security_level %q is not one of %s", cfg.V3.SecurityLevel, strings.Join(Levels, ", "))
		}
		c.SecurityParameters = usm
	default:
		return nil, fmt.Errorf("version %q is not 2c or 3", cfg.Version)
	}
	d := &Device{profile: p, client: c, now: time.Now, absent: map[string]time.Time{}, optional: map[string]bool{}}
	for _, r := range p.Readings {
		if !r.Walk {
			continue
		}
		for _, oid := range []string{r.OID, r.DecimalsOID} {
			if oid == "" {
				continue
			}
			oid = dotted(oid)
			only, seen := d.optional[oid]
			d.optional[oid] = r.Optional && (only || !seen)
		}
	}
	c.OnSent = func(*gosnmp.GoSNMP) { d.requests.Add(1) }
	return d, nil
}

// Requests implements meter.Device.
func (d *Device) Requests() int64 { return d.requests.Load() }

// Close implements meter.Device.
func (d *Device) Close() error {
	if !d.open {
		return nil
	}
	d.open = false
	return d.client.Conn.Close()
}

// Read implements meter.Device: the profile's scalars in as few GETs as
// it takes, each column walked once (GETBULK) however many readings use it.
func (d *Device) Read(ctx context.Context) ([]meter.Reading, []meter.Problem, error) {
	d.client.Context = ctx
	if !d.open {
		if err := d.client.Connect(); err != nil {
			return nil, nil, &meter.PollError{Reason: "connection", Err: err}
		}
		d.open = true
	}
	var scalars []string
	for _, r := range d.profile.Readings {
		if !r.Walk {
			scalars = append(scalars, dotted(r.OID))
		}
	}
	values := map[string]gosnmp.SnmpPDU{}
	for start := 0; start < len(scalars); start += gosnmp.MaxOids {
		pkt, err := d.client.Get(scalars[start:min(start+gosnmp.MaxOids, len(scalars))])
		if err != nil {
			return nil, nil, pollError(err)
		}
		if pkt.Error != gosnmp.NoError {
			return nil, nil, &meter.PollError{Reason: "protocol", Err: fmt.Errorf("the device answered %s", pkt.Error)}
		}
		for _, v := range pkt.Variables {
			values[v.Name] = v
		}
	}
	walks := map[string][]gosnmp.SnmpPDU{}
	walk := func(oid string) ([]gosnmp.SnmpPDU, error) {
		oid = dotted(oid)
		if rows, ok := walks[oid]; ok {
			return rows, nil
		}
		if until, ok := d.absent[oid]; ok && d.now().Before(until) {
			return nil, nil
		}
		rows, err := d.client.BulkWalkAll(oid)
		if err != nil {
			return nil, pollError(err)
		}
		walks[oid] = rows
		if len(rows) == 0 && d.optional[oid] {
			d.absent[oid] = d.now().Add(recheckAbsent)
		} else {
			delete(d.absent, oid)
		}
		return rows, nil
	}
	var readings []meter.Reading
	var problems []meter.Problem
	report := func(r *Reading, err error) {
		if p := problemOf(r, err); !(r.Optional && p.Reason == meter.ReasonMissing) {
			problems = append(problems, p)
		}
	}
	for i := range d.profile.Readings {
		r := &d.profile.Readings[i]
		var rows []meter.Row
		if !r.Walk {
			v, err := number(values[dotted(r.OID)])
			if err != nil {
				report(r, err)
				continue
			}
			rows = []meter.Row{{Name: r.Row, Raw: v}}
		} else {
			pdus, err := walk(r.OID)
			if err != nil {
				return nil, nil, err
			}
			var decimals map[string]float64
			if r.DecimalsOID != "" {
				dpdus, err := walk(r.DecimalsOID)
				if err != nil {
					return nil, nil, err
				}
				decimals = column(dpdus, r.DecimalsOID)
			}
			arcs, _ := parseIndex(r.Index)
			prefix := dotted(r.OID) + "."
			matched := 0
			for _, p := range pdus {
				index := strings.TrimPrefix(p.Name, prefix)
				name, ok := rowName(arcs, index)
				if !ok {
					continue
				}
				matched++
				v, err := number(p)
				if err != nil {
					report(r, fmt.Errorf("row %s: %w", index, err))
					continue
				}
				if decimals != nil {
					digits, ok := decimals[index]
					if !ok {
						report(r, fmt.Errorf("row %s: no decimal digits at %s.%s: %w", index, r.DecimalsOID, index, errMissing))
						continue
					}
					v /= math.Pow10(int(digits))
				}
				rows = append(rows, meter.Row{Name: name, Raw: v})
			}
			if len(rows) == 0 {
				report(r, fmt.Errorf("no rows under %s%s: %w", r.OID, indexNote(r.Index), errMissing))
				continue
			}
			if r.Sum && len(rows) < matched {
				// A sum of the lines that read would be too low: none.
				report(r, fmt.Errorf("%d of %d rows under %s unreadable: no sum: %w", matched-len(rows), matched, r.OID, errMissing))
				continue
			}
		}
		got, bad := r.Build(r.what(), rows)
		readings = append(readings, got...)
		problems = append(problems, bad...)
	}
	return readings, problems, nil
}

func indexNote(pattern string) string {
	if pattern == "" {
		return ""
	}
	return " matching index " + pattern
}

// column maps a walk's rows by index to their numbers.
func column(pdus []gosnmp.SnmpPDU, oid string) map[string]float64 {
	prefix := dotted(oid) + "."
	out := make(map[string]float64, len(pdus))
	for _, p := range pdus {
		if v, err := number(p); err == nil {
			out[strings.TrimPrefix(p.Name, prefix)] = v
		}
	}
	return out
}

var (
	errMissing = errors.New("the device has no such object")
	errBadType = errors.New("not a number")
)

func problemOf(r *Reading, err error) meter.Problem {
	reason := meter.ReasonBadType
	if errors.Is(err, errMissing) {
		reason = meter.ReasonMissing
	}
	return meter.Problem{Reading: r.what(), Reason: reason, Err: err}
}

// number is a PDU's value as a number: integers of every width, floats,
// and numbers sent as text (some firmware does).
func number(p gosnmp.SnmpPDU) (float64, error) {
	switch p.Type {
	case gosnmp.Integer, gosnmp.Counter32, gosnmp.Gauge32, gosnmp.Counter64, gosnmp.TimeTicks, gosnmp.Uinteger32:
		f, _ := new(big.Float).SetInt(gosnmp.ToBigInt(p.Value)).Float64()
		return f, nil
	case gosnmp.OpaqueFloat:
		if f, ok := p.Value.(float32); ok {
			return float64(f), nil
		}
	case gosnmp.OpaqueDouble:
		if f, ok := p.Value.(float64); ok {
			return f, nil
		}
	case gosnmp.OctetString:
		b, _ := p.Value.([]byte)
		f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			return 0, fmt.Errorf("%s is the text %q: %w", p.Name, b, errBadType)
		}
		return f, nil
	case gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView, gosnmp.Null, gosnmp.UnknownType:
		return 0, fmt.Errorf("%s: %s: %w", p.Name, p.Type, errMissing)
	}
	return 0, fmt.Errorf("%s has type %s: %w", p.Name, p.Type, errBadType)
}

// pollError classifies a failed request: no answer (a timeout; a v2c
// agent drops a wrong community silently, so it looks the same), a v3
// user, key or level the agent refuses (auth), or the network.
func pollError(err error) error {
	switch {
	case errors.Is(err, gosnmp.ErrWrongDigest), errors.Is(err, gosnmp.ErrUnknownUsername), errors.Is(err, gosnmp.ErrUnknownSecurityLevel),
		errors.Is(err, gosnmp.ErrDecryption), strings.Contains(err.Error(), "not authentic"), strings.Contains(err.Error(), "requires authentication"):
		return &meter.PollError{Reason: "auth", Err: fmt.Errorf("the device refused the SNMP v3 credentials (user, auth or priv key, or security level): %w", err)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, gosnmp.ErrMaxRetriesExceeded), strings.Contains(err.Error(), "timeout"):
		return &meter.PollError{Reason: "timeout", Err: fmt.Errorf("no answer (a wrong v2c community also goes unanswered): %w", err)}
	}
	return &meter.PollError{Reason: "connection", Err: err}
}

func dotted(oid string) string {
	if strings.HasPrefix(oid, ".") {
		return oid
	}
	return "." + oid
}
