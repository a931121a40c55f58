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

// A window is what one lookup at join shows of the ring: consecutive vnode
// positions in ring order (the predecessor of a position's successor, the
// successor, and the successor's successor list), so the arc between any
// two adjacent entries is known exactly.
type window []ID

// ordered cuts w where it stops going round the ring in order (a stale
// or wrong answer), so that no arc is taken for longer than it is: each
// entry must lie after the one before and not past w[0]; one equal to
// w[0] closes the circle and ends the window.
func (w window) ordered() window {
	for i := 1; i < len(w); i++ {
		if !BetweenRightIncl(w[i-1], w[i], w[0]) {
			return w[:i]
		}
		if w[i] == w[0] {
			return w[:i+1]
		}
	}
	return w
}

// candidate is a vnode index a joining node may take, with the arc
// (pred, succ] its position falls in, narrowed to the positions the node
// has taken meanwhile; known is false for a position that was looked up
// but no window rates.
type candidate struct {
	index      uint32
	id         ID
	pred, succ ID
	known      bool
}

// splitScore rates a new vnode at id between the ring positions pred and
// succ (the arc (pred, succ] it splits; pred == succ: the one node on the
// ring) whose own part (pred, id] should be 1/w of the rest (id, succ]:
// the smaller of w × its part and the rest, as a fraction of the ring.
// With w = 1 the largest score splits the longest arc nearest its middle,
// which evens out the arcs (Kenthapadi and Manku, SPAA 2005, split the
// longest of a few sampled arcs in half; here the split points are the
// candidate hashes); slotWeight says why a peer's vnodes differ in w.
func splitScore(pred, id, succ ID, w float64) float64 {
	return min(w*fraction(Distance(pred, id)), fraction(Distance(id, succ)))
}

// slotWeight is the w of splitScore for the k-th of a peer's vnodes
// vnodes: 2^(s·((2k+1)/vnodes - 1)), spread evenly in log scale around
// 1 (1 for a peer with one vnode), s = slotSpread up to 8 vnodes and
// slotSpread·8/vnodes above. Positions never move, so an arc grows
// against the mean as the ring grows until a later join splits it:
// vnodes that all took halves at the same join swing together, and their
// peer's load with them. Parts of different sizes are split again at
// different times, so a peer's arcs fall out of step and average out:
// over 20 draws of 1,000 peers with 1-8 vnodes the exact-arc p99 of keys
// per capacity is 1.33-1.40 × mean, against 1.24-1.52 with halves for
// all (placeexp_test.go, TestPlaceNoise). With 16-128 vnodes a peer
// averages enough arcs already and the full spread only made the splits
// worse (1.22-1.24 against 1.17-1.21 over 5 draws; 1.18-1.20 tapered).
func slotWeight(k, vnodes int) float64 {
	s := slotSpread * min(1, 8/float64(vnodes))
	return math.Exp2(s * (float64(2*k+1)/float64(vnodes) - 1))
}

// slotSpread is how far apart slotWeight sets a peer's vnodes, in
// doublings of w either side: of 0.5, 0.75, 1 and 1.25 (over 20 draws;
// 0.5 over 10), 0.75 gave the lowest exact-arc p99, on average and on
// the worst draw.
const slotSpread = 0.75

// taken narrows c's arc to a position p the node has just taken.
func (c *candidate) taken(p ID) {
	if !c.known {
		return
	}
	switch {
	case Between(c.pred, p, c.id):
		c.pred = p
	case Between(c.id, p, c.succ):
		c.succ = p
	}
}

// score is splitScore of c, 0 if no window rates it.
func (c candidate) score(w float64) float64 {
	if !c.known {
		return 0
	}
	return splitScore(c.pred, c.id, c.succ, w)
}

// placeLookups is how many candidate positions (indices 0, 1, ...) a
// joining node looks up: choices per vnode, below MaxVnodes.
func placeLookups(vnodes, choices int) int {
	return min(vnodes*max(choices, 1), MaxVnodes)
}

