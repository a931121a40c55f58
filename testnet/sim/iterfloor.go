package main

import (
	"container/heap"
	"time"

	"chordshare/chord"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"
)

// iterativeFloor is, for each query, the least time an iterative lookup
// can take on the ring as it stands. The asker calls every hop itself, so
// a path of hops y1..yk costs the sum of the asker's round trips to each
// ((o.RTT + y.RTT) / 2: its own access link once per hop); y1 must be in
// the asker's routing state (fingers, successor lists, predecessors), each
// later hop in the state of the one before, and yk must be a peer with a
// vnode whose successor list reaches the key (it answers Done). It assumes
// each hop could hand over its whole state (chord hands over 8 nodes at
// most), so no iterative lookup on this ring beats it. Zero when the asker
// can answer itself. nodes[i] has access[i]; qs index nodes.
func iterativeFloor(nodes []*chord.Node, access []netshape.Access, qs []mockring.Query) mockring.Dist {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.Addr()] = i
	}
	type arc struct{ from, to chord.ID } // a vnode and the last of its successors
	knows := make([][]int, len(nodes))
	arcs := make([][]arc, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool{i: true}
		add := func(r chord.Ref) {
			if j, ok := index[r.Addr]; ok && !seen[j] {
				seen[j] = true
				knows[i] = append(knows[i], j)
			}
		}
		for _, st := range n.States() {
			add(st.Predecessor)
			for _, s := range st.Successors {
				add(s)
			}
			for _, f := range st.Fingers {
				add(f.Node)
			}
			if k := len(st.Successors); k > 0 {
				arcs[i] = append(arcs[i], arc{st.Self.ID, st.Successors[k-1].ID})
			}
		}
	}
	answers := func(i int, key chord.ID) bool {
		for _, a := range arcs[i] {
			if chord.BetweenRightIncl(a.from, key, a.to) {
				return true
			}
		}
		return false
	}
	out := make([]time.Duration, 0, len(qs))
	dist := make([]time.Duration, len(nodes))
	for _, q := range qs {
		o := q.From
		if answers(o, q.Key) {
			out = append(out, 0)
			continue
		}
		for i := range dist {
			dist[i] = -1
		}
		dist[o] = 0
		h := &costHeap{{o, 0}}
		best := time.Duration(-1)
		for h.Len() > 0 {
			x := heap.Pop(h).(costItem)
			if x.cost > dist[x.node] {
				continue
			}
			if x.node != o && answers(x.node, q.Key) {
				best = x.cost
				break
			}
			for _, y := range knows[x.node] {
				if y == o {
					continue
				}
				c := x.cost + 2*netshape.OneWay(access[o], access[y])
				if dist[y] < 0 || c < dist[y] {
					dist[y] = c
					heap.Push(h, costItem{y, c})
				}
			}
		}
		if best >= 0 {
			out = append(out, best)
		}
	}
	return mockring.NewDist(out)
}

type costItem struct {
	node int
	cost time.Duration
}

// costHeap is a min-heap of costItems by cost.
type costHeap []costItem

func (h costHeap) Len() int           { return len(h) }
func (h costHeap) Less(i, j int) bool { return h[i].cost < h[j].cost }
func (h costHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *costHeap) Push(x any)        { *h = append(*h, x.(costItem)) }
func (h *costHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
