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
	add := func(addr string) *Node {
		n, err := m.Add(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
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
