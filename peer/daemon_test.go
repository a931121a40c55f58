package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/blocks"
	"chordshare/peer/api"
	"chordshare/share"
)

func loopbackOptions(dir string) DaemonOptions {
	one := 1
	return DaemonOptions{Repo: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Capacity: &one}
}

func TestDaemonServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := shortDir(t)
	d, err := StartDaemon(ctx, loopbackOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()

	// A second daemon on the same repo is refused and leaves the first alone.
	if d2, err := StartDaemon(ctx, loopbackOptions(dir)); !errors.Is(err, ErrRepoLocked) {
		if err == nil {
			d2.Close()
		}
		t.Errorf("second daemon: err = %v, want ErrRepoLocked", err)
	}

	c, err := api.NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != d.ID().String() || s.Capacity != 1 || len(s.Positions) != 1 {
		t.Errorf("status = %+v, want our ID, capacity 1, one position", s)
	}
	if len(s.Addrs) == 0 {
		t.Error("status lists no addresses")
	}
	for _, a := range s.Addrs {
		if !strings.HasSuffix(a, "/p2p/"+s.ID) {
			t.Errorf("address %s does not end in /p2p/<id>", a)
		}
	}
	if _, err := ParseBootstrap(d.Addrs()); err != nil {
		t.Errorf("Addrs() are not usable as --bootstrap: %v", err)
	}
	r, err := c.Ring(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != s.ID || len(r.Vnodes) != 1 {
		t.Errorf("ring = %+v, want one vnode of ours", r)
	}
	// Alone on its ring, the peer is the successor of every key.
	l, err := c.Lookup(ctx, strings.Repeat("5a", 32))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Successors) == 0 || l.Successors[0].Peer != s.ID {
		t.Errorf("lookup = %+v, want ourselves first", l)
	}

	stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := os.Lstat(d.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, api.ErrNoDaemon) {
		t.Errorf("status after stop: err = %v, want ErrNoDaemon", err)
	}
	// The repo is free again, and keeps its identity.
	key := d.Repo().Identity()
	repo, err := OpenRepo(dir)
	if err != nil {
		t.Fatalf("repo still held after stop: %v", err)
	}
	defer repo.Close()
	if !repo.Identity().Equals(key) {
		t.Error("identity changed across restarts")
	}
}

func TestDaemonGivesUpOnUnreachableBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := libp2ppeer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	opts := loopbackOptions(dir)
	// Port 1 on loopback: nothing listens, the dial is refused at once.
	opts.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + id.String()}
	opts.BootstrapAttempts = 3
	opts.BootstrapBackoff = 10 * time.Millisecond
	var log strings.Builder
	opts.Log = &log

	d, err := StartDaemon(ctx, opts)
	if err == nil {
		d.Close()
		t.Fatal("joined through a peer that does not exist")
	}
	msg := err.Error()
	if !strings.Contains(msg, "gave up after 3 attempts") || !strings.Contains(msg, id.String()) {
		t.Errorf("err = %q, want it to name the bootstrap peer and the attempts", msg)
	}
	// Every attempt really dialed: libp2p's dial backoff was cleared.
	if strings.Contains(msg, "dial backoff") || strings.Contains(log.String(), "dial backoff") {
		t.Errorf("a retry was refused by libp2p's dial backoff instead of dialing:\n%s\n%s", log.String(), msg)
	}
	if n := strings.Count(log.String(), "retrying"); n != 2 {
		t.Errorf("log has %d retry lines, want 2:\n%s", n, log.String())
	}
	// Everything was released: the repo opens, no socket was made.
	repo, err := OpenRepo(dir)
	if err != nil {
		t.Fatalf("repo held after a failed start: %v", err)
	}
	repo.Close()
	if _, err := os.Lstat(filepath.Join(dir, api.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed start left a socket: %v", err)
	}
}

func TestDaemonRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	t.Run("repo path too long for a socket", func(t *testing.T) {
		dir := filepath.Join(shortDir(t), strings.Repeat("x", 110))
		_, err := StartDaemon(ctx, loopbackOptions(dir))
		if !errors.Is(err, api.ErrSocketPathTooLong) {
			t.Fatalf("err = %v, want ErrSocketPathTooLong", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the repo was created although the daemon cannot run on it")
		}
	})
	t.Run("bad listen address", func(t *testing.T) {
		opts := loopbackOptions(shortDir(t))
		opts.Listen = []string{"/ip4/not-an-ip/tcp/0"}
		if _, err := StartDaemon(ctx, opts); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
			t.Errorf("err = %v, want it to name the address", err)
		}
	})
	t.Run("bootstrap without /p2p/", func(t *testing.T) {
		opts := loopbackOptions(shortDir(t))
		opts.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001"}
		if _, err := StartDaemon(ctx, opts); err == nil || !strings.Contains(err.Error(), "/p2p/<peer id>") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("negative uplink", func(t *testing.T) {
		opts := loopbackOptions(shortDir(t))
		opts.Uplink = new(int64(-2)) // -1 is UplinkAuto
		if _, err := StartDaemon(ctx, opts); err == nil || !strings.Contains(err.Error(), "uplink") {
			t.Errorf("err = %v", err)
		}
	})
	// r and W set for the run are checked against each other and the
	// repo config's, and the error names the flag.
	for _, tc := range []struct {
		name string
		r, w *int
		want string
	}{
		{"too many replicas", new(MaxReplicas() + 1), nil, fmt.Sprintf("--replicas %d: want 1..%d", MaxReplicas()+1, MaxReplicas())},
		{"zero write quorum", nil, new(0), "--write-quorum 0: want 1 or more"},
		{"write quorum above the config's replicas", nil, new(4), "--write-quorum 4: more than replicas 3"},
		{"replicas below the config's write quorum", new(1), nil, "write_quorum 2: more than --replicas 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := loopbackOptions(shortDir(t))
			opts.Replicas, opts.WriteQuorum = tc.r, tc.w
			if _, err := StartDaemon(ctx, opts); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("bad lookup mode", func(t *testing.T) {
		opts := loopbackOptions(shortDir(t))
		opts.Lookup = "sideways"
		if _, err := StartDaemon(ctx, opts); err == nil || !strings.Contains(err.Error(), "sideways") {
			t.Errorf("err = %v", err)
		}
	})
}

// runDaemon starts a daemon with opts and stops it when the test ends.
func runDaemon(t *testing.T, opts DaemonOptions) *Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := StartDaemon(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("daemon on %s: %v", opts.Repo, err)
		}
	})
	return d
}

