package main

// End-to-end tests of share and fetch: real daemons as separate processes
// on loopback TCP, driven through the CLI; the API client and the block
// store are used only to look (which peer holds what, what is on disk).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/peer/api"
	"chordshare/share"
)

// ringPeer is one daemon of a test ring.
type ringPeer struct {
	repo   string
	proc   *proc
	id     string
	status api.Status
	client *api.Client
}

// startRing starts n daemons on loopback with args (e.g. --capacity 2),
// the first starting the ring and the others joining through it, and
// waits until the ring has converged.
func startRing(t *testing.T, env []string, n int, args ...string) []*ringPeer {
	t.Helper()
	return startRingIn(t, env, shortTempDir(t), n, args...)
}

// startRingIn is startRing with the repos in base/1 ... base/n, which may
// hold what the daemons should find there (an identity).
func startRingIn(t *testing.T, env []string, base string, n int, args ...string) []*ringPeer {
	t.Helper()
	peers := make([]*ringPeer, n)
	loopback := append([]string{"--listen", "/ip4/127.0.0.1/tcp/0"}, args...)
	start := func(i int, extra ...string) {
		repo := filepath.Join(base, fmt.Sprint(i+1))
		peers[i] = &ringPeer{repo: repo, proc: startDaemon(t, env, repo, append(loopback, extra...)...)}
	}
	start(0)
	peers[0].status = waitStatus(t, env, peers[0].proc, peers[0].repo)
	for i := 1; i < n; i++ {
		start(i, "--bootstrap", peers[0].status.Addrs[0])
	}
	for _, p := range peers {
		p.status = waitStatus(t, env, p.proc, p.repo)
		p.id = p.status.ID
		c, err := api.NewClient(p.repo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		p.client = c
	}
	waitConverged(t, peers)
	return peers
}

// waitConverged waits until every vnode of the given peers has the vnodes
// that follow it on the circle of all of theirs as its successor list (all
// of them, at most 16) and the one before it as its predecessor: the ring
// Chord's stabilization converges to, where lookups name whole replica
// sets.
func waitConverged(t *testing.T, peers []*ringPeer) {
	t.Helper()
	var ids []string
	for _, p := range peers {
		ids = append(ids, p.status.Positions...)
	}
	slices.Sort(ids) // same-length hex sorts as the numbers do
	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	listLen := min(len(ids)-1, chord.DefaultConfig().SuccessorListLen)
	start := time.Now()
	poll(t, 90*time.Second, "the ring converges", func() (bool, string) {
		for _, p := range peers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := p.client.Ring(ctx)
			cancel()
			if err != nil {
				return false, err.Error()
			}
			for _, v := range r.Vnodes {
				i := index[v.ID]
				if prev := ids[(i+len(ids)-1)%len(ids)]; v.Predecessor == nil || v.Predecessor.ID != prev {
					return false, fmt.Sprintf("vnode %.16s of %s: predecessor is not %.16s", v.ID, p.repo, prev)
				}
				if len(v.Successors) != listLen {
					return false, fmt.Sprintf("vnode %.16s of %s: %d successors, want %d", v.ID, p.repo, len(v.Successors), listLen)
				}
				for k, s := range v.Successors {
					if want := ids[(i+1+k)%len(ids)]; s.ID != want {
						return false, fmt.Sprintf("vnode %.16s of %s: successor %d is %.16s, want %.16s", v.ID, p.repo, k+1, s.ID, want)
					}
				}
			}
		}
		return true, ""
	})
	t.Logf("the ring of %d vnodes converged in %v", len(ids), time.Since(start).Round(time.Millisecond))
}

// writeRandomFile writes n random bytes to a new file and returns its path
// and contents.
func writeRandomFile(t *testing.T, n int, seed uint64) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'e', '2', 'e'}).Read(data)
	path := filepath.Join(t.TempDir(), fmt.Sprintf("file-%d", seed))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// shareFile runs `peer share` and returns the root CID it printed.
func shareFile(t *testing.T, env []string, repo, path string) cid.Cid {
	t.Helper()
	out, errs, code := peerCmd(t, env, "share", "--repo", repo, path)
	if code != 0 || errs != "" {
		t.Fatalf("peer share: exit %d, stderr %q", code, errs)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("peer share printed %q, want the root CID alone on a line", out)
	}
	c, err := cid.Decode(strings.TrimSuffix(out, "\n"))
	if err != nil {
		t.Fatalf("peer share printed %q: %v", out, err)
	}
	return c
}

