package chord

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCapacityForBandwidth(t *testing.T) {
	for _, c := range []struct {
		bps  float64
		want int
	}{{1e3, 1}, {32e3, 1}, {100e6, 8}, {1e9, 8}, {math.Sqrt(32e3 * 100e6), 5}} {
		if got := CapacityForBandwidth(c.bps); got != c.want {
			t.Errorf("CapacityForBandwidth(%g) = %d, want %d", c.bps, got, c.want)
		}
	}
}

func TestKeyBalanceCountsEveryKeyOnce(t *testing.T) {
	peers := []PeerLoad{{Addr: "a", Capacity: 1, Vnodes: 1}, {Addr: "b", Capacity: 2, Vnodes: 2}, {Addr: "client"}}
	rng := rand.New(rand.NewPCG(1, 1))
	keys := make([]ID, 1000)
	for i := range keys {
		keys[i] = randomID(rng)
	}
	b := KeyBalance(peers, keys, 1)
	if b.Peers != 2 || b.Keys != 1000 || b.Max < 1 || b.P50 > b.Max {
		t.Fatalf("balance %+v", b)
	}
}

// Load balance of 1,000 peers and 100,000 keys, capacities drawn from the
// heterogeneous profile's bandwidths (log-uniform 32 kbit/s to 100 Mbit/s,
// CapacityForBandwidth): keys per unit of capacity with every peer running
// the default 8 vnodes, and with vnodes following capacity, at 1, 4 and 16
// vnodes per unit, and at 1 per unit placed as peers join one by one:
// before windows (placePerSlot, each candidate rated by its own lookup)
// and as now (PlaceVnodes). Capacity-weighted vnodes must beat equal ones,
// placed ones unplaced, placement by windows the one before, and at the
// default settings the exact arcs (keys per capacity with infinitely many
// keys) must meet issue 4's target, p99 <= 1.5 × the mean. The 100,000
// keys' own figure is logged, not checked: at about 22 keys per unit of
// capacity the keys' sampling alone puts p99 at 1.27-1.37 × mean with
// every peer holding exactly its share (TestPlaceNoise).
func TestKeyBalanceWithCapacityWeightedVnodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	const n, keyCount = 1000, 100_000
	peers := make([]PeerLoad, n)
	for i := range peers {
		bw := minBandwidth * math.Pow(maxBandwidth/minBandwidth, rng.Float64())
		peers[i] = PeerLoad{Addr: fmt.Sprintf("peer-%d", i), Capacity: float64(CapacityForBandwidth(bw))}
	}
	keys := make([]ID, keyCount)
	for i := range keys {
		keys[i] = randomID(rng)
	}
	with := func(vnodes func(PeerLoad) int) []PeerLoad {
		ps := make([]PeerLoad, n)
		for i, p := range peers {
			p.Vnodes = vnodes(p)
			ps[i] = p
		}
		return ps
	}
	weighted := with(func(p PeerLoad) int { return int(p.Capacity) })
	def := DefaultConfig().VnodeChoices
	type row struct {
		name         string
		peers        []PeerLoad
		r1, r3, arcs Balance
	}
	rows := []*row{{name: "equal vnodes (8 each)", peers: with(func(PeerLoad) int { return DefaultConfig().Vnodes })}}
	for _, per := range []int{1, 4, 16} {
		rows = append(rows, &row{name: fmt.Sprintf("capacity-weighted, %2d vnodes per unit", per), peers: with(func(p PeerLoad) int { return per * int(p.Capacity) })})
	}
	rows = append(rows, &row{name: fmt.Sprintf("1 vnode per unit, best of %d positions per vnode, each rated by its own lookup (before)", def), peers: placePerSlot(weighted, def)})
	for _, c := range []int{4, def, 16} {
		rows = append(rows, &row{name: fmt.Sprintf("1 vnode per unit, %2d lookups per vnode, every position in their windows rated (now)", c), peers: PlaceVnodes(weighted, c)})
	}
	for _, r := range rows {
		r.r1, r.r3, r.arcs = KeyBalance(r.peers, keys, 1), KeyBalance(r.peers, keys, 3), arcBalance(r.peers)
		t.Logf("%-100s keys/capacity p99 %.2f max %.2f × mean; r=3 p99 %.2f max %.2f; exact arcs p99 %.2f max %.2f", r.name, r.r1.P99, r.r1.Max, r.r3.P99, r.r3.Max, r.arcs.P99, r.arcs.Max)
	}
	equal, unplaced, before, now := rows[0].r1, rows[1].r1, rows[4].r1, rows[6].r1
	// The ring after the first k joins is the first k peers: positions
	// never move, so this is how the balance evolves as later peers split
	// the arcs of earlier ones.
	for _, k := range []int{n / 8, n / 4, n / 2, n} {
		b, o := KeyBalance(rows[6].peers[:k], keys, 1), KeyBalance(rows[4].peers[:k], keys, 1)
		t.Logf("ring of the first %4d peers: p99 %.2f max %.2f × mean now, %.2f and %.2f before", k, b.P99, b.Max, o.P99, o.Max)
	}
	if a := rows[6].arcs; a.P99 > 1.5 {
		t.Errorf("placed by windows at the default: exact-arc p99 %.2f × mean, over the 1.5 target", a.P99)
	}
	if now.P99 >= before.P99 || now.Max >= before.Max {
		t.Errorf("placement by windows (p99 %.2f, max %.2f) no better than before (p99 %.2f, max %.2f)", now.P99, now.Max, before.P99, before.Max)
	}
	if before.P99 >= unplaced.P99 || before.Max >= unplaced.Max {
		t.Errorf("vnodes placed among %d positions (p99 %.2f, max %.2f) no better than one position each (p99 %.2f, max %.2f)",
			def, before.P99, before.Max, unplaced.P99, unplaced.Max)
	}
	if unplaced.P99 >= equal.P99 || unplaced.Max >= equal.Max {
		t.Errorf("capacity-weighted vnodes (p99 %.2f, max %.2f) no better than equal ones (p99 %.2f, max %.2f)",
			unplaced.P99, unplaced.Max, equal.P99, equal.Max)
	}
}

