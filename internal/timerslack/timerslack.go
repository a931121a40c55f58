// Package timerslack widens the timer slack of a process's threads: how
// late the kernel may end their sleeps and timed waits so that it can wake
// several at once.
//
// A busy Go process pays for a sleep it does not choose: the runtime's
// monitor thread (sysmon) sleeps 20 µs at a time while goroutines sit in
// long system calls, as a daemon's block puts do (a write with RWF_SYNC, a
// directory fsync), and each sleep is a timer and two context switches.
// On a 2-core VM, sharing 256 MiB across 8 daemons, those sleeps were 12%
// of all the daemons' CPU (perf, testnet/xferbench). A slack of a
// millisecond lets the kernel end them up to a millisecond late, together
// with other wakeups: the monitor takes a P back from a system call, and a
// timer fires, that much later at worst. In xferbench's A/B of the slack
// alone a share cost 0.86x the CPU, a fetch 0.91x the CPU at 0.95x the
// rate, inside the runs' swing (testnet/xferbench/README.md, session 11).
package timerslack

import "time"

// Daemon is the timer slack a peer daemon runs with.
const Daemon = time.Millisecond
