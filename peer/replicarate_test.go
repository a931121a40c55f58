package peer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/blocks"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Requests go to the replica whose next block is due first: the expected
// wait grows with the requests in flight and with the measured time per
// block; an unmeasured replica counts as the fastest measured one; an
// estimate fades without samples; a failure makes a replica the last
// choice for a while, and a block it merely lacks does not.
func TestReplicaRatesPick(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast, slow, fresh := p2ppeer.ID("fast"), p2ppeer.ID("slow"), p2ppeer.ID("fresh")
	rtts := map[p2ppeer.ID]time.Duration{fast: time.Millisecond, slow: 5 * time.Millisecond}
	rtt := func(p p2ppeer.ID) (time.Duration, bool) { d, ok := rtts[p]; return d, ok }
	pick := func(peers ...p2ppeer.ID) p2ppeer.ID { return peers[r.pick(peers, rtt)] }

	if got := pick(fresh, slow, fast); got != fast {
		t.Fatalf("nothing measured: picked %s, want the lowest round trip", got)
	}
	r.start(fast)(time.Millisecond, fetchOK)
	r.start(slow)(50*time.Millisecond, fetchOK)
	// 10 blocks in flight to fast: its next is due after 11 ms, still
	// before slow's; at 50 in flight, slow's is due first.
	var ends []func(time.Duration, fetchOutcome)
	for range 10 {
		ends = append(ends, r.start(fast))
	}
	if got := pick(slow, fast); got != fast {
		t.Fatalf("fast with 10 in flight: picked %s", got)
	}
	if got := pick(slow, fast, fresh); got != fresh {
		t.Fatalf("an unmeasured replica next to a loaded fast one: picked %s", got)
	}
	for range 40 {
		ends = append(ends, r.start(fast))
	}
	if got := pick(slow, fast); got != slow {
		t.Fatalf("fast with 50 in flight: picked %s", got)
	}
	// The k-th of them shared the replica with k requests: ending the 10th
	// after 10 ms is 1 ms a block, no change to the estimate.
	for i, end := range ends {
		how := fetchLacked
		if i == 9 {
			how = fetchOK
		}
		end(10*time.Millisecond, how)
	}
	if got := r.peers[fast].blockTime; got != time.Millisecond {
		t.Fatalf("fast's time per block %v, want 1 ms", got)
	}
	r.start(fast)(3*time.Millisecond, fetchOK)
	if got := r.peers[fast].blockTime; got <= time.Millisecond || got >= 3*time.Millisecond {
		t.Fatalf("after one slower block fast's time is %v, want between 1 and 3 ms", got)
	}
	// Slow's 50 ms fades once idle: 10 of its half-lives on (probeBlocks
	// of its blocks each), it is below fast's fresh one.
	clock = clock.Add(10 * probeBlocks * 50 * time.Millisecond)
	r.start(fast)(time.Millisecond, fetchOK)
	if got := pick(fast, slow); got != slow {
		t.Fatalf("a stale slow estimate did not fade: picked %s", got)
	}
	r.start(slow)(50*time.Millisecond, fetchOK)
	r.start(fast)(time.Millisecond, fetchLacked) // no penalty
	if got := pick(slow, fast); got != fast {
		t.Fatalf("a replica lacking a block was penalized: picked %s", got)
	}
	r.start(fast)(time.Millisecond, fetchFailed)
	if got := pick(fast, slow); got != slow {
		t.Fatalf("a failed replica was picked: %s", got)
	}
	clock = clock.Add(failureMemory)
	if got := pick(fast, slow); got != fast {
		t.Fatalf("a failure was held against a replica for more than %v", failureMemory)
	}
	// A replica outrun by a hedge after 200 ms is slower than that.
	r.start(fresh)(200*time.Millisecond, fetchOutrun)
	if got := r.peers[fresh].blockTime; got != 200*time.Millisecond {
		t.Fatalf("outrun after 200 ms: time per block %v", got)
	}
	r.start(fast)(100*time.Microsecond, fetchOutrun) // faster than measured: no news
	if got := r.peers[fast].blockTime; got < 500*time.Microsecond {
		t.Fatalf("an outrun request lowered an estimate to %v", got)
	}
	if got := r.fetched(fast); got != 4 {
		t.Fatalf("fetched %d from fast, want 4", got)
	}
}

