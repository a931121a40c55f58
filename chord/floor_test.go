package chord

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// No iterative lookup beats IterativeFloor, on a ring whose round trips
// range over three orders of magnitude: it is a floor. And it is tight:
// lookups of more than one hop happen, and some of them take exactly the
// floor's time (a floor lowered by any margin would never be met; about 1
// in 10 multi-hop lookups meets it here).
func TestIterativeFloorIsAFloor(t *testing.T) {
	ctx := context.Background()
	delay := AccessDelays(500*time.Microsecond, 500*time.Millisecond, 5)
	cfg := DefaultConfig()
	cfg.Vnodes = 2
	sim, err := NewLatencySim(ctx, cfg, 100, 5, delay)
	if err != nil {
		t.Fatal(err)
	}
	peers := sim.Live()
	for range 8 {
		Round(ctx, peers)
	}
	rtt := func(a, b string) time.Duration { return delay(a, b) + delay(b, a) }
	floor := IterativeFloor(peers, rtt)
	rng := rand.New(rand.NewPCG(5, 6))
	multi, exact := 0, 0
	for range 1000 {
		from, key := peers[rng.IntN(len(peers))], randomID(rng)
		f, hops := floor(from, key)
		s := sim.Lookup(ctx, from, key, 1, Iterative)
		if s.Err != nil || !s.Right {
			t.Fatalf("lookup: %v, right %v", s.Err, s.Right)
		}
		if f < 0 || s.Latency < f {
			t.Errorf("lookup of %s from %s took %v, floor %v (%d hops)", key, from.Addr(), s.Latency, f, hops)
		}
		if hops > 1 {
			multi++
			if s.Latency == f {
				exact++
			}
		}
	}
	if multi == 0 || exact == 0 {
		t.Errorf("of %d lookups needing more than one hop at the floor, %d took the floor's time", multi, exact)
	}
}

// TestLookupTrace (opt-in: CHORD_LOOKUP_TRACE=<vnodes per peer>) times
// 3,000 lookups of each mode on 1,000 peers with round trips of 1–1000 ms
// (AccessDelays, the testnet's heterogeneous model) after 128 maintenance
// rounds, and logs, as multiples of the median round trip: the latency
// percentiles, IterativeFloor's (iterative) or the one-round-trip floor's
// (recursive: the asker's round trip to the fastest peer that can answer),
// and for the slowest 1% each lookup's hops against the floor's and the
// asker's access delay and that of each peer it called. About 5 minutes
// with one vnode.
//
//	CHORD_LOOKUP_TRACE=1 go test ./chord -run TestLookupTrace -v -timeout 30m
func TestLookupTrace(t *testing.T) {
	vnodes, err := strconv.Atoi(os.Getenv("CHORD_LOOKUP_TRACE"))
	if err != nil {
		t.Skip("set CHORD_LOOKUP_TRACE=<vnodes per peer> to run")
	}
	ctx := context.Background()
	access := AccessDelays(500*time.Microsecond, 500*time.Millisecond, 1)
	acc := func(a string) time.Duration { return access(a, a) }
	var mu sync.Mutex
	var called *[]string // the peers the asker sends to, while a lookup runs
	var asker string
	delay := func(a, b string) time.Duration {
		mu.Lock()
		if called != nil && a == asker {
			*called = append(*called, b)
		}
		mu.Unlock()
		return access(a, b)
	}
	cfg := DefaultConfig()
	cfg.Vnodes = vnodes
	sim, err := NewLatencySim(ctx, cfg, 1000, 1, delay)
	if err != nil {
		t.Fatal(err)
	}
	peers := sim.Live()
	for range 128 {
		Round(ctx, peers)
	}
	rtt := func(a, b string) time.Duration { return acc(a) + acc(b) }
	iterFloor := IterativeFloor(peers, rtt)
	// The recursive floor: one round trip to the fastest peer that can
	// answer; IterativeFloor on a state where everyone knows everyone.
	recFloor := func(from *Node, key ID) (time.Duration, int) {
		best, hops := time.Duration(-1), 1
		for _, p := range peers {
			for _, v := range p.vns() {
				if _, ok := v.ownsSuccessor(key, 1); !ok {
					continue
				}
				if p == from {
					return 0, 0
				}
				if d := rtt(from.addr, p.addr); best < 0 || d < best {
					best = d
				}
			}
		}
		return best, hops
	}
	rng := rand.New(rand.NewPCG(1, 99))
	var rtts []time.Duration
	for range 10000 {
		a, b := peers[rng.IntN(len(peers))], peers[rng.IntN(len(peers))]
		if a != b {
			rtts = append(rtts, rtt(a.addr, b.addr))
		}
	}
	slices.Sort(rtts)
	med := float64(rtts[len(rtts)/2])
	x := func(d time.Duration) float64 { return float64(d) / med }
	type trace struct {
		from         string
		latency, fl  time.Duration
		hops, flHops int
		called       []string
	}
	const count = 3000
	for _, mode := range []LookupMode{Iterative, Recursive} {
		floor := iterFloor
		if mode == Recursive {
			floor = recFloor
		}
		var ts []trace
		for range count {
			from, key := peers[rng.IntN(len(peers))], randomID(rng)
			fl, flHops := floor(from, key)
			var c []string
			mu.Lock()
			called, asker = &c, from.addr
			mu.Unlock()
			s := sim.Lookup(ctx, from, key, 1, mode)
			mu.Lock()
			called = nil
			mu.Unlock()
			if s.Err != nil || !s.Right {
				t.Fatalf("lookup: %v, right %v", s.Err, s.Right)
			}
			ts = append(ts, trace{from.addr, s.Latency, fl, s.Hops, flHops, c})
		}
		pct := func(get func(trace) time.Duration, p int) time.Duration {
			v := make([]time.Duration, len(ts))
			for i, tr := range ts {
				v[i] = get(tr)
			}
			slices.Sort(v)
			return v[len(v)*p/100]
		}
		lat := func(tr trace) time.Duration { return tr.latency }
		fl := func(tr trace) time.Duration { return tr.fl }
		t.Logf("%s, %d vnodes per peer, median RTT %v: latency p50 %.2f p99 %.2f; floor p50 %.2f p99 %.2f",
			mode, vnodes, time.Duration(med), x(pct(lat, 50)), x(pct(lat, 99)), x(pct(fl, 50)), x(pct(fl, 99)))
		slices.SortFunc(ts, func(a, b trace) int { return int(b.latency - a.latency) })
		slow := ts[:count/100]
		hops, flHops := 0, 0
		for _, tr := range slow {
			hops += tr.hops
			flHops += tr.flHops
			line := ""
			for _, c := range tr.called {
				line += " " + acc(c).Round(time.Millisecond).String()
			}
			t.Logf("  %.2f (floor %.2f, %d hops): %d hops, asker's access %v, called:%s",
				x(tr.latency), x(tr.fl), tr.flHops, tr.hops, acc(tr.from).Round(time.Millisecond), line)
		}
		t.Logf("%s: slowest 1%%: %.2f hops on average, the floor's %.2f", mode, float64(hops)/float64(len(slow)), float64(flHops)/float64(len(slow)))
	}
}
