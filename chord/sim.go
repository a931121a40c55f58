package chord

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Sim is a ring of in-memory peers for simulations and benchmarks (the
// ringsim program, the hop-count benchmarks). It is built through the
// protocol itself: every peer enters with Join, and routing state comes only
// from stabilize and fix-fingers. What the simulator adds is scheduling: it
// runs those steps on the few vnodes a join affects instead of a round on the
// whole ring after every join, which would cost O(N²).
type Sim struct {
	Net *MemNet
	// Nodes are all peers in join order, including killed ones.
	Nodes []*Node
	// BuildTime is how long NewSim took to build the ring, BuildCalls how
	// many RPCs that sent, CheckTime how long verifying it took.
	BuildTime, CheckTime time.Duration
	BuildCalls           int64

	cfg    Config
	ring   []simVnode // every vnode, sorted by ID
	oracle *Oracle    // the live ring
}

type simVnode struct {
	n *Node
	v *vnode
}

// SimConfig is DefaultConfig with vnodes positions per peer and timeouts no
// in-memory call can reach. A MemNet call is a function call: it can only
// overrun a timeout when the host stalls the process (a loaded machine, a
// garbage collection), and a simulation must not take that for a dead peer
// (a predecessor cleared, say) and report it as the protocol's doing.
// Timeouts play no part in routing, so hop counts are those of
// DefaultConfig.
func SimConfig(vnodes int) Config {
	c := DefaultConfig()
	c.Vnodes = vnodes
	c.InitialRTO, c.MinRTO, c.MaxRTO = time.Hour, time.Hour, time.Hour
	c.LookupTimeout = 2 * time.Hour
	return c
}

// NewSim builds a converged ring of peers nodes with cfg (cfg.Vnodes
// positions each) on a fresh MemNet. Peer i is named "sim<seed>-<i>", so the
// seed picks the ring layout; it also picks each joiner's bootstrap peer.
//
// Each peer joins through a random vnode already on the ring; then the
// vnodes whose successor lists it enters stabilize (refresh), so the ring is
// fully correct after every join, as later joins' lookups need. The
// newcomer then fixes its fingers, so it routes in O(log N) hops when later
// joiners boot through it; older peers' fingers go stale but stay valid
// (they still point at the near side of the key). A last fix-fingers pass on
// every peer makes all fingers exact. NewSim fails unless the result passes
// Check.
func NewSim(ctx context.Context, cfg Config, peers int, seed uint64) (*Sim, error) {
	return newSim(ctx, cfg, peers, seed, NewMemNet())
}

// NewLatencySim is NewSim on a MemNet whose messages take delay(from, to)
// on a virtual clock: round trips are measured exactly (proximity
// neighbour selection sees them) and Sample.Latency is each lookup's time.
// All its work runs one call at a time.
func NewLatencySim(ctx context.Context, cfg Config, peers int, seed uint64, delay func(from, to string) time.Duration) (*Sim, error) {
	return newSim(ctx, cfg, peers, seed, NewLatencyMemNet(delay))
}

func newSim(ctx context.Context, cfg Config, peers int, seed uint64, net *MemNet) (*Sim, error) {
	start := time.Now()
	s := &Sim{Net: net, cfg: cfg}
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range peers {
		if err := s.join(ctx, fmt.Sprintf("sim%d-%d", seed, i), rng); err != nil {
			return nil, err
		}
	}
	s.parallel(func(n *Node) { n.FixAllFingers(ctx) })
	s.BuildTime = time.Since(start)
	s.BuildCalls = s.CallCount()
	start = time.Now()
	s.oracle = NewOracle(s.Nodes)
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("ring of %d peers not converged after build: %w", peers, err)
	}
	s.CheckTime = time.Since(start)
	return s, nil
}

func (s *Sim) join(ctx context.Context, addr string, rng *rand.Rand) error {
	n, err := s.Net.Add(addr, s.cfg)
	if err != nil {
		return err
	}
	if len(s.ring) == 0 {
		n.Create()
	} else if err := n.Join(ctx, s.ring[rng.IntN(len(s.ring))].v.self); err != nil {
		return err
	}
	s.Nodes = append(s.Nodes, n)
	for _, v := range n.vnodes {
		s.ring = slices.Insert(s.ring, s.index(v.self.ID), simVnode{n, v})
	}
	s.refresh(ctx, n)
	n.FixAllFingers(ctx)
	return nil
}

func (s *Sim) index(id ID) int {
	i, _ := slices.BinarySearchFunc(s.ring, id, func(x simVnode, id ID) int { return x.v.self.ID.Cmp(id) })
	return i
}

