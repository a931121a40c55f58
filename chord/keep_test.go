package chord

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// A peer gone long enough for the ring to forget it, given the indices it
// ran before (Config.VnodeIndices), takes them again rather than choosing
// anew: its stored blocks sit on them.
func TestRestartAfterRingForgotKeepsGivenIndices(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	cfg := TestConfig()
	cfg.Vnodes = 3
	cfg.VnodeChoices = 8
	r := newRing(t, cfg)
	for range 12 {
		r.join(rng)
	}
	r.converge(100)
	n := r.nodes[7]
	before := n.Indices()
	if !slices.ContainsFunc(before, func(x uint32) bool { return x >= uint32(cfg.Vnodes) }) {
		t.Fatalf("peer 7 runs vnodes %v: none chosen beyond the first candidates, so the test shows nothing", before)
	}
	for slot, x := range before {
		if int(x)%cfg.Vnodes != slot {
			t.Fatalf("Indices() = %v: not in slot order", before)
		}
	}
	r.net.Kill(n.Addr())
	r.converge(100)
	for range 6 {
		r.join(rng) // the ring moves on
	}
	r.converge(100)
	if slices.ContainsFunc(NewOracle(r.live()).ring, func(v Ref) bool { return v.Addr == n.Addr() }) {
		t.Fatal("the ring still holds the dead peer")
	}
	kept := cfg
	kept.VnodeIndices = before
	again, err := r.net.Restart(n.Addr(), kept)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Join(context.Background(), r.nodes[0].Vnodes()[0]); err != nil {
		t.Fatal(err)
	}
	r.nodes[7] = again
	if after := again.Indices(); !slices.Equal(after, before) {
		t.Fatalf("restarted with vnodes %v, had %v", after, before)
	}
	r.converge(100)
	r.lookups(rng, 20)
}

// Given indices that this config could not have chosen (another vnode
// count, a candidate past VnodeChoices, two for one slot) are ignored; a
// peer creating a ring keeps valid ones too.
func TestGivenIndicesKeptOnlyWhenValid(t *testing.T) {
	cfg := TestConfig()
	cfg.Vnodes = 3
	cfg.VnodeChoices = 4
	for _, tc := range []struct {
		given, want []uint32
	}{
		{nil, []uint32{0, 1, 2}},
		{[]uint32{0, 1}, []uint32{0, 1, 2}},        // capacity was 2
		{[]uint32{0, 1, 14}, []uint32{0, 1, 2}},    // 14 is slot 2's fifth candidate
		{[]uint32{0, 3, 2}, []uint32{0, 1, 2}},     // 0 and 3 are both slot 0
		{[]uint32{9, 1, 5}, []uint32{9, 1, 5}},     // valid, in any order
		{[]uint32{1024, 1, 2}, []uint32{0, 1, 2}},  // past MaxVnodes
		{[]uint32{3, 4, 11}, []uint32{3, 4, 11}},   // valid
		{[]uint32{3, 4, 11, 6}, []uint32{0, 1, 2}}, // one too many
		{[]uint32{0, 1, 2}, []uint32{0, 1, 2}},     // the first candidates
		{[]uint32{6, 7, 8}, []uint32{6, 7, 8}},     // the third
	} {
		c := cfg
		c.VnodeIndices = tc.given
		n, err := NewMemNet().Add("peer", c)
		if err != nil {
			t.Fatal(err)
		}
		n.Create()
		got := n.Indices()
		want := slices.Clone(tc.want)
		slices.SortFunc(want, func(a, b uint32) int { return int(a%3) - int(b%3) })
		if !slices.Equal(got, want) {
			t.Errorf("given %v: runs %v, want %v", tc.given, got, want)
		}
	}
}