// A replica's estimate does not fade while it works, and a request
// outstanding for longer than the estimate raises it: requests stop going
// to a replica that is slow before it has answered once, measured or not.
func TestReplicaRatesOverdue(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast, slow, fresh := p2ppeer.ID("fast"), p2ppeer.ID("slow"), p2ppeer.ID("fresh")
	rtt := func(p2ppeer.ID) (time.Duration, bool) { return time.Millisecond, true }
	pick := func(peers ...p2ppeer.ID) p2ppeer.ID { return peers[r.pick(peers, rtt)] }

	r.start(fast)(100*time.Millisecond, fetchOK)
	r.start(slow)(time.Second, fetchOK)
	endSlow := r.start(slow)
	clock = clock.Add(50 * rateHalfLife) // would fade an idle estimate to nothing
	if got := r.peers[slow].estimate(clock); got < 5*time.Second {
		t.Fatalf("slow, 5 s into a request, estimates %v a block, want at least 5 s", got)
	}
	endSlow(5*time.Second, fetchOK)
	// fresh is asked once and does not answer for 3 s: by then it counts
	// as 3 s a block, not as fast as the fastest measured.
	endFresh := r.start(fresh)
	r.start(fast)(100*time.Millisecond, fetchOK)
	if got := pick(fresh, fast); got != fast {
		t.Fatalf("just asked, fresh is unmeasured like fast: picked %s (its one request counts)", got)
	}
	clock = clock.Add(3 * time.Second)
	r.start(fast)(100*time.Millisecond, fetchOK)
	if got := r.peers[fresh].estimate(clock); got < 3*time.Second {
		t.Fatalf("fresh 3 s into its first request estimates %v a block", got)
	}
	for range 10 {
		r.start(fast) // 10 in flight, none overdue yet
	}
	if got := pick(fresh, fast); got != fast {
		t.Fatalf("fresh overdue by 3 s against fast with 10 in flight: picked %s", got)
	}
	endFresh(3*time.Second, fetchOK)
	if len(r.peers[fresh].started) != 0 {
		t.Fatalf("a finished request is still in flight")
	}
}

