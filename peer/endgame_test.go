package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"chordshare/peer/pb"
	"chordshare/share"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// A block coming slowly from its holder (32 KiB/s, 4 s for it) while
// another replica is measured to deliver one in 100 ms: mid-fetch (as
// share.Fetch marks it, while its walker waits for the root) it is left
// to finish, a second request would take link from the fetch's other
// blocks; in a lone Get (its own endgame) it is hedged to that replica.
// Main's rule hedged on elapsed time alone, mid-fetch too.
func TestGetHedgesSlowHolderOnlyInEndgame(t *testing.T) {
	r, stores := storedRing(t, 4)
	c, data, fetcher, holders := blockOffOnePeer(t, r, stores, 128<<10, 13)
	slow, fast := holders[0], holders[1]
	for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
		l.SetOptions(mocknet.LinkOptions{Bandwidth: 32 << 10})
	}
	defer func() {
		for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
			l.SetOptions(mocknet.LinkOptions{})
		}
	}()
	// What earlier blocks measured: slow a little faster than fast (so it
	// is asked first), the third replica failing.
	measured := func() {
		fetcher.blocks.rates = newReplicaRates()
		fetcher.blocks.rates.start(slow.Host().ID())(90*time.Millisecond, fetchOK)
		fetcher.blocks.rates.start(fast.Host().ID())(100*time.Millisecond, fetchOK)
		fetcher.blocks.rates.start(holders[2].Host().ID())(time.Second, fetchFailed)
	}
	served := func(n *Node) int64 { return n.blocks.served.Load() }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang, not a timing figure
	defer cancel()

	// Mid-fetch: the Get runs under a Fetch's context while the Fetch
	// waits for its root (a dag-pb one: not its endgame).
	measured()
	before := [2]int64{served(slow), served(fast)}
	hash, err := mh.Sum([]byte("a root the fetch never gets"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	var midErr error
	var midGot []byte
	var asked int
	errDone := errors.New("the block is fetched")
	getter := getterFunc(func(ctx context.Context, _ cid.Cid) ([]byte, error) {
		if asked++; asked == 1 {
			if share.Endgame(ctx) {
				midErr = errors.New("the fetch was in its endgame while getting its root")
			} else {
				midGot, midErr = fetcher.Get(ctx, c)
			}
		}
		return nil, errDone
	})
	if err := share.Fetch(ctx, cid.NewCidV1(cid.DagProtobuf, hash), getter, share.ToWriter(io.Discard), share.FetchOptions{Attempts: 1}); !errors.Is(err, errDone) {
		t.Fatalf("fetch: %v", err)
	}
	if midErr != nil || !bytes.Equal(midGot, data) {
		t.Fatalf("get mid-fetch: %v", midErr)
	}
	if n := served(slow) - before[0]; n != 1 {
		t.Errorf("mid-fetch, the slow holder served %d times, want once", n)
	}
	if n := served(fast) - before[1]; n != 0 {
		t.Errorf("mid-fetch, the fast replica served %d times, want none: a block that comes slowly but steadily was hedged", n)
	}

	// A lone Get: its own endgame.
	measured()
	before = [2]int64{served(slow), served(fast)}
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("lone get: %v", err)
	}
	if n := served(fast) - before[1]; n != 1 {
		t.Errorf("in the endgame, the fast replica served %d times, want once: the slow holder was not hedged", n)
	}
}

