package testnet_test

// Tests of testnet.sh: they drive the real script, which builds and runs
// real daemons, as a user would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/peer/api"
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
	// 1 vnode per peer: a 5-position ring converges in a few stabilization
	// rounds, which keeps this test short.
	n.must(3*time.Minute, "up", "5", "--capacity", "1")
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

	// A graceful stop of another survivor, and a killed node back with
	// its identity.
	stopped := 5
	for stopped == victim || stopped == fetcher {
		stopped--
	}
	n.must(30*time.Second, "stop", strconv.Itoa(stopped))
	n.must(time.Minute, "start", "1")
	for _, s := range n.status() {
		want := map[int]string{1: "up", victim: "killed", stopped: "stopped"}[s.Node]
		if want == "" {
			want = "up"
		}
		if s.State != want || s.ID != st[s.Node-1].ID {
			t.Errorf("after stop %d and start 1: node %d is %q with ID %s, want %q with ID %s", stopped, s.Node, s.State, s.ID, want, st[s.Node-1].ID)
		}
		if s.State == "up" {
			pids[s.Node] = *s.PID
		}
	}

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

// awaitCopies waits until every block not in before is on at least
// copies nodes, and returns those blocks and their holders.
func (n *net) awaitCopies(before map[string][]int, copies int, timeout time.Duration) map[string][]int {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		added := map[string][]int{}
		done := true
		for name, nodes := range n.storedBlocks(5) {
			if _, old := before[name]; !old {
				added[name] = nodes
				done = done && len(nodes) >= copies
			}
		}
		if done && len(added) > 0 {
			return added
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("after %v, not every new block has %d copies: %v", timeout, copies, added)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// awaitPlaced waits for the ring to converge and then for every block
// of added to be on each of its replicas (the first 3 distinct peers of
// its key's successors, as node via sees them), and returns the blocks'
// holders then; or says why not (the ring did not converge, a block did
// not reach its replicas) within timeout each.
func (n *net) awaitPlaced(via int, added map[string][]int, timeout time.Duration) (map[string][]int, error) {
	n.t.Helper()
	if out, err := n.script(timeout+30*time.Second, "wait", "--timeout", fmt.Sprintf("%ds", int(timeout.Seconds()))); err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	node := map[string]int{}
	for _, s := range n.status() {
		node[s.ID] = s.Node
	}
	c, err := api.NewClient(filepath.Join(n.dir, "node"+strconv.Itoa(via), "repo"))
	if err != nil {
		n.t.Fatal(err)
	}
	defer c.Close()
	replicas := map[string][]int{}
	for name := range added {
		id, err := cid.Decode(name)
		if err != nil {
			n.t.Fatalf("block file %s: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, err := c.Lookup(ctx, chord.KeyID(id.Hash()).Hex())
		cancel()
		if err != nil {
			n.t.Fatal(err)
		}
		for _, s := range l.Successors {
			if i := node[s.Peer]; i != 0 && !slices.Contains(replicas[name], i) && len(replicas[name]) < 3 {
				replicas[name] = append(replicas[name], i)
			}
		}
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(250 * time.Millisecond) {
		held := n.storedBlocks(5)
		placed := true
		for name, want := range replicas {
			for _, i := range want {
				placed = placed && slices.Contains(held[name], i)
			}
		}
		if placed {
			now := map[string][]int{}
			for name := range added {
				now[name] = held[name]
			}
			return now, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("after %v, not every block is on its replicas %v: %v", timeout, replicas, held)
		}
	}
}

// blockBytes is the size on disk of the named blocks in node i's store.
func (n *net) blockBytes(i int, names []string) int64 {
	n.t.Helper()
	var total int64
	for _, name := range names {
		files, _ := filepath.Glob(filepath.Join(n.dir, fmt.Sprintf("node%d", i), "repo", "blocks", "*", name))
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				n.t.Fatal(err)
			}
			total += fi.Size()
		}
	}
	return total
}

// links reads the shaper's links file: node -> (RTT in ms, rate in bit/s).
func (n *net) links() map[int][2]float64 {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "links"))
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[int][2]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var i int
		var node, proxy string
		var rtt, rate float64
		if _, err := fmt.Sscan(line, &i, &node, &proxy, &rtt, &rate); err != nil {
			n.t.Fatalf("links line %q: %v", line, err)
		}
		out[i] = [2]float64{rtt, rate}
	}
	return out
}

