package collector

import (
	"os"
	"path/filepath"
	"strings"
)

// BootID names the host's current boot: the first eight hex digits of
// <procfs>/sys/kernel/random/boot_id, "" when it cannot be read. Counters
// that restart with a boot (RAPL, NVML's since-driver-load energy) take it
// as their epoch.
func BootID(procfs string) string {
	if procfs == "" {
		procfs = "/proc"
	}
	raw, err := os.ReadFile(filepath.Join(procfs, "sys", "kernel", "random", "boot_id"))
	if err != nil {
		return ""
	}
	id := strings.ReplaceAll(strings.TrimSpace(string(raw)), "-", "")
	if len(id) < 8 {
		return ""
	}
	return id[:8]
}
