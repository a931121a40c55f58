package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every child runs in a process group of its own so that one kill reaches
// whatever it started, and so that a Ctrl-C on the terminal reaches only
// this program, which then stops the children in order (daemons first,
// then the temp dir) instead of racing them.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A harness killed with SIGKILL runs no cleanup: the kernel then
		// kills the children, so no daemon outlives it.
		Pdeathsig: syscall.SIGKILL,
	}
}

// command makes a short-lived child that ctx's end kills, group and all.
func command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	ownGroup(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// output runs cmd and returns its stdout; a failure carries the command
// and the last line of its stderr, which is where `peer` explains itself.
func output(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, lastLine(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// daemon is a long-running child: a `peer daemon` (or the iperf3 server).
type daemon struct {
	name string
	log  string // its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	err  error         // its exit, once done
}

func startDaemon(name, logPath string, env []string, bin string, args ...string) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited says how the daemon ended, if it did.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited (%v); the end of its log %s:\n%s", d.name, d.err, d.log, tail(d.log, 15))
	default:
		return nil
	}
}

// stop asks the daemon's group to end (SIGTERM, a graceful leave), and
// kills it if it has not after grace.
func (d *daemon) stop(grace time.Duration) {
	_ = syscall.Kill(-d.pid(), syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = syscall.Kill(-d.pid(), syscall.SIGKILL)
		<-d.done
	}
	// The daemon itself is gone; anything left in its group is not.
	_ = syscall.Kill(-d.pid(), syscall.SIGKILL)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// memory is what /proc/PID/status says of a process's resident set.
type memory struct {
	RSS  int64 // VmRSS, bytes
	Peak int64 // VmHWM, bytes: the highest RSS since start or the last reset
}

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	return parseStatus(string(b))
}

// parseStatus reads VmRSS and VmHWM from the text of /proc/PID/status,
// where the kernel writes them in kB (KiB).
func parseStatus(s string) (memory, error) {
	var m memory
	var haveRSS, havePeak bool
	for _, line := range strings.Split(s, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc status line %q: want \"N kB\"", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc status line %q: %w", line, err)
		}
		if key == "VmRSS" {
			m.RSS, haveRSS = kb<<10, true
		} else {
			m.Peak, havePeak = kb<<10, true
		}
	}
	if !haveRSS || !havePeak {
		return m, errors.New("/proc status has no VmRSS or VmHWM")
	}
	return m, nil
}

// resetPeak sets the process's VmHWM to its current RSS (Linux 4.0+), so
// that the next reading is the peak of the phase that follows, not of the
// daemon's whole life.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports (the kernel fixes it for user space, whatever
// its internal HZ).
const clockTick = 100

// cpuSeconds is the user+system CPU time a process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime and stime (fields 14 and 15) from /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from its closing parenthesis.
func parseStat(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no command name", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %q: too few fields", s)
	}
	var ticks float64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: utime/stime %q: %w", v, err)
		}
		ticks += float64(n)
	}
	return ticks / clockTick, nil
}

// machineCPU is the first line of /proc/stat: ticks since boot summed over
// all CPUs.
type machineCPU struct {
	Total, Idle, IOWait, Steal float64
}

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(string(b))
}

// parseMachineCPU reads "cpu user nice system idle iowait irq softirq
// steal ...". Guest time is already counted in user, so the total stops at
// steal.
func parseMachineCPU(s string) (machineCPU, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	var v [8]float64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: %q: %w", f[i+1], err)
		}
		v[i] = float64(n)
	}
	var m machineCPU
	for _, x := range v {
		m.Total += x
	}
	m.Idle, m.IOWait, m.Steal = v[3], v[4], v[7]
	return m, nil
}

// usage is how the machine's CPUs were spent between two readings, as
// fractions of all CPUs' time.
type usage struct {
	Busy, IOWait, Steal float64
}

func (a machineCPU) until(b machineCPU) usage {
	d := b.Total - a.Total
	if d <= 0 {
		return usage{}
	}
	idle, iowait, steal := b.Idle-a.Idle, b.IOWait-a.IOWait, b.Steal-a.Steal
	return usage{Busy: (d - idle - iowait - steal) / d, IOWait: iowait / d, Steal: steal / d}
}
