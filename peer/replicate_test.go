package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"chordshare/blocks"
	"chordshare/peer/pb"
)

func rawBlock(t testing.TB, data []byte) cid.Cid {
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putSettled puts block c from r's first node and waits until its
// background writes (the replicas past the write quorum) are done too.
func putSettled(t *testing.T, r *mockRing, c cid.Cid, data []byte) {
	t.Helper()
	if err := r.nodes[0].Put(context.Background(), c, data); err != nil {
		t.Fatal(err)
	}
	r.nodes[0].bg.Wait()
}

// storedRing is a mocknet ring whose nodes keep blocks in real stores.
func storedRing(t *testing.T, peers int) (*mockRing, map[*Node]*blocks.Store) {
	return storedRingOf(t, testConfig(), peers)
}

// storedRingOf is storedRing with the nodes' config cfg.
func storedRingOf(t *testing.T, cfg Config, peers int) (*mockRing, map[*Node]*blocks.Store) {
	r := newMockRing(t, cfg)
	stores := map[*Node]*blocks.Store{}
	r.beforeNode = func(cfg *Config) {
		st, err := blocks.Open(t.TempDir(), blocks.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	nodes := r.add(peers)
	for _, n := range nodes {
		stores[n] = n.cfg.Store.(*blocks.Store)
	}
	r.joinAll(nodes)
	r.converge(200)
	return r, stores
}

// holderCount is how many of the stores hold block c.
func holderCount(stores map[*Node]*blocks.Store, c cid.Cid) int {
	n := 0
	for _, st := range stores {
		if st.Has(c) {
			n++
		}
	}
	return n
}

// A put lands on the first r distinct peers after the key, any peer can get
// it, and it survives the loss of all but one replica.
func TestPutReplicatesToPreferenceList(t *testing.T) {
	r, stores := storedRing(t, 8)
	ctx := context.Background()
	data := bytes.Repeat([]byte("chordshare "), 1000)
	c := rawBlock(t, data)
	writer := r.nodes[0]
	if err := writer.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	writer.bg.Wait() // the background replica write
	replicas, err := r.nodes[1].Replicas(ctx, c)
	if err != nil || len(replicas) != 3 {
		t.Fatalf("replicas: %v %v", replicas, err)
	}
	holders := 0
	for n, st := range stores {
		want := false
		for _, p := range replicas {
			want = want || p == n.Host().ID()
		}
		if st.Has(c) != want {
			t.Errorf("peer %s holds block: %v, want %v", n.Host().ID().ShortString(), st.Has(c), want)
		}
		if st.Has(c) {
			holders++
		}
	}
	if holders != 3 {
		t.Fatalf("%d holders, want 3", holders)
	}
	// Crash two of the three holders: a fetch still succeeds from the third.
	crashed := 0
	for _, n := range r.live() {
		if stores[n].Has(c) && crashed < 2 {
			r.crash(n)
			crashed++
		}
	}
	var reader *Node
	for _, n := range r.live() {
		if !stores[n].Has(c) {
			reader = n
			break
		}
	}
	r.converge(200)
	got, err := reader.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after losing 2 of 3 replicas: %v", err)
	}
}

// A replica that answers with bytes that are not the block is skipped.
// PutLent hands the buffer back once, and only after every replica write
// is over: by then all r replicas hold the block, without waiting for the
// node's background work.
func TestPutLentReleasesAfterEveryReplica(t *testing.T) {
	r, stores := storedRing(t, 6)
	ctx := testCtx(t)
	data := bytes.Repeat([]byte("lent "), 3000)
	c := rawBlock(t, data)
	var calls atomic.Int32
	released := make(chan struct{})
	if err := r.nodes[2].PutLent(ctx, c, data, func() {
		if calls.Add(1) == 1 {
			close(released)
		}
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-ctx.Done():
		t.Fatal("the buffer was never handed back")
	}
	if holders := holderCount(stores, c); holders != 3 {
		t.Errorf("%d replicas hold the block when its buffer is handed back, want 3", holders)
	}
	r.nodes[2].bg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("done called %d times, want 1", n)
	}

	// A put that fails before any replica write hands the buffer back too.
	calls.Store(0)
	big := make([]byte, maxBlockSize+1)
	if err := r.nodes[2].PutLent(ctx, c, big, func() { calls.Add(1) }); err == nil || calls.Load() != 1 {
		t.Errorf("oversized put: %v, done called %d times; want an error and 1", err, calls.Load())
	}
}

// A put waits while the node has maxReplicaWrites replica writes in flight,
// gives up with its context, and goes ahead once they end.
func TestPutWaitsForReplicaWriteTokens(t *testing.T) {
	r, _ := storedRing(t, 4)
	n := r.nodes[1]
	data := bytes.Repeat([]byte("bounded "), 500)
	c := rawBlock(t, data)
	for range cap(n.blocks.writes) {
		n.blocks.writes <- struct{}{} // as if that many writes were running
	}
	// The lookup is answered from the node's own tables (4 peers), so it
	// is the wait for a token that runs out of time.
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	var calls atomic.Int32
	err := n.PutLent(ctx, c, data, func() { calls.Add(1) })
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "replicas of") || calls.Load() != 1 {
		t.Fatalf("put with every token taken: %v, done called %d times; want a timeout waiting for a token and 1", err, calls.Load())
	}
	for range cap(n.blocks.writes) {
		<-n.blocks.writes
	}
	if err := n.Put(testCtx(t), c, data); err != nil {
		t.Fatal(err)
	}
	n.bg.Wait()
	if got := len(n.blocks.writes); got != 0 {
		t.Errorf("%d tokens still taken after every write ended", got)
	}
}

// A put whose context ends while another put waits for the write tokens
// (every one taken) returns at once, not when the other gets its tokens.
func TestPutCancelledWhileAnotherWaitsForTokens(t *testing.T) {
	r, _ := storedRing(t, 4)
	n := r.nodes[1]
	for range cap(n.blocks.writes) {
		n.blocks.writes <- struct{}{} // as if that many writes were running
	}
	defer func() {
		for range cap(n.blocks.writes) {
			<-n.blocks.writes
		}
	}()
	waitCtx, stopWaiting := context.WithCancel(testCtx(t))
	waiting := make(chan error, 1)
	go func() { waiting <- n.claimWrites(waitCtx, 3) }()
	// The first put holds the turn once it is waiting for a token.
	for len(n.blocks.claim) == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	got := make(chan error, 1)
	go func() { got <- n.claimWrites(ctx, 3) }()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled claim: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // a hang, not a timing figure
		t.Error("a cancelled claim waited for the other put's turn")
	}
	stopWaiting()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting claim: %v, want context.Canceled", err)
	}
}

