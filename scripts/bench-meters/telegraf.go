package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/joules-energy/joules/snmp"
)

const telegrafVersion = "v1.37.2"

// telegrafBinary returns bin, building Telegraf with only inputs.snmp and
// outputs.discard into it when it is missing and build is set (once:
// several minutes). It is never part of the repository.
func telegrafBinary(bin string, build bool) (string, error) {
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	} else if !build {
		return "", fmt.Errorf("telegraf: %w (-telegraf \"\" leaves the peer out)", err)
	}
	fmt.Fprintf(os.Stderr, "building Telegraf %s with inputs.snmp and outputs.discard into %s (several minutes, once)\n", telegrafVersion, filepath.Dir(bin))
	cmd := exec.Command("go", "install", "-tags", "custom,inputs.snmp,outputs.discard", "github.com/influxdata/telegraf/cmd/telegraf@"+telegrafVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin), "GOFLAGS=")
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building telegraf (-telegraf \"\" leaves the peer out): %w", err)
	}
	return bin, nil
}

// telegrafConfig polls each device with an inputs.snmp of its own (its
// name as alias, so that its errors are told apart), reading what the
// device's profile reads: every column the profile walks as a table field
// (one table per SNMP table), every scalar as a field, OIDs numeric and no
// MIBs loaded. Timeout, retries and GETBULK repetitions are the agent's.
func telegrafConfig(o options, devs []device, logfile string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `[agent]
  interval = %q
  round_interval = true
  collection_jitter = "0s"
  flush_interval = %q
  flush_jitter = "0s"
  metric_batch_size = 1000
  metric_buffer_limit = 10000
  omit_hostname = true
  snmp_translator = "gosmi"
  debug = false
  quiet = false
  logfile = %q
[[outputs.discard]]
`, o.interval, o.interval, logfile)
	for _, d := range devs {
		p, err := snmp.ShippedProfile(d.kind.profile)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, `[[inputs.snmp]]
  alias = %q
  name = %q
  agents = ["udp://%s"]
  version = 2
  community = %q
  timeout = "2s"
  retries = 1
  max_repetitions = 25
  path = []
  agent_host_tag = "source"
`, d.name, strings.ReplaceAll(p.Name, "-", "_"), d.addr, d.kind.recording)
		scalars, tables := telegrafFields(p)
		for _, f := range scalars {
			fmt.Fprintf(&b, "  [[inputs.snmp.field]]\n    name = %q\n    oid = %q\n", f[0], f[1])
		}
		for _, t := range tables {
			fmt.Fprintf(&b, "  [[inputs.snmp.table]]\n    name = %q\n", t.name)
			for _, f := range t.fields {
				fmt.Fprintf(&b, "    [[inputs.snmp.table.field]]\n      name = %q\n      oid = %q\n", f[0], f[1])
			}
		}
	}
	return b.String(), nil
}

type telegrafTable struct {
	name   string
	fields [][2]string // name, OID
}

// telegrafFields are the profile's scalars, and its distinct walked
// columns (the decimal-digit columns included) grouped by their table.
func telegrafFields(p *snmp.Profile) (scalars [][2]string, tables []telegrafTable) {
	byTable := map[string]*telegrafTable{}
	seen := map[string]bool{}
	column := func(name, oid string) {
		oid = strings.TrimPrefix(oid, ".")
		if seen[oid] {
			return
		}
		seen[oid] = true
		parent := oid[:strings.LastIndexByte(oid, '.')]
		t := byTable[parent]
		if t == nil {
			t = &telegrafTable{name: strings.ReplaceAll(p.Name, "-", "_") + "_" + strings.ReplaceAll(parent, ".", "_")}
			byTable[parent] = t
		}
		t.fields = append(t.fields, [2]string{name, oid})
	}
	for _, r := range p.Readings {
		if !r.Walk {
			scalars = append(scalars, [2]string{string(r.Reading), strings.TrimPrefix(r.OID, ".")})
			continue
		}
		column(string(r.Reading), r.OID)
		if r.DecimalsOID != "" {
			column(string(r.Reading)+"_decimal_digits", r.DecimalsOID)
		}
	}
	for _, t := range byTable {
		tables = append(tables, *t)
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].name < tables[j].name })
	return scalars, tables
}

