package chord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Node is one peer on the ring: Config.Vnodes positions sharing one address,
// one transport and one table of round-trip estimates. Its exported Handle*
// methods serve the RPCs other nodes send; its maintenance steps (Stabilize,
// FixFingers, CheckPredecessors) are called by Run on timers, or one at a
// time by a test that drives convergence itself.
type Node struct {
	cfg   Config
	addr  string
	tr    Transport
	clock Clock
	rtt   *rttTable
	// vnodes are the node's positions, sorted by ID: chosen at Join with
	// VnodeChoices, fixed after that. Handlers may run while Join
	// replaces them (a restarted peer is called at once), hence atomic.
	vnodes atomic.Pointer[[]*vnode]

	// gateways are the ring nodes a client-only node (no vnodes) asks:
	// its bootstrap, then nodes its lookups returned, newest first, so
	// that it keeps working when its bootstrap peer leaves.
	gwMu     sync.Mutex
	gateways []Ref

	// contacts are peers our vnodes dropped from their successor lists,
	// newest first: the way back in if the node is cut off (rejoin).
	contactsMu sync.Mutex
	contacts   []Ref
}

// maxGateways bounds a client's list of ring nodes to ask.
const maxGateways = 8

// candidatesPerHop is how many next hops a node offers or tries for one
// lookup step: the best and a few fall-backs if it turns out to be dead.
const candidatesPerHop = 4

// proximityCandidates is how many successors of a finger's start are
// looked up for proximity neighbour selection; those inside the finger's
// interval are the candidates. Dabek et al. (NSDI 2004) found 16 samples
// take most of the gain; 8 halve the bytes of each refresh.
const proximityCandidates = 8

// proximityProbes bounds the candidates of unknown round trip pinged for
// one finger choice: each probe may open a connection, and the round trips
// learnt stay known, so later refreshes widen the choice.
const proximityProbes = 4

// proximityRefresh: every this many finger checks of a vnode, the finger
// is looked up again rather than only pinged, so nodes that joined or got
// closer are considered.
const proximityRefresh = 8

// NewNode makes a node for the peer at addr. It is not on any ring until
// Create or Join.
func NewNode(addr string, tr Transport, clock Clock, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("chord config: %w", err)
	}
	if clock == nil {
		clock = SystemClock{}
	}
	n := &Node{cfg: cfg, addr: addr, tr: tr, clock: clock}
	n.rtt = newRTTTable(&n.cfg)
	indices := make([]uint32, cfg.Vnodes)
	for i := range indices {
		indices[i] = uint32(i)
	}
	if n.keepsIndices() {
		indices = cfg.VnodeIndices
	}
	n.setVnodes(indices)
	return n, nil
}

// keepsIndices reports whether Config.VnodeIndices are still a choice
// the node could make: one distinct index per vnode, below MaxVnodes
// (chooseIndices may take any position its lookups show), or with one
// choice 0..Vnodes-1.
func (n *Node) keepsIndices() bool {
	v := n.cfg.Vnodes
	if len(n.cfg.VnodeIndices) != v || v == 0 {
		return false
	}
	limit := uint32(MaxVnodes)
	if n.cfg.VnodeChoices <= 1 {
		limit = uint32(v)
	}
	seen := make(map[uint32]bool, v)
	for _, x := range n.cfg.VnodeIndices {
		if x >= limit || seen[x] {
			return false
		}
		seen[x] = true
	}
	return true
}

// Indices are the indices of the node's vnodes, lowest first: what
// Config.VnodeIndices takes at a restart.
func (n *Node) Indices() []uint32 {
	vs := n.vns()
	out := make([]uint32, len(vs))
	for i, v := range vs {
		out[i] = v.self.Vnode
	}
	slices.Sort(out)
	return out
}

// setVnodes makes the node run the vnodes with the given indices, with no
// routing state.
func (n *Node) setVnodes(indices []uint32) {
	vs := make([]*vnode, len(indices))
	for i, x := range indices {
		vs[i] = newVnode(MakeRef(n.addr, x))
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].self.ID.Cmp(vs[j].self.ID) < 0 })
	n.vnodes.Store(&vs)
}

// vns returns the node's vnodes, sorted by ID.
func (n *Node) vns() []*vnode { return *n.vnodes.Load() }

// Addr is the node's transport address.
func (n *Node) Addr() string { return n.addr }

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// Vnodes returns the node's own positions, in ring order.
func (n *Node) Vnodes() []Ref {
	vs := n.vns()
	refs := make([]Ref, len(vs))
	for i, v := range vs {
		refs[i] = v.self
	}
	return refs
}

// States returns a copy of every vnode's routing state.
func (n *Node) States() []State {
	vs := n.vns()
	out := make([]State, len(vs))
	for i, v := range vs {
		out[i] = v.state()
	}
	return out
}

// RTT returns the smoothed round trip to the peer at addr, if measured.
func (n *Node) RTT(addr string) (time.Duration, bool) { return n.rtt.SRTT(addr) }

// Create starts a new ring holding only this node's vnodes. Each vnode knows
// the others at once, so the first stabilization round links them up.
func (n *Node) Create() {
	vs := n.vns()
	for i, v := range vs {
		if len(vs) > 1 {
			next := vs[(i+1)%len(vs)].self
			v.setSuccessors(next, nil, Ref{}, 0, n.cfg.SuccessorListLen)
		}
	}
}

