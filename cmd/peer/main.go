// Command peer runs a chordshare peer and talks to it: `peer daemon` runs
// one, the other commands are clients of a running daemon's local API.
// Run `peer help` for the list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"chordshare/internal/timerslack"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == daemonCmd.name {
		// A daemon's threads sleep with a wider timer slack (this execs
		// the program again, once, with it): see internal/timerslack.
		if err := timerslack.Widen(timerslack.Daemon); err != nil {
			fmt.Fprintf(os.Stderr, "peer: %v; running without it\n", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, the default handling returns: a second Ctrl-C
	// kills a daemon that is slow to stop.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// errUsage: the command line was wrong and the usage has been printed.
var errUsage = errors.New("usage")

// errHelp: help was asked for (-h) and printed.
var errHelp = errors.New("help")

// exitCode prints err as one line and picks the exit status: 0 on success
// and after -h, 2 for a wrong command line, 1 for everything else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "peer: %s\n", oneLine(err.Error()))
	return 1
}

// oneLine folds a multi-line message (libp2p's dial errors list every
// address tried on a line of its own) into one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
