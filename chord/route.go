package chord

import (
	"cmp"
	"context"
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"time"
)

// routeCandidates is how many known nodes preceding the key a hop weighs
// with proximity route selection: its closest fingers and successors.
const routeCandidates = 12

// rankByCost orders the next-hop candidates of a lookup for key (each on the
// arc (v, key), closest first) by the time a lookup is expected to take
// through them: the round trip to the candidate (a candidate never measured
// is taken at the median of every round trip we measured) plus, for each hop
// it will still need, the round trip of a typical hop (Dabek et al., NSDI
// 2004, proximity route selection). A candidate near enough to the key to
// answer from its successor list needs none, so the last step goes to the
// fastest node that can answer, not to the key's immediate predecessor.
// Every candidate makes progress, so routing still ends; the order only
// trades ID-space progress for round trips.
//
// It returns the candidatesPerHop best, then the candidatesPerHop closest
// not among them as fall-backs (when the key's predecessor is among our
// successors, every candidate: candidates keeps those all, so a dead run of
// them cannot hide the live one). forwards says the candidate will forward
// the query (recursive), so what it adds to a round trip counts twice; an
// iterative asker calls each hop itself, so askerHop, its own round trip
// per hop, prices the hops still needed when it is known. The candidates'
// round trips stay ours: in a network of access links the asker's to each
// differs from ours by the same amount (its link's delay less ours), so
// they rank the same.
func (n *Node) rankByCost(v *vnode, key ID, cands []Ref, forwards bool, askerHop time.Duration) []Ref {
	spacing, listLen := v.spacing()
	hop, fastest := n.typicalHop(v)
	if askerHop > 0 {
		hop = askerHop
	}
	if spacing <= 0 || hop <= 0 {
		return fallbacks(cands, key, v)
	}
	hop = max(hop, minHopCost)
	type scored struct {
		ref  Ref
		cost time.Duration
	}
	sc := make([]scored, len(cands))
	var unmeasured time.Duration // the median of every round trip measured, once needed
	for i, c := range cands {
		rtt, ok := time.Duration(0), c.Addr == n.addr
		if !ok {
			rtt, ok = n.rtt.SRTT(c.Addr)
		}
		if !ok {
			if unmeasured == 0 {
				unmeasured = n.rtt.median()
			}
			rtt = unmeasured
		}
		left := hopsLeft(fraction(Distance(c.ID, key))/spacing, listLen)
		cost := rtt + time.Duration(left*float64(hop))
		if forwards && left > 0 {
			// A candidate that forwards the query sends it on over its
			// own link, and the answer comes back the same way: what it
			// adds beyond our own share of a round trip (the fastest one
			// we know) counts twice.
			cost += max(0, rtt-fastest)
		}
		sc[i] = scored{c, cost}
	}
	// Stable: equal costs keep the closest-first order.
	slices.SortStableFunc(sc, func(a, b scored) int { return cmp.Compare(a.cost, b.cost) })
	out := make([]Ref, 0, 2*candidatesPerHop)
	for _, s := range sc {
		out = append(out, s.ref)
	}
	if v.predecessorKnown(key) {
		return out
	}
	out = out[:min(len(out), candidatesPerHop)]
	for _, c := range fallbacks(cands, key, v) {
		if !slices.ContainsFunc(out, func(r Ref) bool { return r.ID == c.ID }) {
			out = append(out, c)
		}
	}
	return out
}

// fallbacks are the closest candidatesPerHop of cands (closest first), or
// all of them when the key's predecessor is among v's successors.
func fallbacks(cands []Ref, key ID, v *vnode) []Ref {
	if v.predecessorKnown(key) {
		return cands
	}
	return cands[:min(len(cands), candidatesPerHop)]
}

// minHopCost is the least a hop is taken to cost, whatever the round
// trips: forwarding and a stream's set-up take about that much. Round
// trips that differ by less (a LAN, a machine's loopback, an in-memory
// network) differ by noise, and then progress towards the key decides.
const minHopCost = time.Millisecond