// A replica that answers a get with bytes that do not match the CID is
// skipped: the get goes on to another and returns the block.
func TestGetSkipsReplicaServingWrongBytes(t *testing.T) {
	r, stores := storedRing(t, 6)
	ctx := context.Background()
	data := []byte("the real block")
	c := rawBlock(t, data)
	putSettled(t, r, c, data)
	replicas, _ := r.nodes[0].Replicas(ctx, c)
	liar := replicas[0]
	// Damage the copy on the first replica by swapping the node's store
	// for one that lies.
	for _, n := range r.nodes {
		if n.Host().ID() == liar {
			n.cfg.Store = lyingStore{stores[n]}
		}
	}
	var fetcher *Node
	for _, n := range r.nodes {
		if !stores[n].Has(c) {
			fetcher = n
			break
		}
	}
	// A get asks first the replica whose block should arrive first
	// (replicaRates.pick): make that the liar, by a fast block measured
	// from it and a recent failure of each other replica, or the test
	// would pass without the hash check whenever an honest one came first.
	fetcher.blocks.rates.start(liar)(time.Microsecond, fetchOK)
	for _, p := range replicas[1:] {
		fetcher.blocks.rates.start(p)(time.Microsecond, fetchFailed)
	}
	steps := traceGets(fetcher)
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get with one lying replica: %q, %v; want %q", got, err, data)
	}
	var asked []p2ppeer.ID
	refused := false
	for _, e := range steps() {
		switch {
		case e.Step == GetAsked:
			asked = append(asked, e.Peer)
		case e.Step == GetDropped && e.Peer == liar:
			refused = errors.Is(e.Err, ErrBadBlock)
		}
	}
	if len(asked) < 2 || asked[0] != liar || !refused {
		t.Errorf("asked %v, the liar %s first: %v, its answer refused as a bad block: %v; want it asked first and refused", asked, liar, len(asked) > 0 && asked[0] == liar, refused)
	}
}

// traceGets records n's Get steps (Config.GetTrace); the function it
// returns gives those recorded so far.
func traceGets(n *Node) func() []GetEvent {
	var mu sync.Mutex
	var steps []GetEvent
	n.cfg.GetTrace = func(e GetEvent) {
		mu.Lock()
		steps = append(steps, e)
		mu.Unlock()
	}
	return func() []GetEvent {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(steps)
	}
}

