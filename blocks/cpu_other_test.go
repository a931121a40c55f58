//go:build !linux

package blocks

import "time"

// threadCPU is 0 where there is no per-thread CPU time (RUSAGE_THREAD):
// the benchmarks then report no CPU.
func threadCPU() time.Duration { return 0 }