// A fetch of many blocks from three replicas, two with 8 MiB/s links to the
// fetcher and one with a far 128 KiB/s link, pulls from both fast replicas
// and takes few blocks from the slow one, so it does not wait for it.
func TestGetSpreadsOverReplicasAndAvoidsSlowOne(t *testing.T) {
	r, stores := storedRing(t, 4)
	ctx := context.Background()
	// Put blocks until one peer lacks 48 of them; that peer fetches them,
	// and their replicas are the other three.
	rng := rand.New(rand.NewPCG(9, 9))
	const want = 48
	var all []cid.Cid
	content := map[cid.Cid][]byte{}
	var fetcher *Node
	var blocks []cid.Cid
	for fetcher == nil {
		var wg sync.WaitGroup
		for range 16 {
			data := make([]byte, 64<<10)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			c := rawBlock(t, data)
			all = append(all, c)
			content[c] = data
			wg.Go(func() {
				if err := r.nodes[0].Put(ctx, c, data); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		r.nodes[0].bg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, n := range r.nodes {
			blocks = slices.DeleteFunc(slices.Clone(all), stores[n].Has)
			if len(blocks) >= want {
				fetcher, blocks = n, blocks[:want]
				break
			}
		}
	}
	var others []*Node
	for _, n := range r.nodes {
		if n != fetcher {
			others = append(others, n)
		}
	}
	slow := others[2]
	for _, n := range others {
		opts := mocknet.LinkOptions{Bandwidth: 8 << 20}
		if n == slow {
			opts = mocknet.LinkOptions{Latency: 20 * time.Millisecond, Bandwidth: 128 << 10}
		}
		for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), n.Host().ID()) {
			l.SetOptions(opts)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan cid.Cid)
	for range 8 { // share.Fetch's window, scaled down
		wg.Go(func() {
			for c := range work {
				got, err := fetcher.Get(ctx, c)
				if err != nil || !bytes.Equal(got, content[c]) {
					t.Errorf("get %s: %v", c, err)
				}
			}
		})
	}
	for _, c := range blocks {
		work <- c
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	rates := fetcher.blocks.rates
	var total int64
	counts := map[*Node]int64{}
	measured := map[*Node]time.Duration{} // time per block
	for _, n := range others {
		counts[n] = rates.fetched(n.Host().ID())
		total += counts[n]
		rates.mu.Lock()
		measured[n] = rates.peers[n.Host().ID()].blockTime
		rates.mu.Unlock()
	}
	t.Logf("%d blocks in %v; from fast %d and %d (%v, %v per block), from slow %d (%v)", want, took,
		counts[others[0]], counts[others[1]], measured[others[0]], measured[others[1]], counts[slow], measured[slow])
	if total < want {
		t.Fatalf("%d blocks received, want at least %d", total, want)
	}
	// How the two fast replicas share the load depends on how fast each
	// looked on this busy machine; each must take part, unless it looked
	// over twice as slow as the other: one answer stalled by the
	// machine (the race detector, two cores shared) makes a fast replica
	// look slow, and it is avoided until its estimate has decayed (it
	// halves every 8 of its block times, longer than this fetch lasts).
	// That is the picker following what it measured; a fast replica
	// passed over while it measured as fast as the other is not.
	for i, n := range others[:2] {
		if other := others[1-i]; counts[n] < want/8 && measured[n] < 2*measured[other] {
			t.Errorf("fast replica %s served %d of %d blocks at %v per block, the other %v: the load was not spread",
				n.Host().ID().ShortString(), counts[n], want, measured[n], measured[other])
		}
	}
	// An even third from the slow replica would be 16 blocks, over 8 s
	// at its link's rate; the fast ones need about 0.4 s for all of them.
	if counts[slow] > want/8 {
		t.Errorf("slow replica served %d of %d blocks", counts[slow], want)
	}
	if took > 4*time.Second {
		t.Errorf("the fetch took %v: it waited for the slow replica", took)
	}
}

// blockOffOnePeer puts random blocks of size bytes from r.nodes[0] until
// exactly one peer of r lacks one, and returns that block, its bytes, the
// peer lacking it (to fetch it) and the others (its replicas). Which peer
// that is depends on the random peer IDs: a fixed fetcher can sit where
// almost no key falls outside its preference lists.
func blockOffOnePeer(t *testing.T, r *mockRing, stores map[*Node]*blocks.Store, size int, seed uint64) (c cid.Cid, data []byte, fetcher *Node, holders []*Node) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		data = make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		c = rawBlock(t, data)
		if err := r.nodes[0].Put(context.Background(), c, data); err != nil {
			t.Fatal(err)
		}
		r.nodes[0].bg.Wait()
		var lacking []*Node
		holders = nil
		for _, n := range r.nodes {
			if stores[n].Has(c) {
				holders = append(holders, n)
			} else {
				lacking = append(lacking, n)
			}
		}
		if len(lacking) == 1 {
			return c, data, lacking[0], holders
		}
	}
	t.Fatal("no block held by all peers but one in 200 tries")
	return cid.Undef, nil, nil, nil
}

// A replica that is sending a block slowly is not hedged (every replica
// would share the fetcher's thin link and send it again); replicas that do
// not answer at all are.
func TestGetHedgesStalledNotSlowReplicas(t *testing.T) {
	r, stores := storedRing(t, 4)
	c, data, fetcher, others := blockOffOnePeer(t, r, stores, 256<<10, 11)
	setLinks := func(opts func(n *Node) mocknet.LinkOptions) {
		for _, n := range others {
			for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), n.Host().ID()) {
				l.SetOptions(opts(n))
			}
		}
	}
	served := func() (total int64) {
		for _, n := range others {
			total += n.blocks.served.Load()
		}
		return total
	}

	// Every replica's link to the fetcher carries 256 KiB/s: the block
	// takes a second, ten times the first hedge delay.
	setLinks(func(*Node) mocknet.LinkOptions {
		return mocknet.LinkOptions{Latency: 5 * time.Millisecond, Bandwidth: 256 << 10}
	})
	before := served()
	got, err := fetcher.Get(context.Background(), c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get over slow links: %v", err)
	}
	if n := served() - before; n != 1 {
		t.Errorf("a block sent slowly was served %d times, want once", n)
	}

	// Two replicas stall (their answers take 20 s to arrive): the fetch
	// hedges past them to the third.
	// The links of the first part go back to unlimited first: the next
	// block may have another fetcher.
	setLinks(func(*Node) mocknet.LinkOptions { return mocknet.LinkOptions{} })
	c, data, fetcher, others = blockOffOnePeer(t, r, stores, 4<<10, 12)
	stalled := 0
	setLinks(func(n *Node) mocknet.LinkOptions {
		if n == others[2] {
			return mocknet.LinkOptions{}
		}
		stalled++
		return mocknet.LinkOptions{Latency: 20 * time.Second}
	})
	fetcher.blocks.rates = newReplicaRates() // forget what the first part measured
	start := time.Now()
	got, err = fetcher.Get(context.Background(), c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get past stalled replicas: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("get past %d stalled replicas took %v: it waited for them", stalled, took)
	}
}

