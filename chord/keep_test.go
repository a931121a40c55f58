package chord

import (
	"slices"
	"testing"
)

// A peer gone long enough for the ring to forget it, given the indices it
// ran before (Config.VnodeIndices), takes them again rather than choosing
// anew: its stored blocks sit on them.
func TestRestartAfterRingForgotKeepsGivenIndices(t *testing.T) {
	r, rng := placedRing(t, 8)
	cfg := r.cfg
	n := r.nodes[7]
	before := n.Indices()
	if !slices.ContainsFunc(before, func(x uint32) bool { return x >= uint32(cfg.Vnodes) }) {
		t.Fatalf("peer 7 runs vnodes %v: none chosen beyond the first candidates, so the test shows nothing", before)
	}
	if !slices.IsSorted(before) {
		t.Fatalf("Indices() = %v: not lowest first", before)
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
	again := r.restart(7, kept)
	if after := again.Indices(); !slices.Equal(after, before) {
		t.Fatalf("restarted with vnodes %v, had %v", after, before)
	}
	r.converge(100)
	r.lookups(rng, 20)
}

// Given indices that this config could not have chosen (another vnode
// count, an index past MaxVnodes, one twice, with one choice any but
// 0..Vnodes-1) are ignored; a peer creating a ring keeps valid ones too.
func TestGivenIndicesKeptOnlyWhenValid(t *testing.T) {
	for _, tc := range []struct {
		choices     int
		given, want []uint32
	}{
		{4, nil, []uint32{0, 1, 2}},
		{4, []uint32{0, 1}, []uint32{0, 1, 2}},          // capacity was 2
		{4, []uint32{0, 1, 1}, []uint32{0, 1, 2}},       // 1 twice
		{4, []uint32{1024, 1, 2}, []uint32{0, 1, 2}},    // past MaxVnodes
		{4, []uint32{3, 4, 11, 6}, []uint32{0, 1, 2}},   // one too many
		{4, []uint32{9, 1, 5}, []uint32{1, 5, 9}},       // valid, in any order
		{4, []uint32{0, 3, 1023}, []uint32{0, 3, 1023}}, // any position a window may show
		{1, []uint32{0, 1, 5}, []uint32{0, 1, 2}},       // one choice: vnode i is index i
		{1, []uint32{2, 0, 1}, []uint32{0, 1, 2}},       // valid
	} {
		c := TestConfig()
		c.Vnodes = 3
		c.VnodeChoices = tc.choices
		c.VnodeIndices = tc.given
		n, err := NewMemNet().Add("peer", c)
		if err != nil {
			t.Fatal(err)
		}
		n.Create()
		if got := n.Indices(); !slices.Equal(got, tc.want) {
			t.Errorf("%d choices, given %v: runs %v, want %v", tc.choices, tc.given, got, tc.want)
		}
	}
}
