package timerslack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "TIMERSLACK_TEST_HELPER"

// TestWidenReachesEveryThread runs this test binary as a helper that
// widens its slack: it must come back in the same process, with every
// thread (the runtime's own included) at the new slack, after one exec;
// a second Widen must not exec again; and it keeps its name (not "exe").
func TestWidenReachesEveryThread(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		widenHelper()
		return
	}
	starts := filepath.Join(t.TempDir(), "starts")
	helper := func(ownUserNS bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWidenReachesEveryThread$")
		cmd.Env = append(os.Environ(), helperEnv+"="+starts)
		if ownUserNS {
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags:  syscall.CLONE_NEWUSER,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			}
		}
		return cmd
	}
	// Reading another thread's timerslack_ns takes CAP_SYS_NICE over it:
	// a helper that is not root gets it in a user namespace of its own,
	// where the system allows one.
	cmd := helper(os.Geteuid() != 0)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.Process == nil && cmd.SysProcAttr != nil {
		t.Logf("no user namespace (%v): only the helper's own thread's slack can be read", err)
		cmd = helper(false)
		out, err = cmd.CombinedOutput()
	}
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var pid, unreadable int
	var comm string
	var slacks []int64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "pid "); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "slack "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			slacks = append(slacks, n)
		}
		if line == "unreadable" {
			unreadable++
		}
		if v, ok := strings.CutPrefix(line, "comm "); ok {
			comm = v
		}
	}
	// The kernel keeps 15 bytes of a name.
	if want := filepath.Base(os.Args[0]); comm != want[:min(len(want), 15)] {
		t.Errorf("helper runs as %q, want %q (as before its exec)\n%s", comm, want, out)
	}
	if pid != cmd.Process.Pid {
		t.Errorf("helper ended as pid %d, started as %d\n%s", pid, cmd.Process.Pid, out)
	}
	switch {
	case len(slacks) == 0:
		t.Fatalf("helper read no thread's slack\n%s", out)
	case unreadable > 0 && (os.Geteuid() == 0 || cmd.SysProcAttr != nil):
		t.Errorf("helper could not read %d threads' slack with CAP_SYS_NICE\n%s", unreadable, out)
	case len(slacks)+unreadable < 3:
		t.Fatalf("helper reported %d threads, want the runtime's several\n%s", len(slacks)+unreadable, out)
	}
	for _, s := range slacks {
		if s != testSlack.Nanoseconds() {
			t.Errorf("a thread's slack is %d ns, want %d\n%s", s, testSlack.Nanoseconds(), out)
		}
	}
	b, err := os.ReadFile(starts)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 2 {
		t.Errorf("the helper started %d times, want 2 (one exec)", n)
	}
}

// testSlack is not Daemon, nor the kernel's 50 µs default: the helper
// must exec to get it.
const testSlack = 3 * time.Millisecond

func widenHelper() {
	f, err := os.OpenFile(os.Getenv(helperEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		_, err = fmt.Fprintln(f, "start")
		f.Close()
	}
	for range 2 {
		if err == nil {
			err = Widen(testSlack)
		}
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", os.Getpid())
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("comm", strings.TrimSpace(string(b)))
	// Only a thread group's leader lists timerslack_ns; /proc/TID has
	// every thread's, which a thread without CAP_SYS_NICE can read for
	// itself only.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if errors.Is(err, fs.ErrPermission) {
			fmt.Println("unreadable")
			continue
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("slack", strings.TrimSpace(string(b)))
	}
	os.Exit(0)
}
