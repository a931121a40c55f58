package chord

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// at is the ring position a fraction f of the way round.
func at(f float64) ID {
	var id ID
	binary.BigEndian.PutUint64(id[:8], uint64(f*0x1p64))
	return id
}

func TestWindowOrdered(t *testing.T) {
	a, b, c := at(0.1), at(0.5), at(0.9)
	for _, tc := range []struct {
		in, want window
	}{
		{window{a, b, c}, window{a, b, c}},
		{window{b, c, a}, window{b, c, a}},          // wraps past zero
		{window{a, c, b}, window{a, c}},             // b is not after c before a
		{window{a, b, c, a, b}, window{a, b, c, a}}, // closes the circle
		{window{b, b}, window{b, b}},                // one node: the whole ring
	} {
		if got := tc.in.ordered(); !slices.Equal(got, tc.want) {
			t.Errorf("%v.ordered() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// bestSplit is the index below MaxVnodes, other than those taken, whose
// position best splits the ring the positions ring and taken form at
// weight w (splitScore; ties: the lowest index), found by trying every
// one.
func bestSplit(addr []byte, ring []ID, taken []uint32, w float64) uint32 {
	all := slices.Clone(ring)
	for _, x := range taken {
		all = append(all, VnodeID(addr, x))
	}
	slices.SortFunc(all, ID.Cmp)
	best, bestScore := uint32(0), -1.0
	for x := range uint32(MaxVnodes) {
		if slices.Contains(taken, x) {
			continue
		}
		id := VnodeID(addr, x)
		j, _ := slices.BinarySearchFunc(all, id, ID.Cmp)
		pred, succ := all[(j-1+len(all))%len(all)], all[j%len(all)]
		if s := splitScore(pred, id, succ, w); s > bestScore {
			best, bestScore = x, s
		}
	}
	return best
}

// Every position inside a window is a candidate, looked up or not: on a
// ring whose one window shows it all, the choices are the best of all
// MaxVnodes positions, each counting the ones taken before it.
func TestChooseIndicesRatesEveryPositionInAWindow(t *testing.T) {
	addr := []byte("joiner")
	for _, ring := range [][]ID{{at(0.3)}, {at(0.1), at(0.2), at(0.6)}} {
		w := append(window{ring[len(ring)-1]}, ring...) // pred, succ, the rest round to pred
		got := chooseIndices(addr, 3, []uint32{0}, []window{w})
		var want []uint32
		for range 3 {
			want = append(want, bestSplit(addr, ring, want, slotWeight(len(want), 3)))
		}
		if !slices.Equal(got, want) {
			t.Errorf("ring %v: chose %v, want %v", ring, got, want)
		}
		if slices.Max(got) < 3 {
			t.Errorf("ring %v: chose %v, all among the first indices: the test shows nothing", ring, got)
		}
	}
}

// A position of ours a window shows is taken back first, looked up or
// not; with nothing to rate, looked-up positions still do; with too few
// candidates, fewer indices come back.
func TestChooseIndicesTakesBackOwnPositions(t *testing.T) {
	addr := []byte("back")
	old := VnodeID(addr, 700)
	w := window{at(0.1), old, at(0.2)}
	if got := chooseIndices(addr, 2, []uint32{0}, []window{w}); len(got) != 2 || got[0] != 700 {
		t.Errorf("chose %v, want 700 first", got)
	}
	if got := chooseIndices(addr, 1, []uint32{5, 9}, nil); !slices.Equal(got, []uint32{5}) {
		t.Errorf("nothing rated: chose %v, want the lowest looked-up index", got)
	}
	if got := chooseIndices(addr, 2, []uint32{5}, nil); !slices.Equal(got, []uint32{5}) {
		t.Errorf("one candidate for two vnodes: chose %v", got)
	}
}

// Peers joining one at a time with VnodeChoices, each through vnode 0 of
// a random peer (which may not run it), settle where PlaceVnodes puts
// them, lookups are right, and the largest share of the ring a peer holds
// is smaller than with one position per vnode.
func TestJoinChoosesVnodePositions(t *testing.T) {
	const peers = 40
	maxShare := func(choices int) float64 {
		rng := rand.New(rand.NewPCG(5, 5))
		cfg := TestConfig()
		cfg.Vnodes = 2
		cfg.VnodeChoices = choices
		r := newRing(t, cfg)
		var loads []PeerLoad
		var lookups, neighbors int64 // during the joins, forwarded hops included
		for range peers {
			n := r.add()
			l, nb := r.net.Calls.FindSuccessor.Load(), r.net.Calls.Neighbors.Load()
			if live := r.live(); len(live) == 0 {
				n.Create()
			} else if err := n.Join(context.Background(), MakeRef(live[rng.IntN(len(live))].Addr(), 0)); err != nil {
				t.Fatal(err)
			}
			lookups += r.net.Calls.FindSuccessor.Load() - l
			neighbors += r.net.Calls.Neighbors.Load() - nb
			r.nodes = append(r.nodes, n)
			r.converge(100)
			loads = append(loads, PeerLoad{Addr: n.Addr(), Capacity: 1, Vnodes: cfg.Vnodes})
		}
		placed := PlaceVnodes(loads, choices)
		for i, n := range r.nodes {
			var got []uint32
			for _, v := range n.Vnodes() {
				got = append(got, v.Vnode)
			}
			want := slices.Clone(placed[i].Indices)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("choices %d: peer %d runs vnodes %v, PlaceVnodes says %v", choices, i, got, want)
			}
		}
		r.lookups(rng, 20)
		t.Logf("%d choices, %d vnodes per peer: per join %.1f lookup calls (hops included) and %.1f neighbour queries",
			choices, cfg.Vnodes, float64(lookups)/(peers-1), float64(neighbors)/(peers-1))
		return shares(r.nodes)[peers-1] * peers
	}
	plain, chosen := maxShare(1), maxShare(8)
	t.Logf("largest share of the ring × peers: %.2f with one position per vnode, %.2f choosing among 8", plain, chosen)
	if chosen >= plain {
		t.Errorf("choosing positions did not shrink the largest share: %.2f, %.2f without", chosen, plain)
	}
}

// shares is each peer's share of the ring (the arcs its vnodes own),
// smallest first.
func shares(nodes []*Node) []float64 {
	o := NewOracle(nodes)
	by := map[string]float64{}
	for i, v := range o.ring {
		pred := o.ring[(i-1+len(o.ring))%len(o.ring)]
		by[v.Addr] += fraction(Distance(pred.ID, v.ID))
	}
	var out []float64
	for _, s := range by {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// A peer back from a crash before the ring forgot it takes the same
// positions again: its old vnodes answer for their own candidates.
func TestRestartKeepsChosenPositions(t *testing.T) {
	r, rng := placedRing(t, 6)
	cfg := r.cfg
	n := r.nodes[7]
	before := n.Vnodes()
	if !slices.ContainsFunc(before, func(r Ref) bool { return r.Vnode >= uint32(cfg.Vnodes) }) {
		t.Fatalf("peer 7 runs vnodes %v: none chosen beyond the first candidates, so the test shows nothing", before)
	}
	r.net.Kill(n.Addr())
	again := r.restart(7, cfg)
	if after := again.Vnodes(); !slices.Equal(after, before) {
		t.Fatalf("restarted with vnodes %v, had %v", after, before)
	}
	r.converge(100)
	r.lookups(rng, 20)
}

// placedRing is the ring the restart tests take a peer out of: 12 peers
// of 3 vnodes, each placed among 8 choices, joined in the order the seed
// gives, and converged.
func placedRing(t *testing.T, seed uint64) (*ring, *rand.Rand) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	cfg := TestConfig()
	cfg.Vnodes = 3
	cfg.VnodeChoices = 8
	r := newRing(t, cfg)
	for range 12 {
		r.join(rng)
	}
	r.converge(100)
	return r, rng
}
