package chord

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
)

// candidateIndices are the vnode indices vnode slot may take when each
// vnode chooses among choices positions: slot, slot+vnodes, slot+2·vnodes,
// ... (below MaxVnodes, the largest index a peer accepts on the wire).
// With one choice, slot i is index i, as without choosing.
func candidateIndices(slot, vnodes, choices int) []uint32 {
	var out []uint32
	for c := range max(choices, 1) {
		x := slot + c*vnodes
		if x >= MaxVnodes {
			break
		}
		out = append(out, uint32(x))
	}
	return out
}

// splitScore rates a new vnode at id between the ring positions pred and
// succ (the arc (pred, succ] it splits; pred == succ: the one node on the
// ring): the smaller of the two parts, as a fraction of the ring. The
// largest score splits the longest arc nearest its middle, which evens out
// the arcs (Kenthapadi and Manku, SPAA 2005, split the longest of a few
// sampled arcs in half; here the split points are the candidate hashes).
func splitScore(pred, id, succ ID) float64 {
	return min(fraction(Distance(pred, id)), fraction(Distance(id, succ)))
}

// nearestAround narrows the arc (pred, succ) around id to the closest of
// own, positions already chosen by the same peer but not yet on the ring.
func nearestAround(pred, id, succ ID, own []ID) (ID, ID) {
	for _, o := range own {
		if Between(pred, o, id) {
			pred = o
		}
		if Between(id, o, succ) {
			succ = o
		}
	}
	return pred, succ
}

// choosePositions picks, for each vnode slot, the candidate index (see
// candidateIndices) whose position best splits the arc it falls in
// (splitScore), asking the ring through boot for each candidate's successor
// and that successor's predecessor, and makes the node run those vnodes.
// A candidate that is our own position from before a restart, still on
// the ring, is taken at once: its keys are the ones this peer holds. The
// candidates are looked up placeConcurrency at a time, so that a peer on a
// slow link joins in a few of its round trips, not Vnodes·VnodeChoices; a
// candidate that cannot be looked up is passed over.
func (n *Node) choosePositions(ctx context.Context, boot Ref) error {
	slots := make([][]uint32, n.cfg.Vnodes)
	var all []uint32
	for slot := range slots {
		slots[slot] = candidateIndices(slot, n.cfg.Vnodes, n.cfg.VnodeChoices)
		all = append(all, slots[slot]...)
	}
	arcs := make([]candidateArc, len(all))
	sem := make(chan struct{}, placeConcurrency)
	var wg sync.WaitGroup
	for i, x := range all {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			arcs[i] = n.lookUpArc(ctx, boot, VnodeID([]byte(n.addr), x))
		})
	}
	wg.Wait()
	arcOf := make(map[uint32]candidateArc, len(all))
	for i, x := range all {
		arcOf[x] = arcs[i]
	}
	var chosen []uint32
	var placed []ID
	for _, cands := range slots {
		best, bestScore := uint32(0), -1.0
		var lastErr error
		for _, x := range cands {
			a := arcOf[x]
			if a.err != nil {
				lastErr = a.err
				continue
			}
			id := VnodeID([]byte(n.addr), x)
			score := 0.0
			switch {
			case a.own:
				score = math.Inf(1)
			case a.known:
				pred, succ := nearestAround(a.pred, id, a.succ, placed)
				score = splitScore(pred, id, succ)
			}
			if score > bestScore {
				best, bestScore = x, score
			}
		}
		if bestScore < 0 {
			return fmt.Errorf("choose vnode positions via %s: %w", boot.Addr, lastErr)
		}
		chosen = append(chosen, best)
		placed = append(placed, VnodeID([]byte(n.addr), best))
	}
	n.setVnodes(chosen)
	return nil
}

// placeConcurrency bounds the candidate positions a joining node looks
// up at once.
const placeConcurrency = 16

// candidateArc is what the ring says about a candidate position: the arc
// (pred, succ] it falls in, if known; or that it is our own position from
// before a restart; or the error that left it unknown.
type candidateArc struct {
	pred, succ ID
	known, own bool
	err        error
}

