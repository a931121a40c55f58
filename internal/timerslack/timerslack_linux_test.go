package timerslack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const helperEnv = "TIMERSLACK_TEST_HELPER"

// TestWidenReachesEveryThread runs this test binary as a helper that
// widens its slack: it must come back in the same process, with every
// thread (the runtime's own included) at the new slack, after one exec;
// a second Widen must not exec again.
func TestWidenReachesEveryThread(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		widenHelper()
		return
	}
	starts := filepath.Join(t.TempDir(), "starts")
	cmd := exec.Command(os.Args[0], "-test.run=^TestWidenReachesEveryThread$")
	cmd.Env = append(os.Environ(), helperEnv+"="+starts)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var pid int
	var slacks []int64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "pid "); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "slack "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			slacks = append(slacks, n)
		}
	}
	if pid != cmd.Process.Pid {
		t.Errorf("helper ended as pid %d, started as %d\n%s", pid, cmd.Process.Pid, out)
	}
	if len(slacks) < 3 {
		t.Fatalf("helper reported %d threads, want the runtime's several\n%s", len(slacks), out)
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
	// Only a thread group's leader lists timerslack_ns; /proc/TID has
	// every thread's.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("slack", strings.TrimSpace(string(b)))
	}
	os.Exit(0)
}