// shaperBytes reads node i's bytes up and down from the shaper's stats.
func (n *net) shaperBytes(i int) (up, down int64) {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "shaper.stats"))
	if err != nil {
		n.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var node int
		var conns int64
		if _, err := fmt.Sscan(line, &node, &conns, &up, &down); err == nil && node == i {
			return up, down
		}
	}
	n.t.Fatalf("no stats for node %d", i)
	return 0, 0
}

// TestProfileRTT (opt-in: TESTNET_LONG=1; about a minute) measures, on
// a wan testnet of real daemons, the round trips the ring itself measured
// between each node and its predecessors and first successors (`peer ring
// --json`: the smoothed RTT of ring RPCs; these neighbours are asked every
// stabilization round, so their estimate has many samples) against what
// the profile claims, (RTT_i + RTT_j) / 2.
func TestProfileRTT(t *testing.T) {
	if os.Getenv("TESTNET_LONG") == "" {
		t.Skip("set TESTNET_LONG=1 to measure the profiles through real daemons")
	}
	n := newNet(t)
	n.must(4*time.Minute, "up", "5", "--profile", "wan", "--seed", "1", "--capacity", "2")
	links := n.links()
	byID := map[string]int{}
	for _, s := range n.status() {
		byID[s.ID] = s.Node
	}
	type neighbour struct {
		Peer  string   `json:"peer"`
		RTTms *float64 `json:"rtt_ms"`
	}
	var ratios []float64
	for i := 1; i <= 5; i++ {
		var ring struct {
			Vnodes []struct {
				Predecessor *neighbour  `json:"predecessor"`
				Successors  []neighbour `json:"successors"`
			} `json:"vnodes"`
		}
		if err := json.Unmarshal([]byte(n.must(30*time.Second, "peer", strconv.Itoa(i), "ring", "--json")), &ring); err != nil {
			t.Fatal(err)
		}
		seen := map[int]float64{}
		for _, v := range ring.Vnodes {
			all := v.Successors[:min(1, len(v.Successors))]
			if v.Predecessor != nil {
				all = append(all, *v.Predecessor)
			}
			for _, nb := range all {
				if j := byID[nb.Peer]; j != 0 && j != i && nb.RTTms != nil && *nb.RTTms > 0 {
					seen[j] = *nb.RTTms
				}
			}
		}
		for j, got := range seen {
			claimed := (links[i][0] + links[j][0]) / 2
			ratios = append(ratios, got/claimed)
			t.Logf("ring RTT node %d -> %d: claimed %.1f ms, measured %.1f ms, ratio %.3f", i, j, claimed, got, got/claimed)
		}
	}
	if len(ratios) < 5 {
		t.Fatalf("only %d pairs measured", len(ratios))
	}
	slices.Sort(ratios)
	t.Logf("measured/claimed over %d pairs: min %.3f, median %.3f, max %.3f", len(ratios), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1])
	if med := ratios[len(ratios)/2]; med < 0.95 || med > 1.3 {
		t.Errorf("median measured/claimed RTT %.3f", med)
	}
}

