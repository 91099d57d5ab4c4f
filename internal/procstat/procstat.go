// Package procstat reads a process's CPU time and memory from /proc, for
// the whole-process benchmarks (scripts/bench-*), which measure the
// processes they start as a user's tools would.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the process's user plus system time (/proc/PID/stat).
func CPUTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the parenthesised command name, which may hold
	// spaces; utime and stime are the 14th and 15th of the line.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, fields[11], fields[12])
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// StatusKiB is a size field of /proc/PID/status ("VmRSS", "VmHWM",
// "RssFile"), in KiB.
func StatusKiB(pid int, field string) (int64, error) {
	return fileKiB(fmt.Sprintf("/proc/%d/status", pid), field)
}

// AnonKiB is the process's resident anonymous memory (what it allocated,
// not its binary's pages), from /proc/PID/smaps_rollup.
func AnonKiB(pid int) (int64, error) {
	return fileKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Anonymous")
}

func fileKiB(file, field string) (int64, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", file, field)
}

// LoadAvg is the machine's 1, 5 and 15 minute load averages, as text.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
