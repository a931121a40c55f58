//go:build !linux

package cpustat

import "time"

// ThreadTime is 0 where there is no per-thread CPU time (RUSAGE_THREAD).
func ThreadTime() time.Duration { return 0 }