// The fetch's tail: its block comes from a holder whose link to the
// fetcher carries 16 KiB/s (16 s for it), while another replica is measured
// to deliver a block in 100 ms. The request's progress in bytes says it is
// far from its end: it is hedged to that replica, which sends the block.
func TestGetHedgesSlowHolderToFastReplica(t *testing.T) {
	r, stores := storedRing(t, 4)
	c, data, fetcher, holders := blockOffOnePeer(t, r, stores, 256<<10, 13)
	slow, fast := holders[0], holders[1]
	for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
		l.SetOptions(mocknet.LinkOptions{Bandwidth: 16 << 10})
	}
	defer func() {
		for _, l := range r.mn.LinksBetweenPeers(fetcher.Host().ID(), slow.Host().ID()) {
			l.SetOptions(mocknet.LinkOptions{})
		}
	}()
	// What earlier blocks measured: slow a little faster than fast (so it
	// is asked first), the third replica failing.
	fetcher.blocks.rates = newReplicaRates()
	fetcher.blocks.rates.start(slow.Host().ID())(90*time.Millisecond, fetchOK)
	fetcher.blocks.rates.start(fast.Host().ID())(100*time.Millisecond, fetchOK)
	fetcher.blocks.rates.start(holders[2].Host().ID())(time.Second, fetchFailed)
	servedBefore := [2]int64{slow.blocks.served.Load(), fast.blocks.served.Load()}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang, not a timing figure
	defer cancel()
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get from a slow holder: %v", err)
	}
	if n := slow.blocks.served.Load() - servedBefore[0]; n != 1 {
		t.Errorf("the slow holder was asked %d times, want once (first)", n)
	}
	if n := fast.blocks.served.Load() - servedBefore[1]; n != 1 {
		t.Errorf("the fast replica served the block %d times, want once: the slow one was not hedged", n)
	}
}