type lyingStore struct{ *blocks.Store }

func (l lyingStore) Get(c cid.Cid) ([]byte, error) { return []byte("forged bytes"), nil }

func (l lyingStore) GetWith(c cid.Cid, _ func(int) []byte) ([]byte, error) { return l.Get(c) }

// With fewer than W replicas reachable, a put reports failure.
func TestPutFailsWithoutWriteQuorum(t *testing.T) {
	r, _ := storedRing(t, 4)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 5))
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	c := rawBlock(t, data)
	writer := r.nodes[0]
	// Cut the writer off from every other peer: neither the replicas nor a
	// hinted handoff past them can take the block.
	for _, n := range r.nodes[1:] {
		_ = r.mn.UnlinkPeers(writer.Host().ID(), n.Host().ID())
		_ = r.mn.DisconnectPeers(writer.Host().ID(), n.Host().ID())
	}
	err := writer.Put(ctx, c, data)
	if err == nil {
		t.Fatal("put succeeded with fewer than W replicas reachable")
	}
	t.Log(err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("put hung until a timeout instead of failing")
	}
}

// A put returns after W = 2 durable acknowledgements while the third
// replica is still writing, and the third completes in the background.
func TestPutReturnsAtWriteQuorum(t *testing.T) {
	r, stores := storedRing(t, 4)
	data := bytes.Repeat([]byte("quorum "), 1000)
	c := rawBlock(t, data)
	ctx := testCtx(t)
	replicas, err := r.nodes[0].Replicas(ctx, c)
	if err != nil || len(replicas) != 3 {
		t.Fatalf("replicas: %v %v", replicas, err)
	}
	// The writer is the peer that is no replica, so all three writes go
	// over the network; the last replica's store holds its write.
	var writer, slow *Node
	for _, n := range r.nodes {
		switch n.Host().ID() {
		case replicas[2]:
			slow = n
		case replicas[0], replicas[1]:
		default:
			writer = n
		}
	}
	gate := &gatedStore{BlockStore: stores[slow], release: make(chan struct{}), entered: make(chan struct{}, 8)}
	slow.cfg.Store = gate
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()

	putCtx, cancel := context.WithTimeout(ctx, 20*time.Second) // a hang, not a timing figure
	defer cancel()
	if err := writer.Put(putCtx, c, data); err != nil {
		t.Fatalf("put with the third replica still writing: %v", err)
	}
	if holders := holderCount(stores, c); holders != 2 || stores[slow].Has(c) {
		t.Fatalf("when the put returned: %d stores hold the block, the slow replica's among them: %v; want 2, not it", holders, stores[slow].Has(c))
	}
	select {
	case <-gate.entered: // the third write is on its way, held in the store
	case <-ctx.Done():
		t.Fatal("the third replica's write never reached its store")
	}
	close(gate.release)
	released = true
	writer.bg.Wait()
	if !stores[slow].Has(c) {
		t.Error("the third replica does not hold the block after its background write")
	}
}

// A peer that PUTs bytes which do not hash to the CID is refused, and the
// receiver stores nothing.
func TestForgedPutIsRefused(t *testing.T) {
	r, stores := storedRing(t, 2)
	c := rawBlock(t, []byte("the real block"))
	from, to := r.nodes[0], r.nodes[1]
	err := from.storeAt(context.Background(), to.Host().ID(), c, []byte("forged bytes"))
	if !errors.Is(err, ErrBadBlock) {
		t.Fatalf("forged put: %v, want ErrBadBlock", err)
	}
	if stores[to].Has(c) {
		t.Fatal("forged block stored")
	}
}

// A client (capacity 0, no store) shares and fetches through the ring: its
// puts land on the ring's peers, never on itself, and it still fetches when
// the peer it bootstrapped from has crashed.
func TestClientPutsAndGetsThroughTheRing(t *testing.T) {
	r, stores := storedRing(t, 5)
	r.beforeNode = nil
	r.cfg.Chord.Vnodes = 0
	client := r.add(1)[0]
	boot := r.nodes[1]
	r.join(client, boot)
	ctx := context.Background()
	data := bytes.Repeat([]byte("client "), 500)
	c := rawBlock(t, data)
	if err := client.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	client.bg.Wait()
	replicas, err := client.Replicas(ctx, c)
	if err != nil || len(replicas) != 3 || slices.Contains(replicas, client.Host().ID()) {
		t.Fatalf("replicas seen by the client: %v %v", replicas, err)
	}
	if holders := holderCount(stores, c); holders != 3 {
		t.Fatalf("%d ring peers hold the client's block, want 3", holders)
	}
	r.crash(boot)
	r.converge(200)
	got, err := client.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client get after its bootstrap peer crashed: %v", err)
	}
}