// chooseIndices picks the vnode indices of a node at addr running vnodes
// vnodes from what its lookups showed: looked are the indices it looked
// up and got an answer for, windows the runs of the ring the answers
// showed. Every index below MaxVnodes whose position falls inside a window
// is a candidate, not only the looked-up ones: a window of a successor
// list's length holds about 17·MaxVnodes/N of a peer's positions on a
// ring of N vnodes, so the same lookups rate several times more split
// points. A position of ours already on the ring (from before a restart,
// not yet forgotten) is taken back first: its keys are the ones this peer
// holds. Then each vnode in turn takes the candidate that best splits its
// arc (splitScore, the k-th chosen at slotWeight(k, vnodes)), counting the
// positions taken before it; ties go to the lower index. It returns fewer
// than vnodes indices only if there are fewer candidates.
func chooseIndices(addr []byte, vnodes int, looked []uint32, windows []window) []uint32 {
	// Our positions in ring order, sorted and searched by their first 8
	// bytes (the rest only breaks ties).
	type position struct {
		key   uint64
		index uint32
	}
	ids := make([]ID, MaxVnodes)
	sorted := make([]position, MaxVnodes)
	for x := range uint32(MaxVnodes) {
		ids[x] = VnodeID(addr, x)
		sorted[x] = position{binary.BigEndian.Uint64(ids[x][:8]), x}
	}
	cmp := func(a position, id ID) int {
		if k := binary.BigEndian.Uint64(id[:8]); a.key != k {
			if a.key < k {
				return -1
			}
			return 1
		}
		return ids[a.index].Cmp(id)
	}
	slices.SortFunc(sorted, func(a, b position) int { return cmp(a, ids[b.index]) })

	var chosen []uint32
	var placed []ID
	cands := make([]candidate, MaxVnodes) // by index
	have := make([]bool, MaxVnodes)
	for _, w := range windows {
		w = w.ordered()
		if len(w) == 0 {
			continue
		}
		// One walk through our positions from w[0] on: each is one of
		// ours already on the ring (equal to an entry) or a candidate
		// inside the arc between two entries.
		j, _ := slices.BinarySearchFunc(sorted, w[0], cmp)
		i := 0 // the arc (w[i-1], w[i]) the walk is in; 0: at w[0]
		for range len(sorted) {
			p := sorted[j%len(sorted)]
			id := ids[p.index]
			for i < len(w) && id != w[i] && (i == 0 || !Between(w[i-1], id, w[i])) {
				i++
			}
			if i == len(w) {
				break
			}
			switch {
			case id == w[i]:
				if !slices.Contains(chosen, p.index) && len(chosen) < vnodes {
					chosen = append(chosen, p.index)
					placed = append(placed, id)
				}
			case !have[p.index]:
				have[p.index] = true
				cands[p.index] = candidate{index: p.index, id: id, pred: w[i-1], succ: w[i], known: true}
			}
			j++
		}
	}
	for _, x := range looked {
		if !have[x] {
			have[x] = true
			cands[x] = candidate{index: x, id: ids[x]}
		}
	}
	left := make([]candidate, 0, len(cands))
	for x, c := range cands {
		if have[x] && !slices.Contains(chosen, c.index) {
			left = append(left, c)
		}
	}
	for i := range left {
		for _, p := range placed {
			left[i].taken(p)
		}
	}
	for len(chosen) < vnodes && len(left) > 0 {
		w := slotWeight(len(chosen), vnodes)
		best, bestScore := 0, left[0].score(w)
		for i, c := range left {
			if s := c.score(w); s > bestScore {
				best, bestScore = i, s
			}
		}
		c := left[best]
		chosen = append(chosen, c.index)
		left = slices.Delete(left, best, best+1)
		for i := range left {
			left[i].taken(c.id)
		}
	}
	return chosen
}

