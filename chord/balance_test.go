package chord

import (
	"fmt"
	"math"
	"math/rand/v2"
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
// vnodes per unit, and at 1 per unit with each vnode placed at the best of
// a few candidate positions as peers join one by one (PlaceVnodes).
// Capacity-weighted vnodes must beat equal ones, and placed ones unplaced.
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
	with := func(vnodes func(PeerLoad) int, replicas int) Balance {
		ps := make([]PeerLoad, n)
		for i, p := range peers {
			p.Vnodes = vnodes(p)
			ps[i] = p
		}
		return KeyBalance(ps, keys, replicas)
	}
	var equal, weighted, placed Balance
	for _, r := range []int{1, 3} {
		b := with(func(PeerLoad) int { return DefaultConfig().Vnodes }, r)
		t.Logf("r=%d equal vnodes (8 each): keys/capacity p50 %.2f p99 %.2f max %.2f × mean", r, b.P50, b.P99, b.Max)
		if r == 1 {
			equal = b
		}
		for _, per := range []int{1, 4, 16} {
			b := with(func(p PeerLoad) int { return per * int(p.Capacity) }, r)
			t.Logf("r=%d capacity-weighted, %2d vnodes per unit: p50 %.2f p99 %.2f max %.2f × mean", r, per, b.P50, b.P99, b.Max)
			if r == 1 && per == 1 {
				weighted = b
			}
		}
		for _, choices := range []int{4, DefaultConfig().VnodeChoices, 16} {
			ps := make([]PeerLoad, n)
			for i, p := range peers {
				p.Vnodes = int(p.Capacity)
				ps[i] = p
			}
			b := KeyBalance(PlaceVnodes(ps, choices), keys, r)
			t.Logf("r=%d capacity-weighted, 1 vnode per unit, each placed at the best of %2d positions: p50 %.2f p99 %.2f max %.2f × mean", r, choices, b.P50, b.P99, b.Max)
			if r == 1 && choices == DefaultConfig().VnodeChoices {
				placed = b
			}
		}
		homog := make([]PeerLoad, n)
		for i := range homog {
			homog[i] = PeerLoad{Addr: fmt.Sprintf("peer-%d", i), Capacity: 1, Vnodes: DefaultConfig().Vnodes}
		}
		h := KeyBalance(homog, keys, r)
		t.Logf("r=%d equal capacities, 8 vnodes each: p50 %.2f p99 %.2f max %.2f × mean", r, h.P50, h.P99, h.Max)
	}
	if placed.P99 >= weighted.P99 || placed.Max >= weighted.Max {
		t.Errorf("vnodes placed among %d positions (p99 %.2f, max %.2f) no better than one position each (p99 %.2f, max %.2f)",
			DefaultConfig().VnodeChoices, placed.P99, placed.Max, weighted.P99, weighted.Max)
	}
	if weighted.P99 >= equal.P99 || weighted.Max >= equal.Max {
		t.Errorf("capacity-weighted vnodes (p99 %.2f, max %.2f) no better than equal ones (p99 %.2f, max %.2f)",
			weighted.P99, weighted.Max, equal.P99, equal.Max)
	}
}