// A block being received slowly in a lone Get (its own endgame) is hedged
// to the replica whose expected whole-block time justified the hedge, not
// to the one the usual pick would ask next. Here they differ: A's last
// block took 1 s among 33 requests in flight (fast under a light load),
// B's 600 ms alone; pick ranks by time per block (B first), the hedge by
// the time a block asked now would take (A first). Main's rule hedged
// with pick, so B served the block there. The slow holder measured
// 500 ms, so that it is asked first and its answer, which starts within
// 250 ms (its first 4 KiB), is given twice that (1 s) and a grace before
// it counts as not answering: at 90 ms that was 360 ms, which a loaded
// machine overran, and the not-answering rule asked B (pick) before the
// endgame's hedge could choose.
func TestGetHedgesToTheReplicaThatJustifiedIt(t *testing.T) {
	r, stores := storedRing(t, 4)
	c, data, fetcher, holders := blockOffOnePeer(t, r, stores, 256<<10, 13)
	slow, a, b := holders[0], holders[1], holders[2]
	for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
		l.SetOptions(mocknet.LinkOptions{Bandwidth: 16 << 10})
	}
	defer func() {
		for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
			l.SetOptions(mocknet.LinkOptions{})
		}
	}()
	rates := newReplicaRates()
	var others []func(time.Duration, fetchOutcome)
	for range 32 {
		others = append(others, rates.start("another file's replica"))
	}
	rates.start(a.Host().ID())(time.Second, fetchOK)
	for _, end := range others {
		end(time.Second, fetchLacked)
	}
	rates.start(b.Host().ID())(600*time.Millisecond, fetchOK)
	rates.start(slow.Host().ID())(500*time.Millisecond, fetchOK) // asked first
	fetcher.blocks.rates = rates
	if got := rates.pick([]p2ppeer.ID{a.Host().ID(), b.Host().ID()}, func(p2ppeer.ID) (time.Duration, bool) { return 0, false }); got != 1 {
		t.Fatalf("pick chose replica %d of A, B: the setup does not tell the hedge's choice from pick's", got)
	}
	served := func(n *Node) int64 { return n.blocks.served.Load() }
	before := [3]int64{served(slow), served(a), served(b)}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang, not a timing figure
	defer cancel()
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get from a slow holder: %v", err)
	}
	if n := served(slow) - before[0]; n != 1 {
		t.Errorf("the slow holder served %d times, want once (asked first)", n)
	}
	if n := served(a) - before[1]; n != 1 {
		t.Errorf("A, expected to deliver a block soonest, served %d times, want once (the hedge)", n)
	}
	if n := served(b) - before[2]; n != 0 {
		t.Errorf("B, pick's next choice, served %d times, want none", n)
	}
}

// A request retried on a new stream after its reused one broke mid-block
// starts its progress over: the retry's rate is measured from its own
// header, not from the broken attempt's (whose bytes no longer count),
// which would make it look slower than it is and hedge it for nothing.
func TestBlockExchangeRetryResetsProgress(t *testing.T) {
	r, _ := storedRing(t, 2)
	a, b := r.nodes[0], r.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang, not a timing figure
	defer cancel()
	data := bytes.Repeat([]byte("retried"), 1000)
	c := rawBlock(t, data)
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	// A stream in a's pool whose far end sends a header and half a
	// block, then breaks once the test says so.
	const cutProto = "/chordshare/test/cut"
	cut := make(chan struct{})
	b.Host().SetStreamHandler(cutProto, func(s network.Stream) {
		_, _ = s.Write(blockFrame(&pb.BlockResponse{Status: pb.BlockResponse_OK, Size: 1000}, make([]byte, 500)))
		select {
		case <-cut:
		case <-ctx.Done():
		}
		_ = s.Reset()
	})
	s, err := a.Host().NewStream(ctx, b.Host().ID(), cutProto)
	if err != nil {
		t.Fatal(err)
	}
	a.blocks.streams.put(b.Host().ID(), &blockStream{s: s, r: bufio.NewReader(s)})

	answered := make(chan struct{})
	q := &request{peer: b.Host().ID(), began: time.Now(), answering: func() { close(answered) }}
	fetched := make(chan error, 1)
	go func() {
		_, err := a.fetchWatched(ctx, b.Host().ID(), c, q)
		fetched <- err
	}()
	select {
	case <-answered:
	case <-ctx.Done():
		t.Fatal("no header on the pooled stream")
	}
	time.Sleep(time.Millisecond) // the clock moves on past the first header (no goroutine is raced)
	mark := time.Now()
	close(cut)
	if err := <-fetched; err != nil {
		t.Fatalf("the retry on a new stream failed: %v", err)
	}
	end := time.Now()
	tp, ok := q.progress(end)
	if !ok || tp.got != len(data) || tp.total != len(data) {
		t.Fatalf("progress %+v, %v; want all %d bytes", tp, ok, len(data))
	}
	if tp.receiving > end.Sub(mark) {
		t.Fatalf("receiving for %v, longer than since the first attempt broke (%v): the retry kept its header's time", tp.receiving, end.Sub(mark))
	}
}
