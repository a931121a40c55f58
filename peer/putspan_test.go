package peer

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/chord"
)

// A put's span must not trust entries deeper in a successor list than a
// lookup's answerer would (chord's ownsSuccessor: half a list). Lists
// learn of a join one hop per stabilize round, so ten rounds after a join
// a list ten deep still lacks the joiner while every node nearer to it
// knows. Here the sharer's list stands for that list: every node but the
// sharer has stabilized since X joined. A fresh lookup of a key just
// before X goes past the sharer's stale depth and names X; the put must
// land on X too, as it did when every put looked its list up.
func TestPutSpanNotDeeperThanALookup(t *testing.T) {
	cfg := testConfig()
	cfg.Chord.Vnodes = 1
	cfg.Chord.StabilizeInterval = 20 * time.Second // spans serve puts for 10 s, however slow the machine
	const peers = 20
	r, stores := storedRingOf(t, cfg, peers)
	ctx := context.Background()
	x := r.add(1)[0]
	stores[x] = x.cfg.Store.(*blocks.Store)
	r.join(x, r.nodes[0])
	xid := x.Chord().Vnodes()[0].ID

	old := slices.Clone(r.nodes[:peers])
	pos := func(n *Node) chord.ID { return n.Chord().Vnodes()[0].ID }
	slices.SortFunc(old, func(a, b *Node) int { return pos(a).Cmp(pos(b)) })
	p := slices.IndexFunc(old, func(n *Node) bool {
		return chord.Between(pos(n), xid, pos(old[(slices.Index(old, n)+1)%peers]))
	})
	// The sharer holds X's predecessor tenth in its list (index 9): a key
	// on (pred, X] is at index 10, past where it would answer itself.
	sharer := old[(p-10+peers)%peers]
	var others []*chord.Node
	for _, n := range r.nodes {
		if n != sharer {
			others = append(others, n.Chord())
		}
	}
	for range 30 {
		chord.Round(ctx, others)
	}
	if s := old[p].Chord().States()[0].Successors[0]; s.ID != xid {
		t.Fatalf("X's predecessor has not learnt of X (successor %v)", s)
	}
	succs := sharer.Chord().States()[0].Successors
	if slices.ContainsFunc(succs, func(r chord.Ref) bool { return r.ID == xid }) || len(succs) != cfg.Chord.SuccessorListLen {
		t.Fatalf("the sharer's list should be full and lack X: %v", succs)
	}

	block := func(lo, hi chord.ID) (cid.Cid, []byte) {
		for i := 0; ; i++ {
			data := fmt.Appendf(nil, "block %d", i)
			c := rawBlock(t, data)
			if chord.BetweenRightIncl(lo, chord.KeyID(c.Hash()), hi) {
				return c, data
			}
		}
	}
	// The first put's lookup is answered from the sharer's own list and
	// kept as a span; the second's key is on that span, ten deep.
	c1, d1 := block(pos(sharer), succs[0].ID)
	c2, d2 := block(pos(old[p]), xid)
	if err := sharer.Put(ctx, c1, d1); err != nil {
		t.Fatal(err)
	}
	if err := sharer.Put(ctx, c2, d2); err != nil {
		t.Fatal(err)
	}
	sharer.bg.Wait()
	want, err := sharer.Replicas(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(want, x.Host().ID()) {
		t.Fatalf("a lookup from the sharer does not name X either: %v", want)
	}
	if !stores[x].Has(c2) {
		t.Errorf("the put left its block off X, first on a fresh lookup's list %v", want)
	}
}
