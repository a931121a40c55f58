package main

// End-to-end tests: the real `peer` binary, daemons as separate processes
// on loopback TCP, driven only through the CLI as a user or script would.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chordshare/peer/api"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// peerBinary builds cmd/peer once per test run.
func peerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "peer-e2e-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "peer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// testEnv keeps the tests off the user's repo: no $PEER_REPO, and a HOME of
// their own.
func testEnv(t *testing.T) []string {
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, api.RepoEnv+"=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home)
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a daemon process.
type proc struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{} // closed when it exited
	err    error         // its exit, once done
}

// startDaemon starts `peer daemon --repo repo args...` and kills it when the
// test ends, whatever happened.
func startDaemon(t *testing.T, env []string, repo string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(peerBinary(t), append([]string{"daemon", "--repo", repo}, args...)...)
	cmd.Env = env
	dieWithTest(cmd)
	p := &proc{cmd: cmd, output: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("daemon on %s said:\n%s", repo, p.output.String())
		}
	})
	return p
}

// exited waits for the process to end, up to d.
func (p *proc) exited(d time.Duration) (exitCode int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// peerCmd runs a client command to completion.
func peerCmd(t *testing.T, env []string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	return peerCmdIn(t, env, "", args...)
}

// peerCmdIn runs a client command in directory dir ("" for the test's).
func peerCmdIn(t *testing.T, env []string, dir string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, peerBinary(t), args...)
	cmd.Env = env
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("peer %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// poll calls f until it returns true or the deadline passes, then fails
// with what f said last.
func poll(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; last: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus waits until the daemon of repo answers and returns its status.
func waitStatus(t *testing.T, env []string, p *proc, repo string) api.Status {
	t.Helper()
	var s api.Status
	poll(t, 20*time.Second, "daemon on "+repo+" answers peer status", func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("daemon on %s exited: %v\n%s", repo, p.err, p.output.String())
		default:
		}
		out, errs, code := peerCmd(t, env, "status", "--repo", repo, "--json")
		if code != 0 {
			return false, errs
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("peer status --json: %v\n%s", err, out)
		}
		return true, ""
	})
	return s
}

func ring(t *testing.T, env []string, repo string) (api.Ring, string) {
	t.Helper()
	out, errs, code := peerCmd(t, env, "ring", "--repo", repo, "--json")
	var r api.Ring
	if code != 0 {
		return r, errs
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("peer ring --json: %v\n%s", err, out)
	}
	return r, out
}

// repoDir is a fresh repo path short enough for the API socket.
func repoDir(t *testing.T, name string) string {
	return filepath.Join(shortTempDir(t), name)
}

func TestE2ETwoDaemonsFormARing(t *testing.T) {
	env := testEnv(t)
	repoA, repoB := repoDir(t, "a"), repoDir(t, "b")
	loopback := []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--capacity", "1"}

	a := startDaemon(t, env, repoA, loopback...)
	sa := waitStatus(t, env, a, repoA)
	if sa.ID == "" || len(sa.Addrs) == 0 {
		t.Fatalf("status of A lacks id or addrs: %+v", sa)
	}
	for _, addr := range sa.Addrs {
		if !strings.HasPrefix(addr, "/ip4/127.0.0.1/tcp/") || !strings.HasSuffix(addr, "/p2p/"+sa.ID) {
			t.Errorf("A's address %s: want loopback TCP ending in /p2p/<id>", addr)
		}
	}
	if !strings.Contains(a.output.String(), "listening on "+sa.Addrs[0]+"\n") {
		t.Errorf("daemon did not print its address on stderr:\n%s", a.output.String())
	}

	b := startDaemon(t, env, repoB, append(loopback, "--bootstrap", sa.Addrs[0])...)
	sb := waitStatus(t, env, b, repoB)
	if sb.ID == sa.ID {
		t.Fatal("two repos share one identity")
	}

	// Each is the other's successor (capacity 1: one vnode each) once
	// stabilization has run on both.
	isSuccessorOf := func(repo, self, other string) func() (bool, string) {
		return func() (bool, string) {
			r, raw := ring(t, env, repo)
			if r.ID != self || len(r.Vnodes) != 1 {
				return false, raw
			}
			v := r.Vnodes[0]
			if len(v.Successors) == 0 || v.Successors[0].Peer != other {
				return false, raw
			}
			return true, ""
		}
	}
	poll(t, 30*time.Second, "B is A's successor", isSuccessorOf(repoA, sa.ID, sb.ID))
	poll(t, 30*time.Second, "A is B's successor", isSuccessorOf(repoB, sb.ID, sa.ID))

	// A second daemon on A's repo refuses with one line naming A's pid...
	_, errs, code := peerCmd(t, env, append([]string{"daemon", "--repo", repoA}, loopback...)...)
	want := fmt.Sprintf("peer: repo %s is in use by another daemon (pid %d)\n", repoA, a.cmd.Process.Pid)
	if code != 1 || errs != want {
		t.Errorf("second daemon on A's repo: exit %d, stderr %q; want exit 1 and %q", code, errs, want)
	}
	// ...and leaves A serving.
	if _, errs, code := peerCmd(t, env, "status", "--repo", repoA); code != 0 {
		t.Errorf("A stopped answering after the refused second daemon: %s", errs)
	}
}

func TestE2EStopAndRestart(t *testing.T) {
	env := testEnv(t)
	repo := repoDir(t, "r")
	args := []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--capacity", "2"}

	// SIGTERM: a clean stop, exit 0, the socket removed.
	p := startDaemon(t, env, repo, args...)
	first := waitStatus(t, env, p, repo)
	if len(first.Positions) != 2 || first.Capacity != 2 {
		t.Errorf("status = %+v, want 2 vnodes", first)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := p.exited(15 * time.Second); !ok || code != 0 {
		t.Fatalf("after SIGTERM: exited %v, code %d; want a clean exit 0", ok, code)
	}
	if _, err := os.Lstat(filepath.Join(repo, api.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
	wantNoDaemon := "peer: no daemon running on repo " + repo + " (start one with: peer daemon --repo " + repo + ")\n"
	if _, errs, code := peerCmd(t, env, "status", "--repo", repo); code != 1 || errs != wantNoDaemon {
		t.Errorf("status after stop: exit %d, stderr %q; want %q", code, errs, wantNoDaemon)
	}

	// SIGKILL leaves a stale socket: clients still say no daemon runs, and
	// the next daemon replaces it and keeps the identity.
	p = startDaemon(t, env, repo, args...)
	if s := waitStatus(t, env, p, repo); s.ID != first.ID {
		t.Errorf("restart changed the peer ID: %s, then %s", first.ID, s.ID)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.exited(10 * time.Second); !ok {
		t.Fatal("daemon survived SIGKILL")
	}
	if _, err := os.Lstat(filepath.Join(repo, api.SocketName)); err != nil {
		t.Fatalf("expected a stale socket after SIGKILL: %v", err)
	}
	if _, errs, code := peerCmd(t, env, "ring", "--repo", repo); code != 1 || errs != wantNoDaemon {
		t.Errorf("ring with a stale socket: exit %d, stderr %q; want %q", code, errs, wantNoDaemon)
	}
	p = startDaemon(t, env, repo, args...)
	if s := waitStatus(t, env, p, repo); s.ID != first.ID {
		t.Errorf("restart after SIGKILL changed the peer ID: %s, then %s", first.ID, s.ID)
	}
}

func TestE2EStatusWithoutDaemon(t *testing.T) {
	env := testEnv(t)
	repo := repoDir(t, "none")
	out, errs, code := peerCmd(t, env, "status", "--repo", repo)
	want := "peer: no daemon running on repo " + repo + " (start one with: peer daemon --repo " + repo + ")\n"
	if code != 1 || out != "" || errs != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, want)
	}
	if _, err := os.Stat(repo); !errors.Is(err, os.ErrNotExist) {
		t.Error("a client command created the repo")
	}
}