// fetchFile runs `peer fetch -o` into a new file and returns its bytes.
func fetchFile(t *testing.T, env []string, repo string, root cid.Cid) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fetched")
	out, errs, code := peerCmd(t, env, "fetch", "--repo", repo, root.String(), "-o", path)
	if code != 0 || out != "" || errs != "" {
		t.Fatalf("peer fetch -o: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// oneLineErr checks a failed command: exit 1, nothing on stdout, one line on
// stderr matching want.
func oneLineErr(t *testing.T, what, stdout, stderr string, code int, want *regexp.Regexp) {
	t.Helper()
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !want.MatchString(strings.TrimSuffix(stderr, "\n")) {
		t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line matching %q", what, code, stdout, stderr, want)
	}
}

func TestE2EShareAndFetch(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	peers := startRing(t, env, 8, "--capacity", "2")
	path, data := writeRandomFile(t, 20<<20, 1)

	start := time.Now()
	root := shareFile(t, env, peers[0].repo, path)
	t.Logf("shared 20 MiB from peer 1 in %v: %s", time.Since(start), root)

	// The root's replica holders, and who holds it once peer 1 and its
	// first holder (its second if that is peer 1) are dead: the surviving
	// holders and those repair copies it to, the first r (3) left.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := peers[7].client.Lookup(ctx, chord.KeyID(root.Hash()).Hex())
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, s := range l.Successors {
		if !slices.Contains(holders, s.Peer) {
			holders = append(holders, s.Peer)
		}
	}
	if len(holders) < 5 { // 3 replicas, and 3 once 2 of them are dead
		t.Fatalf("the lookup of the root named %d peers, want at least 5", len(holders))
	}
	victim := holders[0]
	if victim == peers[0].id { // peer 1 holds the root: kill the next holder too
		victim = holders[1]
	}
	after := slices.DeleteFunc(slices.Clone(holders), func(h string) bool { return h == peers[0].id || h == victim })
	rootHolders := slices.Clone(holders[:3])
	for _, h := range after[:3] {
		if !slices.Contains(rootHolders, h) {
			rootHolders = append(rootHolders, h)
		}
	}
	// The fetch after the kills runs on a peer that has not fetched the
	// file (a fetch keeps the DAG's internal nodes) and holds no replica
	// of the root, before or after: its root must come from a surviving
	// replica. Peer 8 fetches first; the others fetch until then.
	var fresh *ringPeer
	var others []*ringPeer
	for _, p := range peers[1:7] {
		if fresh == nil && !slices.Contains(rootHolders, p.id) {
			fresh = p
			continue
		}
		others = append(others, p)
	}
	if fresh == nil {
		t.Fatalf("every peer but 1 and 8 holds the root: %v", rootHolders)
	}

	start = time.Now()
	if got := fetchFile(t, env, peers[7].repo, root); !bytes.Equal(got, data) {
		t.Fatalf("peer 8 fetched %d bytes that differ from the %d shared", len(got), len(data))
	}
	t.Logf("fetched on peer 8 to a file in %v", time.Since(start))

	// To stdout, and -o relative to the command's directory.
	start = time.Now()
	out, errs, code := peerCmd(t, env, "fetch", "--repo", others[4].repo, root.String())
	if code != 0 || errs != "" || out != string(data) {
		t.Fatalf("peer fetch to stdout: exit %d, stderr %q, %d bytes (identical: %v)", code, errs, len(out), out == string(data))
	}
	t.Logf("fetched on %s to stdout in %v", others[4].repo, time.Since(start))
	wd := t.TempDir()
	if out, errs, code := peerCmdIn(t, env, wd, "fetch", "--repo", others[3].repo, "-o", "rel.bin", root.String()); code != 0 || out != "" || errs != "" {
		t.Fatalf("peer fetch -o rel.bin: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got, err := os.ReadFile(filepath.Join(wd, "rel.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("-o rel.bin did not land in the command's directory intact: %v", err)
	}

	// --json for scripts: the same CID again, and where the file went.
	out, errs, code = peerCmd(t, env, "share", "--repo", others[0].repo, "--json", path)
	var shared api.ShareResult
	if code != 0 || errs != "" || json.Unmarshal([]byte(out), &shared) != nil || shared.CID != root.String() || shared.Size != int64(len(data)) {
		t.Fatalf("peer share --json: exit %d, stdout %q, stderr %q; want cid %s, size %d", code, out, errs, root, len(data))
	}
	jsonPath := filepath.Join(wd, "json.bin")
	out, errs, code = peerCmd(t, env, "fetch", "--repo", others[2].repo, "--json", "-o", jsonPath, root.String())
	var fetched api.FetchResult
	if code != 0 || errs != "" || json.Unmarshal([]byte(out), &fetched) != nil || fetched != (api.FetchResult{CID: root.String(), Path: jsonPath, Size: int64(len(data))}) {
		t.Fatalf("peer fetch --json -o: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	t.Run("bad inputs on a live ring", func(t *testing.T) {
		repo := others[1].repo
		// A CID no replica holds: answered fast, not a hang.
		never, err := cid.V1Builder{Codec: cid.Raw, MhType: 0x12}.Sum([]byte("never shared"))
		if err != nil {
			t.Fatal(err)
		}
		neverPath := filepath.Join(t.TempDir(), "never")
		for _, args := range [][]string{{never.String()}, {never.String(), "-o", neverPath}} {
			start := time.Now()
			out, errs, code := peerCmd(t, env, append([]string{"fetch", "--repo", repo}, args...)...)
			oneLineErr(t, "fetch of a CID nobody holds", out, errs, code, regexp.MustCompile(`^peer: fetch `+never.String()+`: get `+never.String()+`: not found: none of the \d+ peers asked has it$`))
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("fetch of a CID nobody holds took %v", d)
			}
		}
		if _, err := os.Lstat(neverPath); !os.IsNotExist(err) {
			t.Errorf("a fetch that found nothing left a file: %v", err)
		}
		out, errs, code := peerCmd(t, env, "fetch", "--repo", repo, root.String(), "-o", "/nonexistent-dir/out")
		oneLineErr(t, "fetch into a missing directory", out, errs, code, regexp.MustCompile(`^peer: open /nonexistent-dir/out: no such file or directory$`))
	})

	// Peer 1 (the sharer) and the first replica holder of the root die.
	var live []*ringPeer
	for _, p := range peers {
		if p == peers[0] || p.id == victim {
			if err := p.proc.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.proc.exited(10 * time.Second); !ok {
				t.Fatalf("%s survived SIGKILL", p.repo)
			}
			continue
		}
		live = append(live, p)
	}
	t.Logf("killed peer 1 and root holder %s; root replicas were %v", victim, holders[:3])
	start = time.Now()
	waitConverged(t, live)
	t.Logf("ring of %d converged %v after the kills", len(live), time.Since(start))

	start = time.Now()
	if got := fetchFile(t, env, fresh.repo, root); !bytes.Equal(got, data) {
		t.Fatalf("after the kills %s fetched %d bytes that differ", fresh.repo, len(got))
	}
	t.Logf("fetched on %s, which had not fetched the file and holds no replica of its root, after the kills in %v", fresh.repo, time.Since(start))
}

func TestE2EShareFetchBadInputs(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	repo := repoDir(t, "none") // no daemon runs on it
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("hello chord\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noDaemon := regexp.QuoteMeta("peer: no daemon running on repo " + repo + " (start one with: peer daemon --repo " + repo + ")")
	okCID := "bafkreihw4tqmgoax7pre32ehip4257lrrg32i2h3clcwvhunfimgbq5aua"
	cases := []struct {
		what string
		args []string
		want string
	}{
		// The file and the CID are checked before the daemon is asked.
		{"missing FILE", []string{"share", "--repo", repo, filepath.Join(dir, "missing")}, `^peer: cannot read ` + regexp.QuoteMeta(filepath.Join(dir, "missing")) + `: no such file or directory$`},
		{"FILE is a directory", []string{"share", "--repo", repo, dir}, `^peer: cannot share ` + regexp.QuoteMeta(dir) + `: it is a directory`},
		{"not a CID", []string{"fetch", "--repo", repo, "not-a-cid"}, `^peer: "not-a-cid" is not a CID: `},
		{"not a CID, with -o", []string{"fetch", "--repo", repo, "-o", filepath.Join(dir, "x"), "Qm-nope"}, `^peer: "Qm-nope" is not a CID: `},
		{"share without daemon", []string{"share", "--repo", repo, file}, "^" + noDaemon + "$"},
		{"fetch without daemon", []string{"fetch", "--repo", repo, okCID}, "^" + noDaemon + "$"},
		{"fetch -o without daemon", []string{"fetch", "--repo", repo, okCID, "-o", filepath.Join(dir, "out")}, "^" + noDaemon + "$"},
		{"zero stall timeout", []string{"fetch", "--repo", repo, "--stall-timeout", "0s", okCID}, `^peer: --stall-timeout 0s: want a positive duration`},
		{"--json to stdout", []string{"fetch", "--repo", repo, "--json", okCID}, `^peer: --json needs -o PATH: `},
	}
	// A FILE nobody can read, root included (CI runs as root): a socket,
	// which open refuses (ENXIO).
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cases = append(cases, struct {
		what string
		args []string
		want string
	}{"FILE that root cannot read either", []string{"share", "--repo", repo, sock}, `^peer: cannot read ` + regexp.QuoteMeta(sock+": "+syscall.ENXIO.Error()) + `$`})
	if os.Geteuid() != 0 { // root reads any regular file
		unreadable := filepath.Join(dir, "unreadable")
		if err := os.WriteFile(unreadable, []byte("secret"), 0o000); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			what string
			args []string
			want string
		}{"unreadable FILE", []string{"share", "--repo", repo, unreadable}, `^peer: cannot read ` + regexp.QuoteMeta(unreadable) + `: permission denied$`})
	}
	for _, tc := range cases {
		out, errs, code := peerCmd(t, env, tc.args...)
		oneLineErr(t, tc.what, out, errs, code, regexp.MustCompile(tc.want))
	}
	if _, err := os.Stat(repo); !os.IsNotExist(err) {
		t.Error("a client command created the repo")
	}
	if got, _ := os.ReadFile(file); string(got) != "hello chord\n" {
		t.Error("the file to share was changed")
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("the socket given as FILE: %v, %v", fi, err)
	}
	// Usage errors: exit 2 and the usage.
	for _, args := range [][]string{{"share"}, {"fetch"}, {"share", "a", "b"}, {"fetch", okCID, "extra"}} {
		out, errs, code := peerCmd(t, env, args...)
		if code != 2 || out != "" || !strings.Contains(errs, "usage: peer "+args[0]) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and the usage", args, code, out, errs)
		}
	}
}

