package chord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// A recursive hop whose every next hop failed, the last because it named
// a vnode its peer no longer runs, reports ErrNoRoute, not that
// ErrUnknownVnode: the asker must not forget (or suspect) the hop that
// answered, which is alive and runs the vnode the asker named.
func TestForwardDoesNotPassOnUnknownVnode(t *testing.T) {
	m := NewMemNet()
	cfg := DefaultConfig()
	cfg.Vnodes = 1
	add := adder(t, m, cfg)
	b := add("b")
	bRef := b.Vnodes()[0]
	// On the ring from b: x, a vnode of peer x (which restarted running
	// vnode 0 only), then the dead peer d, then the key.
	var d, x Ref
	for j := 0; x.IsZero(); j++ {
		d = MakeRef(fmt.Sprintf("d-%d", j), 0)
		for i := uint32(1); i < 64 && x.IsZero(); i++ {
			if r := MakeRef("x", i); Between(bRef.ID, r.ID, d.ID) {
				x = r
			}
		}
	}
	key := d.ID.AddPow2(0)
	add("x")
	add(d.Addr)
	m.Kill(d.Addr)
	var a *Node
	for j := 0; a == nil; j++ {
		if r := MakeRef(fmt.Sprintf("a-%d", j), 0); Between(r.ID, bRef.ID, key) {
			a = add(r.Addr)
		}
	}
	// a routes the key to b, its successor; b tries d (no answer), then x
	// (no such vnode) and has no one left to try.
	a.vns()[0].setSuccessors(bRef, nil, Ref{}, 0, cfg.SuccessorListLen)
	b.vns()[0].setSuccessors(x, []Ref{d}, Ref{}, 0, cfg.SuccessorListLen)

	ctx := context.Background()
	_, err := b.HandleFindSuccessor(ctx, bRef.ID, key, 1, 1)
	if !errors.Is(err, ErrNoRoute) || errors.Is(err, ErrUnknownVnode) {
		t.Fatalf("b's forward: %v, want ErrNoRoute and not ErrUnknownVnode", err)
	}
	if slices.ContainsFunc(b.States()[0].Successors, func(r Ref) bool { return r.ID == x.ID }) {
		t.Errorf("b still lists %s, which its peer said it does not run", x)
	}

	b.vns()[0].setSuccessors(x, []Ref{d}, Ref{}, 0, cfg.SuccessorListLen)
	if _, err := a.LookupMode(ctx, key, 1, Recursive); err == nil {
		t.Fatal("lookup succeeded with no live route")
	}
	if !slices.ContainsFunc(a.States()[0].Successors, func(r Ref) bool { return r.ID == bRef.ID }) {
		t.Errorf("a forgot b after b reported a failure further on: successors %v", a.States()[0].Successors)
	}
}