// An internal DAG node (dag-pb) is small and every leaf below it waits for
// it: a Get asks all its replicas at once and takes the first answer.
func TestGetAsksEveryReplicaForInternalNode(t *testing.T) {
	r, stores := storedRing(t, 4)
	ctx := context.Background()
	data := []byte("an internal node's bytes")
	c, err := cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	putSettled(t, r, c, data)
	fetcher, _ := lackingMost(t, r, stores, []cid.Cid{c}, 1)
	steps := traceGets(fetcher)
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %v", err)
	}
	// Asked at once: one replica asked alone answers in a moment here, and
	// the others would never be asked.
	asked := map[p2ppeer.ID]bool{}
	for _, e := range steps() {
		if e.Step == GetAsked {
			asked[e.Peer] = true
		}
	}
	if len(asked) != 3 {
		t.Errorf("%d replicas asked, want all 3", len(asked))
	}
}

// A replica that stops mid-block is asked again elsewhere after
// silentWaits hedge delays without bytes of its own answer, even while
// another Get of the same node keeps receiving bytes: the silence that
// marks a stall is each request's own, not the node's.
func TestGetHedgesReplicaStalledMidBlockWhileOthersReceive(t *testing.T) {
	r := newMockRing(t, testConfig())
	nodes := r.add(2)
	r.joinAll(nodes)
	r.converge(50)
	fetcher, staller := nodes[0], nodes[1]
	data := bytes.Repeat([]byte("stalled mid-block "), 4000)
	c := rawBlock(t, data)
	trickled := rawBlock(t, []byte("a block that arrives a byte at a time"))
	stop := make(chan struct{})
	defer close(stop)

	// The staller (a ring peer: its round trip is known, so it is asked
	// first) sends half the block, then nothing.
	staller.Host().SetStreamHandler(BlockProtocol, func(s network.Stream) {
		defer s.Reset()
		if readGet(s) == nil {
			_ = writeBlockMsg(context.Background(), nil, s, &pb.BlockResponse{Size: uint32(len(data))}, data[:len(data)/2], nil)
			<-stop
		}
	})
	// A host outside the ring has it all.
	holder := bareHost(t, r, func(s network.Stream) {
		defer s.Reset()
		if readGet(s) == nil {
			_ = writeBlockMsg(context.Background(), nil, s, &pb.BlockResponse{Size: uint32(len(data))}, data, nil)
			<-stop
		}
	})
	// Another host sends the other block a byte at a time, as long as
	// the test runs.
	trickler := bareHost(t, r, func(s network.Stream) {
		defer s.Reset()
		if readGet(s) == nil {
			_ = writeBlockMsg(context.Background(), nil, s, &pb.BlockResponse{Size: 1 << 20}, nil, nil)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := s.Write([]byte{0}); err != nil {
						return
					}
				}
			}
		}
	})
	fetcher.setLocated(c, staller.Host().ID(), holder)
	fetcher.setLocated(trickled, trickler)

	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute) // a hang, not a timing figure
	defer cancel()
	go func() { _, _ = fetcher.Get(ctx, trickled) }()
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get with the first replica stalled mid-block: %v", err)
	}
}

// bareHost is a host outside the ring, linked and connected to its
// nodes, serving the block protocol with serve.
func bareHost(t *testing.T, r *mockRing, serve network.StreamHandler) p2ppeer.ID {
	h, err := r.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	r.link(h)
	for _, n := range r.live() {
		if err := h.Connect(context.Background(), addrInfo(n)); err != nil {
			t.Fatal(err)
		}
	}
	h.SetStreamHandler(BlockProtocol, serve)
	return h.ID()
}

// readGet reads one block request, a GET.
func readGet(s network.Stream) error {
	req := &pb.BlockRequest{}
	if err := readBlockHeader(bufio.NewReader(s), req); err != nil {
		return err
	}
	if req.GetType() != pb.BlockRequest_GET {
		return errors.New("not a GET")
	}
	return nil
}

// setLocated makes peers c's replica list, in that order, as if Locate
// had looked it up.
func (n *Node) setLocated(c cid.Cid, peers ...p2ppeer.ID) {
	e := &replicaList{claimed: true, ready: make(chan struct{}), peers: peers, at: time.Now()}
	close(e.ready)
	n.blocks.located.mu.Lock()
	n.blocks.located.entries[c] = e
	n.blocks.located.mu.Unlock()
}