// Join enters the ring that boot is on: with VnodeChoices, the vnodes'
// positions are chosen first (choosePositions), unless the node keeps
// Config.VnodeIndices from before a restart; every vnode looks up its
// own successor through boot, then one stabilization round tells the
// successors. boot may name vnode 0 of a peer that does not run it: a
// join's requests are served by any vnode of the peer.
// A client (no vnodes) only checks that boot answers lookups and keeps the
// nodes of the answer as gateways.
func (n *Node) Join(ctx context.Context, boot Ref) error {
	n.learnGateways([]Ref{boot})
	if len(n.vns()) == 0 {
		res, err := call(n, ctx, boot, n.rtt.Timeout(boot.Addr), false, func(ctx context.Context) (LookupResult, error) {
			return n.tr.FindSuccessor(ctx, boot, KeyID([]byte(n.addr)), 0, maxGateways)
		})
		if err != nil {
			return fmt.Errorf("join via %s: %w", boot.Addr, err)
		}
		n.learnGateways(res.Successors)
		return nil
	}
	if n.cfg.VnodeChoices > 1 && !n.keepsIndices() {
		if err := n.choosePositions(ctx, boot); err != nil {
			return err
		}
	}
	for _, v := range n.vns() {
		succs, err := n.successorsVia(ctx, boot, v)
		if err != nil {
			return fmt.Errorf("join via %s: %w", boot.Addr, err)
		}
		if len(succs) == 0 {
			return fmt.Errorf("join via %s: empty answer", boot.Addr)
		}
		v.setSuccessors(succs[0], succs[1:], Ref{}, 0, n.cfg.SuccessorListLen)
	}
	n.Stabilize(ctx)
	return nil
}

