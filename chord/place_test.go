package chord

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

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
		for range peers {
			n := r.add()
			if live := r.live(); len(live) == 0 {
				n.Create()
			} else if err := n.Join(context.Background(), MakeRef(live[rng.IntN(len(live))].Addr(), 0)); err != nil {
				t.Fatal(err)
			}
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
	rng := rand.New(rand.NewPCG(6, 6))
	cfg := TestConfig()
	cfg.Vnodes = 3
	cfg.VnodeChoices = 8
	r := newRing(t, cfg)
	for range 12 {
		r.join(rng)
	}
	r.converge(100)
	n := r.nodes[7]
	before := n.Vnodes()
	if !slices.ContainsFunc(before, func(r Ref) bool { return r.Vnode >= uint32(cfg.Vnodes) }) {
		t.Fatalf("peer 7 runs vnodes %v: none chosen beyond the first candidates, so the test shows nothing", before)
	}
	r.net.Kill(n.Addr())
	again, err := r.net.Restart(n.Addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Join(context.Background(), r.nodes[0].Vnodes()[0]); err != nil {
		t.Fatal(err)
	}
	r.nodes[7] = again
	if after := again.Vnodes(); !slices.Equal(after, before) {
		t.Fatalf("restarted with vnodes %v, had %v", after, before)
	}
	r.converge(100)
	r.lookups(rng, 20)
}
