package chord

import (
	"context"
	"errors"
	"time"
)

// Ref names one virtual node: its position and how to reach it. Addr is the
// transport's opaque address of the peer (for libp2p, the peer ID bytes);
// ID is always VnodeID(Addr, Vnode), so a Ref received from the network is
// rebuilt with MakeRef rather than trusted.
type Ref struct {
	ID    ID
	Addr  string
	Vnode uint32
}

// MakeRef builds the Ref of vnode i of the peer at addr.
func MakeRef(addr string, i uint32) Ref {
	return Ref{ID: VnodeID([]byte(addr), i), Addr: addr, Vnode: i}
}

// IsZero reports whether r names no node (an unknown predecessor, say).
func (r Ref) IsZero() bool { return r.Addr == "" }

func (r Ref) String() string {
	if r.IsZero() {
		return "<none>"
	}
	return r.ID.String()
}

// Transport carries the ring RPCs to other nodes. Every call is bounded by its
// context; an error means the call did not reach a live node that understood it.
// Implementations: MemNet (in memory) and package peer (libp2p streams).
type Transport interface {
	// FindSuccessor asks to to resolve key recursively: each node forwards the
	// query until the key's predecessor answers. hops is the number of hops
	// already taken (a loop guard); want is how many successors to return.
	FindSuccessor(ctx context.Context, to Ref, key ID, hops, want int) (LookupResult, error)
	// NextHop is one step of an iterative lookup. hopCost is the asker's
	// round trip per hop, by which to weigh the hops a next hop still
	// needs (the asker pays each over its own link); zero: to's own.
	// brief asks for the best next hop alone (see HandleNextHop).
	NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error)
	// Neighbors returns to's predecessor and successor list. from, if not
	// zero, is the asking vnode, which might be to's predecessor: the call
	// carries the paper's notify, and tells to that from is alive. If the
	// digest of to's predecessor and list equals known, both are left out
	// (Unchanged), which keeps stabilization to a few bytes on a quiet ring.
	Neighbors(ctx context.Context, to, from Ref, known uint64) (Neighbors, error)
	// Changed tells to that its successor's neighbourhood changed, so it
	// stabilizes at its next round instead of after its backed-off interval.
	Changed(ctx context.Context, to Ref) error
	// Owns reports whether to is responsible for key (key is in (its
	// predecessor, to]): a one-message check that a finger is still right.
	Owns(ctx context.Context, to Ref, key ID) (bool, error)
	// Ping checks that to is alive.
	Ping(ctx context.Context, to Ref) error
}

// LookupResult is the answer to a lookup: the successors of the key, first
// the node responsible for it, and how many remote hops it took.
type LookupResult struct {
	Successors []Ref
	Hops       int
}

// Step is one node's answer in an iterative lookup. Done: Nodes are the key's
// successors. Otherwise Nodes are closer nodes to ask next, best first.
type Step struct {
	Done  bool
	Nodes []Ref
}

// Neighbors is a node's view of its neighbourhood.
type Neighbors struct {
	Predecessor Ref // zero if unknown
	Successors  []Ref
	Digest      uint64 // of Predecessor and Successors
	Unchanged   bool   // Predecessor and Successors left out: the digest matched
}

var (
	// ErrUnknownVnode: the call named a vnode the receiving peer does not run.
	ErrUnknownVnode = errors.New("no such vnode here")
	// ErrNoRoute: every candidate for the next hop failed.
	ErrNoRoute = errors.New("no live route to key")
	// ErrTooManyHops: a lookup went around more than MaxHops (a routing loop
	// while the ring is inconsistent); the asker retries.
	ErrTooManyHops = errors.New("lookup exceeded hop limit")
	// errNoAnswer wraps the error of a call that timed out: the peer may
	// be dead, or only slow.
	errNoAnswer = errors.New("no answer in time")
)
