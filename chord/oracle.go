package chord

import (
	"context"
	"fmt"
	"slices"
	"sort"
)

// Oracle knows the true ring: every live vnode in order. Tests and the
// simulator use it to check what the protocol believes.
type Oracle struct {
	ring []Ref
}

// NewOracle builds the true ring of the given (live) nodes.
func NewOracle(nodes []*Node) *Oracle {
	o := &Oracle{}
	for _, n := range nodes {
		o.ring = append(o.ring, n.Vnodes()...)
	}
	sort.Slice(o.ring, func(i, j int) bool { return o.ring[i].ID.Cmp(o.ring[j].ID) < 0 })
	return o
}

func (o *Oracle) index(key ID) int {
	i := sort.Search(len(o.ring), func(i int) bool { return o.ring[i].ID.Cmp(key) >= 0 })
	return i % len(o.ring)
}

// Successor is the vnode responsible for key: the first at or after it.
func (o *Oracle) Successor(key ID) Ref { return o.ring[o.index(key)] }

// Check reports the first vnode whose predecessor or successor list is
// wrong. The whole list counts: lookups answer from it.
func (o *Oracle) Check(nodes []*Node) error {
	for _, n := range nodes {
		for _, st := range n.States() {
			i := o.index(st.Self.ID)
			if len(o.ring) == 1 {
				if len(st.Successors) != 0 {
					return fmt.Errorf("vnode %s alone but has successors", st.Self)
				}
				continue
			}
			if want := o.ring[(i-1+len(o.ring))%len(o.ring)]; st.Predecessor.ID != want.ID {
				return fmt.Errorf("vnode %s: predecessor %s, want %s", st.Self, st.Predecessor, want)
			}
			wantLen := min(n.cfg.SuccessorListLen, len(o.ring)-1)
			if len(st.Successors) != wantLen {
				return fmt.Errorf("vnode %s: %d successors, want %d", st.Self, len(st.Successors), wantLen)
			}
			// Answers from a list that names the whole ring continue round
			// it; that needs the vnode to know.
			if wrap := wantLen < n.cfg.SuccessorListLen; st.Wrapped != wrap {
				return fmt.Errorf("vnode %s: list wrapped %v, want %v", st.Self, st.Wrapped, wrap)
			}
			for k, got := range st.Successors {
				if want := o.ring[(i+1+k)%len(o.ring)]; got.ID != want.ID {
					return fmt.Errorf("vnode %s: successor %d is %s, want %s", st.Self, k, got, want)
				}
			}
		}
	}
	return nil
}

// CheckFingers verifies each distinct finger the nodes list (State.Fingers):
// finger k must be the true successor of self+2^k or, with proximity, any
// live node in [self+2^k, self+2^(k+1)).
func (o *Oracle) CheckFingers(nodes []*Node) error {
	for _, n := range nodes {
		for _, st := range n.States() {
			for _, f := range st.Fingers {
				want := o.Successor(st.Self.ID.AddPow2(f.K))
				live := o.Successor(f.Node.ID).ID == f.Node.ID
				switch {
				case f.Node.ID == want.ID:
				case n.cfg.Proximity && live && inFinger(&vnode{self: st.Self}, f.K, f.Node.ID):
				default:
					return fmt.Errorf("vnode %s: finger %d is %s, want %s", st.Self, f.K, f.Node, want)
				}
			}
		}
	}
	return nil
}

// CheckLookup verifies that a lookup result names the true successor.
func (o *Oracle) CheckLookup(key ID, res LookupResult) error {
	want := o.Successor(key)
	if len(res.Successors) == 0 || res.Successors[0].ID != want.ID {
		got := Ref{}
		if len(res.Successors) > 0 {
			got = res.Successors[0]
		}
		return fmt.Errorf("lookup %s: got %s, want %s", key, got, want)
	}
	return nil
}

// CheckFirstLive verifies that the first live node of a lookup's successor
// list is the true successor: what a client that contacts the list in order
// (as a block fetch does) ends up talking to.
func (o *Oracle) CheckFirstLive(key ID, res LookupResult, alive func(Ref) bool) error {
	for _, s := range res.Successors {
		if alive(s) {
			return o.CheckLookup(key, LookupResult{Successors: []Ref{s}})
		}
	}
	return fmt.Errorf("lookup %s: no live node in %d successors", key, len(res.Successors))
}

// Round runs one maintenance round on every node: stabilize, check
// predecessors, fix one finger each. Nodes are visited in the given order.
func Round(ctx context.Context, nodes []*Node) {
	for _, n := range nodes {
		n.Stabilize(ctx)
	}
	for _, n := range nodes {
		n.CheckPredecessors(ctx)
	}
	for _, n := range nodes {
		n.FixFingers(ctx)
	}
}

// Converge runs rounds until the ring is correct, at most maxRounds, and
// returns how many it took.
func Converge(ctx context.Context, nodes []*Node, maxRounds int) (int, error) {
	o := NewOracle(nodes)
	var err error
	for r := 1; r <= maxRounds; r++ {
		Round(ctx, nodes)
		if err = o.Check(nodes); err == nil {
			return r, nil
		}
	}
	return maxRounds, fmt.Errorf("not converged after %d rounds: %w", maxRounds, err)
}

// Live returns the nodes for which alive is true, in order.
func Live(nodes []*Node, alive func(*Node) bool) []*Node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *Node) bool { return !alive(n) })
}