// TestProfileSlowFetch (opt-in: TESTNET_LONG=1) fetches, on the two
// slowest nodes of a heterogeneous testnet, a file of about 10 s of their
// downlink shared by the fastest node, and compares the rates with the
// bottleneck: the smaller of the fetcher's downlink and the sum of the
// uplinks of the nodes holding the blocks. It checks that the fetcher's
// link carried its claimed rate (the shaper's count of its downlink bytes,
// all traffic) and reports the payload's share of it.
func TestProfileSlowFetch(t *testing.T) {
	if os.Getenv("TESTNET_LONG") == "" {
		t.Skip("set TESTNET_LONG=1 to measure the profiles through real daemons")
	}
	n := newNet(t)
	// Seed 3 draws 5 nodes from 8.7 to 345 ms and 80 kbit/s to 22 Mbit/s.
	n.must(4*time.Minute, "up", "5", "--profile", "heterogeneous", "--seed", "3", "--capacity", "2")
	links := n.links()
	byRate := []int{1, 2, 3, 4, 5}
	slices.SortFunc(byRate, func(a, b int) int { return int(links[a][1] - links[b][1]) })
	fast := byRate[4]
	measured := 0
fetchers:
	for k, fetcher := range byRate[:2] {
		size := int(links[fetcher][1] / 8 * 10)
		var data []byte
		var cid string
		var holders map[int]bool
		var remote int64
		// Peer IDs are new at every `up`, so where a file's blocks land
		// differs from run to run; a file of which the fetcher holds more
		// than half itself measures little: another file then (up to
		// 10; a peer of 5 with 2 vnodes is a replica of most keys once
		// copies sit on their right replicas).
		for attempt := 0; ; attempt++ {
			data = make([]byte, size)
			_, _ = rand.NewChaCha8([32]byte{byte(k), byte(attempt), 's', 'l', 'o', 'w'}).Read(data)
			path := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			before := n.storedBlocks(5)
			cid = strings.TrimSpace(n.must(5*time.Minute, "peer", strconv.Itoa(fast), "share", path))
			// This file's blocks are the ones the share added. Wait for
			// their third copies, written in the background: one landing
			// on the fetcher during the fetch would share its link. Those
			// the fetcher holds itself cross no link: only the rest count
			// as fetched.
			added := n.awaitCopies(before, 3, 2*time.Minute)
			// Three copies are not yet the right three: a put made while
			// the ring was unsettled (a slow node's neighbours time out
			// while its link is busy) misses a replica, which repair then
			// fills, over the fetcher's link if it is that replica. So:
			// the ring converged, and every block on its replicas.
			// TESTNET_UNSETTLED=1 fetches without that wait, as session
			// 4 did: the case of a fetcher that is a replica still
			// lacking some blocks (REPORT.md, run V).
			var err error
			if os.Getenv("TESTNET_UNSETTLED") == "" {
				added, err = n.awaitPlaced(fast, added, 2*time.Minute)
			}
			if err != nil {
				// Seen on this profile after a share, on main too: a
				// finding for the ring, and no fetch to measure cleanly.
				t.Logf("node %d's fetch not measured: %v", fetcher, err)
				continue fetchers
			}
			holders = map[int]bool{}
			var local []string
			for name, nodes := range added {
				for _, h := range nodes {
					if h == fetcher {
						local = append(local, name)
					} else {
						holders[h] = true
					}
				}
			}
			remote = max(int64(size)-n.blockBytes(fetcher, local), 0)
			if remote >= int64(size)/2 || attempt == 9 {
				break
			}
			t.Logf("node %d holds %d of file %d's %d bytes itself: another file", fetcher, int64(size)-remote, attempt, size)
		}
		var uplinks float64
		for h := range holders {
			uplinks += links[h][1]
		}
		bottleneck := min(links[fetcher][1], uplinks)
		held0 := n.storedBlocks(5)
		traffic0 := n.traffic(fetcher)
		_, down0 := n.freshShaperBytes(fetcher)
		start := time.Now()
		n.fetch(fetcher, cid, data)
		took := time.Since(start)
		_, down1 := n.freshShaperBytes(fetcher)
		took1 := time.Since(start)
		n.logTraffic(fetcher, traffic0, n.traffic(fetcher))
		n.logStoreChanges(held0, start)
		// The counter's totals are swept once a second, and the fetch's
		// last bytes may not be in the reading above: the streams' bytes
		// again, seconds later (with whatever came since).
		later := n.traffic(fetcher).status
		t.Logf("node %d's stream bytes in from before the fetch to %v after it: %d, block protocol %d", fetcher, (time.Since(start) - took).Round(100*time.Millisecond), later.BytesIn-traffic0.status.BytesIn,
			later.Protocols[peer.BlockProtocol].In-traffic0.status.Protocols[peer.BlockProtocol].In)
		if os.Getenv("CHORDSHARE_GET_TRACE") != "" {
			n.logGetTrace(fetcher, start)
		}
		if remote == 0 {
			t.Logf("node %d holds every block of its file itself: nothing crossed its link", fetcher)
			continue
		}
		payload := float64(remote) * 8 / took.Seconds()
		wire := float64(down1-down0) * 8 / took1.Seconds()
		t.Logf("node %d (downlink %s, RTT %.0f ms) fetched %d bytes (%d blocks, %d bytes of them held by itself) from nodes %v in %v: payload over the link %s, its link %s; bottleneck %s: payload/bottleneck %.3f, link/bottleneck %.3f, link bytes/payload bytes %.2f",
			fetcher, fmtRate(links[fetcher][1]), links[fetcher][0], size, size/(256<<10)+1, int64(size)-remote, slices.Sorted(maps.Keys(holders)), took.Round(time.Millisecond),
			fmtRate(payload), fmtRate(wire), fmtRate(bottleneck), payload/bottleneck, wire/bottleneck, float64(down1-down0)/float64(remote))
		measured++
		// The fetch keeps the link busy: the shaper must deliver the
		// claimed rate, give or take the second's granularity of its
		// counters and the ring's own traffic (so only over a few
		// seconds).
		if r := wire / bottleneck; took1 >= 3*time.Second && (r < 0.8 || r > 1.2) {
			t.Errorf("node %d's link carried %.3f of its claimed rate", fetcher, r)
		}
	}
	if measured == 0 {
		t.Error("no fetch measured")
	}
}

