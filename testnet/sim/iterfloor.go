package main

import (
	"time"

	"chordshare/chord"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"
)

// iterativeFloor is chord.IterativeFloor for each query, with the
// profile's round trips ((a.RTT + b.RTT) / 2): what no iterative lookup of
// the batch could beat on the ring as it stands. nodes[i] has access[i];
// qs index nodes.
func iterativeFloor(nodes []*chord.Node, access []netshape.Access, qs []mockring.Query) mockring.Dist {
	of := make(map[string]netshape.Access, len(nodes))
	for i, n := range nodes {
		of[n.Addr()] = access[i]
	}
	floor := chord.IterativeFloor(nodes, func(a, b string) time.Duration { return 2 * netshape.OneWay(of[a], of[b]) })
	out := make([]time.Duration, 0, len(qs))
	for _, q := range qs {
		if d, _ := floor(nodes[q.From], q.Key); d >= 0 {
			out = append(out, d)
		}
	}
	return mockring.NewDist(out)
}