// successorsVia asks boot for the successors of v's position, to join or
// rejoin the ring through it. A peer back from a crash before the ring
// forgot it is named as the successor of its own position: its old
// incarnation, left out with our other stale vnodes; its successors are the
// ones after that.
func (n *Node) successorsVia(ctx context.Context, boot Ref, v *vnode) ([]Ref, error) {
	res, err := call(n, ctx, boot, n.rtt.Timeout(boot.Addr), false, func(ctx context.Context) (LookupResult, error) {
		return n.tr.FindSuccessor(ctx, boot, v.self.ID, 0, n.cfg.SuccessorListLen)
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(n.withoutStale(res.Successors), func(r Ref) bool { return r.ID == v.self.ID }), nil
}

// call runs one RPC to peer with a timeout and, if sample is set, feeds the
// round-trip estimator with its duration: only for calls the peer answers
// itself, not recursive lookups, whose time includes the rest of the path.
// A peer that fails is dropped from the finger tables, which are only
// routing hints; successor lists and predecessors change only through
// stabilization and predecessor checks, so a peer that was merely slow for
// one lookup does not make later answers wrong, but those checks run at
// the next round.
func call[T any](n *Node, ctx context.Context, to Ref, timeout time.Duration, sample bool, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := n.clock.Now()
	res, err := f(cctx)
	switch {
	case err == nil:
		if sample {
			n.rtt.Observe(to.Addr, n.clock.Now().Sub(start))
		}
	case ctx.Err() != nil:
		// Our caller gave up; says nothing about the peer.
	case errors.Is(err, ErrUnknownVnode):
		// Definitive: the peer is up but does not run that vnode (it
		// restarted with a lower capacity).
		n.forget(func(r Ref) bool { return r.ID == to.ID })
	case errors.Is(err, ErrNoRoute), errors.Is(err, ErrTooManyHops):
		// The peer answered: it is alive, and what failed lies further
		// along the path, which it has dealt with itself.
	default:
		if cctx.Err() != nil {
			n.rtt.TimedOut(to.Addr)
			err = fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		for _, v := range n.vns() {
			v.dropFingers(to.Addr)
			v.suspect(to.Addr)
		}
		n.dropGateway(to.Addr)
	}
	return res, err
}

// direct is call for an RPC the peer answers itself, with the timeout of
// one round trip to it.
func direct[T any](n *Node, ctx context.Context, to Ref, f func(context.Context) (T, error)) (T, error) {
	return call(n, ctx, to, n.rtt.Timeout(to.Addr), true, f)
}

// learnGateways puts refs at the front of a client's gateway list. With
// Proximity the nearest measured gateways are kept too (maxGateways/2 of
// them), whatever a lookup brought: each lookup's first hop is the
// client's own round trip to a gateway, on a slow or far one most of the
// lookup, and the answer's successors are just wherever the key fell.
func (n *Node) learnGateways(refs []Ref) {
	if len(n.vns()) > 0 {
		return
	}
	n.gwMu.Lock()
	defer n.gwMu.Unlock()
	list := slices.Clone(refs)
	for _, g := range n.gateways {
		if !slices.ContainsFunc(list, func(r Ref) bool { return r.ID == g.ID }) {
			list = append(list, g)
		}
	}
	if n.cfg.Proximity {
		list = n.nearestFirst(list, maxGateways/2)
	}
	n.gateways = list[:min(len(list), maxGateways)]
}

// nearestFirst returns refs with the k nearest of those whose round trip
// is measured at the front, nearest first; the others keep their order.
func (n *Node) nearestFirst(refs []Ref, k int) []Ref {
	near := n.byRTT(refs)
	near = near[:min(len(near), k)]
	rest := slices.DeleteFunc(slices.Clone(refs), func(r Ref) bool {
		return slices.ContainsFunc(near, func(g Ref) bool { return g.ID == r.ID })
	})
	return append(near, rest...)
}

// byRTT returns the refs whose round trip is measured, nearest first.
func (n *Node) byRTT(refs []Ref) []Ref {
	type measured struct {
		ref Ref
		rtt time.Duration
	}
	var ms []measured
	for _, r := range refs {
		if d, ok := n.rtt.SRTT(r.Addr); ok {
			ms = append(ms, measured{r, d})
		}
	}
	slices.SortStableFunc(ms, func(a, b measured) int { return cmp.Compare(a.rtt, b.rtt) })
	out := make([]Ref, len(ms))
	for i, m := range ms {
		out[i] = m.ref
	}
	return out
}

// probeGateways pings, all at once, a client's gateways whose round trip
// is unknown, so that gatewayStep can prefer the nearest.
func (n *Node) probeGateways(ctx context.Context) {
	n.gwMu.Lock()
	gws := slices.Clone(n.gateways)
	n.gwMu.Unlock()
	pinged := map[string]bool{} // a peer's vnodes share its round trip
	var wg sync.WaitGroup
	for _, g := range gws {
		if _, ok := n.rtt.SRTT(g.Addr); !ok && g.Addr != n.addr && !pinged[g.Addr] {
			pinged[g.Addr] = true
			wg.Go(func() { _ = n.ping(ctx, g) })
		}
	}
	wg.Wait()
}

// dropGateway removes the gateways on the peer at addr, unless none would
// be left: a client always keeps one node to try.
func (n *Node) dropGateway(addr string) {
	n.gwMu.Lock()
	defer n.gwMu.Unlock()
	if kept := slices.DeleteFunc(slices.Clone(n.gateways), func(r Ref) bool { return r.Addr == addr }); len(kept) > 0 {
		n.gateways = kept
	}
}

// gatewayStep is a client's first step: its gateways, with Proximity the
// measured ones first, nearest first, then the others as learned.
func (n *Node) gatewayStep() Step {
	n.gwMu.Lock()
	gws := slices.Clone(n.gateways)
	n.gwMu.Unlock()
	if !n.cfg.Proximity {
		return Step{Nodes: gws}
	}
	return Step{Nodes: n.nearestFirst(gws, len(gws))}
}

// forget removes matching nodes from every vnode's state.
func (n *Node) forget(match func(Ref) bool) {
	for _, v := range n.vns() {
		v.forget(match)
	}
}

// isStale reports whether r is a vnode at our address that we no longer run:
// one we ran before a restart, still named in other peers' lists until
// their stabilization drops it.
func (n *Node) isStale(r Ref) bool {
	return !r.IsZero() && r.Addr == n.addr && n.local(r.ID) == nil
}

// withoutStale is refs without our stale vnodes, so that a successor list
// copied from a peer does not bring them back into ours.
func (n *Node) withoutStale(refs []Ref) []Ref {
	return slices.DeleteFunc(refs, n.isStale)
}

// local returns our vnode with the given ID, if we run it.
func (n *Node) local(id ID) *vnode {
	vs := n.vns()
	i := sort.Search(len(vs), func(i int) bool { return vs[i].self.ID.Cmp(id) >= 0 })
	if i < len(vs) && vs[i].self.ID == id {
		return vs[i]
	}
	return nil
}

// startFor returns the local vnode closest before key (the one that would
// route it first), or nil if the node has no vnodes.
func (n *Node) startFor(key ID) *vnode {
	vs := n.vns()
	if len(vs) == 0 {
		return nil
	}
	i := sort.Search(len(vs), func(i int) bool { return vs[i].self.ID.Cmp(key) >= 0 })
	// vs[i-1] is the last vnode strictly before key; wrap around.
	return vs[(i-1+len(vs))%len(vs)]
}

// step is what vnode v can say about key without the network: either the
// key's successors (done), or the best next hops, best first. Other vnodes
// of this peer count as free hops: routing moves to the closest local
// vnode first. Without proximity the best are the closest to the key; with
// it, the ones the rest of the lookup is expected to be quickest through
// (rankByCost), followed by the closest as fall-backs. forwards says this
// node forwards the query itself (recursive) rather than answering an
// iterative asker; askerHop, if not zero, is what a hop costs the asker
// (iterative), which weighs the hops still needed instead of our own.
func (n *Node) step(v *vnode, key ID, want int, forwards bool, askerHop time.Duration) Step {
	for {
		if succs, ok := v.ownsSuccessor(key, want); ok {
			return Step{Done: true, Nodes: succs}
		}
		if next := n.startFor(key); next != nil && next != v && Between(v.self.ID, next.self.ID, key) {
			v = next
			continue
		}
		break
	}
	if !n.cfg.Proximity {
		if cands := n.candidates(v, key, candidatesPerHop); len(cands) > 0 {
			return Step{Nodes: cands}
		}
	} else if cands := n.candidates(v, key, routeCandidates); len(cands) > 0 {
		return Step{Nodes: n.rankByCost(v, key, cands, forwards, askerHop)}
	}
	// No finger precedes the key but our successor does not own it
	// either: the state is inconsistent; our successor is the best bet.
	return Step{Nodes: []Ref{v.successor()}}
}

// candidates are the max known nodes on the arc (v, key) closest to key,
// closest first, from the routing state of all our vnodes: v is our
// closest vnode before the key, but our others' fingers and successors
// may land nearer to it (with 8 vnodes, in the last hop's reach for most
// keys), and each hop saved is a round trip. When the key's predecessor
// is in v's successor list, v's own candidates (every entry before the
// key, see vnode.candidates) are the answer.
func (n *Node) candidates(v *vnode, key ID, max int) []Ref {
	cands, predKnown := v.candidates(key, max)
	vs := n.vns()
	if len(vs) == 1 || predKnown {
		return cands
	}
	for _, w := range vs {
		if w != v {
			cands = w.candidatesAfter(v.self.ID, key, max, cands)
		}
	}
	sortByCloseness(cands, key)
	cands = dedupe(cands)
	return cands[:min(len(cands), max)]
}

// sortByCloseness orders nodes preceding key by their distance to it,
// closest first.
func sortByCloseness(refs []Ref, key ID) {
	slices.SortStableFunc(refs, func(a, b Ref) int {
		return Distance(a.ID, key).Cmp(Distance(b.ID, key))
	})
}

func dedupe(refs []Ref) []Ref {
	return slices.CompactFunc(refs, func(a, b Ref) bool { return a.ID == b.ID })
}

// Lookup finds the successors of key (the node responsible first) using the
// configured lookup mode.
func (n *Node) Lookup(ctx context.Context, key ID, want int) (LookupResult, error) {
	return n.LookupMode(ctx, key, want, n.cfg.Lookup)
}

// LookupMode is Lookup in the given mode. A recursive lookup that fails
// (a hop died mid-way) is retried iteratively, which sees every hop itself.
func (n *Node) LookupMode(ctx context.Context, key ID, want int, mode LookupMode) (LookupResult, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.LookupTimeout)
	defer cancel()
	res, err := n.lookupMode(ctx, key, want, mode)
	if err == nil {
		n.learnGateways(res.Successors)
	}
	return res, err
}

func (n *Node) lookupMode(ctx context.Context, key ID, want int, mode LookupMode) (LookupResult, error) {
	if mode == Recursive {
		res, err := n.lookupRecursive(ctx, key, want)
		if err == nil || ctx.Err() != nil {
			return res, err
		}
	}
	return n.lookupIterative(ctx, key, want)
}

func (n *Node) firstStep(key ID, want int) Step {
	if v := n.startFor(key); v != nil {
		return n.step(v, key, want, false, 0)
	}
	return n.gatewayStep()
}

func (n *Node) lookupRecursive(ctx context.Context, key ID, want int) (LookupResult, error) {
	v := n.startFor(key)
	if v == nil {
		return n.forward(ctx, n.gatewayStep, key, 0, want)
	}
	return n.forward(ctx, func() Step { return n.step(v, key, want, true, 0) }, key, 0, want)
}

// forward resolves a lookup recursively from here: answer it, or hand it to
// the best next hop. A hop that fails is forgotten and the step recomputed,
// so the next-best finger or successor takes over.
func (n *Node) forward(ctx context.Context, step func() Step, key ID, hops, want int) (LookupResult, error) {
	tried := map[ID]bool{}
	var lastErr error = ErrNoRoute
	for {
		st := step()
		if st.Done {
			return LookupResult{Successors: st.Nodes, Hops: hops}, nil
		}
		var next Ref
		for _, c := range st.Nodes {
			if !c.IsZero() && !tried[c.ID] {
				next = c
				break
			}
		}
		if next.IsZero() {
			break
		}
		tried[next.ID] = true
		if next.Addr == n.addr {
			// Our own vnode is a free hop, taken in this loop: calling
			// HandleFindSuccessor would recurse with no network call
			// between. A vnode at our address that we do not run is one
			// we ran before a restart, handed back by a peer: forget it,
			// as call does when a peer says it does not run a vnode, and
			// try the next candidate (HandleFindSuccessor would serve a
			// lookup of hops 0 from our closest vnode, whose step names
			// the stale vnode again, without end).
			local := n.local(next.ID)
			if local == nil {
				n.forget(func(r Ref) bool { return r.ID == next.ID })
				lastErr = ErrUnknownVnode
				continue
			}
			step = func() Step { return n.step(local, key, want, true, 0) }
			continue
		}
		if hops+1 > n.cfg.MaxHops {
			return LookupResult{}, ErrTooManyHops
		}
		// The rest of the path is unknown in length, so the next hop gets
		// most, not all, of the remaining time: if it hangs, a fall-back
		// still has time to answer.
		res, err := call(n, ctx, next, n.forwardTimeout(ctx), false, func(ctx context.Context) (LookupResult, error) {
			return n.tr.FindSuccessor(ctx, next, key, hops+1, want)
		})
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return LookupResult{}, ctx.Err()
		}
		lastErr = err
		if errors.Is(err, ErrTooManyHops) || errors.Is(err, ErrNoRoute) {
			// The next hop was alive and failed further on; trying its
			// siblings would retry that whole subtree. The asker falls
			// back to an iterative lookup instead.
			break
		}
	}
	if errors.Is(lastErr, ErrTooManyHops) || lastErr == ErrNoRoute {
		return LookupResult{}, fmt.Errorf("lookup %s: %w", key, lastErr)
	}
	// Every next hop failed. The caller learns only that (ErrNoRoute),
	// not how: an ErrUnknownVnode from a hop further on would make it
	// forget us, and a timeout would make it suspect us, though we are
	// alive and answered.
	return LookupResult{}, fmt.Errorf("lookup %s: %w (last: %v)", key, ErrNoRoute, lastErr)
}

func (n *Node) forwardTimeout(ctx context.Context) time.Duration {
	d := n.cfg.LookupTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl) // context deadlines are wall-clock time
	}
	return max(d*3/4, n.cfg.MinRTO)
}

