package main

import (
	"net"
	"time"

	"github.com/joules-energy/joules/internal/procstat"
)

// cpuTime is the process's user plus system time (0 once it is gone).
func cpuTime(pid int) time.Duration {
	d, _ := procstat.CPUTime(pid)
	return d
}

// mem is a process's resident memory in KiB: all of it, its anonymous
// pages (what the process allocated) and its file-backed pages (mostly
// the binary, shared and reclaimable).
type mem struct{ rss, anon, file int64 }

// memory is the process's memory now and its peak RSS (VmHWM).
func memory(pid int) (mem, int64, error) {
	var m mem
	var err error
	if m.rss, err = procstat.StatusKiB(pid, "VmRSS"); err != nil {
		return m, 0, err
	}
	m.file, _ = procstat.StatusKiB(pid, "RssFile")
	if m.anon, err = procstat.AnonKiB(pid); err != nil {
		return m, 0, err
	}
	peak, err := procstat.StatusKiB(pid, "VmHWM")
	return m, peak, err
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func freeAddr(network string) (string, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.LocalAddr().String(), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