// traffic is a daemon's byte counts: by protocol and repair in its
// status, by peer in its peers.
type traffic struct {
	status api.Status
	peers  api.Peers
}

// traffic reads node i's byte counts through its API.
func (n *net) traffic(i int) traffic {
	n.t.Helper()
	c, err := api.NewClient(filepath.Join(n.dir, "node"+strconv.Itoa(i), "repo"))
	if err != nil {
		n.t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tr traffic
	if tr.status, err = c.Status(ctx); err != nil {
		n.t.Fatal(err)
	}
	if tr.peers, err = c.Peers(ctx); err != nil {
		n.t.Fatal(err)
	}
	return tr
}

// logTraffic logs what node i's libp2p streams carried between two
// readings: bytes in and out by protocol and by peer (as node N), and the
// blocks its repair and handoff moved.
func (n *net) logTraffic(i int, before, after traffic) {
	n.t.Helper()
	node := map[string]string{}
	for _, s := range n.status() {
		node[s.ID] = "node" + strconv.Itoa(s.Node)
	}
	var out strings.Builder
	b, a := before.status, after.status
	fmt.Fprintf(&out, "all streams: in %d, out %d\n", a.BytesIn-b.BytesIn, a.BytesOut-b.BytesOut)
	for _, p := range slices.Sorted(maps.Keys(a.Protocols)) {
		pa, pb := a.Protocols[p], b.Protocols[p]
		if in, o := pa.In-pb.In, pa.Out-pb.Out; in != 0 || o != 0 {
			fmt.Fprintf(&out, "  protocol %-28q in %9d  out %9d\n", p, in, o)
		}
	}
	was := map[string]api.Peer{}
	for _, p := range before.peers.Peers {
		was[p.ID] = p
	}
	for _, p := range after.peers.Peers {
		name := node[p.ID]
		if name == "" {
			name = p.ID
		}
		// A peer absent before (connected during the window) counts from 0.
		if in, o := p.BytesIn-was[p.ID].BytesIn, p.BytesOut-was[p.ID].BytesOut; in != 0 || o != 0 {
			fmt.Fprintf(&out, "  peer %-8s in %9d  out %9d\n", name, in, o)
		}
	}
	fmt.Fprintf(&out, "repair: rounds %d, blocks moved %d (%d bytes), summary bytes %d; blocks stored %d -> %d",
		a.Repair.Rounds-b.Repair.Rounds, a.Repair.BlocksMoved-b.Repair.BlocksMoved, a.Repair.BytesMoved-b.Repair.BytesMoved,
		a.Repair.SummaryBytes-b.Repair.SummaryBytes, b.BlocksStored, a.BlocksStored)
	n.t.Logf("node %d's libp2p traffic during the fetch:\n%s", i, out.String())
}

// logStoreChanges logs the copies that appeared on or left any node since
// the holders before, and the nodes' repair, handoff and ring events since
// start (after a few seconds, so that a copy still being written during
// the fetch lands): what else may have crossed the fetcher's link.
func (n *net) logStoreChanges(before map[string][]int, start time.Time) {
	n.t.Helper()
	time.Sleep(5 * time.Second)
	var out strings.Builder
	after := n.storedBlocks(5)
	for _, name := range slices.Sorted(maps.Keys(after)) {
		if was := before[name]; !slices.Equal(was, after[name]) {
			fmt.Fprintf(&out, "  block %s: on nodes %v, was %v\n", name[len(name)-8:], after[name], was)
		}
	}
	for name, was := range before {
		if _, ok := after[name]; !ok {
			fmt.Fprintf(&out, "  block %s: on no node, was %v\n", name[len(name)-8:], was)
		}
	}
	for i := 1; i <= 5; i++ {
		c, err := api.NewClient(filepath.Join(n.dir, "node"+strconv.Itoa(i), "repo"))
		if err != nil {
			n.t.Fatal(err)
		}
		// The stream gives the remembered events, then waits for new
		// ones: a second's silence ends the reading.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if es, err := c.Events(ctx, 0); err == nil {
			for {
				e, err := es.Next()
				if err != nil {
					break
				}
				if at := e.Time.Sub(start); at > -5*time.Second {
					fmt.Fprintf(&out, "  %8.1f ms node%d %s: %s\n", float64(at)/1e6, i, e.Kind, e.Message)
				}
			}
			es.Close()
		}
		cancel()
		c.Close()
	}
	n.t.Logf("copies moved and events since the fetch began:\n%s", out.String())
}