// lookupIterative walks the ring from here, asking each hop for closer
// nodes. Every node heard of is a candidate, so a dead hop costs one timeout
// and the walk continues from the next-best node. Hops are asked for brief
// answers (their best next hop alone): while hops answer, that is all the
// walk takes. When the hop a node named fails, or was visited already,
// that node is asked again for its full answer (its other ranked hops and
// the fall-backs near the key), which routes around dead nodes as a full
// answer would have, for one more round trip.
func (n *Node) lookupIterative(ctx context.Context, key ID, want int) (LookupResult, error) {
	st := n.firstStep(key, want)
	hop := n.askerHop(key)
	visited := map[ID]bool{}
	// Peers that did not answer in this lookup: their other vnodes, still
	// named by answers and in cands, would each cost a timeout more.
	failed := map[string]bool{}
	var cands []Ref
	hops := 0
	answered := true  // st came from a node that answered, not a fall-back
	var briefFrom Ref // the node whose brief answer st is; zero: st is full
	for !st.Done {
		var fresh []Ref
		for _, c := range st.Nodes {
			if !c.IsZero() && !visited[c.ID] && !failed[c.Addr] {
				cands = append(cands, c)
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 && !briefFrom.IsZero() {
			// Its best hop was visited already, or is on a peer that
			// failed: what else does it know?
			namer := briefFrom
			briefFrom = Ref{}
			full, err := n.askFull(ctx, namer, key, want, hop)
			if err == nil {
				st = full
				continue
			}
			if ctx.Err() != nil {
				return LookupResult{}, fmt.Errorf("lookup %s: %w", key, ctx.Err())
			}
			n.lookupFailed(failed, namer, err)
		}
		cands = slices.DeleteFunc(cands, func(c Ref) bool { return failed[c.Addr] })
		sortByCloseness(cands, key)
		cands = dedupe(cands)
		if len(cands) == 0 {
			return LookupResult{}, fmt.Errorf("lookup %s: %w", key, ErrNoRoute)
		}
		if len(visited) >= n.cfg.MaxHops {
			return LookupResult{}, fmt.Errorf("lookup %s: %w", key, ErrTooManyHops)
		}
		next := cands[0]
		if answered && len(fresh) > 0 {
			// The node that answered knows its neighbours' round trips,
			// which we mostly do not: take its best (with proximity, the
			// hop it expects the rest of the lookup to be quickest from;
			// without, the closest). Only if it fails do we fall back to
			// the closest node heard of.
			next = fresh[0]
		}
		cands = slices.DeleteFunc(cands, func(c Ref) bool { return c.ID == next.ID })
		visited[next.ID] = true
		namedBy := briefFrom
		briefFrom = Ref{}
		var err error
		if next.Addr == n.addr {
			st, err = n.HandleNextHop(ctx, next.ID, key, want, hop, false)
			if errors.Is(err, ErrUnknownVnode) {
				// One we ran before a restart, handed back by a peer:
				// forget it, as forward does.
				n.forget(func(r Ref) bool { return r.ID == next.ID })
			}
		} else {
			st, err = direct(n, ctx, next, func(ctx context.Context) (Step, error) {
				return n.tr.NextHop(ctx, next, key, want, hop, true)
			})
			// Hops count the nodes that answered, as in recursive mode;
			// calls to dead nodes are failures, not path length.
			if err == nil {
				hops++
				// A peer that predates brief answers sends its full
				// one: asking it again would bring the same.
				if len(st.Nodes) <= 1 {
					briefFrom = next
				}
			}
		}
		answered = err == nil
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return LookupResult{}, fmt.Errorf("lookup %s: %w", key, ctx.Err())
		}
		n.lookupFailed(failed, next, err)
		if !namedBy.IsZero() {
			// The node that named the dead hop knows the others near
			// it, which it did not send.
			full, ferr := n.askFull(ctx, namedBy, key, want, hop)
			if ferr == nil {
				st, answered = full, true
				continue
			}
			if ctx.Err() != nil {
				return LookupResult{}, fmt.Errorf("lookup %s: %w", key, ctx.Err())
			}
			n.lookupFailed(failed, namedBy, ferr)
		}
		// call dropped our fingers to the dead peer, so our own next hops
		// may have changed: merge them in (visited ones are skipped), or
		// a first step of dead fingers ends the walk.
		st = n.firstStep(key, want)
	}
	return LookupResult{Successors: st.Nodes, Hops: hops}, nil
}

// lookupFailed notes in failed the peer of to, whose call in an iterative
// lookup failed with err, unless it answered that it does not run that
// vnode (it is up) or is ourselves.
func (n *Node) lookupFailed(failed map[string]bool, to Ref, err error) {
	if to.Addr != n.addr && !errors.Is(err, ErrUnknownVnode) {
		failed[to.Addr] = true
	}
}

// askFull asks to, which gave a brief answer in an iterative lookup of
// key, for its full one.
func (n *Node) askFull(ctx context.Context, to Ref, key ID, want int, hop time.Duration) (Step, error) {
	return direct(n, ctx, to, func(ctx context.Context) (Step, error) {
		return n.tr.NextHop(ctx, to, key, want, hop, false)
	})
}

// HandleFindSuccessor serves a recursive lookup addressed to vnode to.
func (n *Node) HandleFindSuccessor(ctx context.Context, to ID, key ID, hops, want int) (LookupResult, error) {
	v := n.local(to)
	if v == nil && hops == 0 {
		// A joining node's request (forwarded lookups count at least one
		// hop) is addressed to its bootstrap peer's vnode 0, which may
		// have chosen other positions (VnodeChoices): any vnode of ours
		// serves it.
		v = n.startFor(key)
	}
	if v == nil {
		return LookupResult{}, ErrUnknownVnode
	}
	return n.forward(ctx, func() Step { return n.step(v, key, want, true, 0) }, key, hops, want)
}

// HandleNextHop serves one step of an iterative lookup; hopCost is the
// asker's round trip per hop (zero: unknown), bounded here as it comes from
// the network. brief: an answer that is not final names only the best next
// hop, without the others and the fall-backs. An iterative asker takes the
// best while hops answer, and every ref crosses its own access link (a
// slow one's 4 KB/s) on every hop, so it asks for the rest, again, only
// when that hop fails.
func (n *Node) HandleNextHop(_ context.Context, to ID, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	v := n.local(to)
	if v == nil {
		return Step{}, ErrUnknownVnode
	}
	st := n.step(v, key, want, false, min(max(hopCost, 0), n.cfg.LookupTimeout))
	if brief && !st.Done {
		st.Nodes = st.Nodes[:min(len(st.Nodes), 1)]
	}
	return st, nil
}

// askerHop is what a hop of our own iterative lookup of key costs us: the
// round trip of a typical hop from our vnode nearest before the key (its
// fingers' median), or, for a client, the median of the round trips we
// measured; zero if none is. An iterative asker calls every hop over its
// own link, so a slow asker pays its own delay on each: the nodes it asks
// weigh the hops still needed by this, not by their own (fast) hops, and
// send it fewer, longer steps.
func (n *Node) askerHop(key ID) time.Duration {
	if v := n.startFor(key); v != nil {
		hop, _ := n.typicalHop(v)
		return hop
	}
	med, _ := n.rtt.measuredMedian() // 0 when none is measured
	return med
}

// HandleNeighbors serves a stabilization query from vnode from (zero if
// the asker is not a vnode), applying the notify rule to it first.
func (n *Node) HandleNeighbors(_ context.Context, to ID, from Ref, known uint64) (Neighbors, error) {
	v := n.local(to)
	if v == nil {
		return Neighbors{}, ErrUnknownVnode
	}
	if !from.IsZero() {
		v.notified(from)
	}
	nb := v.neighbors()
	if known != 0 && known == nb.Digest {
		nb.Predecessor, nb.Successors, nb.Unchanged = Ref{}, nil, true
	}
	return nb, nil
}

// HandleChanged serves a Changed message: to's successor changed its
// neighbourhood, so to stabilizes at its next round.
func (n *Node) HandleChanged(_ context.Context, to ID) error {
	v := n.local(to)
	if v == nil {
		return ErrUnknownVnode
	}
	v.changedNearby()
	return nil
}

// HandleOwns answers whether vnode to is responsible for key.
func (n *Node) HandleOwns(_ context.Context, to ID, key ID) (bool, error) {
	v := n.local(to)
	if v == nil {
		return false, ErrUnknownVnode
	}
	return v.owns(key), nil
}

// HandlePing answers a liveness check.
func (n *Node) HandlePing(_ context.Context, to ID) error {
	if n.local(to) == nil {
		return ErrUnknownVnode
	}
	return nil
}

// neighborsOf asks s for its neighbours on behalf of vnode self (which
// notifies s), short-cutting our own vnodes.
func (n *Node) neighborsOf(ctx context.Context, s, self Ref, known uint64) (Neighbors, error) {
	if s.Addr == n.addr {
		return n.HandleNeighbors(ctx, s.ID, self, known)
	}
	return direct(n, ctx, s, func(ctx context.Context) (Neighbors, error) {
		return n.tr.Neighbors(ctx, s, self, known)
	})
}

func (n *Node) sendChanged(ctx context.Context, to Ref) {
	if to.Addr == n.addr {
		_ = n.HandleChanged(ctx, to.ID)
		return
	}
	_, _ = direct(n, ctx, to, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, n.tr.Changed(ctx, to)
	})
}

