package cpustat

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestProcessTime: the CPU time grows while this process computes (a reader
// that fails reports 0 and never grows).
func TestProcessTime(t *testing.T) {
	t0 := ProcessTime()
	for end := time.Now().Add(2 * time.Second); ProcessTime() <= t0 && time.Now().Before(end); {
	}
	if t1 := ProcessTime(); t1 <= t0 {
		t.Fatalf("ProcessTime stayed at %v through 2 s of computing", t1)
	}
}

// TestLoadAvg: where the kernel has /proc/loadavg, LoadAvg is its first
// field, a number.
func TestLoadAvg(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		t.Skip("no /proc/loadavg here")
	}
	l := LoadAvg()
	if _, err := strconv.ParseFloat(l, 64); err != nil {
		t.Fatalf("LoadAvg() = %q; want the 1-minute load average", l)
	}
}
