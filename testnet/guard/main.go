// Command guard runs one testnet process (a peer daemon, the shaper) so
// that it cannot outlive its testnet:
//
//	guard -lease FILE [-pidfile FILE] [-exitfile FILE] -- COMMAND ARGS...
//
// It makes itself a process-group leader (testnet.sh stops a node by its
// group) and starts COMMAND in that group; on Linux the kernel SIGKILLs
// COMMAND if the guard dies. It forwards SIGTERM and SIGINT to COMMAND and
// exits as COMMAND exits. Every half second it checks the lease: FILE must
// still exist with the text it had at start, and the owner process it may
// name ("owner PID" on its second line, e.g. a Go test) must still run.
// When the lease is lost (testnet.sh down, the testnet dir removed, the
// test process gone) it stops COMMAND: SIGTERM, then SIGKILL after 5 s.
//
// -pidfile gets COMMAND's pid once it runs; -exitfile how it ended.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	leaseCheck = 500 * time.Millisecond
	stopGrace  = 5 * time.Second
)

func main() {
	// The kernel sends the parent-death signal when the thread that
	// started the child exits: keep main on one thread for good.
	runtime.LockOSThread()
	lease := flag.String("lease", "", "lease `FILE`: the command is stopped once it is gone or changed")
	pidfile := flag.String("pidfile", "", "write the command's pid to `FILE`")
	exitfile := flag.String("exitfile", "", "write how the command ended to `FILE`")
	flag.Parse()
	if *lease == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: guard -lease FILE [-pidfile FILE] [-exitfile FILE] -- COMMAND ARGS...")
		os.Exit(2)
	}
	code, err := run(*lease, *pidfile, *exitfile, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "guard:", err)
	}
	os.Exit(code)
}

func run(leasePath, pidfile, exitfile string, argv []string) (int, error) {
	l, err := readLease(leasePath)
	if err != nil {
		return 1, err
	}
	if !l.ownerAlive() {
		return 1, fmt.Errorf("lease %s: owner %d is gone", leasePath, l.owner)
	}
	// Fails only if already a group leader, which is fine too.
	_, _ = syscall.Setsid()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return 1, err
	}
	if pidfile != "" {
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 1, err
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(leaseCheck)
	defer tick.Stop()
	var killAt <-chan time.Time
	stop := func(why string) {
		if killAt == nil {
			fmt.Fprintf(os.Stderr, "guard: %s: stopping pid %d\n", why, cmd.Process.Pid)
			cmd.Process.Signal(syscall.SIGTERM)
			killAt = time.After(stopGrace)
		}
	}
	for {
		select {
		case err := <-exited:
			how := describeExit(err)
			if exitfile != "" {
				os.WriteFile(exitfile, []byte(how+"\n"), 0o644)
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if c := ee.ExitCode(); c >= 0 {
					return c, nil
				}
				return 128 + int(ee.Sys().(syscall.WaitStatus).Signal()), nil
			}
			if err != nil {
				return 1, err
			}
			return 0, nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue // a closed terminal is no reason to stop
			}
			stop("got " + s.String())
		case <-tick.C:
			if now, err := readLease(leasePath); err != nil || now.text != l.text {
				stop("the testnet's lease " + leasePath + " is gone")
			} else if !l.ownerAlive() {
				stop(fmt.Sprintf("the testnet's owner, pid %d, is gone", l.owner))
			}
		case <-killAt:
			fmt.Fprintf(os.Stderr, "guard: pid %d still running after %v: SIGKILL\n", cmd.Process.Pid, stopGrace)
			cmd.Process.Kill()
		}
	}
}

// lease is the lease file as read at start.
type lease struct {
	text       string
	owner      int    // 0: none
	ownerStart string // the owner's start time, where the system tells it
}

func readLease(path string) (lease, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return lease{}, fmt.Errorf("lease: %w", err)
	}
	l := lease{text: string(b)}
	for _, line := range strings.Split(l.text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "owner" {
			if l.owner, err = strconv.Atoi(f[1]); err != nil || l.owner <= 0 {
				return lease{}, fmt.Errorf("lease %s: bad owner line %q", path, line)
			}
			l.ownerStart = startTime(l.owner)
		}
	}
	return l, nil
}

// ownerAlive: the owner runs, and is the same process (a reused pid has
// another start time).
func (l lease) ownerAlive() bool {
	if l.owner == 0 {
		return true
	}
	if err := syscall.Kill(l.owner, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return startTime(l.owner) == l.ownerStart
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "exit 0"
}