// hopsLeft estimates the hops a lookup still needs from a node with m
// nodes between it and the key: none if the first quarter of its successor
// list (listLen long) surely reaches past the key, else one for the last
// step and half a hop for each halving of the distance before it (Chord's
// ½·log2 N). Only the first quarter: a list's later entries were copied
// through more stabilizations, so under churn they are the stalest, and an
// answer from deep in a list is more often wrong.
func hopsLeft(m float64, listLen int) float64 {
	reach := float64(listLen) / 4
	if m < reach {
		return 0
	}
	return 1 + math.Log2(m/reach)/2
}

// spacing is the mean distance between neighbouring nodes near v, as a
// fraction of the ring, from its successor list, and the list's length;
// zero when it knows too few nodes to tell.
func (v *vnode) spacing() (float64, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) < 2 {
		return 0, len(v.succs)
	}
	last := v.succs[len(v.succs)-1]
	return fraction(Distance(v.self.ID, last.ID)) / float64(len(v.succs)), len(v.succs)
}

// predecessorKnown reports whether the key's predecessor is in v's
// successor list.
func (v *vnode) predecessorKnown(key ID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.succs) > 0 && !Between(v.self.ID, v.succs[len(v.succs)-1].ID, key)
}

// typicalHop is the round trip of a typical hop from v: the median of its
// fingers' measured round trips (with proximity these are the nodes a
// lookup is forwarded to), and the fastest of them; zero if none is
// measured.
func (n *Node) typicalHop(v *vnode) (time.Duration, time.Duration) {
	var rtts []time.Duration
	for _, f := range v.fingerPeers() {
		if rtt, ok := n.rtt.SRTT(f); ok {
			rtts = append(rtts, rtt)
		}
	}
	if len(rtts) == 0 {
		return 0, 0
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[0]
}

// fingerPeers returns the addresses of v's distinct fingers.
func (v *vnode) fingerPeers() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	var last *Ref
	for _, f := range v.fingers {
		if f != nil && f != last {
			out = append(out, f.Addr)
		}
		last = f
	}
	return out
}

// fraction is a as a fraction of the ring, to float64 precision (its
// first 16 bytes; Fraction is exact but slow).
func fraction(a ID) float64 {
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:16])
	return float64(hi)/0x1p64 + float64(lo)/0x1p128
}

// median is the median of every measured round trip: what a peer we never
// measured can be expected to take; InitialRTO if none is.
func (t *rttTable) median() time.Duration {
	if m, ok := t.measuredMedian(); ok {
		return m
	}
	return t.cfg.InitialRTO
}

// measuredMedian is the median of every measured round trip, if any is.
func (t *rttTable) measuredMedian() (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []time.Duration
	for _, e := range t.byPeer {
		if e.measured {
			all = append(all, e.srtt)
		}
	}
	if len(all) == 0 {
		return 0, false
	}
	slices.Sort(all)
	return all[len(all)/2], true
}

// probeSuccessors pings, all at once, v's successors whose round trip is
// unknown. They are the candidates for the last hop of every lookup that
// passes near us, and route selection can only prefer a fast one, or
// avoid a slow one, once it is measured. A round trip stays known, so a
// quiet ring stops probing once its lists are measured, and under churn
// each new entry costs one ping.
func (n *Node) probeSuccessors(ctx context.Context, v *vnode) {
	var wg sync.WaitGroup
	for _, s := range v.successors() {
		if s.Addr == n.addr {
			continue
		}
		if _, ok := n.rtt.SRTT(s.Addr); ok {
			continue
		}
		wg.Go(func() { _ = n.ping(ctx, s) })
	}
	wg.Wait()
}

// successors returns a copy of v's successor list.
func (v *vnode) successors() []Ref {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.succs)
}