// A replica sending a block is left alone unless another of the block's
// replicas is expected to deliver the whole block hedgeMargin times sooner
// than the first still needs at its rate so far, or no block bytes have
// arrived for silentWaits hedge delays. Step by step: a fetch's last block
// on a slow holder is hedged to an idle fast one; the same block near its
// end is not; mid-fetch, or on a fetcher whose own link is slow, every
// replica looks as slow as the link makes it: no hedge.
func TestReplicaRatesKeepReceiving(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast, slow, unmeasured := p2ppeer.ID("fast"), p2ppeer.ID("slow"), p2ppeer.ID("unmeasured")
	const delay = 100 * time.Millisecond
	const block = 256 << 10
	// receiving is a request's progress got bytes in, at bytesPerSec all along.
	receiving := func(got, bytesPerSec int) transferProgress {
		return transferProgress{got: got, total: block, receiving: time.Duration(float64(got) / float64(bytesPerSec) * float64(time.Second))}
	}
	keep := func(tp, prev transferProgress, peers ...p2ppeer.ID) bool {
		t.Helper()
		again, to, ok := r.keepReceiving(peers, tp, prev, delay, true)
		if ok && (again <= 0 || again > maxHedgeLook) {
			t.Fatalf("looks again in %v: want within (0, %v]", again, maxHedgeLook)
		}
		if !ok && to >= 0 && peers[to] != fast {
			t.Fatalf("hedged to %s, want %s", peers[to], fast)
		}
		return ok
	}

	// Nothing measured: wait out silentWaits delays without any bytes.
	if again, _, ok := r.keepReceiving([]p2ppeer.ID{unmeasured}, transferProgress{got: 1, total: block, receiving: time.Second, silent: time.Second}, transferProgress{}, delay, true); !ok || again != delay/4 {
		t.Fatalf("nothing measured, 1 s silent: keep %v, again in %v; want to look again in %v", ok, again, delay/4)
	}
	if _, to, ok := r.keepReceiving([]p2ppeer.ID{unmeasured}, transferProgress{got: 1, total: block, receiving: time.Hour, silent: silentWaits * delay}, transferProgress{}, delay, true); ok || to != -1 {
		t.Fatal("still waiting after silentWaits delays without a byte")
	}
	// Only the header so far: no rate to go by, however slow it looks.
	if !keep(transferProgress{total: block, receiving: time.Second}, transferProgress{}, unmeasured) {
		t.Fatal("hedged on a header alone")
	}

	// fast, measured alone: a block in 100 ms. slow: 1 s a block.
	r.start(fast)(100*time.Millisecond, fetchOK)
	r.start(slow)(time.Second, fetchOK)
	// The fetch's last block comes from slow at 64 KiB/s, 32 KiB in:
	// 3.5 s to go against fast's 0.2 s (the fetcher's requests now in
	// flight, this one and a hedge). Hedged.
	end := r.start(slow)
	tp := receiving(32<<10, 64<<10)
	if keep(tp, transferProgress{}, unmeasured, fast) {
		t.Fatal("the last block, 3.5 s to go on a slow holder, not hedged to an idle one measured at 100 ms")
	}
	// Mid-fetch the same block is left alone: a second request would take
	// link from the window's other blocks.
	if _, _, ok := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, delay, false); !ok {
		t.Fatal("hedged mid-fetch")
	}
	// Its first 4 KiB, 80 ms in: too little to go by.
	if !keep(transferProgress{got: 4 << 10, total: block, receiving: 80 * time.Millisecond}, transferProgress{}, fast) {
		t.Fatal("hedged on the first 4 KiB of a block")
	}
	// An unmeasured replica says nothing.
	if !keep(tp, transferProgress{}, unmeasured) {
		t.Fatal("hedged to an unmeasured replica")
	}
	// The same block 16 KiB from its end: 0.25 s to go, not doubled.
	if !keep(receiving(block-16<<10, 64<<10), tp, fast) {
		t.Fatal("a block 0.25 s from its end was hedged")
	}
	// It sped up since the previous look (the fetch's other blocks ended
	// and left it the link): the rate since then counts.
	prev := tp
	tp = transferProgress{got: 64 << 10, total: block, receiving: prev.receiving + 10*time.Millisecond}
	if !keep(tp, prev, fast) {
		t.Fatal("hedged a block that now comes at 3.2 MB/s")
	}
	// fast has 3 requests in flight: the block waits behind them.
	var ends []func(time.Duration, fetchOutcome)
	for range 3 {
		ends = append(ends, r.start(fast))
	}
	if !keep(receiving(192<<10, 64<<10), transferProgress{}, fast) {
		t.Fatal("hedged 1 s from the end to a replica with 3 blocks in flight, as if it were idle")
	}
	for _, e := range ends {
		e(100*time.Millisecond, fetchOK)
	}
	end(3*time.Second, fetchOK)

	// Mid-fetch, 32 requests in flight: fast's last 8 blocks took 1.6 s
	// each (the fetcher's downlink shared 32 ways). A block coming at
	// 1/32 of that link, 1.4 s to go: no hedge, a second request would
	// queue at the same link. The fetch's last 2 blocks: the same block
	// coming that slowly is the tail, and it is hedged.
	mid := newReplicaRates()
	mid.now = r.now
	var busy []func(time.Duration, fetchOutcome)
	for range 32 {
		busy = append(busy, mid.start(fast))
	}
	for _, e := range busy {
		e(1600*time.Millisecond, fetchOK)
	}
	for range 31 {
		busy = append(busy, mid.start(slow))
	}
	last := mid.start(slow)
	tp = receiving(32<<10, 5<<20/32)
	if _, _, ok := mid.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, delay, true); !ok {
		t.Fatal("hedged mid-fetch, with the fetcher's downlink the slow part")
	}
	for _, e := range busy[32:] {
		e(time.Second, fetchFailed)
	}
	if _, _, ok := mid.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, delay, true); ok {
		t.Fatal("the fetch's last block at 1/32 of the link not hedged to a replica that would take 1/16")
	}
	// A replica slow by its own link: measured among 32 requests at 2 s a
	// block (its requests' time scaled to the present load says 125 ms),
	// while this block's whole time is 1.5 s. Not worth asking.
	byLink := p2ppeer.ID("by link")
	var others []func(time.Duration, fetchOutcome)
	for range 31 {
		others = append(others, mid.start(slow))
	}
	mid.start(byLink)(2*time.Second, fetchOK)
	for _, e := range others {
		e(time.Second, fetchFailed)
	}
	tp = transferProgress{got: 64 << 10, total: block, receiving: 375 * time.Millisecond}
	if _, _, ok := mid.keepReceiving([]p2ppeer.ID{byLink}, tp, transferProgress{}, delay, true); !ok {
		t.Fatal("hedged to a replica that takes 2 s a block by its own link, for a block of 1.5 s")
	}
	last(time.Second, fetchOutrun)

	// A slow fetcher: its one request at a time takes 26 s (10 KB/s). Its
	// only block, 100 KiB to go at that rate: no hedge.
	lone := newReplicaRates()
	lone.now = r.now
	lone.start(fast)(26*time.Second, fetchOK)
	lone.start(slow)
	if _, _, ok := lone.keepReceiving([]p2ppeer.ID{fast}, receiving(block-100<<10, 10<<10), transferProgress{}, time.Second, true); !ok {
		t.Fatal("hedged on a fetcher whose every replica is slow")
	}
}