// refresh stabilizes every vnode whose successor list the vnodes of the
// newly joined peer n belong in: each new vnode and its SuccessorListLen
// predecessors. A vnode's list is its successor's shifted by one, so the
// stale vnodes are swept counter-clockwise from the end of each stale arc,
// where the next vnode's list is untouched, and each copies a list already
// right. When the stale arcs close the whole circle (a lone peer's vnodes
// after Create, a small ring) there is no such end: two sweeps round the
// circle do it, as the first leaves wrong entries only within one list's
// reach of where it started.
func (s *Sim) refresh(ctx context.Context, n *Node) {
	size := len(s.ring)
	reach := min(s.cfg.SuccessorListLen, size-1)
	isNew := make(map[int]bool, len(n.vnodes))
	var news []int
	for _, v := range n.vnodes {
		i := s.index(v.self.ID)
		isNew[i] = true
		news = append(news, i)
	}
	slices.Sort(news)
	wrap := func(i int) int { return ((i % size) + size) % size }
	ends := 0
	for m, e := range news {
		gap := (news[(m+1)%len(news)] - e + size) % size
		if gap == 0 {
			gap = size // the only new vnode: the next one is itself, round the circle
		}
		if gap <= reach+1 {
			continue // e+1 is within reach of the next new vnode: e is no arc end
		}
		ends++
		// dist: how far the nearest new vnode at or after i is.
		for i, dist := e, 0; ; i, dist = i-1, dist+1 {
			if isNew[wrap(i)] {
				dist = 0
			}
			if dist > reach {
				break
			}
			stabilizeFully(ctx, s.ring[wrap(i)])
		}
	}
	if ends == 0 {
		for i := range 2 * size {
			stabilizeFully(ctx, s.ring[wrap(news[0]-i)])
		}
	}
}

// stabilizeFully repeats stabilize (and sends the Changed messages it
// queues) while it moves the successor: one
// stabilize only steps to the successor's predecessor, and a peer with
// several vnodes can put more than one between a vnode and its successor.
func stabilizeFully(ctx context.Context, x simVnode) {
	for {
		before := x.v.successor()
		x.n.stabilize(ctx, x.v)
		x.n.flushChanged(ctx, x.v)
		if x.v.successor() == before {
			return
		}
	}
}

// parallel runs f on every live peer, on all CPUs. Only for work whose
// outcome does not depend on the order in which peers see each other's
// changes: fixing fingers on a ring whose successor lists are right, where
// every lookup finds the right node whichever fingers, old or new, it
// crosses on the way.
func (s *Sim) parallel(f func(*Node)) {
	if s.Net.clock != nil {
		// One virtual clock: calls must not overlap.
		for _, n := range s.Live() {
			f(n)
		}
		return
	}
	var wg sync.WaitGroup
	work := make(chan *Node)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for n := range work {
				f(n)
			}
		})
	}
	for _, n := range s.Live() {
		work <- n
	}
	close(work)
	wg.Wait()
}

// Live returns the peers not killed, in join order.
func (s *Sim) Live() []*Node {
	return Live(s.Nodes, func(n *Node) bool { return s.Net.Alive(n.Addr()) })
}