func TestE2EShareFailures(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	// Two peers: every block needs both (W = 2), and each stores at most
	// 1 MB, three 256 KiB leaves.
	// Capacity 9: see the note on ring sizes in README (Tests).
	peers := startRing(t, env, 2, "--capacity", "9", "--storage-max", "1MB")
	if s := peers[0].status; s.StorageMax != 1e6 || s.BlocksStored != 0 {
		t.Fatalf("status: storage max %d, %d blocks; want 1000000 and 0", s.StorageMax, s.BlocksStored)
	}

	big, data := writeRandomFile(t, 3<<20, 2)
	out, errs, code := peerCmd(t, env, "share", "--repo", peers[0].repo, big)
	oneLineErr(t, "share beyond the storage limit", out, errs, code, regexp.MustCompile(`^peer: share: .*store full`))
	if got, _ := os.ReadFile(big); !bytes.Equal(got, data) {
		t.Error("the shared file was changed")
	}
	for _, p := range peers {
		// The share fails at the first refusal, while the writes of the
		// blocks that fit may still be running (in the background, as
		// every replica write past the quorum): wait for them to land.
		var s api.Status
		poll(t, 20*time.Second, p.repo+" stores the blocks that fit", func() (bool, string) {
			s = waitStatus(t, env, p.proc, p.repo)
			return s.BlocksStored > 0, fmt.Sprintf("%d blocks", s.BlocksStored)
		})
		if s.BytesUsed > s.StorageMax {
			t.Errorf("%s: %d blocks, %d bytes of %d", p.repo, s.BlocksStored, s.BytesUsed, s.StorageMax)
		}
	}
	// What fits still does.
	small, sdata := writeRandomFile(t, 1000, 3)
	root := shareFile(t, env, peers[0].repo, small)
	if got := fetchFile(t, env, peers[1].repo, root); !bytes.Equal(got, sdata) {
		t.Fatal("the small file came back different")
	}

	// With the other peer dead, no block can have two replicas.
	if err := peers[1].proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, ok := peers[1].proc.exited(10 * time.Second); !ok {
		t.Fatal("peer 2 survived SIGKILL")
	}
	other, _ := writeRandomFile(t, 1000, 4)
	start := time.Now()
	out, errs, code = peerCmd(t, env, "share", "--repo", peers[0].repo, other)
	oneLineErr(t, "share with one replica reachable", out, errs, code, regexp.MustCompile(`^peer: share: .*(write quorum 2|replicas acknowledged)`))
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the failing share took %v", d)
	}
}

