//go:build placeexp

package chord

import (
	"os"
	"slices"
	"strconv"
	"testing"
)

func TestZZTop(t *testing.T) {
	if s := os.Getenv("PLACE_C"); s != "" {
		expC, _ = strconv.ParseFloat(s, 64)
	}
	peers, _ := draw(2)
	placed := PlaceVnodes(peers, 8)
	type pos struct {
		id   ID
		peer int
	}
	var ring []pos
	for i, p := range placed {
		for _, x := range p.Indices {
			ring = append(ring, pos{VnodeID([]byte(p.Addr), x), i})
		}
	}
	slices.SortFunc(ring, func(a, b pos) int { return a.id.Cmp(b.id) })
	owned := make([]float64, len(peers))
	arcs := make([][]float64, len(peers))
	m := 1 / float64(len(ring))
	var all []float64
	for k, p := range ring {
		a := fraction(Distance(ring[(k-1+len(ring))%len(ring)].id, p.id)) / m
		owned[p.peer] += a
		arcs[p.peer] = append(arcs[p.peer], a)
		all = append(all, a)
	}
	slices.Sort(all)
	t.Logf("vnodes %d; vnode arcs/mean p50 %.2f p90 %.2f p99 %.2f max %.2f", len(ring), all[len(all)/2], all[len(all)*9/10], all[len(all)*99/100], all[len(all)-1])
	idx := make([]int, len(peers))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ra, rb := owned[a]/peers[a].Capacity, owned[b]/peers[b].Capacity
		if ra > rb {
			return -1
		}
		return 1
	})
	for _, i := range idx[:15] {
		t.Logf("peer %4d cap %.0f ratio %.2f arcs %.2f", i, peers[i].Capacity, owned[i]/peers[i].Capacity, arcs[i])
	}
	hist := map[int][]float64{}
	for i := range peers {
		hist[int(peers[i].Capacity)] = append(hist[int(peers[i].Capacity)], owned[i]/peers[i].Capacity)
	}
	for c := 1; c <= 8; c++ {
		h := hist[c]
		slices.Sort(h)
		t.Logf("cap %d: %d peers, ratio p50 %.2f p90 %.2f max %.2f", c, len(h), h[len(h)/2], h[len(h)*9/10], h[len(h)-1])
	}
}
