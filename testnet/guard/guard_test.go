package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guardBinary builds the guard into a temp dir.
func guardBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "guard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startGuarded runs `guard -lease lease -pidfile ... -- sleep 60` and
// returns the guard's command and the sleeper's pid.
func startGuarded(t *testing.T, bin, lease string) (*exec.Cmd, int) {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "pid")
	g := exec.Command(bin, "-lease", lease, "-pidfile", pidfile, "--", "sleep", "60")
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Process.Kill(); g.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidfile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			return g, pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the guard wrote no pid file")
		}
	}
}

// gone waits up to d for pid to stop running (a zombie counts as gone:
// it has exited).
func gone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return true
		}
	}
	return false
}

func TestGuardStopsCommandWhenLeaseGoes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("checks processes through /proc")
	}
	bin := guardBinary(t)
	for _, c := range []struct {
		name string
		lose func(lease string, owner *exec.Cmd)
	}{
		{"lease removed", func(lease string, _ *exec.Cmd) { os.Remove(lease) }},
		{"lease replaced", func(lease string, _ *exec.Cmd) { os.WriteFile(lease, []byte("another testnet\n"), 0o644) }},
		{"owner exited", func(_ string, owner *exec.Cmd) { owner.Process.Kill(); owner.Wait() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			owner := exec.Command("sleep", "60")
			if err := owner.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { owner.Process.Kill(); owner.Wait() })
			lease := filepath.Join(t.TempDir(), "lease")
			if err := os.WriteFile(lease, []byte("testnet x\nowner "+strconv.Itoa(owner.Process.Pid)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			g, pid := startGuarded(t, bin, lease)
			if gone(pid, 700*time.Millisecond) {
				t.Fatal("the command stopped while the lease held")
			}
			c.lose(lease, owner)
			if !gone(pid, 3*time.Second) {
				t.Fatal("the command still runs 3 s after the lease was lost")
			}
			if err := g.Wait(); err == nil {
				t.Error("the guard exited 0 for a command stopped by a signal")
			}
		})
	}
}

func TestGuardDeathKillsCommand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	lease := filepath.Join(t.TempDir(), "lease")
	if err := os.WriteFile(lease, []byte("testnet x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, pid := startGuarded(t, guardBinary(t), lease)
	g.Process.Kill()
	g.Wait()
	if !gone(pid, 3*time.Second) {
		t.Fatal("the command outlived its SIGKILLed guard")
	}
}
