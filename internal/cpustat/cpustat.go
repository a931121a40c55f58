// Package cpustat reads how much CPU this process has used, for benchmarks
// and the testnet's tools to report per byte or per run. It imports nothing
// of this module, so that peer's benchmarks and the tools can share it.
package cpustat

import (
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