func (n *Node) ping(ctx context.Context, to Ref) error {
	if to.Addr == n.addr {
		return n.HandlePing(ctx, to.ID)
	}
	_, err := direct(n, ctx, to, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, n.tr.Ping(ctx, to)
	})
	return err
}

func (n *Node) owns(ctx context.Context, to Ref, key ID) bool {
	if to.Addr == n.addr {
		ok, err := n.HandleOwns(ctx, to.ID, key)
		return err == nil && ok
	}
	ok, err := direct(n, ctx, to, func(ctx context.Context) (bool, error) {
		return n.tr.Owns(ctx, to, key)
	})
	return err == nil && ok
}

// Stabilize runs one stabilization round on every vnode: each not backed
// off stabilizes, then its queued Changed messages go out. A client (no
// vnodes) measures its unmeasured gateways instead.
func (n *Node) Stabilize(ctx context.Context) {
	if n.cfg.Proximity && len(n.vns()) == 0 {
		n.probeGateways(ctx)
	}
	n.rejoin(ctx)
	for _, v := range n.vns() {
		if v.stabilizeDue() {
			v.stabilized(n.stabilize(ctx, v), n.cfg.Backoff)
			if n.cfg.Proximity {
				n.probeSuccessors(ctx, v)
			}
		}
		n.flushChanged(ctx, v)
	}
}

