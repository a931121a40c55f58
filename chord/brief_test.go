package chord

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nextHopTally counts the NEXT_HOP calls that reached a live node.
type nextHopTally struct {
	brief   int // asked for a brief answer
	full    int // asked for the full answer
	answers int // brief answers that were not final
	refs    int // refs in those
}

type nextHopCounts struct {
	mu sync.Mutex
	nextHopTally
}

func (c *nextHopCounts) take() nextHopTally {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.nextHopTally
	c.nextHopTally = nextHopTally{}
	return out
}

type countingEndpoint struct {
	memEndpoint
	c *nextHopCounts
}

func (e countingEndpoint) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	st, err := e.memEndpoint.NextHop(ctx, to, key, want, hopCost, brief)
	if err != nil {
		return st, err
	}
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	if !brief {
		e.c.full++
		return st, nil
	}
	e.c.brief++
	if !st.Done {
		e.c.answers++
		e.c.refs += len(st.Nodes)
	}
	return st, nil
}

// Every ref of a NEXT_HOP answer crosses the iterative asker's own access
// link, so while hops answer each names only its best next hop; when that
// hop is dead, the asker asks the node that named it for the rest, and
// every lookup still finds the key's first live successor with a fifth of
// the peers dead and no repair.
func TestIterativeAnswersBriefUntilAHopFails(t *testing.T) {
	m := NewMemNet()
	cfg := TestConfig()
	cfg.Vnodes = 1
	counts := &nextHopCounts{}
	nodes := fingeredRing(t, m, cfg, 64, "brief", func(e memEndpoint) Transport {
		return countingEndpoint{e, counts}
	})
	rng := rand.New(rand.NewPCG(5, 5))
	alive := func(r Ref) bool { return m.Alive(r.Addr) }
	lookups := func(live []*Node) int {
		return wrongIterative(live, 10, cfg.SuccessorListLen, rng, alive)
	}

	counts.take()
	if wrong := lookups(nodes); wrong > 0 {
		t.Fatalf("%d lookups wrong on a live ring", wrong)
	}
	c := counts.take()
	if c.answers == 0 {
		t.Fatal("no answer that was not final: the ring no longer tests brief answers")
	}
	if c.refs != c.answers || c.full != 0 {
		t.Errorf("live ring: %d refs in %d answers that were not final (want one each), %d full answers asked for (want none)",
			c.refs, c.answers, c.full)
	}

	live := killSome(m, nodes, 13, rng) // ~20%
	if wrong := lookups(live); wrong > 0 {
		t.Errorf("%d of %d lookups did not find the first live successor with 20%% of peers dead", wrong, 10*len(live))
	}
	if c := counts.take(); c.full == 0 {
		t.Error("no full answer asked for with 20% of peers dead: the test no longer covers the fall-backs")
	}
}

// deadCalls counts, per dead peer, the NEXT_HOP calls that reached it.
type deadCalls struct {
	memEndpoint
	mu    *sync.Mutex
	calls map[string]int
}

func (e deadCalls) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	if !e.m.Alive(to.Addr) {
		e.mu.Lock()
		e.calls[to.Addr]++
		e.mu.Unlock()
	}
	return e.memEndpoint.NextHop(ctx, to, key, want, hopCost, brief)
}

// A peer that did not answer one call of an iterative lookup is not called
// again in it: its other vnodes, which answers (full ones after a failed
// hop above all) and earlier candidates still name, would each cost a
// timeout more. With 8 vnodes a peer, proximity, and a fifth of the peers
// dead, 4 to 6 of these 1140 lookups called a dead peer twice before.
func TestIterativeCallsADeadPeerOnce(t *testing.T) {
	ctx := context.Background()
	m := NewMemNet()
	cfg := TestConfig()
	cfg.Vnodes = 8
	var mu sync.Mutex
	calls := map[string]int{}
	cfg.Proximity = true
	nodes := fingeredRing(t, m, cfg, 48, "once", func(e memEndpoint) Transport {
		return deadCalls{e, &mu, calls}
	})
	rng := rand.New(rand.NewPCG(7, 7))
	live := killSome(m, nodes, 10, rng)
	alive := func(r Ref) bool { return m.Alive(r.Addr) }
	o := NewOracle(live)
	dead, again, wrong := 0, 0, 0
	for _, n := range live {
		for range 30 {
			key := randomID(rng)
			mu.Lock()
			clear(calls)
			mu.Unlock()
			res, err := n.LookupMode(ctx, key, cfg.SuccessorListLen, Iterative)
			if err != nil || o.CheckFirstLive(key, res, alive) != nil {
				wrong++
			}
			mu.Lock()
			for _, c := range calls {
				dead += c
				if c > 1 {
					again++
				}
			}
			mu.Unlock()
		}
	}
	if dead == 0 {
		t.Fatal("no call reached a dead peer: the test no longer covers failed hops")
	}
	if again > 0 || wrong > 0 {
		t.Errorf("of %d lookups: %d called a dead peer more than once, %d wrong", 30*len(live), again, wrong)
	}
}

// backNaming makes the second brief answer of each lookup name the
// lookup's first hop, visited already, alone, and logs the calls.
type backNaming struct {
	memEndpoint
	mu *sync.Mutex
	lk *lookupLog
}

