package chord

import (
	"container/heap"
	"time"
)

// IterativeFloor returns, for the routing state nodes hold now, the least
// time an iterative lookup of a key from one of them can take, and its
// hops: the asker calls every hop itself, so a chain of hops y1..yk costs
// the sum of rtt(asker, yi); y1 must be in the asker's routing state
// (predecessors, successor lists, fingers of all its vnodes), each later
// hop in the state of the one before, and yk must be able to answer (a
// vnode of it names the key's successor from its list: a peer asked
// through any of its vnodes answers from its vnode nearest the key). It
// assumes every hop could hand over its whole state (a step hands over a
// few nodes) and that the asker knew where each peer it knows has its
// other vnodes (chord knows the vnodes it has met), so no iterative lookup
// beats it; with several vnodes per peer it is far below what routing by
// known vnodes can reach. Zero hops when the asker can answer
// itself; -1 when no chain reaches the key. The simulators use it to tell
// what a lookup lost to routing from what the asker's link costs anyway.
func IterativeFloor(nodes []*Node, rtt func(from, to string) time.Duration) func(from *Node, key ID) (time.Duration, int) {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.addr] = i
	}
	type arc struct{ from, to ID } // a vnode and the last of its successors
	knows := make([][]int, len(nodes))
	arcs := make([][]arc, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool{i: true}
		add := func(r Ref) {
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
	answers := func(i int, key ID) bool {
		for _, a := range arcs[i] {
			if BetweenRightIncl(a.from, key, a.to) {
				return true
			}
		}
		return false
	}
	return func(from *Node, key ID) (time.Duration, int) {
		o, ok := index[from.addr]
		if !ok {
			return -1, -1
		}
		if answers(o, key) {
			return 0, 0
		}
		cost := make([]time.Duration, len(nodes))
		hops := make([]int, len(nodes))
		// The asker calls every hop itself: a hop to y costs its round
		// trip to y, whoever named y; asked once, when first reached.
		hopTo := make([]time.Duration, len(nodes))
		for i := range cost {
			cost[i], hopTo[i] = -1, -1
		}
		cost[o] = 0
		h := &costHeap{{o, 0}}
		for h.Len() > 0 {
			x := heap.Pop(h).(costItem)
			if x.cost > cost[x.node] {
				continue
			}
			if x.node != o && answers(x.node, key) {
				return x.cost, hops[x.node]
			}
			for _, y := range knows[x.node] {
				if y == o {
					continue
				}
				if hopTo[y] < 0 {
					hopTo[y] = rtt(from.addr, nodes[y].addr)
				}
				c := x.cost + hopTo[y]
				if cost[y] < 0 || c < cost[y] {
					cost[y], hops[y] = c, hops[x.node]+1
					heap.Push(h, costItem{y, c})
				}
			}
		}
		return -1, -1
	}
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