// freshShaperBytes waits for the shaper's next stats write (every second)
// and returns node i's bytes up and down from it.
func (n *net) freshShaperBytes(i int) (up, down int64) {
	n.t.Helper()
	path := filepath.Join(n.dir, "shaper.stats")
	fi, err := os.Stat(path)
	if err != nil {
		n.t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if now, err := os.Stat(path); err == nil && !now.ModTime().Equal(fi.ModTime()) {
			break
		}
	}
	return n.shaperBytes(i)
}

// logGetTrace logs node i's Get steps since start (its daemon writes them
// to its log when CHORDSHARE_GET_TRACE is set): ms since start, block,
// step, replica (as node N), requests out, hedge, bytes, error.
func (n *net) logGetTrace(i int, start time.Time) {
	n.t.Helper()
	node := map[string]string{}
	for _, s := range n.status() {
		node[s.ID] = "node" + strconv.Itoa(s.Node)
	}
	b, err := os.ReadFile(filepath.Join(n.dir, "node"+strconv.Itoa(i), "log"))
	if err != nil {
		n.t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 9 || f[0] != "get-trace" {
			continue
		}
		us, _ := strconv.ParseInt(f[1], 10, 64)
		at := time.UnixMicro(us).Sub(start)
		if at < 0 {
			continue
		}
		if name, ok := node[f[4]]; ok {
			f[4] = name
		}
		c := f[2]
		fmt.Fprintf(&out, "%8.1f ms  %s  %-9s %-6s out %s hedge %s bytes %s %s\n", float64(at)/1e6, c[len(c)-8:], f[3], f[4], f[5], f[6], f[7], strings.Join(f[8:], " "))
	}
	n.t.Logf("node %d's Get steps:\n%s", i, out.String())
}