// lookupLog is one lookup's first hop and calls, for backNaming.
type lookupLog struct {
	first    Ref
	doctored bool
	calls    []string // "brief ID", "full ID", "named ID" for a doctored answer
}

func (e backNaming) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	st, err := e.memEndpoint.NextHop(ctx, to, key, want, hopCost, brief)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !brief {
		e.lk.calls = append(e.lk.calls, "full "+to.ID.String())
		return st, err
	}
	e.lk.calls = append(e.lk.calls, "brief "+to.ID.String())
	switch {
	case err != nil || st.Done || e.lk.doctored:
	case e.lk.first.IsZero():
		e.lk.first = to
	case e.lk.first != to:
		st.Nodes = []Ref{e.lk.first}
		e.lk.calls = append(e.lk.calls, "named "+to.ID.String())
		e.lk.doctored = true
	}
	return st, err
}

// A node whose brief answer names only a node the lookup visited already
// is asked for its full answer next, and the lookup goes on from there.
func TestIterativeAsksForTheFullAnswerWhenTheBestHopWasVisited(t *testing.T) {
	ctx := context.Background()
	m := NewMemNet()
	cfg := TestConfig()
	cfg.Vnodes = 1
	var mu sync.Mutex
	lk := &lookupLog{}
	nodes := fingeredRing(t, m, cfg, 64, "back", func(e memEndpoint) Transport {
		return backNaming{e, &mu, lk}
	})
	rng := rand.New(rand.NewPCG(9, 9))
	o := NewOracle(nodes)
	alive := func(Ref) bool { return true }
	doctored := 0
	for i := range 5 * len(nodes) {
		n, key := nodes[i%len(nodes)], randomID(rng)
		mu.Lock()
		*lk = lookupLog{}
		mu.Unlock()
		res, err := n.LookupMode(ctx, key, cfg.SuccessorListLen, Iterative)
		if err != nil || o.CheckFirstLive(key, res, alive) != nil {
			t.Errorf("lookup from %s: %v %v", n.Addr(), res, err)
		}
		mu.Lock()
		calls := lk.calls
		for i, c := range calls {
			if id, ok := strings.CutPrefix(c, "named "); ok {
				doctored++
				if i+1 >= len(calls) || calls[i+1] != "full "+id {
					t.Errorf("after a brief answer naming a visited hop alone, calls %v, want full %s next", calls[i+1:], id)
				}
			}
		}
		mu.Unlock()
	}
	if doctored < 10 {
		t.Fatalf("only %d answers doctored: the test no longer covers the path", doctored)
	}
}

// oldPeers answers every NEXT_HOP in full, as a peer from before brief
// answers does, and counts the calls that asked for a full one.
type oldPeers struct {
	memEndpoint
	full *atomic.Int64
}

func (e oldPeers) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	if !brief && e.m.Alive(to.Addr) {
		e.full.Add(1)
	}
	return e.memEndpoint.NextHop(ctx, to, key, want, hopCost, false)
}

// An answer to a brief request that names several next hops came from a
// peer that ignores brief (ring.proto: it predates it): when its best hop
// fails, that peer is not asked again for what it already sent.
func TestIterativeDoesNotAskAFullAnswerAgain(t *testing.T) {
	m := NewMemNet()
	cfg := TestConfig()
	cfg.Vnodes = 1
	var full atomic.Int64
	nodes := fingeredRing(t, m, cfg, 64, "old", func(e memEndpoint) Transport { return oldPeers{e, &full} })
	rng := rand.New(rand.NewPCG(11, 11))
	live := killSome(m, nodes, 13, rng)
	alive := func(r Ref) bool { return m.Alive(r.Addr) }
	if wrong := wrongIterative(live, 10, cfg.SuccessorListLen, rng, alive); wrong > 0 || full.Load() > 0 {
		t.Errorf("%d lookups wrong, %d full answers asked for again from peers that had sent theirs", wrong, full.Load())
	}
}

// fingeredRing is wrappedRing converged, with every finger fixed.
func fingeredRing(t *testing.T, m *MemNet, cfg Config, peers int, prefix string, wrap func(memEndpoint) Transport) []*Node {
	t.Helper()
	nodes := wrappedRing(t, m, cfg, peers, prefix, wrap)
	ctx := context.Background()
	if _, err := Converge(ctx, nodes, 400); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.FixAllFingers(ctx)
	}
	return nodes
}

// killSome kills k of nodes, drawn by rng, and returns the live ones.
func killSome(m *MemNet, nodes []*Node, k int, rng *rand.Rand) []*Node {
	for _, i := range rng.Perm(len(nodes))[:k] {
		m.Kill(nodes[i].Addr())
	}
	return Live(nodes, func(n *Node) bool { return m.Alive(n.Addr()) })
}

// wrongIterative makes perNode iterative lookups of keys drawn by rng from
// every node of live, each for want successors, and counts those that
// failed or did not find the key's first live successor.
func wrongIterative(live []*Node, perNode, want int, rng *rand.Rand, alive func(Ref) bool) (wrong int) {
	o := NewOracle(live)
	for _, n := range live {
		for range perNode {
			key := randomID(rng)
			res, err := n.LookupMode(context.Background(), key, want, Iterative)
			if err != nil || o.CheckFirstLive(key, res, alive) != nil {
				wrong++
			}
		}
	}
	return wrong
}