func TestE2EKillDuringReceive(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	// Three peers, so every block goes to the victim too (r = 3).
	// Capacity 6: see the note on ring sizes in README (Tests).
	peers := startRing(t, env, 3, "--capacity", "6")
	path, data := writeRandomFile(t, 32<<20, 5)
	victim := peers[2]

	shareCmd := exec.Command(peerBinary(t), "share", "--repo", peers[0].repo, path)
	shareCmd.Env = env
	dieWithTest(shareCmd)
	var shareOut, shareErr bytes.Buffer
	shareCmd.Stdout, shareCmd.Stderr = &shareOut, &shareErr
	if err := shareCmd.Start(); err != nil {
		t.Fatal(err)
	}
	shareDone := make(chan struct{})
	go func() {
		_ = shareCmd.Wait()
		close(shareDone)
	}()
	t.Cleanup(func() {
		_ = shareCmd.Process.Kill()
		<-shareDone
	})

	// SIGKILL the victim once it has stored a few blocks.
	poll(t, 30*time.Second, "peer 3 receives blocks", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := victim.client.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return s.BlocksStored >= 8, fmt.Sprintf("%d blocks", s.BlocksStored)
	})
	if err := victim.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, ok := victim.proc.exited(10 * time.Second); !ok {
		t.Fatal("peer 3 survived SIGKILL")
	}

	// Its store, opened as the next daemon will: every block it lists is
	// whole and valid, and nothing else is left on disk (a put cut short
	// leaves a temp file, which Open removes).
	dir := filepath.Join(victim.repo, "blocks")
	st, err := blocks.Open(dir, blocks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []cid.Cid
	var zero blocks.Key
	st.Range(zero, zero, func(_ blocks.Key, c cid.Cid) bool { // from == to: the whole circle
		keys = append(keys, c)
		return true
	})
	for _, c := range keys {
		if _, err := st.Get(c); err != nil {
			t.Errorf("block %s after the kill: %v", c, err)
		}
	}
	files := 0
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != len(keys) || st.Stats().Count != len(keys) {
		t.Errorf("after open: %d files on disk, %d blocks listed, %d counted; want all equal", files, len(keys), st.Stats().Count)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	const fileBlocks = 128 + 1 // leaves and the root
	if len(keys) == 0 || len(keys) >= fileBlocks {
		t.Fatalf("peer 3 held %d blocks when killed: want some of the %d, not none or all", len(keys), fileBlocks)
	}
	t.Logf("peer 3 held %d whole blocks when it was killed", len(keys))

	// Every block it holds is a piece of the file: a 256 KiB chunk (a raw
	// leaf) or a node of the DAG above them.
	chunks := map[string]int{}
	for i := 0; i < len(data); i += 256 << 10 {
		c, err := cid.V1Builder{Codec: cid.Raw, MhType: 0x12}.Sum(data[i:min(i+256<<10, len(data))])
		if err != nil {
			t.Fatal(err)
		}
		chunks[c.KeyString()] = i
	}
	var leaf cid.Cid
	for _, c := range keys {
		if _, ok := chunks[c.KeyString()]; ok {
			leaf = c
		} else if c.Type() != cid.DagProtobuf {
			t.Errorf("peer 3 holds %s, which is no part of the file", c)
		}
	}
	if !leaf.Defined() {
		t.Fatal("peer 3 holds no leaf of the file")
	}
	select {
	case <-shareDone:
	case <-time.After(60 * time.Second):
		t.Fatal("share did not end")
	}
	// Two replicas of every block live on (W = 2): the share succeeds,
	// with the file's root CID.
	want, err := share.Import(context.Background(), bytes.NewReader(data), discardBlocks{}, share.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code := shareCmd.ProcessState.ExitCode(); code != 0 || shareOut.String() != want.String()+"\n" || shareErr.Len() != 0 {
		t.Errorf("share with peer 3 killed: exit %d, stdout %q, stderr %q; want exit 0 and %s", code, shareOut.String(), shareErr.String(), want)
	}

	// Restarted on the address it had (as a peer with a fixed port does),
	// it comes back with those blocks and serves them.
	oldAddr := strings.TrimSuffix(victim.status.Addrs[0], "/p2p/"+victim.id)
	victim.proc = startDaemon(t, env, victim.repo, "--listen", oldAddr, "--capacity", "6",
		"--bootstrap", peers[0].status.Addrs[0])
	if s := waitStatus(t, env, victim.proc, victim.repo); s.BlocksStored < len(keys) {
		t.Errorf("restarted peer 3 holds %d blocks, had %d", s.BlocksStored, len(keys))
	}
	out, errs, code := peerCmd(t, env, "fetch", "--repo", victim.repo, leaf.String())
	off := chunks[leaf.KeyString()]
	if code != 0 || errs != "" || out != string(data[off:min(off+256<<10, len(data))]) {
		t.Errorf("restarted peer 3 serving leaf %s: exit %d, stderr %q, %d bytes", leaf, code, errs, len(out))
	}
}

// discardBlocks is a share.Putter that keeps nothing: Import with it
// computes a file's root CID.
type discardBlocks struct{}

func (discardBlocks) Put(context.Context, cid.Cid, []byte) error { return nil }
