package peer

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
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
	var fetcher *Node
	var lacking []cid.Cid
	for _, n := range r.nodes {
		if l := slices.DeleteFunc(slices.Clone(cids), stores[n].Has); len(l) > len(lacking) {
			fetcher, lacking = n, l
		}
	}
	if len(lacking) < 4 {
		t.Fatalf("the peer lacking most blocks lacks %d of %d", len(lacking), len(cids))
	}
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
