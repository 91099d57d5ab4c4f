package snmp

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/meter"
)

// A user's profile, from a file, for a device whose values the test moves
// with SNMP SETs (snmpsim's writecache): power, a 32-bit Wh energy counter,
// an OID the device lacks, and one it answers too late.
const userProfile = `
name: lab-meter
description: a test meter under a private enterprise arc
equipment_type: rack_pdu
readings:
  - {reading: power, oid: 1.3.6.1.4.1.55555.1.1.1, unit: W, scale: 1, min: 0, max: 20000}
  - {reading: energy, oid: 1.3.6.1.4.1.55555.1.2.1, unit: Wh, scale: 3600, wrap_bits: 32}
  - {reading: phase_current, oid: 1.3.6.1.4.1.55555.1.4.1, unit: 0.1 A, scale: 0.1}
`

const movingRecording = `1.3.6.1.2.1.1.3.0|67|100
1.3.6.1.4.1.55555.1.1.1|66:writecache|value=1000
1.3.6.1.4.1.55555.1.2.1|65:writecache|value=4294967000
`

// slowRecording answers its power three seconds late.
const slowRecording = `1.3.6.1.2.1.1.3.0|67|100
1.3.6.1.4.1.55555.1.1.1|66:delay|value=1000,wait=3000
`

