package procstat

import (
	"os"
	"testing"
)

// This process has spent CPU and holds memory: the readers find both, and
// its peak RSS is at least its RSS now.
func TestReadsThisProcess(t *testing.T) {
	pid := os.Getpid()
	busy := 0
	for i := range 300_000_000 {
		busy += i
	}
	_ = busy
	cpu, err := CPUTime(pid)
	if err != nil || cpu <= 0 {
		t.Errorf("CPU time %v, %v", cpu, err)
	}
	rss, err1 := StatusKiB(pid, "VmRSS")
	hwm, err2 := StatusKiB(pid, "VmHWM")
	anon, err3 := AnonKiB(pid)
	if err1 != nil || err2 != nil || err3 != nil || rss <= 0 || hwm < rss || anon <= 0 || anon > rss {
		t.Errorf("rss %d, hwm %d, anon %d KiB: %v %v %v", rss, hwm, anon, err1, err2, err3)
	}
	if _, err := StatusKiB(pid, "NoSuchField"); err == nil {
		t.Error("a missing field read as a size")
	}
}