// telegrafCheck runs one Telegraf gather (--test) of one device of each
// kind and counts the rows it read per profile: the peer reads the same
// devices, or the comparison is void.
func telegrafCheck(o options, dir string, devs []device) (map[string]int, error) {
	var one []device
	seen := map[string]bool{}
	for _, d := range devs {
		if !seen[d.kind.profile] {
			seen[d.kind.profile] = true
			one = append(one, d)
		}
	}
	conf, err := telegrafConfig(o, one, "")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "telegraf-test.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	out, err := exec.Command(o.telegraf, "--config", file, "--test").Output()
	if err != nil {
		return nil, fmt.Errorf("telegraf --test: %w", err)
	}
	rows := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		m, ok := strings.CutPrefix(line, "> ")
		if !ok {
			continue
		}
		m, _, _ = strings.Cut(m, ",")
		for profile := range seen {
			if n := strings.ReplaceAll(profile, "-", "_"); m == n || strings.HasPrefix(m, n+"_") {
				rows[profile]++
			}
		}
	}
	for profile := range seen {
		if rows[profile] == 0 {
			return rows, fmt.Errorf("telegraf --test read no rows of %s; its output:\n%s", profile, out)
		}
	}
	return rows, nil
}

// measureTelegraf runs Telegraf polling devs for the warm-up and the
// measured period. Its failed polls are the devices' error lines in its
// log (and collections that overran the interval), one per device and
// interval; it does not say how long a poll took.
func measureTelegraf(o options, dir string, devs []device, sims *sims) (result, error) {
	logfile := filepath.Join(dir, "telegraf.log")
	conf, err := telegrafConfig(o, devs, logfile)
	if err != nil {
		return result{}, err
	}
	confFile := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.Command(o.telegraf, "--config", confFile)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	// Telegraf logs the inputs it loaded once its configuration is read.
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(logfile)
		if strings.Contains(string(raw), "Loaded inputs") {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("telegraf did not start within 30s; its log:\n%s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Until(started.Add(o.warmup)))

	r := result{name: "Telegraf " + telegrafVersion + " inputs.snmp, " + fmt.Sprint(len(devs)) + " PDUs"}
	from := fileSize(logfile)
	cpu0, sim0, start := cpuTime(pid), sims.cpu(), time.Now()
	time.Sleep(o.duration)
	r.window = time.Since(start)
	r.cpu = cpuTime(pid) - cpu0
	r.simCPU = sims.cpu() - sim0
	if r.mem, r.hwm, err = memory(pid); err != nil {
		return r, err
	}
	failed, lines, err := telegrafFailures(logfile, from, fileSize(logfile), o.interval)
	if err != nil {
		return r, err
	}
	r.logLines = lines
	r.polls.expected = len(devs) * int(r.window/o.interval)
	r.polls.total = r.polls.expected
	r.polls.ok = r.polls.total - failed
	return r, nil
}

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// telegrafFailures counts the failed polls in the log between two
// offsets: one per input and interval with an error line, or with a
// collection that overran it.
func telegrafFailures(logfile string, from, to int64, interval time.Duration) (failed, lines int, err error) {
	f, err := os.Open(logfile)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return 0, 0, err
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(f, to-from))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, rest, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(rest, "E! [inputs.snmp::") && !(strings.HasPrefix(rest, "W! [inputs.snmp::") && strings.Contains(rest, "took longer")) {
			continue
		}
		lines++
		input, _, _ := strings.Cut(rest[len("E! [inputs.snmp::"):], "]")
		t, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			continue
		}
		key := input + "@" + t.Truncate(interval).String()
		if !seen[key] {
			seen[key] = true
			failed++
		}
	}
	return failed, lines, sc.Err()
}