// Before anything is measured, a replica already sending a block is worth
// less than an idle one a little farther: a second request to it would
// queue behind the whole first block. Small blocks (a round trip, whatever
// the link) and lost races for them are no samples of a replica's rate.
func TestReplicaRatesFirstRequestsAndSmallBlocks(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	near, far, farther := p2ppeer.ID("near"), p2ppeer.ID("far"), p2ppeer.ID("farther")
	rtts := map[p2ppeer.ID]time.Duration{near: 9 * time.Millisecond, far: 30 * time.Millisecond, farther: 400 * time.Millisecond}
	rtt := func(p p2ppeer.ID) (time.Duration, bool) { d, ok := rtts[p]; return d, ok }
	pick := func(peers ...p2ppeer.ID) p2ppeer.ID { return peers[r.pick(peers, rtt)] }

	if got := pick(far, near, farther); got != near {
		t.Fatalf("nothing in flight: picked %s, want the nearest", got)
	}
	endNear := r.start(near)
	if got := pick(near, far, farther); got != far {
		t.Fatalf("near sending a block: picked %s, want the idle far one", got)
	}
	endFar := r.start(far)
	if got := pick(near, far, farther); got != near {
		t.Fatalf("near and far each sending one: picked %s, want near again before one 400 ms away", got)
	}

	endNear(5*time.Millisecond, fetchSmall)
	endFar(5*time.Millisecond, fetchRaced)
	for _, p := range []p2ppeer.ID{near, far} {
		if pr := r.peers[p]; pr.blockTime != 0 || pr.perLoad != 0 {
			t.Errorf("%s: a small block made a sample (time per block %v, latency %v)", p, pr.blockTime, pr.perLoad)
		}
	}
	if got := r.fetched(near); got != 1 {
		t.Errorf("fetched %d from near, want the small block counted", got)
	}
}

// A request's answer is queued behind the replica's answers to earlier
// requests while any of those is in flight, and no longer once they end.
func TestReplicaRatesStartedBefore(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	p := p2ppeer.ID("p")
	if r.startedBefore(p, clock) {
		t.Fatal("a replica never asked has requests in flight")
	}
	endFirst := r.start(p)
	clock = clock.Add(time.Millisecond)
	mine := clock
	endMine := r.start(p)
	clock = clock.Add(time.Millisecond)
	endLater := r.start(p)
	if !r.startedBefore(p, mine) {
		t.Fatal("the first request, still in flight, does not count as ahead")
	}
	endFirst(time.Second, fetchOK)
	if r.startedBefore(p, mine) {
		t.Fatal("requests asked after this one, or this one itself, count as ahead")
	}
	endMine(time.Second, fetchOK)
	endLater(time.Second, fetchOK)
}

// pick keeps away from a replica that failed within failureMemory, and so
// does the endgame hedge: a replica measured fast before it failed a
// moment ago is not the one to ask for the fetch's last block.
func TestReplicaRatesKeepReceivingAvoidsFailedReplica(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast := p2ppeer.ID("fast")
	r.start(fast)(100*time.Millisecond, fetchOK)
	tp := transferProgress{got: 32 << 10, total: 256 << 10, receiving: 500 * time.Millisecond}
	if _, _, keep := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, 100*time.Millisecond, true); keep {
		t.Fatal("not hedged to a fast replica before it failed: the case below proves nothing")
	}
	r.start(fast)(50*time.Millisecond, fetchFailed)
	if _, to, keep := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, 100*time.Millisecond, true); !keep {
		t.Fatalf("hedged to peers[%d], a replica that failed just now", to)
	}
	clock = clock.Add(failureMemory + time.Millisecond)
	if _, _, keep := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, 100*time.Millisecond, true); keep {
		t.Fatal("a replica that failed longer than failureMemory ago is still avoided")
	}
}

