package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"chordshare/chord"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"
)

// floorCmd prints the lookup latency floor of a profile: what no
// lookup can beat.
func floorCmd(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	c.register(fs, 1000)
	count := fs.Int("lookups", 100000, "random lookups drawn")
	succ := fs.Int("succlist", chord.DefaultConfig().SuccessorListLen, "successor list length")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.parse(); err != nil {
		return err
	}
	header(out, fmt.Sprintf("Lookup latency floor: %d peers, %s, profile %s", c.peers, c.vnodesDesc(), c.profile), append([]string{"floor"}, args...))
	d, err := lookupFloor(c, *count, *succ)
	if err != nil {
		return err
	}
	pair, err := pairRTT(c, *count)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\n\nThe profile's round trip between two random peers: p50 %s, p99 %s; the floor as multiples of that p50: p50 %.2f, p99 %.2f.\n\n",
		floorText(d), ms(pair.P50), ms(pair.P99), ratio(d.P50, pair.P50), ratio(d.P99, pair.P50))
	return nil
}

func floorText(d mockring.Dist) string {
	return fmt.Sprintf("Floor: a lookup needs at least one round trip from its origin to a peer that knows the key's successor (one of the %s), unless the origin is one; the fastest such round trip, over %d random origins and keys, is p50 %s, p90 %s, p99 %s (zero when the origin knows).",
		"vnodes whose successor list spans the key", d.N, ms(d.P50), ms(d.P90), ms(d.P99))
}

// lookupFloor draws random origins and keys and returns, for each, the
// smallest round trip ((a.RTT + b.RTT) / 2) from the origin to a peer with a
// vnode among the key's succlist predecessors, or 0 if the origin has one.
func lookupFloor(c common, count, succlist int) (mockring.Dist, error) {
	access, err := netshape.Draw(c.profile, c.peers, c.seed)
	if err != nil {
		return mockring.Dist{}, err
	}
	ids, err := peerIDs(c.peers, c.seed)
	if err != nil {
		return mockring.Dist{}, err
	}
	type pos struct {
		id   chord.ID
		peer int
	}
	// Vnode positions as the peers, joining in order, choose them.
	loads := make([]chord.PeerLoad, len(ids))
	for i, id := range ids {
		loads[i] = chord.PeerLoad{Addr: string(id), Capacity: 1, Vnodes: c.vnodesOf(access[i])}
	}
	var ring []pos
	for i, p := range chord.PlaceVnodes(loads, c.choices) {
		for _, x := range p.Indices {
			ring = append(ring, pos{chord.VnodeID([]byte(p.Addr), x), i})
		}
	}
	if len(ring) == 0 {
		return mockring.Dist{}, fmt.Errorf("no peer has a vnode")
	}
	slices.SortFunc(ring, func(a, b pos) int { return a.id.Cmp(b.id) })
	rng := rand.New(rand.NewPCG(c.seed, 0x666c6f6f72))
	out := make([]time.Duration, count)
	for q := range out {
		o := rng.IntN(c.peers)
		var key chord.ID
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		j, _ := slices.BinarySearchFunc(ring, key, func(p pos, k chord.ID) int { return p.id.Cmp(k) })
		best := time.Duration(-1)
		for k := 1; k <= min(succlist, len(ring)); k++ {
			x := ring[(j-k+len(ring))%len(ring)].peer
			if x == o {
				best = 0
				break
			}
			if d := (access[o].RTT + access[x].RTT) / 2; best < 0 || d < best {
				best = d
			}
		}
		out[q] = best
	}
	return mockring.NewDist(out), nil
}

// pairRTT is the profile's round trip between two random distinct peers.
func pairRTT(c common, count int) (mockring.Dist, error) {
	access, err := netshape.Draw(c.profile, c.peers, c.seed)
	if err != nil {
		return mockring.Dist{}, err
	}
	rng := rand.New(rand.NewPCG(c.seed, 0x70616972))
	var out []time.Duration
	for range count {
		a, b := rng.IntN(c.peers), rng.IntN(c.peers)
		if a != b {
			out = append(out, 2*netshape.OneWay(access[a], access[b]))
		}
	}
	return mockring.NewDist(out), nil
}
