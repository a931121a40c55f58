package testnet_test

// Tests of testnet.sh: they drive the real script, which builds and runs
// real daemons, as a user would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

// net is one testnet under a test's temp dir.
type net struct {
	t   *testing.T
	dir string
	env []string
}

// newNet prepares a testnet dir whose processes stop when the test ends,
// passes or fails: the cleanup runs `down`, and the lease names this test
// process as the owner, so the guards stop the daemons even if the test
// binary dies before its cleanups run.
func newNet(t *testing.T) *net {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("testnet.sh's process checks and shaped profiles need Linux")
	}
	dir, err := os.MkdirTemp("", "tn") // short: a repo's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	// The script sets PEER_REPO for every peer command, so the user's repo
	// is never touched; HOME stays, for Go's build and module caches.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEER_REPO=") && !strings.HasPrefix(kv, "TESTNET_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TESTNET_DIR="+dir, "TESTNET_OWNER="+strconv.Itoa(os.Getpid()))
	n := &net{t: t, dir: dir, env: env}
	t.Cleanup(func() {
		out, err := n.script(time.Minute, "down")
		if err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
		if left := n.processes(); len(left) > 0 {
			t.Errorf("processes of the testnet left after down: %v", left)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			n.dumpLogs()
		}
		os.RemoveAll(dir)
	})
	return n
}

// script runs testnet.sh ARGS and returns its stdout.
func (n *net) script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./testnet.sh", args...)
	cmd.Env = n.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	n.t.Logf("testnet.sh %s (%v)", strings.Join(args, " "), time.Since(start).Round(10*time.Millisecond))
	if err != nil {
		return stdout.String(), fmt.Errorf("testnet.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (n *net) must(timeout time.Duration, args ...string) string {
	n.t.Helper()
	out, err := n.script(timeout, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// nodeStatus is a node's line in `status --json`.
type nodeStatus struct {
	Node   int      `json:"node"`
	State  string   `json:"state"`
	PID    *int     `json:"pid"`
	ID     string   `json:"id"`
	Addr   string   `json:"addr"`
	RTTms  *float64 `json:"rtt_ms"`
	Rate   *float64 `json:"rate_bps"`
	Blocks *int     `json:"blocks_stored"`
}

func (n *net) status() []nodeStatus {
	n.t.Helper()
	var st struct {
		Nodes []nodeStatus `json:"nodes"`
	}
	out := n.must(30*time.Second, "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		n.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st.Nodes
}

// processes lists the running processes whose command line names the
// testnet's dir: every daemon, guard and shaper of it.
func (n *net) processes() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue // a zombie has exited; its parent has not reaped it yet
		}
		if bytes.Contains(b, []byte(n.dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (n *net) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(n.dir, "*", "log"))
	logs = append(logs, filepath.Join(n.dir, "shaper.log"), filepath.Join(n.dir, "churn.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			n.t.Logf("--- %s:\n%s", l, b)
		}
	}
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

func randomFile(t *testing.T, size int) (string, []byte) {
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{'t', 'e', 's', 't', 'n', 'e', 't'}).Read(data)
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// fetch fetches cid on node i to a new file and checks its bytes.
func (n *net) fetch(i int, cid string, want []byte) {
	n.t.Helper()
	out := filepath.Join(n.t.TempDir(), "fetched")
	n.must(2*time.Minute, "peer", strconv.Itoa(i), "fetch", cid, "-o", out)
	got, err := os.ReadFile(out)
	if err != nil {
		n.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		n.t.Fatalf("node %d fetched %d bytes that differ from the %d shared", i, len(got), len(want))
	}
}

// TestScript is the scenario through testnet.sh: up 5, share on
// node 1, fetch on node 5, kill two nodes, fetch on a survivor, down:
// identical bytes, and no process left.
func TestScript(t *testing.T) {
	n := newNet(t)
	// 2 vnodes per peer: a 10-vnode ring converges in a few stabilization
	// rounds, which keeps this test short.
	n.must(3*time.Minute, "up", "5", "--capacity", "2")
	st := n.status()
	pids := map[int]int{}
	for _, s := range st {
		if s.State != "up" || s.PID == nil || !alive(*s.PID) {
			t.Fatalf("after up, node %d is %q (pid %v)", s.Node, s.State, s.PID)
		}
		pids[s.Node] = *s.PID
	}

	const size = 3 << 20 // 12 leaves of 256 KiB and a root
	const blocks = size/(256<<10) + 1
	path, data := randomFile(t, size)
	cid := strings.TrimSpace(n.must(time.Minute, "peer", "1", "share", path))
	n.fetch(5, cid, data)

	// A share returns at W = 2 acknowledgements; wait for the third
	// replica of every block. Then kill the sharer and the node, of those
	// whose loss with node 1's still leaves every block a replica, that
	// holds the most blocks; fetch on the first survivor that has not
	// fetched yet.
	var held map[string][]int
	deadline := time.Now().Add(30 * time.Second)
	for {
		held = n.storedBlocks(5)
		full := len(held) == blocks
		for _, nodes := range held {
			full = full && len(nodes) >= 3
		}
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the nodes hold %d distinct blocks (want %d), on %v", len(held), blocks, held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	victim, most := 0, -1
	for v := 2; v <= 5; v++ {
		count, survives := 0, true
		for _, nodes := range held {
			left := 0
			for _, h := range nodes {
				if h == v {
					count++
				}
				if h != 1 && h != v {
					left++
				}
			}
			survives = survives && left > 0
		}
		if survives && count > most {
			victim, most = v, count
		}
	}
	if victim == 0 {
		t.Fatalf("no second node can die with node 1 and leave every block a replica: %v", held)
	}
	for _, i := range []int{1, victim} {
		n.must(30*time.Second, "kill", strconv.Itoa(i))
		if alive(pids[i]) {
			t.Fatalf("node %d (pid %d) runs after kill", i, pids[i])
		}
	}
	fetcher := 0
	for i := 2; i <= 4 && fetcher == 0; i++ {
		if i != victim {
			fetcher = i
		}
	}
	t.Logf("killed nodes 1 and %d (it held %d of the %d blocks); fetching on node %d", victim, most, blocks, fetcher)
	for _, s := range n.status() {
		dead := s.Node == 1 || s.Node == victim
		if dead != (s.State == "killed") {
			t.Errorf("status after the kills: node %d is %q", s.Node, s.State)
		}
	}
	n.must(2*time.Minute, "wait")
	n.fetch(fetcher, cid, data)

	n.must(time.Minute, "down")
	for i, pid := range pids {
		if alive(pid) {
			t.Errorf("node %d (pid %d) runs after down", i, pid)
		}
	}
	if left := n.processes(); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
}

// storedBlocks maps each block file in nodes 1..n's stores (one file per
// block, named by its CID; see package blocks) to the nodes holding it.
func (n *net) storedBlocks(nodes int) map[string][]int {
	held := map[string][]int{}
	for i := 1; i <= nodes; i++ {
		files, _ := filepath.Glob(filepath.Join(n.dir, fmt.Sprintf("node%d", i), "repo", "blocks", "*", "b*"))
		for _, f := range files {
			name := filepath.Base(f)
			held[name] = append(held[name], i)
		}
	}
	return held
}
