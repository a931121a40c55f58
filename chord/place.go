package chord

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
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
// the ring, is taken at once: its keys are the ones this peer holds.
func (n *Node) choosePositions(ctx context.Context, boot Ref) error {
	var chosen []uint32
	var placed []ID
	for slot := range n.cfg.Vnodes {
		best, bestScore := uint32(0), -1.0
		for _, x := range candidateIndices(slot, n.cfg.Vnodes, n.cfg.VnodeChoices) {
			id := VnodeID([]byte(n.addr), x)
			score, err := n.candidateScore(ctx, boot, id, placed)
			if err != nil {
				return fmt.Errorf("choose vnode positions via %s: %w", boot.Addr, err)
			}
			if score > bestScore {
				best, bestScore = x, score
			}
		}
		chosen = append(chosen, best)
		placed = append(placed, VnodeID([]byte(n.addr), best))
	}
	n.setVnodes(chosen)
	return nil
}

// candidateScore is splitScore for a vnode at id on boot's ring, with our
// own positions chosen so far (placed) counted as on it.
func (n *Node) candidateScore(ctx context.Context, boot Ref, id ID, placed []ID) (float64, error) {
	res, err := call(n, ctx, boot, n.rtt.Timeout(boot.Addr), false, func(ctx context.Context) (LookupResult, error) {
		return n.tr.FindSuccessor(ctx, boot, id, 0, 1)
	})
	if err != nil {
		return 0, err
	}
	if len(res.Successors) == 0 {
		return 0, fmt.Errorf("empty answer")
	}
	succ := res.Successors[0]
	if succ.ID == id {
		return math.Inf(1), nil
	}
	if succ.Addr == n.addr {
		return 0, nil // our own vnode from before a restart: not asked
	}
	nb, err := direct(n, ctx, succ, func(ctx context.Context) (Neighbors, error) {
		return n.tr.Neighbors(ctx, succ, Ref{}, 0)
	})
	if err != nil || nb.Predecessor.IsZero() {
		return 0, nil // nothing to rate it by; another candidate may do
	}
	pred, s := nearestAround(nb.Predecessor.ID, id, succ.ID, placed)
	return splitScore(pred, id, s), nil
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
		var placed []ID
		p.Indices = nil
		for slot := range p.Vnodes {
			best, bestScore := uint32(0), -1.0
			for _, x := range candidateIndices(slot, p.Vnodes, choices) {
				id := VnodeID([]byte(p.Addr), x)
				score := 0.0
				if pred, succ, ok := ring.around(id); ok {
					pred, succ = nearestAround(pred, id, succ, placed)
					score = splitScore(pred, id, succ)
				}
				if score > bestScore {
					best, bestScore = x, score
				}
			}
			p.Indices = append(p.Indices, best)
			placed = append(placed, VnodeID([]byte(p.Addr), best))
		}
		for _, id := range placed {
			ring.insert(id)
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
