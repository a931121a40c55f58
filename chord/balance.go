package chord

import (
	"math"
	"slices"
	"sort"
)

// PeerLoad describes one peer for a load-balance measurement: its address,
// its declared capacity and how many vnodes it runs (with capacity-weighted
// vnodes Vnodes equals Capacity). Its vnode positions follow from the
// address and the vnode indices: Indices (PlaceVnodes), or 0..Vnodes-1.
type PeerLoad struct {
	Addr     string
	Capacity float64
	Vnodes   int
	Indices  []uint32
}

// Balance is how evenly keys fall on peers relative to their capacity:
// each peer's keys per unit of capacity, as a multiple of the mean of that
// over all peers. 1 everywhere is perfect balance.
type Balance struct {
	Peers, Keys   int
	P50, P99, Max float64
}

// KeyBalance places keys on the ring the peers form, each on the first
// replicas distinct peers from its successor vnode on (1: the primary
// owner only), and measures the balance. Peers with no capacity or no
// vnodes (clients) hold nothing and are left out.
func KeyBalance(peers []PeerLoad, keys []ID, replicas int) Balance {
	ring, members := balanceRing(peers)
	if len(ring) == 0 {
		return Balance{Keys: len(keys)}
	}
	count := make([]float64, len(peers))
	replicas = min(max(replicas, 1), len(members))
	held := make([]int, 0, replicas)
	for _, k := range keys {
		i := sort.Search(len(ring), func(i int) bool { return ring[i].id.Cmp(k) >= 0 })
		held = held[:0]
		for j := i; len(held) < replicas; j++ {
			if p := ring[j%len(ring)].peer; !slices.Contains(held, p) {
				held = append(held, p)
				count[p]++
			}
		}
	}
	b := balanceOf(peers, members, count)
	b.Keys = len(keys)
	return b
}

// vnodePos is a vnode's position on the ring and the index of its peer.
type vnodePos struct {
	id   ID
	peer int
}

// balanceRing is the ring peers form, in ring order, and the indices of
// the peers on it (those with capacity and vnodes).
func balanceRing(peers []PeerLoad) (ring []vnodePos, members []int) {
	for i, p := range peers {
		if p.Capacity <= 0 || p.Vnodes <= 0 {
			continue
		}
		members = append(members, i)
		for v := range p.Vnodes {
			x := uint32(v)
			if p.Indices != nil {
				x = p.Indices[v]
			}
			ring = append(ring, vnodePos{VnodeID([]byte(p.Addr), x), i})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].id.Cmp(ring[j].id) < 0 })
	return ring, members
}

// balanceOf is the Balance of load (indexed like peers) per unit of
// capacity over the members.
func balanceOf(peers []PeerLoad, members []int, load []float64) Balance {
	ratios := make([]float64, 0, len(members))
	mean := 0.0
	for _, i := range members {
		r := load[i] / peers[i].Capacity
		ratios = append(ratios, r)
		mean += r
	}
	mean /= float64(len(ratios))
	slices.Sort(ratios)
	rank := func(p float64) float64 { return ratios[int(math.Ceil(p*float64(len(ratios))))-1] / mean }
	return Balance{Peers: len(ratios), P50: rank(0.50), P99: rank(0.99), Max: ratios[len(ratios)-1] / mean}
}

// Bandwidth bounds of CapacityForBandwidth: the slowest and fastest links
// the network is built for.
const (
	minBandwidth = 32e3  // bit/s
	maxBandwidth = 100e6 // bit/s
)

// CapacityForBandwidth suggests a capacity (vnode count) for a peer whose
// upload bandwidth is bitsPerSecond: 1 at 32 kbit/s, DefaultConfig's
// Vnodes at 100 Mbit/s and above, log-scaled between (each doubling of
// bandwidth adds the same number of vnodes), so a slow peer owns a
// smaller share of the ring and of the keys without being left out.
func CapacityForBandwidth(bitsPerSecond float64) int {
	top := DefaultConfig().Vnodes
	if bitsPerSecond <= minBandwidth {
		return 1
	}
	if bitsPerSecond >= maxBandwidth {
		return top
	}
	f := math.Log(bitsPerSecond/minBandwidth) / math.Log(maxBandwidth/minBandwidth)
	return 1 + int(math.Round(f*float64(top-1)))
}