// A request's time is scaled by the load it met over its whole life, not
// the load when it began: one that began alone and then shared the link
// with two others for all its 3 s took 1 s per request in flight (not 3 s).
func TestReplicaRatesPerLoadAveragesOverTheRequestsLife(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	a, b, c := p2ppeer.ID("a"), p2ppeer.ID("b"), p2ppeer.ID("c")
	endA := r.start(a)
	endB, endC := r.start(b), r.start(c)
	clock = clock.Add(3 * time.Second)
	endA(3*time.Second, fetchOK)
	if got := r.peers[a].perLoad; got != time.Second {
		t.Errorf("a, began alone, shared 3 ways all its life: %v per request in flight, want 1s", got)
	}
	// b and c began among 2 and 3: 3 s among three, then 3 s among two,
	// 2.5 on average: 2.4 s per request (at their start, 3 s and 2 s).
	clock = clock.Add(3 * time.Second)
	endB(6*time.Second, fetchOK)
	endC(6*time.Second, fetchOK)
	for _, p := range []p2ppeer.ID{b, c} {
		if got := r.peers[p].perLoad; got != 2400*time.Millisecond {
			t.Errorf("%s: %v per request in flight, want 2.4s", string(p), got)
		}
	}
}

// The requests in flight to a candidate count once in its expected time,
// in the fetcher's own queue that the node's load scales: adding them
// again at the candidate's time per block doubled them (fewer hedges than
// the rule says).
func TestReplicaRatesWholeBlockCountsInFlightOnce(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast, slow := p2ppeer.ID("fast"), p2ppeer.ID("slow")
	const block = 256 << 10
	// fast, measured alone: 100 ms a block.
	r.start(fast)(100*time.Millisecond, fetchOK)
	r.start(slow)(time.Second, fetchOK)
	// The fetch's last two blocks: one from fast, one from slow.
	r.start(fast)
	r.start(slow)
	r.mu.Lock()
	whole, _ := r.wholeBlock(fast, clock)
	r.mu.Unlock()
	// 3 requests at the link (2 in flight and this one) x 100 ms.
	if whole != 300*time.Millisecond {
		t.Errorf("fast's whole block: %v, want 300ms", whole)
	}
	// slow's block, 48 KiB from its end at 64 KiB/s: 750 ms to go, more
	// than twice fast's 300 ms. Hedged.
	tp := transferProgress{got: block - 48<<10, total: block, receiving: 3250 * time.Millisecond}
	if _, to, ok := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, 100*time.Millisecond, true); ok || to != 0 {
		t.Error("the last block, 750 ms from its end, not hedged to a replica due in 300 ms")
	}
}

// Mid-fetch a block being received is only judged by the stall rule, so
// its Get need not look at it before that rule could fire: the next look
// is when its silence would reach silentWaits delays (the Get also looks
// when the fetch's endgame begins), not a fixed beat.
func TestReplicaRatesKeepReceivingMidFetchLooksWhenStallIsDue(t *testing.T) {
	r := newReplicaRates()
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	fast := p2ppeer.ID("fast")
	r.start(fast)(100*time.Millisecond, fetchOK)
	const delay = 100 * time.Millisecond
	tp := transferProgress{got: 64 << 10, total: 256 << 10, receiving: 2 * time.Second, silent: time.Second}
	again, _, ok := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, delay, false)
	if want := silentWaits*delay - time.Second; !ok || again != want {
		t.Errorf("mid-fetch, 1 s silent: keep %v, look again in %v; want to keep and look in %v", ok, again, want)
	}
	// In the endgame the rate rule weighs it often.
	if again, _, _ := r.keepReceiving([]p2ppeer.ID{fast}, tp, transferProgress{}, delay, true); again > maxHedgeLook {
		t.Errorf("in the endgame, look again in %v; want within %v", again, maxHedgeLook)
	}
}
