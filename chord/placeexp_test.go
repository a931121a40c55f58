//go:build placeexp

// Placement experiments behind the figures in README's load-balance
// section, opt-in (a few minutes):
//
//	go test -tags placeexp ./chord -run 'PlaceSeeds|PlaceVariants|PlaceNoise' -v
//
// TestPlaceSeeds runs the real placement (PlaceVnodes, and placePerSlot
// before it) over 10 draws of peers and keys. TestPlaceVariants replays
// joins on a ring of float positions to compare placements the code does
// not have (more lookups for peers with few vnodes, the arc owner's
// capacity known, other scores, more indices), 4 draws each (written
// before slotWeight: its "now" is halves for all). TestPlaceNoise
// separates the keys' sampling from placement (PLACE_DRAWS draws,
// default 10; PLACE_CHOICES lookups per vnode; PLACE_PER vnodes per unit
// of capacity; PLACE_EQUAL=V: every peer V vnodes and capacity V).
package chord

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
)

func TestPlaceSeeds(t *testing.T) {
	names := []string{"before, 8 per vnode", "now, 4 per vnode", "now, 8 per vnode", "now, 16 per vnode"}
	p99 := make([][]float64, len(names))
	mx := make([][]float64, len(names))
	for seed := range uint64(10) {
		peers, keys := draw(seed)
		for k, ps := range [][]PeerLoad{placePerSlot(peers, 8), PlaceVnodes(peers, 4), PlaceVnodes(peers, 8), PlaceVnodes(peers, 16)} {
			b := KeyBalance(ps, keys, 1)
			p99[k] = append(p99[k], b.P99)
			mx[k] = append(mx[k], b.Max)
		}
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	for k, name := range names {
		t.Logf("%-20s p99 %.2f (%.2f-%.2f), max %.2f (%.2f-%.2f) × mean", name,
			mean(p99[k]), slices.Min(p99[k]), slices.Max(p99[k]), mean(mx[k]), slices.Min(mx[k]), slices.Max(mx[k]))
	}
}

// split is what a score sees of one candidate: the parts a (the new
// vnode's) and b (left to the arc's owner), the capacities of the joiner
// and of the owner.
type split struct {
	a, b           float64
	self, ownerCap float64
}

type variant struct {
	name    string
	lookups func(vnodes int) int
	window  int  // successor list length shown per lookup; 0: the looked-up arc only, per slot (before)
	noPred  bool // the lookup's own successor list only (no Neighbors call): the looked-up arc unknown
	indices int  // positions per peer; 0: MaxVnodes
	whole   bool // every position on the ring known
	score   func(split) float64
}

func splitMin(s split) float64 { return min(s.a, s.b) }

// simPlace replays joins as PlaceVnodes (or placePerSlot) does, on float
// positions, for variants the code does not have.
func simPlace(peers []PeerLoad, v variant) []PeerLoad {
	var pos []float64
	var owner []int
	around := func(x float64) (pred, succ float64, j int) {
		j = sort.SearchFloat64s(pos, x) % len(pos)
		return pos[(j-1+len(pos))%len(pos)], pos[j], j
	}
	out := slices.Clone(peers)
	for i, p := range out {
		c := p.Vnodes
		indices := MaxVnodes
		if v.indices > 0 {
			indices = v.indices
		}
		ids := make([]float64, indices)
		for x := range ids {
			ids[x] = VnodeID([]byte(p.Addr), uint32(x)).Fraction()
		}
		p.Indices = nil
		type cand struct {
			x          int
			pred, succ float64
			owner      int
		}
		var cands []cand
		lookups := min(v.lookups(c), indices)
		switch {
		case len(pos) == 0:
			for x := range c {
				p.Indices = append(p.Indices, uint32(x))
			}
		case v.window == 0: // per slot, each rated by its own lookup
			for x := range lookups {
				pr, su, j := around(ids[x])
				cands = append(cands, cand{x, pr, su, owner[j]})
			}
		default:
			type span struct{ lo, hi float64 }
			var known []span
			for x := range lookups {
				pr, su, j := around(ids[x])
				k := min(v.window, len(pos)-1)
				lo, hi := pr, pos[(j+k)%len(pos)]
				if v.noPred {
					lo, hi = su, pos[(j+min(v.window, len(pos))-1)%len(pos)]
				}
				known = append(known, span{lo, hi})
			}
			for x, id := range ids {
				for _, s := range known {
					if v.whole || len(pos) <= v.window+1 && !v.noPred || inArc(s.lo, id, s.hi) {
						pr, su, j := around(id)
						cands = append(cands, cand{x, pr, su, owner[j]})
						break
					}
				}
			}
		}
		var placed []float64
		for slot := range c {
			if len(pos) == 0 {
				break
			}
			best, bestScore := -1, math.Inf(-1)
			for k, cd := range cands {
				if slices.Contains(p.Indices, uint32(cd.x)) || v.window == 0 && cd.x%c != slot {
					continue
				}
				pr, su, ownerCap := cd.pred, cd.succ, out[cd.owner].Capacity
				for _, o := range placed {
					if inArc(pr, o, ids[cd.x]) {
						pr = o
					}
					if inArc(ids[cd.x], o, su) {
						su, ownerCap = o, float64(c)
					}
				}
				s := v.score(split{dist(pr, ids[cd.x]), dist(ids[cd.x], su), float64(c), ownerCap})
				if s > bestScore {
					best, bestScore = k, s
				}
			}
			p.Indices = append(p.Indices, uint32(cands[best].x))
			placed = append(placed, ids[cands[best].x])
		}
		for _, x := range p.Indices {
			j := sort.SearchFloat64s(pos, ids[x])
			pos, owner = slices.Insert(pos, j, ids[x]), slices.Insert(owner, j, i)
		}
		out[i] = p
	}
	return out
}

// inArc reports whether x is on the open arc (a, b) of the unit circle.
func inArc(a, x, b float64) bool {
	if a < b {
		return a < x && x < b
	}
	return a < x || x < b
}

func dist(a, b float64) float64 {
	if d := b - a; d > 0 {
		return d
	}
	return b - a + 1
}

func TestPlaceVariants(t *testing.T) {
	per := func(k int) func(int) int { return func(c int) int { return c * k } }
	vs := []variant{
		{name: "before: 8 per vnode, own arc", lookups: per(8), score: splitMin},
		{name: "now: 8 per vnode, windows", lookups: per(8), window: 16, score: splitMin},
		{name: "windows, max(8·vnodes, 64) lookups", lookups: func(c int) int { return max(8*c, 64) }, window: 16, score: splitMin},
		{name: "windows of 32 (a second Neighbors call)", lookups: per(8), window: 32, score: splitMin},
		{name: "lookup's successors only, 16", lookups: per(8), window: 16, noPred: true, score: splitMin},
		{name: "every position on the ring known", lookups: per(1), window: 16, whole: true, score: splitMin},
		{name: "windows, 16,384 indices", lookups: per(8), window: 16, indices: 16384, score: splitMin},
		{name: "windows, score a·b", lookups: per(8), window: 16, score: func(s split) float64 { return s.a * s.b }},
		{name: "windows, owner's capacity known", lookups: per(8), window: 16, score: func(s split) float64 {
			return min(s.a*(1+0.5/s.self), s.b*(1+0.5/s.ownerCap))
		}},
		{name: "windows, few-vnode joiner takes less", lookups: per(8), window: 16, score: func(s split) float64 {
			return min(s.a*(1+1/s.self), s.b)
		}},
	}
	const seeds = 4
	type sum struct{ p99, max, r3 float64 }
	res := make([]sum, len(vs))
	floor := 0.0
	for seed := range uint64(seeds) {
		peers, keys := draw(seed)
		for k, v := range vs {
			ps := simPlace(peers, v)
			b1, b3 := KeyBalance(ps, keys, 1), KeyBalance(ps, keys, 3)
			res[k].p99 += b1.P99 / seeds
			res[k].max += b1.Max / seeds
			res[k].r3 += b3.P99 / seeds
		}
		// Every vnode's arc exactly the mean: what is left is the keys'
		// own scatter (normal approximation of the Poisson counts).
		rng := rand.New(rand.NewPCG(seed, 9))
		total := 0.0
		for _, p := range peers {
			total += p.Capacity
		}
		var r []float64
		for _, p := range peers {
			lam := float64(len(keys)) * p.Capacity / total
			r = append(r, max(0, math.Round(lam+math.Sqrt(lam)*rng.NormFloat64()))/p.Capacity)
		}
		slices.Sort(r)
		m := 0.0
		for _, x := range r {
			m += x / float64(len(r))
		}
		floor += r[int(math.Ceil(0.99*float64(len(r))))-1] / m / seeds
	}
	for k, v := range vs {
		t.Logf("%-42s p99 %.2f max %.2f × mean; r=3 p99 %.2f", v.name, res[k].p99, res[k].max, res[k].r3)
	}
	t.Logf("%-42s p99 %.2f", "equal arcs", floor)
}

// TestPlaceNoise splits the p99 of keys per capacity into what the
// keys' sampling adds and what placement leaves: per draw of peers, the
// keys per unit of capacity, the p99 over the draw's keys, the p99 of the
// exact arcs (no sampling), and the p99 over 10 other key sets on the
// same placement.
func TestPlaceNoise(t *testing.T) {
	choices := DefaultConfig().VnodeChoices
	if s := os.Getenv("PLACE_CHOICES"); s != "" {
		choices, _ = strconv.Atoi(s)
	}
	draws := 10
	if s := os.Getenv("PLACE_DRAWS"); s != "" {
		draws, _ = strconv.Atoi(s)
	}
	var keyP99, arcP99, resP99, bigP99, floorP99 []float64
	for seed := range uint64(draws) {
		peers, keys := draw(seed)
		if s := os.Getenv("PLACE_EQUAL"); s != "" {
			v, _ := strconv.Atoi(s)
			for i := range peers {
				peers[i].Vnodes, peers[i].Capacity = v, float64(v)
			}
		}
		if s := os.Getenv("PLACE_PER"); s != "" {
			per, _ := strconv.Atoi(s)
			for i := range peers {
				peers[i].Vnodes *= per
			}
		}
		placed := PlaceVnodes(peers, choices)
		total := 0.0
		for _, p := range peers {
			total += p.Capacity
		}
		k, a := KeyBalance(placed, keys, 1), arcBalance(placed)
		rng := rand.New(rand.NewPCG(seed, 77))
		var res []float64
		for range 10 {
			for i := range keys {
				keys[i] = randomID(rng)
			}
			res = append(res, KeyBalance(placed, keys, 1).P99)
		}
		big := make([]ID, 10*len(keys))
		for i := range big {
			big[i] = randomID(rng)
		}
		b := KeyBalance(placed, big, 1)
		// Perfect placement: every key on a peer drawn in proportion to
		// its capacity, what the keys' sampling alone leaves.
		cum := make([]float64, len(peers))
		count := make([]float64, len(peers))
		acc := 0.0
		for i, p := range peers {
			acc += p.Capacity
			cum[i] = acc
		}
		for range keys {
			i, _ := slices.BinarySearch(cum, rng.Float64()*acc)
			count[min(i, len(peers)-1)]++
		}
		var fr []float64
		fm := 0.0
		for i, p := range peers {
			fr = append(fr, count[i]/p.Capacity)
			fm += count[i] / p.Capacity / float64(len(peers))
		}
		slices.Sort(fr)
		floor := fr[int(math.Ceil(0.99*float64(len(fr))))-1] / fm
		keyP99, arcP99, resP99 = append(keyP99, k.P99), append(arcP99, a.P99), append(resP99, res...)
		bigP99, floorP99 = append(bigP99, b.P99), append(floorP99, floor)
		t.Logf("draw %2d: %.1f keys per unit; keys p99 %.2f max %.2f; exact arcs p99 %.2f max %.2f; 10 other key sets p99 %.2f-%.2f; 1M keys p99 %.2f; perfect placement p99 %.2f",
			seed, float64(len(keys))/total, k.P99, k.Max, a.P99, a.Max, slices.Min(res), slices.Max(res), b.P99, floor)
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	t.Logf("%d lookups per vnode, %d draws: keys p99 %.2f (%.2f-%.2f); exact arcs p99 %.2f (%.2f-%.2f); other key sets p99 %.2f (%.2f-%.2f); 1M keys p99 %.2f (%.2f-%.2f); perfect placement, 100,000 keys p99 %.2f (%.2f-%.2f)",
		choices, draws, mean(keyP99), slices.Min(keyP99), slices.Max(keyP99), mean(arcP99), slices.Min(arcP99), slices.Max(arcP99),
		mean(resP99), slices.Min(resP99), slices.Max(resP99), mean(bigP99), slices.Min(bigP99), slices.Max(bigP99),
		mean(floorP99), slices.Min(floorP99), slices.Max(floorP99))
}

// TestPlaceSmallRings: exact-arc balance of small rings of equal peers
// with 2 vnodes each (as TestJoinChoosesVnodePositions' 40), 40 draws.
func TestPlaceSmallRings(t *testing.T) {
	for _, n := range []int{40, 200} {
		var p99, mx float64
		worst := 0.0
		const draws = 40
		for seed := range draws {
			peers := make([]PeerLoad, n)
			for i := range peers {
				peers[i] = PeerLoad{Addr: fmt.Sprintf("small-%d-%d", seed, i), Capacity: 2, Vnodes: 2}
			}
			b := arcBalance(PlaceVnodes(peers, 8))
			p99 += b.P99 / draws
			mx += b.Max / draws
			worst = max(worst, b.Max)
		}
		t.Logf("n %d, 2 vnodes each, %d draws: p99 %.3f max %.3f worst max %.3f", n, draws, p99, mx, worst)
	}
}
