package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/testnet/internal/parallel"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// kadProtocol is the protocol kad-dht speaks with its default prefix.
const kadProtocol = "/ipfs/kad/1.0.0"

// kadReport summarizes a batch of kad-dht lookups.
type kadReport struct {
	Op              string // GetClosestPeers or FindPeer
	Pass            int
	Lookups, Errors int
	Right           int // GetClosestPeers: the key's true closest peer is in the answer; FindPeer: the peer was found
	Latency         mockring.Dist
	Messages        float64 // kad frames written (requests and responses) per lookup
	FirstError      error
}

type kadMaint struct {
	Sample             int
	BytesPerRefresh    float64 // kad bytes, all peers, caused by one peer's refresh
	MessagesPerRefresh float64
	BytesPerPeerSecond float64 // ÷ the refresh interval
	RefreshInterval    time.Duration
	RoutingTableMean   float64
}

// runKad runs kad-dht v0.42.0 on a mocknet with the same peer IDs and the
// same access links as the ring had (the keys come from the same seed,
// drawn the same way), its routing tables filled from the full peer list
// (as the ring was built converged), and makes the same lookups from the
// same origins.
func runKad(ctx context.Context, f lookupsFlags, qs []mockring.Query, rtt mockring.Dist, out io.Writer) ([]kadReport, kadMaint, error) {
	var km kadMaint
	access, err := netshape.Draw(f.profile, f.peers, f.seed)
	if err != nil {
		return nil, km, err
	}
	net := mockring.NewNet(mockring.LinkLazy, mocknet.LinkOptions{})
	defer net.Close()
	hosts, err := net.AddPeers(f.peers, mockring.PeerRand(f.seed))
	if err != nil {
		return nil, km, err
	}
	sh := netshape.NewShaper()
	net.Shape(func(a, b p2ppeer.ID) mocknet.LinkOptions { return mocknet.LinkOptions{} }, sh.Wrap)
	start := time.Now()
	dhts := make([]*dht.IpfsDHT, len(hosts))
	for i, h := range hosts {
		d, err := dht.New(h, dht.Mode(dht.ModeServer), dht.DisableAutoRefresh())
		if err != nil {
			return nil, km, fmt.Errorf("kad-dht on peer %d: %w", i, err)
		}
		dhts[i] = d
	}
	defer func() {
		for _, d := range dhts {
			d.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(f.seed, 0x6b6164))
	rtSize := 0
	for i, d := range dhts {
		for _, j := range rng.Perm(len(hosts)) {
			if j == i {
				continue
			}
			if ok, _ := d.RoutingTable().TryAddPeer(hosts[j].ID(), true, false); ok {
				hosts[i].Peerstore().AddAddrs(hosts[j].ID(), hosts[j].Addrs(), peerstore.PermanentAddrTTL)
			}
		}
		rtSize += d.RoutingTable().Size()
	}
	km.RoutingTableMean = float64(rtSize) / float64(len(dhts))
	fmt.Fprintf(out, "### go-libp2p-kad-dht v0.42.0 on the same network\n\nSame peer IDs and access links; every routing table filled from the whole peer list in a random order (k = 20 per bucket, mean %.1f entries per peer), in %v; server mode, default options (alpha 3, beta 3), auto-refresh off while measuring.\n\n",
		km.RoutingTableMean, time.Since(start).Round(time.Millisecond))

	// Maintenance: kad's periodic work is a routing-table refresh every
	// RefreshInterval (10 min by default): a lookup per bucket. Count what
	// one refresh costs on a sample of peers, unshaped.
	km.RefreshInterval = 10 * time.Minute
	km.Sample = min(f.kadRefreshSample, len(dhts))
	c := sh.Counter(kadProtocol)
	b0, m0 := c.Bytes.Load(), c.Messages.Load()
	for _, i := range rng.Perm(len(dhts))[:km.Sample] {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		select {
		case err = <-dhts[i].RefreshRoutingTable():
		case <-rctx.Done():
			err = rctx.Err()
		}
		cancel()
		if err != nil {
			fmt.Fprintf(out, "kad-dht refresh of peer %d: %v\n\n", i, err)
		}
	}
	if km.Sample > 0 {
		km.BytesPerRefresh = float64(c.Bytes.Load()-b0) / float64(km.Sample)
		km.MessagesPerRefresh = float64(c.Messages.Load()-m0) / float64(km.Sample)
		km.BytesPerPeerSecond = km.BytesPerRefresh / km.RefreshInterval.Seconds()
	}
	fmt.Fprintf(out, "Maintenance: one routing-table refresh (a lookup per bucket, forced, unshaped network; %d peers sampled) costs %.0f messages and %.0f bytes on the kad protocol, network-wide; at one refresh per %v that is **%.1f B/peer/s** sent. This is a floor: kad-dht also answers the lookups of others and pings peers on connection events, counted in the lookup rows below.\n\n",
		km.Sample, km.MessagesPerRefresh, km.BytesPerRefresh, km.RefreshInterval, km.BytesPerPeerSecond)

	for i, h := range hosts {
		sh.Set(h.ID(), access[i])
	}
	net.Shape(sh.LinkOptions, sh.Wrap)

	fmt.Fprintf(out, "| op | pass | lookups | right | errors | latency p50 | p90 | p99 | p50/RTT | p99/RTT | messages/lookup |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	var reps []kadReport
	targets := make([]int, len(qs))
	for i := range targets {
		targets[i] = rng.IntN(len(hosts))
	}
	for _, op := range []string{"GetClosestPeers", "FindPeer"} {
		for pass := 1; pass <= 2; pass++ {
			r := kadLookups(ctx, op, dhts, hosts, qs, targets, f.concurrency, c)
			r.Pass = pass
			reps = append(reps, r)
			fmt.Fprintf(out, "| %s | %d | %d | %.2f%% | %d | %s | %s | %s | %.2f | %.2f | %.1f |\n",
				op, pass, r.Lookups, pct(r.Right, r.Lookups), r.Errors, ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99),
				ratio(r.Latency.P50, rtt.P50), ratio(r.Latency.P99, rtt.P50), r.Messages)
			if r.FirstError != nil {
				defer fmt.Fprintf(out, "First kad-dht %s error (pass %d): %v\n\n", op, pass, r.FirstError)
			}
		}
	}
	fmt.Fprintf(out, "\nRight (GetClosestPeers): the key's true closest peer by XOR distance (other than the asker, which kad-dht never returns) is among the peers returned; (FindPeer): the target peer was found. Targets of FindPeer are random peers the asker has no connection to where there is one (kad-dht answers a connected peer at once, without a lookup).\n\n")
	return reps, km, nil
}

func kadLookups(ctx context.Context, op string, dhts []*dht.IpfsDHT, hosts []host.Host, qs []mockring.Query, targets []int, concurrency int, c *netshape.Counter) kadReport {
	type result struct {
		done, right bool
		latency     time.Duration
		err         error
	}
	results := make([]result, len(qs))
	m0 := c.Messages.Load()
	parallel.Each(ctx, len(qs), concurrency, func(i int) {
		q := qs[i]
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		var r result
		switch op {
		case "GetClosestPeers":
			ps, err := dhts[q.From].GetClosestPeers(lctx, string(q.Key[:]))
			r = result{done: true, latency: time.Since(t), err: err}
			if err == nil {
				r.right = slices.Contains(ps, closest(hosts, q.From, q.Key[:]))
			}
		default:
			// A peer the asker is connected to is answered at
			// once, without a lookup: take the next one that is not.
			target := targets[i]
			if target == q.From {
				target = (target + 1) % len(hosts)
			}
			for k := range len(hosts) {
				t := (targets[i] + k) % len(hosts)
				if t != q.From && hosts[q.From].Network().Connectedness(hosts[t].ID()) != network.Connected {
					target = t
					break
				}
			}
			ai, err := dhts[q.From].FindPeer(lctx, hosts[target].ID())
			r = result{done: true, latency: time.Since(t), err: err}
			r.right = err == nil && ai.ID == hosts[target].ID()
		}
		cancel()
		results[i] = r
	})
	rep := kadReport{Op: op}
	var lat []time.Duration
	for _, r := range results {
		if !r.done {
			continue
		}
		rep.Lookups++
		if r.err != nil {
			if rep.Errors++; rep.FirstError == nil {
				rep.FirstError = r.err
			}
			continue
		}
		lat = append(lat, r.latency)
		if r.right {
			rep.Right++
		}
	}
	rep.Latency = mockring.NewDist(lat)
	rep.Messages = float64(c.Messages.Load()-m0) / float64(max(rep.Lookups, 1))
	return rep
}

// closest is the peer closest to key in kad-dht's XOR metric, other than
// the asker (GetClosestPeers never returns the asker itself).
func closest(hosts []host.Host, asker int, key []byte) p2ppeer.ID {
	best := hosts[(asker+1)%len(hosts)].ID()
	for i, h := range hosts {
		if i != asker && kb.Closer(h.ID(), best, string(key)) {
			best = h.ID()
		}
	}
	return best
}