// lookUpArc finds the arc of boot's ring that id falls in: id's successor,
// then that successor's predecessor.
func (n *Node) lookUpArc(ctx context.Context, boot Ref, id ID) candidateArc {
	res, err := call(n, ctx, boot, n.rtt.Timeout(boot.Addr), false, func(ctx context.Context) (LookupResult, error) {
		return n.tr.FindSuccessor(ctx, boot, id, 0, 1)
	})
	if err != nil {
		return candidateArc{err: err}
	}
	if len(res.Successors) == 0 {
		return candidateArc{err: errors.New("empty answer")}
	}
	succ := res.Successors[0]
	if succ.ID == id {
		return candidateArc{own: true}
	}
	if succ.Addr == n.addr {
		return candidateArc{} // our own vnode from before a restart: not asked
	}
	nb, err := direct(n, ctx, succ, func(ctx context.Context) (Neighbors, error) {
		return n.tr.Neighbors(ctx, succ, Ref{}, 0)
	})
	if err != nil || nb.Predecessor.IsZero() {
		return candidateArc{} // nothing to rate it by; another candidate may do
	}
	return candidateArc{pred: nb.Predecessor.ID, succ: succ.ID, known: true}
}

// PlaceVnodes returns peers with each one's vnode indices chosen as a
// joining node chooses them (choosePositions) among choices candidates per
// vnode, the peers joining one after another in the order given on a ring
// that is always exact; with one choice, vnode i is index i.
func PlaceVnodes(peers []PeerLoad, choices int) []PeerLoad {
	total := 0
	for _, p := range peers {
		total += max(p.Vnodes, 0)
	}
	ring := newPositions(total)
	out := slices.Clone(peers)
	for i, p := range out {
		if p.Capacity <= 0 || p.Vnodes <= 0 {
			continue
		}
		p.Indices = nil
		creates := ring.size == 0 // the first peer creates the ring: nothing to choose by
		for slot := range p.Vnodes {
			best, bestScore := uint32(0), -1.0
			for _, x := range candidateIndices(slot, p.Vnodes, choices) {
				id := VnodeID([]byte(p.Addr), x)
				score := 0.0
				if pred, succ, ok := ring.around(id); ok && !creates {
					score = splitScore(pred, id, succ)
				}
				if score > bestScore {
					best, bestScore = x, score
				}
			}
			p.Indices = append(p.Indices, best)
			// On the ring at once: the peer's next slots count it, as
			// choosePositions counts the positions it has placed.
			ring.insert(VnodeID([]byte(p.Addr), best))
		}
		out[i] = p
	}
	return out
}

// positions is a set of ring positions in buckets by their leading bits,
// about one per bucket when full, so that finding a position's neighbours
// and inserting one take about constant time: PlaceVnodes places hundreds
// of thousands.
type positions struct {
	shift   uint
	buckets [][]ID
	size    int
}

func newPositions(capacity int) *positions {
	b := bits.Len(uint(max(capacity, 1)))
	return &positions{shift: uint(64 - b), buckets: make([][]ID, 1<<b)}
}

func (r *positions) bucket(id ID) int { return int(binary.BigEndian.Uint64(id[:8]) >> r.shift) }

func (r *positions) insert(id ID) {
	b := r.bucket(id)
	j, _ := slices.BinarySearchFunc(r.buckets[b], id, ID.Cmp)
	r.buckets[b] = slices.Insert(r.buckets[b], j, id)
	r.size++
}

// around returns the last position before id and the first at or after
// it, round the ring; false if there are none.
func (r *positions) around(id ID) (pred, succ ID, ok bool) {
	if r.size == 0 {
		return pred, succ, false
	}
	n := len(r.buckets)
	b := r.bucket(id)
	in := r.buckets[b]
	j, _ := slices.BinarySearchFunc(in, id, ID.Cmp)
	if j < len(in) {
		succ = in[j]
	} else {
		for i := 1; i <= n; i++ {
			if c := r.buckets[(b+i)%n]; len(c) > 0 {
				succ = c[0]
				break
			}
		}
	}
	if j > 0 {
		pred = in[j-1]
	} else {
		for i := 1; i <= n; i++ {
			if c := r.buckets[(b-i+n)%n]; len(c) > 0 {
				pred = c[len(c)-1]
				break
			}
		}
	}
	return pred, succ, true
}
