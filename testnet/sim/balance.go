package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"

	"chordshare/chord"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// balanceScheme says how many vnodes a peer of a given capacity runs.
type balanceScheme struct {
	name   string
	vnodes func(capacity float64) int
}

// balanceRow is the load of one scheme.
type balanceRow struct {
	Scheme                     string
	Storing, Clients, Vnodes   int
	ClientCapacityShare        float64 // of the total capacity, what clients (0 vnodes) have
	RawP99, RawMax             float64 // keys per storing peer ÷ their mean
	FairP99, FairMax, FairMean float64 // (share of keys) ÷ (share of storing capacity)
}

func balanceCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("balance", flag.ContinueOnError)
	peers := fs.Int("n", 1000, "peers")
	profile := fs.String("profile", "heterogeneous", "link profile whose uplink rates are the capacities")
	seed := fs.Uint64("seed", 1, "seed of peer IDs and links")
	minV := fs.Int("min-vnodes", 20, "capacity-weighted: vnodes of the weakest storing peer")
	maxV := fs.Int("max-vnodes", 1024, "capacity-weighted: most vnodes a peer runs")
	clientBelow := fs.Float64("client-below", 250e3, "capacity-weighted: peers with less uplink (bytes/s) are clients (capacity 0)")
	choices := fs.Int("vnode-choices", chord.DefaultConfig().VnodeChoices, "also place the vnodes as peers join in order, with this many lookups per vnode (chord.PlaceVnodes; 1: only one position each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	header(out, fmt.Sprintf("Load balance: %d peers, capacities from profile %s", *peers, *profile), append([]string{"balance"}, args...))
	rows, err := balance(*peers, *profile, *seed, *minV, *maxV, *clientBelow, *choices)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "A peer's capacity is its uplink rate in the profile. Keys per peer: the share of the key space its vnodes own (exact arc lengths, as with infinitely many keys). Keys per peer: over the storing peers, blind to capacity. Keys per capacity: each storing peer's keys ÷ its capacity, p99 and max over the mean of that (the target: p99 <= 1.5). Last column: (the peer's share of keys) ÷ (its share of the storing peers' capacity), 1 = exactly its share: with the same vnodes for all, the slow peers carry tens to hundreds of times their share.\n\n")
	fmt.Fprintf(out, "| vnodes | storing peers | clients | vnodes in all | clients' share of capacity | keys per peer p99/mean | max/mean | **keys per capacity p99/mean** | **max/mean** | share of keys ÷ share of capacity: mean / p99 / max |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %d | %d | %d | %.1f%% | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f |\n",
			r.Scheme, r.Storing, r.Clients, r.Vnodes, 100*r.ClientCapacityShare, r.RawP99, r.RawMax, r.FairP99/r.FairMean, r.FairMax/r.FairMean, r.FairMean, r.FairP99, r.FairMax)
	}
	fmt.Fprintln(out)
	return nil
}

func balance(peers int, profile string, seed uint64, minV, maxV int, clientBelow float64, choices int) ([]balanceRow, error) {
	access, err := netshape.Draw(profile, peers, seed)
	if err != nil {
		return nil, err
	}
	ids, err := peerIDs(peers, seed)
	if err != nil {
		return nil, err
	}
	schemes := []balanceScheme{}
	for _, v := range []int{1, 8, 20, 64} {
		schemes = append(schemes, balanceScheme{fmt.Sprintf("%d each", v), func(float64) int { return v }})
	}
	schemes = append(schemes, balanceScheme{"chord.CapacityForBandwidth: log-scaled, 1 at 32 kbit/s to 8 at 100 Mbit/s",
		func(c float64) int { return chord.CapacityForBandwidth(8 * c) }})
	type weighted struct {
		below float64
		minV  int
	}
	ws := []weighted{{64e3, 32}, {250e3, 20}, {500e3, 32}, {1e6, 64}}
	if !slices.Contains(ws, weighted{clientBelow, minV}) {
		ws = append(ws, weighted{clientBelow, minV})
	}
	for _, w := range ws {
		schemes = append(schemes, balanceScheme{
			fmt.Sprintf("by capacity: %d per %.0f kB/s, at most %d; clients below %.0f kB/s", w.minV, w.below/1e3, maxV, w.below/1e3),
			func(c float64) int {
				if c < w.below {
					return 0
				}
				return min(maxV, int(math.Round(float64(w.minV)*c/w.below)))
			},
		})
	}
	capacity := make([]float64, peers)
	for i, a := range access {
		capacity[i] = a.Up
		if a.Up == 0 {
			capacity[i] = 1 // an unshaped profile: every peer the same
		}
	}
	var rows []balanceRow
	for _, s := range schemes {
		rows = append(rows, balanceOf(s, ids, capacity, 1))
		if choices > 1 {
			rows = append(rows, balanceOf(s, ids, capacity, choices))
		}
	}
	return rows, nil
}

// balanceOf places every peer's vnodes as the peers join in order, with
// choices lookups per vnode (chord.PlaceVnodes), and measures the arcs
// they own.
func balanceOf(s balanceScheme, ids []p2ppeer.ID, capacity []float64, choices int) balanceRow {
	type pos struct {
		id   chord.ID
		peer int
	}
	var ring []pos
	row := balanceRow{Scheme: s.name}
	if choices > 1 {
		row.Scheme += fmt.Sprintf("; placed by %d lookups per vnode", choices)
	}
	var totalCap, clientCap float64
	loads := make([]chord.PeerLoad, len(ids))
	for i, id := range ids {
		v := s.vnodes(capacity[i])
		loads[i] = chord.PeerLoad{Addr: string(id), Capacity: capacity[i], Vnodes: v}
		totalCap += capacity[i]
		if v == 0 {
			row.Clients++
			clientCap += capacity[i]
			continue
		}
		row.Storing++
		row.Vnodes += v
	}
	for i, p := range chord.PlaceVnodes(loads, choices) {
		for _, x := range p.Indices {
			ring = append(ring, pos{chord.VnodeID([]byte(p.Addr), x), i})
		}
	}
	row.ClientCapacityShare = clientCap / totalCap
	slices.SortFunc(ring, func(a, b pos) int { return a.id.Cmp(b.id) })
	owned := make([]float64, len(ids))
	for k, p := range ring {
		prev := ring[(k-1+len(ring))%len(ring)].id
		arc := p.id.Fraction() - prev.Fraction()
		if arc <= 0 {
			arc++
		}
		owned[p.peer] += arc
	}
	storeCap := totalCap - clientCap
	var raw, fair []float64
	for i := range ids {
		if s.vnodes(capacity[i]) == 0 {
			continue
		}
		raw = append(raw, owned[i])
		fair = append(fair, owned[i]/(capacity[i]/storeCap))
	}
	mean := func(xs []float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += x
		}
		return t / float64(len(xs))
	}
	slices.Sort(raw)
	slices.Sort(fair)
	rm := mean(raw)
	row.RawP99, row.RawMax = mockring.Rank(raw, 0.99)/rm, raw[len(raw)-1]/rm
	row.FairMean, row.FairP99, row.FairMax = mean(fair), mockring.Rank(fair, 0.99), fair[len(fair)-1]
	return row
}

// peerIDs are the IDs mockring gives peers for this seed (the same draw as
// mockring.Net.AddPeers), so balance describes the rings the other
// subcommands build.
func peerIDs(n int, seed uint64) ([]p2ppeer.ID, error) {
	rng := mockring.PeerRand(seed)
	ids := make([]p2ppeer.ID, n)
	for i := range ids {
		var err error
		if _, ids[i], err = mockring.PeerKey(rng); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
