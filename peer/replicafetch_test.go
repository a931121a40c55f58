package peer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/blocks"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// A fetcher that is one of a block's replicas keeps the block it fetched,
// so that repair then finds the replicas in sync and moves nothing over
// its link; a fetcher that is not keeps nothing.
func TestGetStoresBlockItIsReplicaOf(t *testing.T) {
	r := newRepairRing(t, 4, repairTestConfig())
	data := make([]byte, 100<<10)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	c := rawBlock(t, data)
	prefs := r.preference(c)
	replica := prefs[len(prefs)-1]
	var outsider *Node
	for _, n := range r.live() {
		if !slices.Contains(prefs, n) {
			outsider = n
		}
	}
	for _, n := range prefs[:len(prefs)-1] {
		if err := r.stores[n].Put(c, data); err != nil {
			t.Fatal(err)
		}
	}
	r.blocks = append(r.blocks, c)

	for _, n := range []*Node{outsider, replica} {
		got, err := n.Get(testCtx(t), c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get: %v", err)
		}
		n.bg.Wait() // the copy is stored in the background
	}
	if r.stores[outsider].Has(c) {
		t.Error("a fetcher outside the block's replicas stored it")
	}
	if !r.stores[replica].Has(c) {
		t.Fatal("the fetcher, one of the block's replicas, did not store it")
	}
	r.checkReplicated("after the fetch")
	if _, moved := r.roundsUntilQuiet(3); moved != 0 {
		t.Errorf("repair moved %d blocks after the fetch, want 0", moved)
	}
}

// A replica whose store is full still gets the block: keeping a copy is
// no reason to fail the fetch.
func TestGetByReplicaWithFullStore(t *testing.T) {
	r := newMockRing(t, testConfig())
	limits := []int64{1 << 10, 0} // the fetcher's store holds 1 KiB
	r.beforeNode = func(cfg *Config) {
		st, err := blocks.Open(t.TempDir(), blocks.Options{MaxBytes: limits[0]})
		if err != nil {
			t.Fatal(err)
		}
		limits = limits[1:]
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	nodes := r.add(2)
	r.joinAll(nodes)
	r.converge(50)
	fetcher, holder := nodes[0], nodes[1]
	data := bytes.Repeat([]byte("a block too big for the fetcher's store "), 2000)
	c := rawBlock(t, data)
	if err := holder.cfg.Store.Put(c, data); err != nil {
		t.Fatal(err)
	}
	fetcher.setLocated(c, fetcher.Host().ID(), holder.Host().ID())
	got, err := fetcher.Get(testCtx(t), c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get by a replica with a full store: %v", err)
	}
	fetcher.bg.Wait()
	if fetcher.cfg.Store.Has(c) {
		t.Error("a store of 1 KiB took a block of 80 KB")
	}
}

// A repair pull in flight to a replica counts as a request out to it: a
// Get then asks another replica first, rather than queue behind the pull
// on a holder that may be slow.
func TestRepairPullCountsAsRequestOut(t *testing.T) {
	r := newRepairRing(t, 2, repairTestConfig())
	puller, holder := r.nodes[0], r.nodes[1]
	var data []byte
	var c cid.Cid
	for i := 0; ; i++ {
		data = bytes.Repeat([]byte{byte(i)}, 80<<10)
		c = rawBlock(t, data)
		if r.preference(c)[0] == puller {
			break // on the puller's arc: its round pulls it from the holder
		}
	}
	if err := r.stores[holder].Put(c, data); err != nil {
		t.Fatal(err)
	}
	asked, stop := make(chan struct{}), make(chan struct{})
	holder.Host().SetStreamHandler(BlockProtocol, func(s network.Stream) {
		defer s.Reset()
		if readGet(s) == nil {
			close(asked)
			<-stop
		}
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	round := make(chan error, 1)
	go func() {
		_, err := puller.RepairRound(ctx)
		round <- err
	}()
	select {
	case <-asked:
	case err := <-round:
		t.Fatalf("the round ended without pulling the block: %v", err)
	}
	other := bareHost(t, r.mockRing, func(s network.Stream) { s.Reset() })
	sameRTT := func(p2ppeer.ID) (time.Duration, bool) { return time.Millisecond, true }
	pick := puller.blocks.rates.pick([]p2ppeer.ID{holder.Host().ID(), other}, sameRTT)
	close(stop)
	<-round
	if pick != 1 {
		t.Error("a Get would ask the replica a repair pull is waiting on first")
	}
	// Ended (here, failed), the pull leaves no trace in the rates.
	rates := puller.blocks.rates
	rates.mu.Lock()
	defer rates.mu.Unlock()
	if pr := rates.peers[holder.Host().ID()]; pr == nil || len(pr.started) != 0 || pr.blockTime != 0 || !pr.avoid.IsZero() || rates.inflight != 0 {
		t.Errorf("after the pull: %+v, %d in flight; want it forgotten", pr, rates.inflight)
	}
}