// flushChanged sends v's queued Changed messages.
func (n *Node) flushChanged(ctx context.Context, v *vnode) {
	for _, to := range v.takeChanged() {
		n.sendChanged(ctx, to)
	}
}

// stabilize is the paper's stabilize() and notify() in one call: ask the
// successor for its neighbours, telling it about us; if its predecessor sits
// between us, that node is our new successor. Copy the successor's list. It
// reports whether anything changed, which keeps the vnode stabilizing every
// round.
func (n *Node) stabilize(ctx context.Context, v *vnode) bool {
	s := v.successor()
	if s.ID == v.self.ID {
		// Alone: a predecessor learnt through notify is the way back in.
		p := v.predecessor()
		if p.IsZero() {
			return false
		}
		s = p
	}
	nb, err := n.neighborsOf(ctx, s, v.self, v.knownDigest(s))
	if err != nil {
		if ctx.Err() != nil {
			return false // we are stopping; says nothing about the successor
		}
		// The successor is gone (or too slow to keep): the next one in the
		// list takes its place, and is asked next round. One missed answer
		// is not enough: a loaded machine stalls a live peer past its
		// timeout now and then, and dropping it would send a hole through
		// the lists of every vnode behind us (each copies the next one's)
		// and the repair after it, so that a busy ring is seldom right
		// everywhere at once. The miss made us suspect it: it is asked
		// again next round, and dropped if it misses again. A call that
		// failed outright (refused, reset) drops it at once.
		if !errors.Is(err, errNoAnswer) || v.successorMissed(s) {
			v.dropSuccessor(s)
			n.rememberContact(s)
		}
		return true
	}
	if nb.Unchanged {
		nb.Predecessor, nb.Successors = v.unchanged(s)
	}
	nb.Successors = n.withoutStale(nb.Successors)
	if n.isStale(nb.Predecessor) {
		nb.Predecessor = Ref{}
	}
	moved := false
	if x := nb.Predecessor; !x.IsZero() && x.ID != v.self.ID && Between(v.self.ID, x.ID, s.ID) {
		if nbx, err := n.neighborsOf(ctx, x, v.self, 0); err == nil {
			s, nb, moved = x, nbx, true
		}
	}
	listChanged := v.setSuccessors(s, nb.Successors, nb.Predecessor, nb.Digest, n.cfg.SuccessorListLen)
	return moved || listChanged || !nb.Unchanged || nb.Predecessor.ID != v.self.ID
}