// draw is one draw of issue 4's balance setting: 1,000 peers with
// capacities from the heterogeneous profile (vnodes = capacity), 100,000
// keys.
func draw(seed uint64) ([]PeerLoad, []ID) {
	rng := rand.New(rand.NewPCG(2+seed, 2))
	peers := make([]PeerLoad, 1000)
	for i := range peers {
		bw := minBandwidth * math.Pow(maxBandwidth/minBandwidth, rng.Float64())
		c := CapacityForBandwidth(bw)
		peers[i] = PeerLoad{Addr: fmt.Sprintf("peer-%d-%d", seed, i), Capacity: float64(c), Vnodes: c}
	}
	keys := make([]ID, 100_000)
	for i := range keys {
		keys[i] = randomID(rng)
	}
	return peers, keys
}

// The default placement meets issue 4's target, p99 of keys per capacity
// <= 1.5 × mean on the exact arcs, on every one of 6 draws of peers (the
// halves-for-all rule before slotWeight: 1.52 on draw 18), and keeps the
// largest load below 1.75 × mean.
func TestPlacementMeetsBalanceTargetOnEveryDraw(t *testing.T) {
	for seed := uint64(14); seed < 20; seed++ {
		peers, _ := draw(seed)
		b := arcBalance(PlaceVnodes(peers, DefaultConfig().VnodeChoices))
		t.Logf("draw %d: exact-arc keys per capacity p99 %.3f max %.3f × mean", seed, b.P99, b.Max)
		if b.P99 > 1.5 || b.Max > 1.75 {
			t.Errorf("draw %d: p99 %.3f max %.3f × mean, want <= 1.5 and 1.75", seed, b.P99, b.Max)
		}
	}
}

// placePerSlot is the placement before windows, kept as the baseline:
// vnode slot i of a joining peer takes, among indices i, i+V, i+2·V, ...
// (choices of them), the one that best splits the arc its own lookup
// found, the peers joining in order on an exact ring.
func placePerSlot(peers []PeerLoad, choices int) []PeerLoad {
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
		creates := ring.size == 0
		for slot := range p.Vnodes {
			best, bestScore := uint32(0), -1.0
			for x := slot; x < MaxVnodes && x < slot+choices*p.Vnodes; x += p.Vnodes {
				id := VnodeID([]byte(p.Addr), uint32(x))
				score := 0.0
				if pred, succ, ok := ring.around(id); ok && !creates {
					score = splitScore(pred, id, succ, 1)
				}
				if score > bestScore {
					best, bestScore = uint32(x), score
				}
			}
			p.Indices = append(p.Indices, best)
			ring.insert(VnodeID([]byte(p.Addr), best))
		}
		out[i] = p
	}
	return out
}

// arcBalance is KeyBalance with infinitely many keys: each peer's share
// of the ring (the exact arcs its vnodes own) per unit of capacity, over
// the mean of that, so what is left is placement alone.
func arcBalance(peers []PeerLoad) Balance {
	ring, members := balanceRing(peers)
	owned := make([]float64, len(peers))
	for k, p := range ring {
		owned[p.peer] += fraction(Distance(ring[(k-1+len(ring))%len(ring)].id, p.id))
	}
	return balanceOf(peers, members, owned)
}
