package peer

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/blocks"
	"chordshare/chord"
)

// Locate looks blocks up ahead; each Get then takes its list (the same
// replicas a lookup gives) instead of looking the block up itself.
func TestLocateAhead(t *testing.T) {
	r, stores := storedRing(t, 4)
	ctx := context.Background()
	var cids []cid.Cid
	content := map[cid.Cid][]byte{}
	for i := range 16 {
		data := bytes.Repeat([]byte{byte(i)}, 1000+i)
		c := rawBlock(t, data)
		if err := r.nodes[0].Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		cids, content[c] = append(cids, c), data
	}
	r.nodes[0].bg.Wait()
	// Each block is on 3 of the 4 peers: 16 copies are missing in all, so
	// some peer lacks 4 or more. It fetches those (it would not look up
	// the ones it holds).
	fetcher, lacking := lackingMost(t, r, stores, cids, 4)
	cids = lacking
	fetcher.Locate(ctx, cids)
	fetcher.Locate(ctx, cids[:2]) // already being located: no second lookup
	l := fetcher.blocks.located
	for _, c := range cids {
		l.mu.Lock()
		e := l.entries[c]
		l.mu.Unlock()
		if e == nil {
			t.Fatalf("%s not being located", c)
		}
		<-e.ready
		want, err := fetcher.Replicas(ctx, c)
		if e.err != nil || err != nil || !slices.Equal(e.peers, want) {
			t.Fatalf("located %v (%v), a lookup gives %v (%v)", e.peers, e.err, want, err)
		}
	}
	for _, c := range cids {
		got, err := fetcher.Get(ctx, c)
		if err != nil || !bytes.Equal(got, content[c]) {
			t.Fatalf("get %s: %v", c, err)
		}
	}
	if len(l.entries) != 0 {
		t.Fatalf("%d located lists left after their Gets", len(l.entries))
	}

	// A list whose lookup has not begun is the Get's to look up: Locate
	// will skip it.
	e := &replicaList{ready: make(chan struct{})}
	l.entries[cids[0]] = e
	if got, err := fetcher.Get(ctx, cids[0]); err != nil || !bytes.Equal(got, content[cids[0]]) {
		t.Fatalf("get past a waiting list: %v", err)
	}
	if !e.claimed {
		t.Fatal("the Get did not claim the list it looked up itself")
	}

	// Located with a context already over: the lists end in its error and
	// the Gets look the blocks up themselves.
	over, cancel := context.WithCancel(ctx)
	cancel()
	fetcher.Locate(over, cids)
	for _, c := range cids {
		got, err := fetcher.Get(ctx, c)
		if err != nil || !bytes.Equal(got, content[c]) {
			t.Fatalf("get %s after a cancelled Locate: %v", c, err)
		}
	}
}

// A span tells the lists of keys on the arcs its successors cover, as a
// lookup of each would give them, and nothing past them.
func TestRingSpan(t *testing.T) {
	id := func(b byte) chord.ID { return chord.ID{b} }
	ref := func(b byte, peer string) chord.Ref { return chord.Ref{ID: id(b), Addr: peer} }
	// Vnodes at 20 (a), 40 (b), 60 (a), 80 (c), 100 (d), clockwise from key 10.
	sp := ringSpan{key: id(10), near: []chord.Ref{ref(20, "a"), ref(40, "b"), ref(60, "a"), ref(80, "c"), ref(100, "d")}}
	peers := func(s ...string) []p2ppeer.ID {
		var out []p2ppeer.ID
		for _, p := range s {
			out = append(out, p2ppeer.ID(p))
		}
		return out
	}
	for _, c := range []struct {
		key  byte
		want []p2ppeer.ID // nil: the span does not tell
	}{
		{10, peers("a", "b", "c")}, // the key looked up
		{11, peers("a", "b", "c")},
		{20, peers("a", "b", "c")},
		{21, peers("b", "a", "c")},
		{40, peers("b", "a", "c")},
		{41, peers("a", "c", "d")},
		{61, nil}, // c, d: two peers follow, a lookup would walk on
		{101, nil},
		{9, nil}, // before the key: its arc may start anywhere
		{200, nil},
	} {
		got, ok := sp.list(id(c.key), 3, 0)
		if ok != (c.want != nil) || ok && !slices.Equal(got, c.want) {
			t.Errorf("key %d: %v %v, want %v", c.key, got, ok, c.want)
		}
	}

	// A successor list longer than the ring comes round past the key: it
	// ends there, and a key that is a vnode's own arc is only that key.
	small := ringSpan{key: id(20), near: []chord.Ref{ref(20, "a"), ref(40, "b"), ref(60, "c"), ref(20, "a"), ref(40, "b")}}
	for _, c := range []struct {
		key  byte
		want []p2ppeer.ID
	}{
		{20, peers("a", "b", "c")},
		{30, peers("b", "c", "a")},
		{50, peers("c", "a", "b")},
		{10, nil}, // (60, 20]: the list came round; not told
		{70, nil},
	} {
		got, ok := small.list(id(c.key), 3, 0)
		if ok != (c.want != nil) || ok && !slices.Equal(got, c.want) {
			t.Errorf("small ring, key %d: %v %v, want %v", c.key, got, ok, c.want)
		}
	}
}