func fmtRate(bps float64) string { return fmt.Sprintf("%.1f kbit/s", bps/1e3) }

// TestChurn (opt-in: TESTNET_LONG=1; about two minutes) shares a file,
// runs `churn` for 45 s on nodes 2-5 (a step every 3 s, at most one node
// down, so every block keeps two live replicas) while fetching the file on
// node 1 every 2 s, then waits for the ring and fetches once more. It checks the churn
// log (steps, never more than one down, every node back at the end) and
// that the last fetch is identical; mid-churn fetches are reported.
func TestChurn(t *testing.T) {
	if os.Getenv("TESTNET_LONG") == "" {
		t.Skip("set TESTNET_LONG=1 for the long testnet runs")
	}
	n := newNet(t)
	n.must(3*time.Minute, "up", "5", "--capacity", "2")
	path, data := randomFile(t, 1<<20)
	cid := strings.TrimSpace(n.must(time.Minute, "peer", "1", "share", path))
	time.Sleep(2 * time.Second) // the third replicas

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fetches := make(chan [2]int, 1)
	go func() {
		ok, failed := 0, 0
		for ctx.Err() == nil {
			out := filepath.Join(t.TempDir(), "mid")
			cmd := exec.CommandContext(ctx, "./testnet.sh", "peer", "1", "fetch", "--stall-timeout", "10s", cid, "-o", out)
			cmd.Env = n.env
			if err := cmd.Run(); err == nil {
				if got, _ := os.ReadFile(out); bytes.Equal(got, data) {
					ok++
				} else {
					failed++
				}
			} else if ctx.Err() == nil {
				failed++
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
		fetches <- [2]int{ok, failed}
	}()
	// Node 1 fetches, so churn spares it.
	// Restarts 3 s after a crash: the ring still lists the old
	// incarnation (which made chord.Node.Join leave a vnode outside the
	// ring before it dropped its own old vnode from the answer).
	out := n.must(3*time.Minute, "churn", "--duration", "45s", "--interval", "3s", "--max-down", "1", "--seed", "5", "--spare", "1")
	cancel()
	mid := <-fetches
	t.Logf("churn:\n%s", out)
	t.Logf("fetches on node 1 during churn: %d identical, %d failed", mid[0], mid[1])

	var steps, downs int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "node 1 ") {
			t.Errorf("churn touched the spared node 1: %s", line)
		}
		if strings.Contains(line, " killed (down now: ") {
			steps++
			now := line[strings.Index(line, "down now: ")+len("down now: ") : strings.LastIndex(line, ")")]
			if k := len(strings.Fields(now)); k > 1 {
				t.Errorf("%d nodes down at once: %s", k, line)
			}
			downs++
		} else if strings.Contains(line, " restarted") {
			steps++
		}
	}
	if downs == 0 || steps < 10 {
		t.Errorf("churn took %d steps, %d kills in 45 s at one per 3 s", steps, downs)
	}
	for _, s := range n.status() {
		if s.State != "up" {
			t.Errorf("after churn node %d is %q", s.Node, s.State)
		}
	}
	n.must(3*time.Minute, "wait", "--timeout", "150s")
	n.fetch(1, cid, data)
}