// choosePositions looks up the first placeLookups candidate positions
// through boot, each answer showing a window of the ring (lookUpWindow),
// picks the vnode indices from them (chooseIndices) and makes the node
// run those vnodes. The lookups run placeConcurrency at a time, so that a
// peer on a slow link joins in a few of its round trips; a candidate that
// cannot be looked up is passed over.
func (n *Node) choosePositions(ctx context.Context, boot Ref) error {
	lookups := placeLookups(n.cfg.Vnodes, n.cfg.VnodeChoices)
	windows := make([]window, lookups)
	errs := make([]error, lookups)
	sem := make(chan struct{}, placeConcurrency)
	var wg sync.WaitGroup
	for x := range lookups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			windows[x], errs[x] = n.lookUpWindow(ctx, boot, VnodeID([]byte(n.addr), uint32(x)))
		})
	}
	wg.Wait()
	var looked []uint32
	var lastErr error
	for x, err := range errs {
		if err != nil {
			lastErr = err
			continue
		}
		looked = append(looked, uint32(x))
	}
	chosen := chooseIndices([]byte(n.addr), n.cfg.Vnodes, looked, windows)
	if len(chosen) < n.cfg.Vnodes {
		return fmt.Errorf("choose vnode positions via %s: %w", boot.Addr, lastErr)
	}
	n.setVnodes(chosen)
	return nil
}

// placeConcurrency bounds the candidate positions a joining node looks
// up at once.
const placeConcurrency = 16

// lookUpWindow finds the window of boot's ring around id: id's
// successor, then that successor's predecessor and successor list. A
// successor that is one of our own vnodes from before a restart is not
// asked (we would be asking ourselves); nor is the window lost if only
// the second call fails: the successor alone still shows an old position
// of ours.
func (n *Node) lookUpWindow(ctx context.Context, boot Ref, id ID) (window, error) {
	res, err := call(n, ctx, boot, n.rtt.Timeout(boot.Addr), false, func(ctx context.Context) (LookupResult, error) {
		return n.tr.FindSuccessor(ctx, boot, id, 0, 1)
	})
	if err != nil {
		return nil, err
	}
	if len(res.Successors) == 0 {
		return nil, errors.New("empty answer")
	}
	succ := res.Successors[0]
	if succ.Addr == n.addr {
		return window{succ.ID}, nil
	}
	nb, err := direct(n, ctx, succ, func(ctx context.Context) (Neighbors, error) {
		return n.tr.Neighbors(ctx, succ, Ref{}, 0)
	})
	if err != nil {
		return window{succ.ID}, nil
	}
	w := make(window, 0, len(nb.Successors)+2)
	if !nb.Predecessor.IsZero() {
		w = append(w, nb.Predecessor.ID)
	}
	w = append(w, succ.ID)
	for _, r := range nb.Successors {
		w = append(w, r.ID)
	}
	return w, nil
}

// PlaceVnodes returns peers with each one's vnode indices chosen as a
// joining node chooses them (choosePositions) with choices lookups per
// vnode, the peers joining one after another in the order given on a ring
// that is always exact, every successor list DefaultConfig's length;
// with one choice, vnode i is index i.
func PlaceVnodes(peers []PeerLoad, choices int) []PeerLoad {
	total := 0
	for _, p := range peers {
		total += max(p.Vnodes, 0)
	}
	ring := newPositions(total)
	listLen := DefaultConfig().SuccessorListLen
	out := slices.Clone(peers)
	for i, p := range out {
		if p.Capacity <= 0 || p.Vnodes <= 0 {
			continue
		}
		p.Indices = nil
		if choices <= 1 || ring.size == 0 {
			// Without choices, or creating the ring: nothing to choose by.
			for x := range p.Vnodes {
				p.Indices = append(p.Indices, uint32(x))
			}
		} else {
			lookups := placeLookups(p.Vnodes, choices)
			looked := make([]uint32, lookups)
			windows := make([]window, lookups)
			for x := range lookups {
				looked[x] = uint32(x)
				windows[x] = ring.window(VnodeID([]byte(p.Addr), uint32(x)), listLen)
			}
			p.Indices = chooseIndices([]byte(p.Addr), p.Vnodes, looked, windows)
		}
		for _, x := range p.Indices {
			ring.insert(VnodeID([]byte(p.Addr), x))
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

// window returns what a lookup of id shows on a converged ring
// (lookUpWindow): the predecessor of id's successor, the successor and
// the listLen positions after it, stopping short of the successor again.
func (r *positions) window(id ID, listLen int) window {
	pred, succ, ok := r.around(id)
	if !ok {
		return nil
	}
	w := window{pred, succ}
	if r.size == 1 {
		return window{succ, succ} // alone, a node is its own successor list
	}
	next := succ
	for range min(listLen, r.size-1) {
		_, next, _ = r.around(next.AddPow2(0))
		w = append(w, next)
	}
	return w
}
