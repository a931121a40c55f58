package chord

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// A hop whose successor list falls short of the key sends the lookup to
// the fastest node near enough to answer, not to the closest one; without
// proximity, to the closest.
func TestRouteSelectionPrefersFastAnswerer(t *testing.T) {
	for _, proximity := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Vnodes = 1
		cfg.Proximity = proximity
		n, err := NewNode("me", nil, nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		v := n.vns()[0]
		var refs []Ref
		for i := range 400 {
			refs = append(refs, MakeRef(fmt.Sprintf("p-%d", i), 0))
		}
		slices.SortFunc(refs, func(a, b Ref) int {
			return Distance(v.self.ID, a.ID).Cmp(Distance(v.self.ID, b.ID))
		})
		// Successors refs[0..15]; the key lies just past refs[16], so
		// refs[13..15] are near enough to answer from the first quarter
		// of their lists.
		v.setSuccessors(refs[0], refs[1:16], Ref{}, 0, cfg.SuccessorListLen)
		far := refs[200]
		v.setFingers(highBit(Distance(v.self.ID, far.ID)), far)
		key := refs[16].ID.AddPow2(0)
		n.rtt.Observe(refs[15].Addr, 400*time.Millisecond) // the closest known: slow
		n.rtt.Observe(refs[13].Addr, 10*time.Millisecond)  // near enough, fast
		n.rtt.Observe(far.Addr, 20*time.Millisecond)

		st := n.step(v, key, 1, true)
		want := refs[15]
		if proximity {
			want = refs[13]
		}
		if st.Done || len(st.Nodes) == 0 || st.Nodes[0].ID != want.ID {
			t.Errorf("proximity %v: first next hop %v, want %s", proximity, st.Nodes, want)
		}
		if !slices.ContainsFunc(st.Nodes, func(r Ref) bool { return r.ID == refs[15].ID }) {
			t.Errorf("proximity %v: the closest node is not among the fall-backs %v", proximity, st.Nodes)
		}
	}
}

// With proximity, fixing all fingers measures every successor once.
func TestSuccessorsMeasured(t *testing.T) {
	cfg := TestConfig()
	r := newRing(t, cfg)
	rng := rand.New(rand.NewPCG(7, 8))
	for range 24 {
		r.join(rng)
	}
	r.converge(100)
	n := r.nodes[5]
	n.ForgetRTTs()
	n.FixAllFingers(context.Background())
	for _, st := range n.States() {
		for _, s := range st.Successors {
			if _, ok := n.RTT(s.Addr); !ok && s.Addr != n.Addr() {
				t.Errorf("successor %s of %s not measured", s, st.Self)
			}
		}
	}
}
