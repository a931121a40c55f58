package timerslack

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Widen gives every thread of this process a timer slack of slack. A
// thread takes its slack from the thread that creates it, and the Go
// runtime has started its threads before main runs, so Widen sets the
// slack on one thread and executes the program again from there
// (/proc/self/exe, the same arguments and environment, the same process
// ID): the new image's threads all inherit it. It returns nil at once when
// the slack is already slack, as it is after that exec; on success it
// does not return. An error means nothing changed.
func Widen(slack time.Duration) error {
	want := uintptr(slack.Nanoseconds())
	now, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	if uintptr(now) == want {
		restoreName()
		return nil
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
	err = syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(now), 0, 0, 0)
	return fmt.Errorf("timer slack: exec /proc/self/exe: %w", err)
}

// restoreName gives the process back the name (comm) an exec of
// /proc/self/exe replaced with "exe", the one ps, top, pgrep and pidof
// show: the base of its argv[0], as the exec that started it gave it. Only
// the thread group's leader is renamed; threads that the runtime started
// before main keep "exe". Best effort: a name is not worth failing a
// daemon for.
func restoreName() {
	const comm = "/proc/self/comm"
	b, err := os.ReadFile(comm)
	if err != nil || strings.TrimSpace(string(b)) != "exe" || len(os.Args) == 0 {
		return
	}
	_ = os.WriteFile(comm, []byte(filepath.Base(os.Args[0])), 0)
}
