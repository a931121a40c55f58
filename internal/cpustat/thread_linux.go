package cpustat

import (
	"time"

	"golang.org/x/sys/unix"
)

// ThreadTime is the CPU time the calling thread has used, user and system
// (getrusage RUSAGE_THREAD), or 0 if the kernel does not say. The caller
// locks its goroutine to the thread for the span it measures.
func ThreadTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
