package chord

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// NewSim must leave every ring verified, including the shapes its targeted
// stabilization finds hardest: a lone peer with more vnodes than a successor
// list holds, and peers whose vnodes land inside each other's lists.
func TestSimBuildsConvergedRings(t *testing.T) {
	for _, c := range []struct{ peers, vnodes int }{
		{1, 1}, {1, 5}, {1, 40}, {2, 17}, {3, 40}, {5, 8}, {40, 3}, {100, 1},
	} {
		if _, err := NewSim(context.Background(), SimConfig(c.vnodes), c.peers, 1); err != nil {
			t.Errorf("%d peers × %d vnodes: %v", c.peers, c.vnodes, err)
		}
	}
}

// Path length on small rings, held to issue 2's targets in the default run;
// BenchmarkLookupHops and testnet/ringsim measure the large ones.
func TestSimLookupPathLength(t *testing.T) {
	for _, peers := range []int{64, 256} {
		s := newSimT(t, peers)
		rng := rand.New(rand.NewPCG(3, uint64(peers)))
		lg := math.Log2(float64(peers))
		for _, mode := range []LookupMode{Recursive, Iterative} {
			sum := Summarize(simLookups(s, rng, 2000, 1, mode))
			t.Logf("N=%d %s: mean %.2f p50 %d p99 %d hops", peers, mode, sum.MeanHops, sum.P50Hops, sum.P99Hops)
			if sum.Errors > 0 || sum.RightShare != 1 {
				t.Errorf("N=%d %s: %d errors, %.4f right", peers, mode, sum.Errors, sum.RightShare)
			}
			if sum.MeanHops > lg/2+0.5 || float64(sum.P99Hops) > lg+1 {
				t.Errorf("N=%d %s: mean %.2f, p99 %d hops; want <= %.1f and <= %.0f", peers, mode, sum.MeanHops, sum.P99Hops, lg/2+0.5, lg+1)
			}
		}
	}
}

// Lookups right after a fifth of the peers crashed: every failed call is
// counted, and the first live successor returned is still the right one.
func TestSimLookupsAfterFailure(t *testing.T) {
	s := newSimT(t, 128)
	rng := rand.New(rand.NewPCG(4, 4))
	s.Kill(26, rng)
	for _, mode := range []LookupMode{Recursive, Iterative} {
		sum := Summarize(simLookups(s, rng, 500, s.cfg.SuccessorListLen, mode))
		if sum.FirstLiveShare != 1 {
			t.Errorf("%s: first live successor right in %.4f of lookups", mode, sum.FirstLiveShare)
		}
		if sum.FailedPerLookup == 0 {
			t.Errorf("%s: no failed call counted with 20%% of peers dead", mode)
		}
	}
}

func TestSummarize(t *testing.T) {
	hops := func(hs ...int) []Sample {
		var s []Sample
		for _, h := range hs {
			s = append(s, Sample{Hops: h, Calls: int64(h), Right: true, FirstLive: true})
		}
		return s
	}
	cases := []struct {
		name          string
		samples       []Sample
		mean          float64
		p50, p99, max int
		right         float64
	}{
		{name: "none", samples: nil},
		{name: "one", samples: hops(3), mean: 3, p50: 3, p99: 3, max: 3, right: 1},
		{name: "nearest rank", samples: hops(4, 1, 3, 2), mean: 2.5, p50: 2, p99: 4, max: 4, right: 1},
		{name: "p99 of 100 is the 99th", samples: append(hops(make([]int, 98)...), hops(7, 9)...),
			mean: 0.16, p50: 0, p99: 7, max: 9, right: 1},
		{name: "failed lookups count as wrong but have no hops",
			samples: append(hops(2), Sample{Err: errors.New("x"), Calls: 4}), mean: 2, p50: 2, p99: 2, max: 2, right: 0.5},
	}
	for _, c := range cases {
		s := Summarize(c.samples)
		if math.Abs(s.MeanHops-c.mean) > 1e-9 || s.P50Hops != c.p50 || s.P99Hops != c.p99 || s.Max != c.max || s.RightShare != c.right {
			t.Errorf("%s: %+v", c.name, s)
		}
	}
}

