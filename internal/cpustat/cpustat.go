// Package cpustat reads how much CPU this process (or the calling thread)
// has used and how loaded the machine is, for benchmarks and the testnet's
// tools to report beside their figures. It imports nothing of this
// module, so that peer's benchmarks and the tools can share it.
package cpustat

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// ProcessTime is the CPU time this process has used, user and system
// (getrusage RUSAGE_SELF), or 0 if the kernel does not say.
func ProcessTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAvg is the machine's 1-minute load average from /proc/loadavg, or
// "unknown" where there is none to read: other processes on the machine
// slow a measurement down.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