// Check verifies every live vnode against the true ring of live peers:
// predecessor and whole successor list (Oracle.Check), and every one of the
// Bits finger entries (the successor of self + 2^k, or with proximity any
// live node in [self+2^k, self+2^(k+1)) if there is one; none when that is
// the vnode itself).
func (s *Sim) Check() error {
	live := s.Live()
	if err := s.oracle.Check(live); err != nil {
		return err
	}
	for _, n := range live {
		for _, v := range n.vnodes {
			if err := s.checkFingers(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Sim) checkFingers(v *vnode) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var want Ref
	for k, got := range v.fingers {
		start := v.self.ID.AddPow2(k)
		// Finger starts move away from self as k grows, so the successor of
		// the last start still answers while the new start is before it; a
		// search is needed only about log2 N times per vnode.
		if want.IsZero() || !BetweenRightIncl(v.self.ID, start, want.ID) {
			want = s.oracle.Successor(start)
		}
		// With proximity, any live node in the finger's interval will do;
		// only an empty interval leaves the successor of the start.
		proximate := s.cfg.Proximity && want.ID != v.self.ID && inFinger(v, k, want.ID)
		switch {
		case want.ID == v.self.ID && got != nil:
			return fmt.Errorf("vnode %s: finger %d is %s, want none", v.self, k, *got)
		case proximate:
			if got == nil || !inFinger(v, k, got.ID) || s.oracle.Successor(got.ID).ID != got.ID {
				return fmt.Errorf("vnode %s: finger %d is %v, want a live node in its interval", v.self, k, got)
			}
		case want.ID != v.self.ID && (got == nil || got.ID != want.ID):
			return fmt.Errorf("vnode %s: finger %d is %v, want %s", v.self, k, got, want)
		}
	}
	return nil
}

// Kill crashes count random live peers at once (no goodbye) and returns them.
// Nobody repairs anything until the caller runs maintenance.
func (s *Sim) Kill(count int, rng *rand.Rand) []*Node {
	live := s.Live()
	var dead []*Node
	for _, i := range rng.Perm(len(live))[:count] {
		s.Net.Kill(live[i].Addr())
		dead = append(dead, live[i])
	}
	s.oracle = NewOracle(s.Live())
	return dead
}

// CallCount is the number of RPCs sent so far, every kind together.
func (s *Sim) CallCount() int64 {
	c := &s.Net.Calls
	return c.FindSuccessor.Load() + c.NextHop.Load() + c.Neighbors.Load() + c.Changed.Load() + c.Owns.Load() + c.Ping.Load()
}

// FailedCalls is the number of RPCs so far that found their peer dead.
func (s *Sim) FailedCalls() int64 { return s.Net.Calls.Unreachable.Load() }

// Sample is the outcome of one lookup.
type Sample struct {
	Err  error
	Hops int // LookupResult.Hops
	// Calls are the lookup RPCs (FindSuccessor, NextHop) it sent, failed
	// ones included; Failed are those that found their peer dead.
	Calls, Failed int64
	// Fallback: the recursive attempt failed and the lookup was redone
	// iteratively (Node.LookupMode does that).
	Fallback bool
	// Right: the first successor returned is the key's true successor among
	// live peers. FirstLive: the first live node returned is.
	Right, FirstLive bool
	// Latency is the lookup's time on a NewLatencySim, else zero.
	Latency time.Duration
}

// Lookup runs one lookup of key from n and checks it against the live ring.
// Calls and Failed come from network-wide counters, so lookups on one Sim
// must not run concurrently.
func (s *Sim) Lookup(ctx context.Context, n *Node, key ID, want int, mode LookupMode) Sample {
	c := &s.Net.Calls
	fs, nh, failed := c.FindSuccessor.Load(), c.NextHop.Load(), s.FailedCalls()
	var start time.Time
	if s.Net.clock != nil {
		start = s.Net.clock.Now()
	}
	res, err := n.LookupMode(ctx, key, want, mode)
	var latency time.Duration
	if s.Net.clock != nil {
		latency = s.Net.clock.Now().Sub(start)
	}
	nextHops := c.NextHop.Load() - nh
	sm := Sample{
		Err:      err,
		Hops:     res.Hops,
		Calls:    c.FindSuccessor.Load() - fs + nextHops,
		Failed:   s.FailedCalls() - failed,
		Fallback: mode == Recursive && nextHops > 0,
		Latency:  latency,
	}
	if err == nil {
		sm.Right = s.oracle.CheckLookup(key, res) == nil
		sm.FirstLive = s.oracle.CheckFirstLive(key, res, func(r Ref) bool { return s.Net.Alive(r.Addr) }) == nil
	}
	return sm
}

// Summary aggregates lookup samples.
type Summary struct {
	Lookups                    int
	MeanHops                   float64
	P50Hops, P99Hops, Max      int
	CallsPerLookup             float64
	FailedPerLookup            float64
	Errors, Fallbacks          int
	RightShare, FirstLiveShare float64 // shares of all lookups, failed ones counted as wrong
}

// Summarize aggregates samples. Hop statistics cover the lookups that
// returned an answer; percentiles are nearest-rank.
func Summarize(samples []Sample) Summary {
	sum := Summary{Lookups: len(samples)}
	var hops []int
	var calls, failed int64
	right, firstLive := 0, 0
	for _, x := range samples {
		calls += x.Calls
		failed += x.Failed
		if x.Fallback {
			sum.Fallbacks++
		}
		if x.Err != nil {
			sum.Errors++
			continue
		}
		hops = append(hops, x.Hops)
		if x.Right {
			right++
		}
		if x.FirstLive {
			firstLive++
		}
	}
	if len(samples) == 0 {
		return sum
	}
	n := float64(len(samples))
	sum.CallsPerLookup, sum.FailedPerLookup = float64(calls)/n, float64(failed)/n
	sum.RightShare, sum.FirstLiveShare = float64(right)/n, float64(firstLive)/n
	if len(hops) > 0 {
		slices.Sort(hops)
		total := 0
		for _, h := range hops {
			total += h
		}
		sum.MeanHops = float64(total) / float64(len(hops))
		rank := func(p float64) int { return hops[int(math.Ceil(p*float64(len(hops))))-1] }
		sum.P50Hops, sum.P99Hops, sum.Max = rank(0.50), rank(0.99), hops[len(hops)-1]
	}
	return sum
}

// AccessDelays is a delay model for NewLatencySim: each peer gets an
// access delay drawn log-uniformly from [lo, hi], reproducibly from seed
// and its address, and a message from a to b takes half the sum of theirs,
// so the round trip between a and b is the sum: between 2·lo and 2·hi.
func AccessDelays(lo, hi time.Duration, seed uint64) func(from, to string) time.Duration {
	var mu sync.Mutex
	access := map[string]time.Duration{}
	of := func(addr string) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		d, ok := access[addr]
		if !ok {
			h := KeyID(fmt.Appendf(nil, "%d/%s", seed, addr))
			u := float64(binary.BigEndian.Uint64(h[:8])) / 0x1p64
			d = time.Duration(float64(lo) * math.Pow(float64(hi)/float64(lo), u))
			access[addr] = d
		}
		return d
	}
	return func(from, to string) time.Duration { return (of(from) + of(to)) / 2 }
}