// maxContacts bounds the peers remembered for a rejoin.
const maxContacts = 8

// rememberContact keeps s, if on another peer, as a way back into the ring.
func (n *Node) rememberContact(s Ref) {
	if s.Addr == n.addr {
		return
	}
	n.contactsMu.Lock()
	defer n.contactsMu.Unlock()
	list := append([]Ref{s}, slices.DeleteFunc(n.contacts, func(r Ref) bool { return r.Addr == s.Addr })...)
	n.contacts = list[:min(len(list), maxContacts)]
}

// forgetContact drops c from the contacts.
func (n *Node) forgetContact(c Ref) {
	n.contactsMu.Lock()
	defer n.contactsMu.Unlock()
	n.contacts = slices.DeleteFunc(n.contacts, func(r Ref) bool { return r.Addr == c.Addr })
}

// cutOff reports whether no vnode of ours has a successor on another peer
// while some once had: our vnodes form a ring of their own. Stabilization
// only ever follows successors, so it never merges two rings: a node whose
// successors all timed out (its own link congested, say, ring calls queued
// behind block transfers on a slow access link) would stay split off.
func (n *Node) cutOff() bool {
	for _, v := range n.vns() {
		if v.hasRemoteSuccessor() {
			return false
		}
	}
	n.contactsMu.Lock()
	defer n.contactsMu.Unlock()
	return len(n.contacts) > 0
}

// rejoin, when the node is cut off, asks one of the peers it dropped (a
// different one each round, so a silent one costs one timeout a round; one
// that refuses is forgotten) for the successors of each of our vnodes, as
// Join does through its bootstrap; stabilization then tells the ring
// about us.
func (n *Node) rejoin(ctx context.Context) {
	if !n.cutOff() {
		return
	}
	n.contactsMu.Lock()
	if len(n.contacts) == 0 {
		n.contactsMu.Unlock()
		return
	}
	c := n.contacts[0]
	n.contacts = append(n.contacts[1:], c)
	n.contactsMu.Unlock()
	for _, v := range n.vns() {
		succs, err := n.successorsVia(ctx, c, v)
		if err != nil {
			switch {
			case ctx.Err() != nil, errors.Is(err, errNoAnswer), errors.Is(err, ErrNoRoute), errors.Is(err, ErrTooManyHops):
			default:
				n.forgetContact(c) // refused: gone, not slow
			}
			return // try another contact next round
		}
		if slices.ContainsFunc(succs, func(r Ref) bool { return r.Addr != n.addr }) {
			v.setSuccessors(succs[0], succs[1:], Ref{}, 0, n.cfg.SuccessorListLen)
			v.changedNearby() // stabilize this round: tell the successor
		}
	}
}

// CheckPredecessors runs one predecessor check on every vnode. A
// predecessor that called us since the last check (its stabilization does)
// is alive; one silent for longer than its backed-off stabilization could
// explain, or suspected dead, is pinged, and cleared after failing twice
// in a row so that a new predecessor can be accepted through notify. One
// missed answer is not enough: a slow peer is not a dead one.
func (n *Node) CheckPredecessors(ctx context.Context) {
	for _, v := range n.vns() {
		p, due := v.predecessorToCheck(n.cfg.Backoff)
		if !due {
			continue
		}
		err := n.ping(ctx, p)
		if ctx.Err() != nil {
			return // we are stopping; not a missed ping
		}
		v.predecessorAnswered(p, err == nil)
	}
}