func newSimT(tb testing.TB, peers int) *Sim {
	tb.Helper()
	// One position per peer, as in the Chord paper's figures.
	s, err := NewSim(context.Background(), SimConfig(1), peers, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func simLookups(s *Sim, rng *rand.Rand, count, want int, mode LookupMode) []Sample {
	live := s.Live()
	out := make([]Sample, count)
	for i := range out {
		out[i] = s.Lookup(context.Background(), live[rng.IntN(len(live))], randomID(rng), want, mode)
	}
	return out
}

// benchRings keeps one ring per size across sub-benchmarks: the recursive and
// iterative runs measure the same ring, and a ring of 2^14 peers takes far
// longer to build than the lookups on it.
var benchRings = map[int]*Sim{}

func benchRing(b *testing.B, peers int) *Sim {
	if s, ok := benchRings[peers]; ok {
		return s
	}
	s := newSimT(b, peers)
	benchRings[peers] = s
	return s
}

// BenchmarkLookupHops measures lookup path length on converged rings of 2^6 …
// 2^14 peers (one vnode each), for random keys from random peers. ns/op is
// the in-memory cost of a lookup. Select sizes with e.g.
// -bench 'LookupHops/N=1024/'.
func BenchmarkLookupHops(b *testing.B) {
	for exp := 6; exp <= 14; exp += 2 {
		for _, mode := range []LookupMode{Recursive, Iterative} {
			b.Run(fmt.Sprintf("N=%d/%s", 1<<exp, mode), func(b *testing.B) {
				s := benchRing(b, 1<<exp)
				rng := rand.New(rand.NewPCG(5, uint64(exp)))
				var samples []Sample
				for b.Loop() {
					samples = append(samples, simLookups(s, rng, 1, 1, mode)...)
				}
				sum := Summarize(samples)
				if sum.Errors > 0 || sum.RightShare != 1 {
					b.Fatalf("%d of %d lookups failed, %.4f right", sum.Errors, sum.Lookups, sum.RightShare)
				}
				b.ReportMetric(sum.MeanHops, "mean-hops")
				b.ReportMetric(float64(sum.P50Hops), "p50-hops")
				b.ReportMetric(float64(sum.P99Hops), "p99-hops")
				b.ReportMetric(sum.CallsPerLookup, "rpcs/lookup")
			})
		}
	}
}

// BenchmarkSimBuild measures building and verifying a converged ring.
func BenchmarkSimBuild(b *testing.B) {
	for exp := 10; exp <= 14; exp += 2 {
		b.Run(fmt.Sprintf("N=%d", 1<<exp), func(b *testing.B) {
			for b.Loop() {
				newSimT(b, 1<<exp)
			}
			b.ReportMetric(float64(int(1)<<exp), "peers")
		})
	}
}

// Proximity neighbour selection on a ring whose round trips span 1 ms to
// 1 s: lookups take less time with it than without, in both modes.
func TestProximityShortensLookups(t *testing.T) {
	delay := AccessDelays(500*time.Microsecond, 500*time.Millisecond, 1)
	median := func(samples []Sample) time.Duration {
		var ls []time.Duration
		for _, x := range samples {
			if x.Err != nil || !x.Right {
				t.Fatalf("lookup failed or wrong: %+v", x)
			}
			ls = append(ls, x.Latency)
		}
		slices.Sort(ls)
		return ls[len(ls)/2]
	}
	for _, mode := range []LookupMode{Recursive, Iterative} {
		var got [2]time.Duration
		for i, pns := range []bool{false, true} {
			cfg := SimConfig(1)
			cfg.Proximity = pns
			s, err := NewLatencySim(context.Background(), cfg, 128, 1, delay)
			if err != nil {
				t.Fatal(err)
			}
			got[i] = median(simLookups(s, rand.New(rand.NewPCG(5, 5)), 300, 1, mode))
		}
		t.Logf("%s: median lookup %v without proximity, %v with", mode, got[0], got[1])
		if got[1] >= got[0] {
			t.Errorf("%s: proximity did not shorten the median lookup (%v, without %v)", mode, got[1], got[0])
		}
	}
}
