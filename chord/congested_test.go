package chord

import (
	"context"
	"sync"
	"testing"
	"time"
)

// congestedEndpoint is a MemNet endpoint of a network where every call from
// or to a peer in congested goes unanswered until the caller's timeout, as
// on a slow access link whose queue is full of block transfers: the peer
// is alive, but neither its requests nor its answers get through in time.
type congestedEndpoint struct {
	memEndpoint
	mu        *sync.Mutex
	congested map[string]bool
}

func (e congestedEndpoint) wait(ctx context.Context, to Ref) error {
	e.mu.Lock()
	stuck := e.congested[e.from] || e.congested[to.Addr]
	e.mu.Unlock()
	if !stuck {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (e congestedEndpoint) FindSuccessor(ctx context.Context, to Ref, key ID, hops, want int) (LookupResult, error) {
	if err := e.wait(ctx, to); err != nil {
		return LookupResult{}, err
	}
	return e.memEndpoint.FindSuccessor(ctx, to, key, hops, want)
}

func (e congestedEndpoint) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	if err := e.wait(ctx, to); err != nil {
		return Step{}, err
	}
	return e.memEndpoint.NextHop(ctx, to, key, want, hopCost, brief)
}

func (e congestedEndpoint) Neighbors(ctx context.Context, to, from Ref, known uint64) (Neighbors, error) {
	if err := e.wait(ctx, to); err != nil {
		return Neighbors{}, err
	}
	return e.memEndpoint.Neighbors(ctx, to, from, known)
}

func (e congestedEndpoint) Changed(ctx context.Context, to Ref) error {
	if err := e.wait(ctx, to); err != nil {
		return err
	}
	return e.memEndpoint.Changed(ctx, to)
}

func (e congestedEndpoint) Owns(ctx context.Context, to Ref, key ID) (bool, error) {
	if err := e.wait(ctx, to); err != nil {
		return false, err
	}
	return e.memEndpoint.Owns(ctx, to, key)
}

func (e congestedEndpoint) Ping(ctx context.Context, to Ref) error {
	if err := e.wait(ctx, to); err != nil {
		return err
	}
	return e.memEndpoint.Ping(ctx, to)
}

// A peer whose link is congested for a while (every call from or to it
// times out: the testnet's 80 kbit/s node while its uplink drains block
// puts) drops every successor on another peer, and the others drop it:
// its vnodes form a ring of their own, which stabilization never merges
// back (before rejoin, the testnet's node 5 stayed split off for good).
// Once the congestion ends it rejoins through a peer it dropped.
func TestCongestedPeerRejoinsRing(t *testing.T) {
	ctx := context.Background()
	m := NewMemNet()
	cfg := DefaultConfig()
	cfg.Vnodes = 2
	cfg.InitialRTO, cfg.MinRTO, cfg.MaxRTO = 25*time.Millisecond, 25*time.Millisecond, 100*time.Millisecond
	mu, congested := &sync.Mutex{}, map[string]bool{}
	nodes := wrappedRing(t, m, cfg, 5, "congested", func(e memEndpoint) Transport {
		return congestedEndpoint{e, mu, congested}
	})
	if _, err := Converge(ctx, nodes, 100); err != nil {
		t.Fatal(err)
	}

	slow := nodes[4]
	mu.Lock()
	congested[slow.addr] = true
	mu.Unlock()
	// Long enough for every vnode of the slow peer to miss each of its
	// successors twice: 2 vnodes x up to 9 successors, one per round.
	for range 40 {
		Round(ctx, nodes)
	}
	if !slow.cutOff() {
		t.Fatal("the congestion did not cut the slow peer off: the test no longer covers its rejoin")
	}
	mu.Lock()
	congested[slow.addr] = false
	mu.Unlock()
	if _, err := Converge(ctx, nodes, 100); err != nil {
		t.Fatalf("after the congestion: %v", err)
	}
}