// FixFingers runs one finger round on every vnode: each not backed off
// checks its next finger, skipping ahead over the fingers the same node
// covers (there are about log2 N distinct ones).
func (n *Node) FixFingers(ctx context.Context) {
	for _, v := range n.vns() {
		if v.fixDue() {
			v.fixed(n.fixFinger(ctx, v), n.cfg.Backoff)
		}
	}
}

// fixFinger checks v's next finger and reports whether it changed. A
// finger our successor list covers costs nothing. A known finger is checked
// with one message to it: still in the finger's interval and alive
// (proximity), or still the successor of its start. Only a finger that
// fails the check, or a proximity choice due for a refresh, is looked up.
func (n *Node) fixFinger(ctx context.Context, v *vnode) bool {
	k := v.fingerToFix()
	start := v.self.ID.AddPow2(k)
	if succs, ok := v.ownsSuccessor(start, 1); ok {
		return v.setFingers(k, succs[0])
	}
	old, known, refresh := v.finger(k)
	if known && !(n.cfg.Proximity && refresh) && n.fingerValid(ctx, v, k, start, old) {
		return v.setFingers(k, old)
	}
	want := 1
	if n.cfg.Proximity {
		want = proximityCandidates
	}
	lctx, cancel := context.WithTimeout(ctx, n.cfg.LookupTimeout)
	defer cancel()
	var res LookupResult
	var err error
	if n.cfg.Lookup == Recursive {
		res, err = n.forward(lctx, func() Step { return n.step(v, start, want, true, 0) }, start, 0, want)
	}
	if n.cfg.Lookup == Iterative || err != nil {
		res, err = n.lookupIterative(lctx, start, want)
	}
	if err != nil || len(res.Successors) == 0 {
		v.skipFinger(k) // keep the old entry; try the next one
		return true
	}
	return v.setFingers(k, n.chooseFinger(ctx, v, k, old, res.Successors))
}

// inFinger reports whether id lies in finger k's interval of v:
// [self+2^k, self+2^(k+1)).
func inFinger(v *vnode, k int, id ID) bool {
	return highBit(Distance(v.self.ID, id)) == k
}

// fingerValid checks a known finger with one message.
func (n *Node) fingerValid(ctx context.Context, v *vnode, k int, start ID, f Ref) bool {
	if n.cfg.Proximity && inFinger(v, k, f.ID) {
		return n.ping(ctx, f) == nil
	}
	return n.owns(ctx, f, start)
}

// chooseFinger picks finger k among the successors of its start: the
// first, or with proximity the one with the lowest round trip among those
// inside the interval, measuring a few unknown ones with a ping. The current
// finger stays unless another is clearly (20%) closer, so noise in the
// estimates does not flip fingers back and forth.
func (n *Node) chooseFinger(ctx context.Context, v *vnode, k int, old Ref, succs []Ref) Ref {
	if !n.cfg.Proximity {
		return succs[0]
	}
	var best Ref
	var bestRTT, oldRTT time.Duration
	oldFound := false
	probes := proximityProbes
	for _, c := range succs {
		if c.ID == v.self.ID || !inFinger(v, k, c.ID) {
			continue
		}
		rtt, ok := n.proximity(ctx, c, &probes)
		if !ok {
			continue
		}
		if c.ID == old.ID {
			oldRTT, oldFound = rtt, true
		}
		if best.IsZero() || rtt < bestRTT {
			best, bestRTT = c, rtt
		}
	}
	switch {
	case best.IsZero():
		return succs[0]
	case oldFound && bestRTT*5 > oldRTT*4:
		return old
	}
	return best
}

// proximity is the round trip to c's peer (zero for our own), measured
// with a ping if unknown and *probes allows; false if unknown or c did not
// answer.
func (n *Node) proximity(ctx context.Context, c Ref, probes *int) (time.Duration, bool) {
	if c.Addr == n.addr {
		return 0, true
	}
	if rtt, ok := n.rtt.SRTT(c.Addr); ok {
		return rtt, true
	}
	if *probes == 0 {
		return 0, false
	}
	*probes--
	if n.ping(ctx, c) != nil {
		return 0, false
	}
	return n.rtt.SRTT(c.Addr)
}

// FixAllFingers refreshes every vnode's whole finger table now (and with
// proximity measures its successors): a joining node uses it, and tests
// use it to reach a converged ring in few steps.
func (n *Node) FixAllFingers(ctx context.Context) {
	for _, v := range n.vns() {
		for {
			n.fixFinger(ctx, v)
			if v.fingerToFix() == 0 {
				break
			}
		}
		if n.cfg.Proximity {
			n.probeSuccessors(ctx, v)
		}
	}
}

// Run keeps the ring correct until ctx ends: stabilization, finger fixing
// and predecessor checks each on their own timer, each re-armed at a random
// point in [interval/2, 3·interval/2) so that peers do not fall into step.
// The three loops are owned by Run, which returns when all have stopped.
func (n *Node) Run(ctx context.Context) {
	var wg sync.WaitGroup
	every := func(interval time.Duration, work func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-n.clock.After(jitter(interval)):
					work(ctx)
				}
			}
		}()
	}
	every(n.cfg.StabilizeInterval, n.Stabilize)
	every(n.cfg.FixFingerInterval, n.FixFingers)
	every(n.cfg.CheckPredecessorInterval, n.CheckPredecessors)
	wg.Wait()
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}
