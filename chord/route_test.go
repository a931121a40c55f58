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
		n := loneNode(t, cfg)
		v := n.vns()[0]
		refs := refsOnArc(v.self.ID, v.self.ID, 400)
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

		st := n.step(v, key, 1, true, 0)
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

// An iterative asker pays its own link on every hop, so the node it asks
// weighs the hops still needed by the asker's round trip per hop: a fast
// answerer would send a slow asker through a fast finger that needs
// several more hops; given the asker's hop cost it names the slower node
// that can answer at once.
func TestNextHopWeighsTheAskersHops(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Vnodes = 1
	n := loneNode(t, cfg)
	v := n.vns()[0]
	refs := refsOnArc(v.self.ID, v.self.ID, 400)
	v.setSuccessors(refs[0], refs[1:16], Ref{}, 0, cfg.SuccessorListLen)
	key := refs[299].ID.AddPow2(0) // refs[299] can answer from its list
	for _, i := range []int{40, 80, 150, 299} {
		v.setFingers(highBit(Distance(v.self.ID, refs[i].ID)), refs[i])
		n.rtt.Observe(refs[i].Addr, 5*time.Millisecond) // our fingers: fast
	}
	n.rtt.Observe(refs[299].Addr, 300*time.Millisecond) // but the one near the key: slow
	fast, slow := refs[150], refs[299]

	for _, c := range []struct {
		askerHop time.Duration
		want     Ref
	}{
		{0, fast},                      // our own hops cost 5 ms: three of them beat one slow one
		{5 * time.Millisecond, fast},   // a fast asker: the same
		{500 * time.Millisecond, slow}, // a slow asker: one more of its hops costs more than the slow node
	} {
		st, err := n.HandleNextHop(context.Background(), v.self.ID, key, 1, c.askerHop, false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Done || len(st.Nodes) == 0 || st.Nodes[0].ID != c.want.ID {
			t.Errorf("asker's hop %v: first next hop %v, want %s", c.askerHop, st.Nodes, c.want)
		}
	}
}

// A peer's vnodes route together: the vnode before the key offers the
// nodes its siblings know nearer to the key, not only its own.
func TestStepUsesEveryVnodesState(t *testing.T) {
	for _, proximity := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Vnodes = 2
		cfg.Proximity = proximity
		n := loneNode(t, cfg)
		a, b := n.vns()[0], n.vns()[1]
		refs := refsOnArc(b.self.ID, a.self.ID, 4000)
		near := refs[len(refs)*4/5]
		key := near.ID.AddPow2(0)
		b.setSuccessors(refs[0], refs[1:16], Ref{}, 0, cfg.SuccessorListLen)
		a.setFingers(highBit(Distance(a.self.ID, near.ID)), near) // a's finger lands just before the key

		st := n.step(b, key, 1, false, 0)
		if st.Done || len(st.Nodes) == 0 || st.Nodes[0].ID != near.ID {
			t.Errorf("proximity %v: next hops %v, want %s (the sibling vnode's finger) first", proximity, st.Nodes, near)
		}
	}
}

// Every next hop a step offers lies on the arc (v, key), v being the
// peer's vnode closest before the key: strictly closer to the key than any
// vnode of ours, so routing progresses. A sibling vnode knows nodes behind
// v too (here a finger between it and v); they must not be offered, or a
// recursive lookup whose first choice fails steps backwards.
func TestStepOffersOnlyTheArcToTheKey(t *testing.T) {
	for _, proximity := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Vnodes = 2
		cfg.Proximity = proximity
		n := loneNode(t, cfg)
		a, b := n.vns()[0], n.vns()[1]
		ab, ba := refsOnArc(a.self.ID, b.self.ID, 4000), refsOnArc(b.self.ID, a.self.ID, 4000)
		// b knows one node before the key and nothing else: it cannot answer.
		near := ba[len(ba)/2]
		key := ba[len(ba)/2+10].ID
		b.setSuccessors(near, nil, Ref{}, 0, cfg.SuccessorListLen)
		// a's fingers land behind b: on (a, b).
		for _, r := range []Ref{ab[len(ab)/2], ab[len(ab)*3/4]} {
			a.setFingers(highBit(Distance(a.self.ID, r.ID)), r)
		}
		st := n.step(b, key, 1, true, 0)
		if st.Done {
			t.Fatalf("proximity %v: done %v", proximity, st.Nodes)
		}
		for _, c := range st.Nodes {
			if !Between(b.self.ID, c.ID, key) {
				t.Errorf("proximity %v: next hop %s is not on the arc (%s, %s): %v", proximity, c, b.self, key, st.Nodes)
			}
		}
	}
}

// loneNode is a node with cfg on no network: its routing state is what a
// test sets.
func loneNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := NewNode("me", nil, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// refsOnArc are those of the nodes p-0 ... p-(count-1) on the arc (from,
// to), nearest to from first (from == to: the whole circle).
func refsOnArc(from, to ID, count int) []Ref {
	var refs []Ref
	for i := range count {
		if r := MakeRef(fmt.Sprintf("p-%d", i), 0); Between(from, r.ID, to) {
			refs = append(refs, r)
		}
	}
	slices.SortFunc(refs, func(x, y Ref) int { return Distance(from, x.ID).Cmp(Distance(from, y.ID)) })
	return refs
}