// --replicas and --write-quorum reach the node for this run; the repo's
// config.json keeps its own.
func TestDaemonReplicationOverride(t *testing.T) {
	opts := loopbackOptions(shortDir(t))
	opts.Replicas, opts.WriteQuorum = new(5), new(1)
	d := runDaemon(t, opts)
	if c := d.node.cfg; c.Replicas != 5 || c.WriteQuorum != 1 {
		t.Errorf("node r %d, W %d; want 5, 1", c.Replicas, c.WriteQuorum)
	}
	data, err := os.ReadFile(filepath.Join(opts.Repo, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var c RepoConfig
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Replicas != 3 || c.WriteQuorum != 2 {
		t.Errorf("config.json r %d, W %d; want the defaults 3, 2 kept", c.Replicas, c.WriteQuorum)
	}
}

// --uplink reaches the node: its block uploads are paced and the status
// says to what.
func TestDaemonUplink(t *testing.T) {
	opts := loopbackOptions(shortDir(t))
	opts.Uplink = new(int64(10_000))
	d := runDaemon(t, opts)
	if d.node.up == nil {
		t.Fatal("the node's uploads are not paced")
	}
	if got := d.node.Status().Uplink; got != 10_000 {
		t.Errorf("status uplink = %d, want 10000", got)
	}
}

func TestDaemonBlockStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A stores blocks, up to its limit...
	dirA := shortDir(t)
	optsA := loopbackOptions(dirA)
	limit := int64(1 << 20)
	optsA.StorageMax = &limit
	a := runDaemon(t, optsA)
	if a.Store() == nil {
		t.Fatal("a peer with capacity 1 has no block store")
	}
	if fi, err := os.Stat(filepath.Join(dirA, BlocksDir)); err != nil || !fi.IsDir() {
		t.Fatalf("no block store in the repo: %v", err)
	}
	data := []byte("hello chord\n")
	if err := a.Store().Put(rawBlock(t, data), data); err != nil {
		t.Fatal(err)
	}
	ca, err := api.NewClient(dirA)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	s, err := ca.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.BlocksStored != 1 || s.BytesUsed != int64(len(data)) || s.StorageMax != limit {
		t.Errorf("status: %d blocks, %d bytes, max %d; want 1, %d, %d", s.BlocksStored, s.BytesUsed, s.StorageMax, len(data), limit)
	}

	// ...B is a client: no store, nothing in its repo.
	dirB := shortDir(t)
	optsB := loopbackOptions(dirB)
	zero := 0
	optsB.Capacity = &zero
	optsB.Bootstrap = a.Addrs()
	b := runDaemon(t, optsB)
	if b.Store() != nil {
		t.Error("a client (capacity 0) opened a block store")
	}
	if _, err := os.Stat(filepath.Join(dirB, BlocksDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a client made a block store: %v", err)
	}
	cb, err := api.NewClient(dirB)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if s, err := cb.Status(ctx); err != nil || s.BlocksStored != 0 || s.StorageMax != 0 {
		t.Errorf("client status %+v, %v", s, err)
	}
	// B's join spoke the ring protocol with A: its status counts those
	// bytes under the protocol (the counter's totals move once a second).
	for {
		s, err := cb.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ring := s.Protocols[RingProtocol]; ring.In > 0 && ring.Out > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("client status counts no ring protocol bytes both ways: %+v", s.Protocols)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// One storing peer cannot give a block the write quorum of 2: the
	// share fails and says why.
	_, err = cb.Share(ctx, strings.NewReader("hello chord\n"), 12, api.TransferOptions{})
	if err == nil || !strings.Contains(err.Error(), "fewer than the write quorum 2") {
		t.Errorf("share on a one-peer ring: err = %v, want a quorum failure", err)
	}
}

// A daemon saves the vnode indices it runs in its repo and, restarted,
// takes them again (the blocks it stores are on them) while its config
// could have chosen them; another capacity chooses anew. The ring here is
// the daemon's own, which has forgotten any earlier choice: without the
// saved indices a ring's first peer always runs 0..capacity-1.
func TestDaemonKeepsVnodeIndicesAcrossRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := shortDir(t)
	start := func(capacity int, boot []string) *Daemon {
		t.Helper()
		opts := loopbackOptions(dir)
		opts.Capacity = &capacity
		opts.VnodeChoices = 8
		opts.Bootstrap = boot
		d, err := StartDaemon(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	check := func(d *Daemon, want []uint32) {
		t.Helper()
		saved, err := d.Repo().VnodeIndices()
		if got := d.Node().ring.Indices(); err != nil || !slices.Equal(got, want) || !slices.Equal(saved, want) {
			t.Fatalf("runs vnodes %v, saved %v (%v); want %v", got, saved, err, want)
		}
	}

	d := start(4, nil)
	check(d, []uint32{0, 1, 2, 3})
	d.Close()
	repo, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SaveVnodeIndices([]uint32{4, 9, 14, 19}); err != nil { // slots 0-3, later candidates
		t.Fatal(err)
	}
	repo.Close()
	d = start(4, nil)
	check(d, []uint32{4, 9, 14, 19})
	d.Close()
	d.Close()
	// A file that does not parse is a logged line and a fresh choice.
	if err := os.WriteFile(filepath.Join(dir, VnodesFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = start(4, nil)
	check(d, []uint32{0, 1, 2, 3})
	d.Close()
	d = start(5, nil)
	check(d, []uint32{0, 1, 2, 3, 4})

	// A peer joining through it saves what it chose.
	dir = shortDir(t)
	joined := start(4, d.Addrs())
	check(joined, joined.Node().ring.Indices())
}

// A block found corrupt on the daemon's disk is told in its log, not only
// in the events a UI may or may not be reading.
func TestDaemonLogsCorruptBlocks(t *testing.T) {
	dir := shortDir(t)
	opts := loopbackOptions(dir)
	var log lockedLog
	opts.Log = &log
	d := runDaemon(t, opts)
	data := bytes.Repeat([]byte("rots on disk "), 100)
	c := rawBlock(t, data)
	if err := d.Store().Put(c, data); err != nil {
		t.Fatal(err)
	}
	damage(t, filepath.Join(dir, BlocksDir), c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = d.Node().Get(ctx, c) // no other replica: it fails, after the report
	for !strings.Contains(log.String(), c.String()+": "+blocks.ErrCorrupt.Error()) {
		if ctx.Err() != nil {
			t.Fatalf("daemon log after a corrupt block was read:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedLog is a daemon's log a test reads while the daemon writes it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A block found corrupt while the daemon leaves (its hand-off reads every
// block it holds) is told in its log too: the log is read until the leave
// is over, not only while the ring runs.
func TestDaemonLogsCorruptBlockFoundOnLeave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := shortDir(t)
	opts := loopbackOptions(dir)
	var log lockedLog
	opts.Log = &log
	d, err := StartDaemon(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	other := loopbackOptions(shortDir(t))
	other.Bootstrap = d.Addrs()
	to := runDaemon(t, other)

	data := bytes.Repeat([]byte("rots before the leave "), 100)
	c := rawBlock(t, data)
	// The leave hands the block to the other peer once this one knows it.
	for {
		peers, err := d.Node().Replicas(ctx, c)
		if err == nil && slices.Contains(peers, to.ID()) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the other daemon never became a replica: %v, %v", peers, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.Store().Put(c, data); err != nil {
		t.Fatal(err)
	}
	damage(t, filepath.Join(dir, BlocksDir), c)
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if got := log.String(); !strings.Contains(got, c.String()+": "+blocks.ErrCorrupt.Error()) || !strings.Contains(got, "not pushed") {
		t.Fatalf("daemon log after leaving with a corrupt block:\n%s", got)
	}
}

// An internal node of a file that a fetch finds corrupt in the daemon's
// store (which a fetch asks first for those) is told in the events, as
// any other block this peer's store is found to have lost.
func TestDaemonReportsCorruptNodeOfFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := shortDir(t)
	opts := loopbackOptions(dir)
	opts.Replicas, opts.WriteQuorum = new(1), new(1) // a ring of one
	d := runDaemon(t, opts)
	data := bytes.Repeat([]byte("three leaves and a root "), 3*share.DefaultChunkSize/24)
	root, err := share.Import(ctx, bytes.NewReader(data), d.Node(), share.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if root.Type() != cid.DagProtobuf {
		t.Fatalf("root %s is not an internal node", root)
	}
	damage(t, filepath.Join(dir, BlocksDir), root)
	c, err := api.NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No other replica: the fetch fails, after the report.
	if _, err := c.Fetch(ctx, root.String(), filepath.Join(t.TempDir(), "out"), api.TransferOptions{}); err == nil {
		t.Fatal("fetch of a file whose only root is corrupt succeeded")
	}
	es := kinds(eventsOf(d.Node()), api.EventBlockCorrupt)
	if len(es) != 1 || !strings.Contains(es[0].Message, root.String()+": "+blocks.ErrCorrupt.Error()) {
		t.Fatalf("block_corrupt events after fetching a file with a corrupt root: %+v, want one naming %s", es, root)
	}
}
