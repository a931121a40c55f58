package peer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"chordshare/blocks"
	"chordshare/merkle"
	"chordshare/peer/api"
	"chordshare/share"
)

// ringWithLimits is a ring of len(limits) nodes, each with a block store
// of that many bytes (0: no limit), and the stores' directories.
func ringWithLimits(t *testing.T, limits ...int64) (*mockRing, map[*Node]string) {
	r := newMockRing(t, testConfig())
	var dirs []string
	r.beforeNode = func(cfg *Config) {
		dir := t.TempDir()
		st, err := blocks.Open(dir, blocks.Options{MaxBytes: limits[len(dirs)]})
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	nodes := r.add(len(limits))
	r.joinAll(nodes)
	r.converge(50)
	out := map[*Node]string{}
	for i, n := range nodes {
		out[n] = dirs[i]
	}
	return r, out
}

// A put two of whose three replicas are full fails with one line: the
// block named once (by share's "put CID: "), how many replicas took it of
// how many needed, and the full peers named once each beside one
// "block store full"; errors.Is still finds the sentinel.
func TestPutErrorOneLineErrs11(t *testing.T) {
	r, _ := ringWithLimits(t, 0, 1<<10, 1<<10) // r = 3, W = 2: every peer is a replica
	writer, full1, full2 := r.nodes[0], r.nodes[1], r.nodes[2]
	data := bytes.Repeat([]byte("too big for the others "), 2000)
	c := rawBlock(t, data)
	err := writer.Put(testCtx(t), c, data)
	writer.bg.Wait() // the writer's own copy, if the put gave up before it
	var re *ReplicaError
	if !errors.As(err, &re) || !errors.Is(err, ErrStoreFull) {
		t.Fatalf("put onto full replicas: %v, want a ReplicaError matching ErrStoreFull", err)
	}
	msg := err.Error()
	t.Log(msg)
	if re.OK+len(re.Errs)+re.Pending != re.Tried || re.Tried != 3 || re.Need != 2 || len(re.Errs) != 2 {
		t.Errorf("%+v: acknowledged, failed and pending do not add up to the 3 replicas", re)
	}
	if strings.Contains(msg, c.String()) || strings.Count(msg, "store full") != 1 ||
		!strings.Contains(msg, shortPeer(string(full1.Host().ID()))) || !strings.Contains(msg, shortPeer(string(full2.Host().ID()))) {
		t.Errorf("put error %q: want no CID (the caller names it), \"store full\" once, both full peers", msg)
	}
	if want := "replicas acknowledged (2 needed"; !strings.Contains(msg, want) {
		t.Errorf("put error %q lacks %q", msg, want)
	}
	if re.Pending > 0 && !strings.Contains(msg, "still writing") {
		t.Errorf("put error %q: gave up with %d writes under way but does not say so", msg, re.Pending)
	}

	// Through share, as `peer share` sees it: the CID once, no "import: ".
	_, err = share.Import(testCtx(t), bytes.NewReader(data), writer, share.ImportOptions{ChunkSize: len(data)})
	if err == nil {
		t.Fatal("import onto full replicas succeeded")
	}
	msg = err.Error()
	t.Log(msg)
	if !errors.Is(err, ErrStoreFull) || !strings.HasPrefix(msg, "put "+c.String()+": ") || strings.Count(msg, c.String()) != 1 ||
		strings.Count(msg, "store full") != 1 || len(msg) > 200 {
		t.Errorf("import error %q (%d chars): want \"put %s: \" once, \"store full\" once, and short", msg, len(msg), c)
	}
}

// A dial that failed is told by its system error, not libp2p's report of
// every address tried; a hinted handoff's failure follows the replica's.
func TestCauseErrs11(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dial := &swarm.DialError{Peer: "QmPeer", Cause: swarm.ErrAllDialsFailed,
		DialErrors: []swarm.TransportError{{Cause: refused}}}
	c := rawBlock(t, []byte("cause"))
	p, q := p2ppeer.ID("a peer that refused"), p2ppeer.ID("a peer out of room")
	failed := &peerError{c: c, peer: p, err: dial}
	if got := cause(failed); got != "connection refused" {
		t.Errorf("cause of a refused dial: %q", got)
	}
	hinted := &peerError{c: c, peer: q, hintFor: p, err: errors.New("holding 4 hints already")}
	got := cause(fmt.Errorf("%w; hinted handoff: %w", failed, hinted)) // putReplica's
	if want := "connection refused (hinted handoff to " + shortPeer(string(q)) + ": holding 4 hints already)"; got != want {
		t.Errorf("cause of a failed put and handoff: %q, want %q", got, want)
	}
	line := reasons([]error{&replicaFailure{peer: p, err: failed}, &replicaFailure{peer: q, err: blocks.ErrFull},
		&replicaFailure{peer: q, err: ErrStoreFull}})
	if want := "peer " + shortPeer(string(p)) + ": connection refused; peer " + shortPeer(string(q)) + ": block store full"; line != want {
		t.Errorf("reasons: %q, want %q", line, want)
	}
}

// A node that finds one of its blocks corrupt on disk says so in its
// events, naming the block and what it does next, and gets the block
// from another replica; a peer asking it for the block is answered not
// found, and that is told too.
func TestCorruptBlockReportedErrs11(t *testing.T) {
	r, dirs := ringWithLimits(t, 0, 0, 0)
	fetcher, holder, asker := r.nodes[0], r.nodes[1], r.nodes[2]
	data := bytes.Repeat([]byte("damaged on disk "), 1000)
	c := rawBlock(t, data)
	for _, n := range []*Node{fetcher, holder} {
		if err := n.cfg.Store.Put(c, data); err != nil {
			t.Fatal(err)
		}
	}
	damage(t, dirs[fetcher], c)
	fetcher.setLocated(c, fetcher.Host().ID(), holder.Host().ID())
	got, err := fetcher.Get(testCtx(t), c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get of a block corrupt here, whole on another replica: %v", err)
	}
	es := kinds(eventsOf(fetcher), api.EventBlockCorrupt)
	if len(es) != 1 || strings.Count(es[0].Message, c.String()) != 1 || !strings.Contains(es[0].Message, "another replica") {
		t.Fatalf("events after a corrupt local copy: %+v, want one naming %s and the fetch from another replica", es, c)
	}
	t.Log(es[0].Message)

	damage(t, dirs[holder], c)
	if _, err := asker.fetchFrom(testCtx(t), holder.Host().ID(), c); !errors.Is(err, ErrBlockNotFound) {
		t.Fatalf("get from a peer whose copy is corrupt: %v, want not found", err)
	}
	es = kinds(eventsOf(holder), api.EventBlockCorrupt)
	if len(es) != 1 || !strings.Contains(es[0].Message, c.String()) || !strings.Contains(es[0].Message, "not found") ||
		es[0].Peer != asker.Host().ID().String() {
		t.Fatalf("holder's events after serving a corrupt copy: %+v, want one naming %s, the not found and the asker", es, c)
	}
	t.Log(es[0].Message)
}

// damage overwrites block c's file in the store at dir (DIR/xx/CID) with
// bytes of the same length that do not hash to c.
func damage(t *testing.T, dir string, c cid.Cid) {
	t.Helper()
	var path string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == c.String() {
			path = p
		}
		return nil
	})
	if path == "" {
		t.Fatalf("no file for %s under %s", c, dir)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptBlockNotPushedIsReported: repair's push skips a block whose
// copy here is corrupt, and says so in the node's events.
func TestCorruptBlockNotPushedIsReported(t *testing.T) {
	r, dirs := ringWithLimits(t, 0, 0, 0)
	pusher, to := r.nodes[0], r.nodes[1]
	data := bytes.Repeat([]byte("pushed by repair "), 1000)
	c := rawBlock(t, data)
	if err := pusher.cfg.Store.Put(c, data); err != nil {
		t.Fatal(err)
	}
	damage(t, dirs[pusher], c)
	var rs RoundStats
	items := []merkle.Item{{Val: c.Bytes()}}
	if errs, err := pusher.pushArc(testCtx(t), to.Host().ID(), items, &rs); err != nil || len(errs) != 0 {
		t.Fatalf("push of a corrupt block: %v, %v; want it skipped", errs, err)
	}
	if to.cfg.Store.Has(c) {
		t.Fatal("a corrupt copy reached the peer")
	}
	es := kinds(eventsOf(pusher), api.EventBlockCorrupt)
	if len(es) != 1 || !strings.Contains(es[0].Message, c.String()) || !strings.Contains(es[0].Message, "not pushed") {
		t.Fatalf("events after pushing a corrupt block: %+v, want one naming %s, not pushed", es, c)
	}
}

// A put that gives up with a write still under way says how many are:
// the two other replicas are full, the writer's own write is held in its
// store, so the quorum is out of reach with 0 acknowledged, 2 failed and
// 1 pending, and the held write still lands afterwards.
func TestPutGivesUpWithWritePendingErrs11(t *testing.T) {
	r, _ := ringWithLimits(t, 0, 1<<10, 1<<10) // r = 3, W = 2: every peer is a replica
	writer := r.nodes[0]
	gate := &gatedStore{BlockStore: writer.cfg.Store, release: make(chan struct{}), entered: make(chan struct{}, 8)}
	writer.cfg.Store = gate
	data := bytes.Repeat([]byte("held in the writer's store "), 2000)
	c := rawBlock(t, data)
	err := writer.Put(testCtx(t), c, data)
	close(gate.release)
	writer.bg.Wait()
	var re *ReplicaError
	if !errors.As(err, &re) || re.OK != 0 || len(re.Errs) != 2 || re.Pending != 1 || !errors.Is(err, ErrStoreFull) {
		t.Fatalf("put with two full replicas and the third held: %v (%+v); want 0 acknowledged, 2 failed, 1 pending", err, re)
	}
	if want := "0 of 3 replicas acknowledged (2 needed, out of reach: 2 failed, 1 still writing): peers "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("put error %q, want it to begin %q", err, want)
	}
	if !gate.BlockStore.Has(c) {
		t.Error("the held write did not land after the put gave up")
	}
}