// A peer that restarted running fewer vnodes (or other positions) can be
// handed one of its old vnodes back, in a successor list or a finger: a
// Ref with its own address and a vnode it no longer runs. Its recursive
// lookups then treat that stale vnode as a free local hop: before, that
// hop went to HandleFindSuccessor, which for a lookup of our own (hops 0)
// served it from our closest vnode, whose step named the stale vnode
// again, recursing with no network call and no hop count until the
// stack overflowed; and for a forwarded lookup (hops 1 and more) passed on
// ErrUnknownVnode, so the asker forgot our live vnode. The stale vnode
// must be forgotten and the next candidate tried.
func TestForwardSkipsOwnStaleVnode(t *testing.T) {
	m := NewMemNet()
	cfg := DefaultConfig()
	cfg.Vnodes = 1
	add := adder(t, m, cfg)
	a := add("a")
	aRef := a.Vnodes()[0]
	stale := MakeRef("a", 1) // a ran it before it restarted with one vnode
	// On the ring from a: b, the stale vnode, then the key; a's successor
	// list names both, so a routes the key to the stale vnode first.
	var b *Node
	for j := 0; b == nil; j++ {
		if r := MakeRef(fmt.Sprintf("b-%d", j), 0); Between(aRef.ID, r.ID, stale.ID) {
			b = add(r.Addr)
		}
	}
	bRef := b.Vnodes()[0]
	key := stale.ID.AddPow2(0)
	if Between(stale.ID, aRef.ID, key) {
		t.Fatal("the key wraps past a; pick another stale vnode")
	}
	install := func() {
		a.vns()[0].setSuccessors(bRef, []Ref{stale}, Ref{}, 0, cfg.SuccessorListLen)
		b.vns()[0].setSuccessors(aRef, nil, Ref{}, 0, cfg.SuccessorListLen)
		if st := a.step(a.vns()[0], key, 1, true, 0); st.Done || len(st.Nodes) == 0 || st.Nodes[0].ID != stale.ID {
			t.Fatalf("a's first step %+v does not name the stale vnode %s first", st, stale)
		}
	}
	check := func(how string, res LookupResult, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		if len(res.Successors) == 0 || res.Successors[0].ID != aRef.ID {
			t.Fatalf("%s: successors %v, want %s first", how, res.Successors, aRef)
		}
		if slices.ContainsFunc(a.States()[0].Successors, func(r Ref) bool { return r.ID == stale.ID }) {
			t.Errorf("%s: a still lists its stale vnode %s", how, stale)
		}
	}
	ctx := context.Background()

	install()
	res, err := a.HandleFindSuccessor(ctx, aRef.ID, key, 1, 1)
	check("forwarded lookup", res, err)

	install()
	res, err = a.LookupMode(ctx, key, 1, Recursive)
	check("own lookup", res, err)

	// An iterative lookup asks the stale vnode as a local hop
	// (HandleNextHop): it must forget it as well.
	install()
	res, err = a.LookupMode(ctx, key, 1, Iterative)
	check("iterative lookup", res, err)
}

// Stabilization copies the successor's list. A list naming one of our own
// stale vnodes (see TestForwardSkipsOwnStaleVnode) must not bring it into
// ours, where our lookups would route to it, nor be kept as the
// successor's predecessor, which each stabilization whose answer is
// "unchanged" would try as a closer successor.
func TestStabilizeDropsOwnStaleVnodes(t *testing.T) {
	m := NewMemNet()
	cfg := DefaultConfig()
	cfg.Vnodes = 1
	add := adder(t, m, cfg)
	a, b := add("a"), add("b")
	aRef, bRef := a.Vnodes()[0], b.Vnodes()[0]
	stale := MakeRef("a", 1)
	if !Between(aRef.ID, stale.ID, bRef.ID) {
		stale, aRef, bRef, a, b = MakeRef("b", 1), bRef, aRef, b, a
	}
	// Now stale (an old vnode of a) lies between a and its successor b,
	// and b names it both as its predecessor and first in its list.
	a.vns()[0].setSuccessors(bRef, nil, Ref{}, 0, cfg.SuccessorListLen)
	b.vns()[0].setSuccessors(stale, []Ref{aRef}, Ref{}, 0, cfg.SuccessorListLen)
	b.vns()[0].mu.Lock()
	b.vns()[0].pred = stale
	b.vns()[0].mu.Unlock()

	a.stabilize(context.Background(), a.vns()[0])
	got := a.States()[0].Successors
	if len(got) == 0 || got[0].ID != bRef.ID {
		t.Fatalf("a's successors %v, want %s first", got, bRef)
	}
	if slices.ContainsFunc(got, func(r Ref) bool { return r.ID == stale.ID }) {
		t.Errorf("a's successors %v name its stale vnode %s", got, stale)
	}
	if pred, _ := a.vns()[0].unchanged(bRef); pred.ID == stale.ID {
		t.Errorf("a keeps its stale vnode %s as its successor's predecessor", stale)
	}
}

// adder adds peers with cfg at the addresses it is given to m, for
// rings laid out by hand.
func adder(t *testing.T, m *MemNet, cfg Config) func(addr string) *Node {
	return func(addr string) *Node {
		t.Helper()
		n, err := m.Add(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}
