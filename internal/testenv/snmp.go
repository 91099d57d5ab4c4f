package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// SNMPAgent is a real SNMP agent the test started on a loopback UDP port.
type SNMPAgent struct {
	Addr string // 127.0.0.1:port
	Proc *Process
}

const snmpInstall = "apt-get install -y snmpsim snmpd"

// StartSNMPSim runs Debian's snmpsimd serving every .snmprec file in dir:
// the community is the file's name without .snmprec. It returns once
// community answers a GET of sysDescr or sysUpTime.
func StartSNMPSim(t testing.TB, dir, community string) *SNMPAgent {
	t.Helper()
	bin := Tool(t, "snmpsimd", snmpInstall)
	cache := t.TempDir()
	// snmpsimd drops root for nobody, who must read the data and write
	// the index it builds.
	for _, d := range []string{filepath.Dir(dir), dir, filepath.Dir(cache), cache} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeUDP(t)
	args := []string{"--data-dir=" + dir, "--cache-dir=" + cache, "--agent-udpv4-endpoint=" + addr, "--logging-method=stderr"}
	if os.Geteuid() == 0 {
		args = append(args, "--process-user=nobody", "--process-group=nogroup")
	}
	a := &SNMPAgent{Addr: addr, Proc: StartProcess(t, bin, args...)}
	a.waitV2c(t, community)
	return a
}

// SNMPv3User is the one user StartSNMPD creates, at authPriv.
type SNMPv3User struct {
	Name, AuthProto, AuthKey, PrivProto, PrivKey string
}

// StartSNMPD runs Debian's snmpd with one v3 user (authPriv only) and
// the given OIDs served as fixed integers (net-snmp's override), for
// tests of SNMP v3 security against a real agent.
func StartSNMPD(t testing.TB, user SNMPv3User, integers map[string]int64) *SNMPAgent {
	t.Helper()
	bin := Tool(t, "snmpd", snmpInstall)
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "createUser %s %s %q %s %q\nrouser %s authPriv\n", user.Name, user.AuthProto, user.AuthKey, user.PrivProto, user.PrivKey, user.Name)
	for oid, v := range integers {
		fmt.Fprintf(&conf, "override %s integer %d\n", strings.TrimPrefix(oid, "."), v)
	}
	file := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(file, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeUDP(t)
	// -C: only this file; -f: in the foreground; -Lo: log to stdout.
	p := StartProcessEnv(t, []string{"SNMP_PERSISTENT_DIR=" + filepath.Join(dir, "persist"), "MIBS="}, bin,
		"-f", "-Lo", "-C", "-c", file, "-p", filepath.Join(dir, "pid"), "udp:"+addr)
	a := &SNMPAgent{Addr: addr, Proc: p}
	a.wait(t, &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv,
		SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: user.Name,
			AuthenticationProtocol:   map[string]gosnmp.SnmpV3AuthProtocol{"SHA": gosnmp.SHA, "SHA256": gosnmp.SHA256, "MD5": gosnmp.MD5}[user.AuthProto],
			AuthenticationPassphrase: user.AuthKey,
			PrivacyProtocol:          map[string]gosnmp.SnmpV3PrivProtocol{"AES": gosnmp.AES, "DES": gosnmp.DES}[user.PrivProto],
			PrivacyPassphrase:        user.PrivKey}})
	return a
}

func (a *SNMPAgent) waitV2c(t testing.TB, community string) {
	t.Helper()
	a.wait(t, &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: community})
}

// wait polls the agent with c until it answers, failing the test after 30 s.
func (a *SNMPAgent) wait(t testing.TB, c *gosnmp.GoSNMP) {
	t.Helper()
	host, port, _ := net.SplitHostPort(a.Addr)
	n, _ := strconv.Atoi(port)
	c.Target, c.Port, c.Timeout, c.Retries = host, uint16(n), 200*time.Millisecond, 0
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	defer c.Conn.Close()
	WaitFor(t, 30*time.Second, "the SNMP agent at "+a.Addr+" to answer", func() bool {
		select {
		case err := <-a.Proc.done:
			a.Proc.done <- err
			t.Fatalf("the SNMP agent exited before answering: %v\n%s", err, a.Proc.Logs())
		default:
		}
		pkt, err := c.Get([]string{".1.3.6.1.2.1.1.3.0"})
		return err == nil && pkt != nil
	})
}

// freeUDP returns a loopback UDP address no other test of this binary was given.
func freeUDP(t testing.TB) string {
	t.Helper()
	for {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := c.LocalAddr().String()
		c.Close()
		if _, taken := handedOut.LoadOrStore("udp/"+addr, true); !taken {
			return addr
		}
	}
}
