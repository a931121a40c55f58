package timerslack

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Widen gives every thread of this process a timer slack of slack. A
// thread takes its slack from the thread that creates it, and the Go
// runtime has started its threads before main runs, so Widen sets the
// slack on one thread and executes the program again from there (its
// own file, as os.Executable finds it, so that ps and pgrep still see its
// name; the same arguments, environment and process ID): the new image's
// threads all inherit it. It returns nil at once when
// the slack is already slack, as it is after that exec; on success it
// does not return. An error means nothing changed.
func Widen(slack time.Duration) error {
	want := uintptr(slack.Nanoseconds())
	now, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	if uintptr(now) == want {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	// Exec starts the new image from the calling thread, with its slack.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, want, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	// Exec only once the slack reads back: a kernel that took it but
	// reports another value would otherwise have the new image exec again.
	if got, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err != nil || uintptr(got) != want {
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(now), 0, 0, 0)
		return fmt.Errorf("timer slack: set %v, reads back %d ns (%v)", slack, got, err)
	}
	err = syscall.Exec(exe, os.Args, os.Environ())
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(now), 0, 0, 0)
	return fmt.Errorf("timer slack: exec %s: %w", exe, err)
}