// Locate looks up one block per arc, not one per block: the blocks a
// lookup's successors tell the lists of get them from it, and each list
// is the one a lookup of the block gives.
func TestLocateSpans(t *testing.T) {
	r, stores := storedRing(t, 4)
	ctx := context.Background()
	var cids []cid.Cid
	for i := range 64 {
		data := bytes.Repeat([]byte{byte(i)}, 500+i)
		c := rawBlock(t, data)
		if err := r.nodes[0].Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		cids = append(cids, c)
	}
	r.nodes[0].bg.Wait()
	// The fetcher is the peer lacking most blocks (a put that fell back
	// to hinted handoff leaves a copy on a fourth peer).
	fetcher, lacking := lackingMost(t, r, stores, cids, 2)
	// The first block located is the one whose lookup tells the most of
	// the others' lists (looked up here first, as Locate will).
	spanOf := func(c cid.Cid) ringSpan {
		_, near, err := fetcher.replicasNear(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return ringSpan{key: chord.KeyID(c.Hash()), near: near}
	}
	told := func(sp ringSpan) (n int) {
		for _, c := range lacking {
			if _, ok := sp.list(chord.KeyID(c.Hash()), fetcher.cfg.Replicas, 0); ok {
				n++
			}
		}
		return n
	}
	first := slices.MaxFunc(lacking, func(a, b cid.Cid) int { return told(spanOf(a)) - told(spanOf(b)) })
	covered := told(spanOf(first))
	if covered < 2 {
		t.Fatalf("the best span tells %d lists of %d", covered, len(lacking))
	}
	l := fetcher.blocks.located
	// The puts above kept spans on the sharer, which may be the fetcher:
	// the lookups counted here are Locate's own, from none.
	l.mu.Lock()
	l.spans = nil
	l.mu.Unlock()
	fetcher.Locate(ctx, []cid.Cid{first})
	wait := func(c cid.Cid) *replicaList {
		l.mu.Lock()
		e := l.entries[c]
		l.mu.Unlock()
		if e == nil {
			t.Fatalf("%s not being located", c)
		}
		<-e.ready
		return e
	}
	wait(first)
	if got := l.lookups.Load(); got != 1 {
		t.Fatalf("%d lookups for one block", got)
	}
	rest := slices.DeleteFunc(slices.Clone(lacking), func(c cid.Cid) bool { return c == first })
	fetcher.Locate(ctx, rest)
	for _, c := range rest {
		e := wait(c)
		want, err := fetcher.Replicas(ctx, c)
		if e.err != nil || err != nil || !slices.Equal(e.peers, want) {
			t.Fatalf("located %v (%v), a lookup gives %v (%v)", e.peers, e.err, want, err)
		}
	}
	// Blocks the first span told cost no lookup (the first one counts).
	if got, most := l.lookups.Load(), int64(1+len(lacking)-covered); got > most {
		t.Fatalf("%d lookups for %d blocks, %d of them told by the first: want at most %d", got, len(lacking), covered, most)
	}
	t.Logf("%d blocks located with %d lookups", len(lacking), l.lookups.Load())
}

// A list a span gives is trusted only as long as the span (its Get may
// come seconds later, so a span near the end of its life gives none: the
// block is looked up), and the spans kept are bounded.
func TestLocateSpanAge(t *testing.T) {
	r, stores := storedRing(t, 4)
	ctx := context.Background()
	data := []byte("a block located from a span")
	c := rawBlock(t, data)
	putSettled(t, r, c, data)
	fetcher, _ := lackingMost(t, r, stores, []cid.Cid{c}, 1)
	want, near, err := fetcher.replicasNear(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	key := chord.KeyID(c.Hash())
	if _, ok := (ringSpan{key: key, near: near}).list(key, fetcher.cfg.Replicas, 0); !ok {
		t.Fatalf("the block's own lookup does not tell its list: %v", near)
	}
	l := fetcher.blocks.located
	locate := func(age time.Duration) (*replicaList, ringSpan) {
		t.Helper()
		sp := ringSpan{key: key, near: near, at: time.Now().Add(-age)}
		l.mu.Lock()
		l.spans = []ringSpan{sp}
		l.mu.Unlock()
		l.lookups.Store(0)
		fetcher.Locate(ctx, []cid.Cid{c})
		l.mu.Lock()
		e := l.entries[c]
		l.mu.Unlock()
		if e == nil {
			t.Fatalf("%s not being located", c)
		}
		<-e.ready
		if got, located, err := fetcher.replicasOf(ctx, c); err != nil || !located || !slices.Equal(got, want) {
			t.Fatalf("located %v (%v), a lookup gives %v", got, err, want)
		}
		return e, sp
	}
	// A young span gives the list, which expires with it.
	if e, sp := locate(time.Second); l.lookups.Load() != 0 || !e.at.Equal(sp.at) {
		t.Errorf("young span: %d lookups, list from %v, span from %v", l.lookups.Load(), e.at, sp.at)
	}
	// One past spanReuse (still within locatedTTL) gives none.
	if locate(spanReuse + time.Second); l.lookups.Load() != 1 {
		t.Errorf("span %v old: %d lookups, want 1", spanReuse+time.Second, l.lookups.Load())
	}
	// One past locatedTTL is dropped when the next is kept.
	l.mu.Lock()
	l.spans = []ringSpan{{key: key, near: near, at: time.Now().Add(-locatedTTL - time.Second)}}
	l.mu.Unlock()
	l.addSpan(ringSpan{key: key, near: near, at: time.Now()})
	if len(l.spans) != 1 {
		t.Errorf("%d spans kept, want the new one alone", len(l.spans))
	}
	// Past maxSpans, the oldest go.
	for i := range maxSpans + 10 {
		l.addSpan(ringSpan{key: chord.ID{byte(i), byte(i >> 8)}, at: time.Now()})
	}
	if len(l.spans) != maxSpans || l.spans[0].key != (chord.ID{10, 0}) {
		t.Errorf("%d spans kept, the oldest %x: want %d from %x", len(l.spans), l.spans[0].key[:2], maxSpans, []byte{10, 0})
	}
}

// A list from Locate may be from before churn (a span lives past the
// fetch that made it): when all its peers have left since, the Get finds
// the block on the peers that took it over.
func TestLocatedListAfterLeaves(t *testing.T) {
	r, stores := storedRing(t, 7)
	ctx := context.Background()
	data := []byte("a block whose replicas all leave")
	c := rawBlock(t, data)
	putSettled(t, r, c, data)
	old, near, err := r.nodes[0].replicasNear(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	key := chord.KeyID(c.Hash())
	if _, ok := (ringSpan{key: key, near: near}).list(key, len(old), 0); !ok {
		t.Fatalf("the block's own lookup does not tell its list: %v", near)
	}
	for _, n := range r.nodes {
		if !slices.Contains(old, n.Host().ID()) {
			continue
		}
		if _, err := n.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		r.crash(n) // the process ends after its leave
		r.converge(200)
	}
	var fetcher *Node
	for _, n := range r.live() {
		if !stores[n].Has(c) {
			fetcher = n
		}
	}
	if fetcher == nil {
		t.Fatal("every live peer holds the block")
	}
	// The span an earlier fetch's lookup left, still young.
	l := fetcher.blocks.located
	l.mu.Lock()
	l.spans = []ringSpan{{key: key, near: near, at: time.Now()}}
	l.mu.Unlock()
	fetcher.Locate(ctx, []cid.Cid{c})
	got, err := fetcher.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after the replicas %v left: %v", old, err)
	}
	if n := l.lookups.Load(); n != 0 {
		t.Fatalf("%d lookups by Locate: the list was not the span's", n)
	}
}

// lackingMost returns the peer of r whose store lacks the most of cids, and
// those it lacks; at least want of them, or the test fails.
func lackingMost(t *testing.T, r *mockRing, stores map[*Node]*blocks.Store, cids []cid.Cid, want int) (*Node, []cid.Cid) {
	t.Helper()
	var fetcher *Node
	var lacking []cid.Cid
	for _, n := range r.nodes {
		if l := slices.DeleteFunc(slices.Clone(cids), stores[n].Has); len(l) > len(lacking) {
			fetcher, lacking = n, l
		}
	}
	if len(lacking) < want {
		t.Fatalf("the peer lacking most blocks lacks %d of %d", len(lacking), len(cids))
	}
	return fetcher, lacking
}

// A share's puts take their replica lists from spans at most half a
// stabilize round old: puts spread over the ring cost a lookup per arc,
// not per block, each block still lands on the list a lookup gives, and a
// span past that age gives no list to a put.
func TestPutSpans(t *testing.T) {
	cfg := testConfig()
	// mockRing converges by hand; the interval only sets the spans' age
	// for puts (1 s), long enough for the puts below.
	cfg.Chord.StabilizeInterval = 2 * time.Second
	r, stores := storedRingOf(t, cfg, 4)
	ctx := context.Background()
	sharer := r.nodes[0]
	l := sharer.blocks.located
	var cids []cid.Cid
	for i := range 64 {
		data := bytes.Repeat([]byte{byte(i)}, 700+i)
		c := rawBlock(t, data)
		if err := sharer.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		cids = append(cids, c)
	}
	sharer.bg.Wait()
	l.mu.Lock()
	lookups := len(l.spans) // one span kept per lookup a put made
	l.mu.Unlock()
	if lookups < 1 || lookups >= len(cids)/2 {
		t.Errorf("%d lookups kept as spans for %d puts: want at least one, and fewer than half as many", lookups, len(cids))
	}
	t.Logf("%d puts made %d lookups", len(cids), lookups)
	for _, c := range cids {
		want, err := sharer.Replicas(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range r.nodes {
			if slices.Contains(want, n.Host().ID()) && !stores[n].Has(c) {
				t.Errorf("%s: replica %s lacks it", c, n.Host().ID().ShortString())
			}
		}
	}

	// A span one second old (the age for puts) plus a little tells the
	// next block's list, and still that put looks it up.
	data := []byte("a block put after its span aged")
	c := rawBlock(t, data)
	_, near, err := sharer.replicasNear(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	key := chord.KeyID(c.Hash())
	for _, tc := range []struct {
		age     time.Duration
		lookups int
	}{{cfg.Chord.StabilizeInterval/2 + 100*time.Millisecond, 1}, {0, 0}} {
		l.mu.Lock()
		l.spans = []ringSpan{{key: key, near: near, at: time.Now().Add(-tc.age)}}
		l.mu.Unlock()
		if err := sharer.Put(ctx, c, data); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		got := len(l.spans) - 1
		l.mu.Unlock()
		if got != tc.lookups {
			t.Errorf("a span %v old: the put made %d lookups, want %d", tc.age, got, tc.lookups)
		}
	}
	sharer.bg.Wait()
}