func serveLab(t *testing.T) (*testenv.SNMPAgent, *Profile) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"moving": movingRecording, "slow": slowRecording} {
		if err := os.WriteFile(filepath.Join(dir, name+".snmprec"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "lab-meter.yml")
	if err := os.WriteFile(file, []byte(userProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadProfile(file)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.StartSNMPSim(t, dir, "moving"), p
}

// set changes a writecache value on the simulator.
func set(t *testing.T, addr, oid string, typ gosnmp.Asn1BER, v uint32) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	c := &gosnmp.GoSNMP{Target: host, Port: uint16(n), Community: "moving", Version: gosnmp.Version2c, Timeout: 2 * time.Second}
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	defer c.Conn.Close()
	pkt, err := c.Set([]gosnmp.SnmpPDU{{Name: oid, Type: typ, Value: v}})
	if err != nil || pkt.Error != gosnmp.NoError {
		t.Fatalf("SET %s = %d: %v %v", oid, v, err, pkt)
	}
}

func labSource(t *testing.T, addr, community string, p *Profile, timeout time.Duration) *meter.Source {
	t.Helper()
	dev, err := NewDevice(Config{Address: addr, Community: community, Timeout: timeout}, p)
	if err != nil {
		t.Fatal(err)
	}
	src := meter.NewSource(meter.Config{Protocol: "snmp", Name: "lab", Role: "pdu_output", EquipmentType: p.EquipmentType,
		MaxWatts: 1e6, Interval: 10 * time.Second, Counters: energy.NewMemoryStore()}, dev)
	t.Cleanup(func() { src.Close() })
	return src
}

func sample(t *testing.T, out []collector.Sample, name string, labels ...string) collector.Sample {
	t.Helper()
next:
	for _, s := range out {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !hasLabel(s, labels[i], labels[i+1]) {
				continue next
			}
		}
		return s
	}
	t.Fatalf("no %s%v in %d samples", name, labels, len(out))
	return collector.Sample{}
}

func hasLabel(s collector.Sample, name, value string) bool {
	for _, l := range s.Labels {
		if l.Name == name && l.Value == value {
			return true
		}
	}
	return false
}

func poll(t *testing.T, src *meter.Source) []collector.Sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := src.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestA32BitCounterThatWrapsAndAMeterThatRebootsThroughARealAgent(t *testing.T) {
	agent, p := serveLab(t)
	src := labSource(t, agent.Addr, "moving", p, 2*time.Second)
	const energyOID, powerOID = ".1.3.6.1.4.1.55555.1.2.1", ".1.3.6.1.4.1.55555.1.1.1"
	const start = 4294967000.0 // Wh, 296 below the top of 32 bits
	out := poll(t, src)
	e := sample(t, out, "joules_snmp_equipment_energy_joules_total", "method", "counter")
	if e.Value != start*3600 {
		t.Fatalf("first total %v J, want the counter itself, %v J", e.Value, start*3600)
	}
	if p := sample(t, out, "joules_snmp_equipment_power_watts"); p.Value != 1000 {
		t.Errorf("power %v W, want 1000", p.Value)
	}
	// The device lacks the phase current the profile names: a problem,
	// the rest is reported.
	if pr := sample(t, out, "joules_snmp_reading_problems_total", "reason", "missing"); !hasLabel(pr, "reading", "phase_current@1.3.6.1.4.1.55555.1.4.1") {
		t.Errorf("problem %+v", pr)
	}
	set(t, agent.Addr, energyOID, gosnmp.Counter32, 200) // wrapped: 296 + 200 Wh
	set(t, agent.Addr, powerOID, gosnmp.Gauge32, 1500)
	out = poll(t, src)
	if e := sample(t, out, "joules_snmp_equipment_energy_joules_total", "method", "counter"); e.Value != (start+496)*3600 {
		t.Errorf("after the wrap %v J, want %v J (496 Wh more)", e.Value, (start+496)*3600)
	}
	if p := sample(t, out, "joules_snmp_equipment_power_watts"); p.Value != 1500 {
		t.Errorf("power %v W, want 1500", p.Value)
	}
	set(t, agent.Addr, energyOID, gosnmp.Counter32, 5) // rebooted and lost its count: the 5 Wh since are counted
	out = poll(t, src)
	if e := sample(t, out, "joules_snmp_equipment_energy_joules_total", "method", "counter"); e.Value != (start+501)*3600 {
		t.Errorf("after the reboot %v J, want %v J (5 Wh more)", e.Value, (start+501)*3600)
	}
	set(t, agent.Addr, powerOID, gosnmp.Gauge32, 25000) // above the profile's max
	out = poll(t, src)
	if pr := sample(t, out, "joules_snmp_reading_problems_total", "reason", "out_of_range"); pr.Value != 1 || !hasLabel(pr, "reading", "power@1.3.6.1.4.1.55555.1.1.1") {
		t.Errorf("out-of-range power: %+v", pr)
	}
	for _, s := range out {
		if s.Name == "joules_snmp_equipment_power_watts" {
			t.Errorf("an out-of-range power was published: %v", s.Value)
		}
	}
}

func TestAWrongCommunityAndASlowDeviceTimeOutAndKeepTheLastValues(t *testing.T) {
	agent, p := serveLab(t)
	good := labSource(t, agent.Addr, "moving", p, 500*time.Millisecond)
	poll(t, good)
	for _, c := range []struct{ name, community string }{{"wrong community", "not-the-community"}, {"slow device", "slow"}} {
		t.Run(c.name, func(t *testing.T) {
			src := labSource(t, agent.Addr, c.community, p, 300*time.Millisecond)
			deadline := time.Now().Add(5 * time.Second)
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()
			out, err := src.Collect(ctx)
			if meter.Reason(err) != "timeout" {
				t.Fatalf("err %v (reason %s), want a timeout", err, meter.Reason(err))
			}
			if time.Now().After(deadline) {
				t.Error("the poll outlived its deadline")
			}
			if u := sample(t, out, "joules_snmp_up"); u.Value != 0 {
				t.Error("up is not 0")
			}
			if e := sample(t, out, "joules_snmp_poll_errors_total", "reason", "timeout"); e.Value != 1 {
				t.Errorf("timeouts %v", e.Value)
			}
		})
	}
}

func TestSNMPv3AuthPrivAgainstSnmpd(t *testing.T) {
	user := testenv.SNMPv3User{Name: "joules", AuthProto: "SHA", AuthKey: "joules-auth-key", PrivProto: "AES", PrivKey: "joules-priv-key"}
	// The APC AP8959's recorded power and energy, served by snmpd.
	agent := testenv.StartSNMPD(t, user, map[string]int64{
		"1.3.6.1.4.1.318.1.1.26.4.3.1.5.1": 27, "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1": 19677,
	})
	p, err := ShippedProfile("apc-rpdu2")
	if err != nil {
		t.Fatal(err)
	}
	read := func(v3 V3) ([]meter.Reading, error) {
		dev, err := NewDevice(Config{Address: agent.Addr, Version: "3", V3: v3, Timeout: time.Second}, p)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, _, err := dev.Read(ctx)
		return r, err
	}
	ok := V3{Username: "joules", SecurityLevel: "authPriv", AuthProtocol: "SHA", AuthPassword: user.AuthKey, PrivProtocol: "AES", PrivPassword: user.PrivKey}
	readings, err := read(ok)
	if err != nil {
		t.Fatal(err)
	}
	got := map[meter.Quantity]float64{}
	for _, r := range readings {
		got[r.Quantity] = r.Value
	}
	if got[meter.Power] != 270 || math.Abs(got[meter.Energy]-19677*0.1*3.6e6) > 1e-3 {
		t.Errorf("over v3: %v, want 270 W and %v J", got, 19677*0.1*3.6e6)
	}
	for name, v3 := range map[string]V3{
		"wrong auth key": {Username: "joules", SecurityLevel: "authPriv", AuthProtocol: "SHA", AuthPassword: "not-the-auth-key", PrivProtocol: "AES", PrivPassword: user.PrivKey},
		"unknown user":   {Username: "nobody-here", SecurityLevel: "authPriv", AuthProtocol: "SHA", AuthPassword: user.AuthKey, PrivProtocol: "AES", PrivPassword: user.PrivKey},
	} {
		_, err := read(v3)
		var pe *meter.PollError
		if !errors.As(err, &pe) || pe.Reason != "auth" || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("%s: err %v, want an auth error that names the credentials", name, err)
		}
	}
	// A wrong privacy key decrypts to garbage the agent cannot parse: it
	// does not answer, so the poll times out rather than being refused.
	bad := ok
	bad.PrivPassword = "not-the-priv-key"
	if _, err := read(bad); err == nil {
		t.Error("a wrong privacy key read the device")
	}
}

func TestProfileErrorsNameTheFieldAndWhatToDo(t *testing.T) {
	for _, c := range []struct{ profile, want string }{
		{"name: x\nequipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.6.1, scale: 1, colour: red}]", "field colour not found"},
		{"name: x\nequipment_type: rack_pdu\nreadings: [{reading: watts, oid: 1.3.6.1, scale: 1}]", `reading "watts" is not one of`},
		{"name: x\nequipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.six, scale: 1}]", "is not dotted numbers"},
		{"name: x\nequipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.6.1}]", "scale must be a positive number"},
		{"name: x\nequipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.6.1, scale: 1, walk: true, index: \"#.x\"}]", "each arc is #"},
		{"equipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.6.1, scale: 1}]", "name is required"},
	} {
		_, err := ParseProfile([]byte(c.profile), "my.yml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "my.yml: ") {
			t.Errorf("%q: err %v, want one naming the file and containing %q", c.profile, err, c.want)
		}
	}
	if _, err := ShippedProfile("apc-rpdu3"); err == nil || !strings.Contains(err.Error(), "apc-rpdu2") {
		t.Errorf("unknown profile: %v, want the list of shipped ones", err)
	}
}
