// Command ringsim measures the Chord ring of package chord in memory: it
// builds converged rings of 2^min … 2^max peers on a MemNet, then measures
// lookup path length in both lookup modes, maintenance traffic at steady
// state, and lookups right after a share of the peers crashed at once.
// Every lookup is checked against the true ring.
//
//	go run ./testnet/ringsim [-min 6] [-max 14] [-report FILE] ...
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"chordshare/chord"
)

type options struct {
	minExp, maxExp int
	failAt         []int
	vnodes         int
	succList       int
	lookups        int
	want, failWant int
	rounds         int
	backoff        int
	proximity      bool
	latencyN       int
	failShare      float64
	seed           uint64
	report         string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ringsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	cfg := chord.SimConfig(o.vnodes)
	cfg.SuccessorListLen = o.succList
	cfg.Backoff, cfg.Proximity = o.backoff, o.proximity
	if o.failWant == 0 {
		o.failWant = o.succList
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	sizes := o.failAt
	for e := o.minExp; e <= o.maxExp; e++ {
		sizes = append(sizes, 1<<e)
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)

	r := newReport(o, args)
	for _, n := range sizes {
		fmt.Fprintf(os.Stderr, "ringsim: N=%d ...\n", n)
		if err := measure(ctx, r, cfg, o, n); err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
	}
	if o.latencyN > 0 {
		fmt.Fprintf(os.Stderr, "ringsim: latency, N=%d ...\n", o.latencyN)
		if err := measureLatency(ctx, r, cfg, o); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	r.text(stdout)
	if o.report != "" {
		f, err := os.Create(o.report)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		r.markdown(w)
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("ringsim", flag.ContinueOnError)
	fs.IntVar(&o.minExp, "min", 6, "smallest ring: 2^min peers")
	fs.IntVar(&o.maxExp, "max", 14, "largest ring: 2^max peers")
	failAt := fs.String("fail-at", "1024,16384", "comma-separated ring sizes for the failure experiment (empty: none)")
	fs.IntVar(&o.vnodes, "vnodes", 1, "vnodes per peer (1 is comparable with the Chord paper)")
	fs.IntVar(&o.succList, "succlist", chord.DefaultConfig().SuccessorListLen, "successor list length")
	fs.IntVar(&o.lookups, "lookups", 10000, "lookups per ring size and mode")
	fs.IntVar(&o.want, "want", 1, "successors each lookup asks for (1: the paper's lookup)")
	fs.IntVar(&o.failWant, "fail-want", 0, "successors each lookup asks for in the failure experiment (0: the successor list length)")
	fs.IntVar(&o.rounds, "rounds", 64, "maintenance rounds counted at steady state (quiet vnodes back off up to Config.Backoff rounds)")
	fs.IntVar(&o.backoff, "backoff", chord.DefaultConfig().Backoff, "chord Backoff: quiet vnodes run maintenance every 2, 4, ... up to this many rounds")
	fs.BoolVar(&o.proximity, "proximity", chord.DefaultConfig().Proximity, "proximity neighbour selection for fingers")
	fs.IntVar(&o.latencyN, "latency", 0, "also measure lookup latency with and without proximity on a ring of this many peers with 1-1000 ms round trips (0: skip)")
	fs.Float64Var(&o.failShare, "fail", 0.2, "share of peers killed at once in the failure experiment")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of ring layouts, keys and lookup origins")
	fs.StringVar(&o.report, "report", "", "also write a markdown report to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for f := range strings.SplitSeq(*failAt, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			return o, fmt.Errorf("-fail-at: %q is not a ring size of at least 2", f)
		}
		o.failAt = append(o.failAt, n)
	}
	switch {
	case o.minExp < 0 || o.maxExp > 20 || o.minExp > o.maxExp:
		return o, fmt.Errorf("want 0 <= -min <= -max <= 20")
	case o.lookups < 1 || o.want < 1 || o.failWant < 0 || o.rounds < 0:
		return o, fmt.Errorf("-lookups and -want must be positive, -fail-want and -rounds not negative")
	case o.failShare <= 0 || o.failShare >= 1:
		return o, fmt.Errorf("-fail must be in (0, 1)")
	}
	return o, nil
}

// measure builds one ring of n peers and adds its rows to every table.
func measure(ctx context.Context, r *report, cfg chord.Config, o options, n int) error {
	sim, err := chord.NewSim(ctx, cfg, n, o.seed)
	if err != nil {
		return err
	}
	peers := sim.Live()
	r.build.add(n, n*cfg.Vnodes, sim.BuildTime.Round(time.Millisecond), sim.CheckTime.Round(time.Millisecond),
		sim.BuildCalls, f1(float64(sim.BuildCalls)/float64(n)), "yes")

	rng := rand.New(rand.NewPCG(o.seed, uint64(n)))
	lookups := func(want int, mode chord.LookupMode) chord.Summary {
		samples := make([]chord.Sample, o.lookups)
		for i := range samples {
			samples[i] = sim.Lookup(ctx, peers[rng.IntN(len(peers))], randomKey(rng), want, mode)
		}
		return chord.Summarize(samples)
	}

	lg := math.Log2(float64(n))
	meanTarget, p99Target := lg/2+0.5, lg+1
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		s := lookups(o.want, mode)
		if s.Errors > 0 || s.RightShare != 1 {
			return fmt.Errorf("%s lookups on the converged ring: %d failed, %s right", mode, s.Errors, pct(s.RightShare))
		}
		met := "yes"
		if s.MeanHops > meanTarget || float64(s.P99Hops) > p99Target {
			met = "NO"
		}
		r.hops.add(n, mode, s.Lookups, f2(s.MeanHops), s.P50Hops, s.P99Hops, s.Max,
			f2(meanTarget), f2(p99Target), met, f2(s.CallsPerLookup))
		r.targetsMet = r.targetsMet && met == "yes"
	}

	if o.rounds > 0 {
		c := counts(sim.Net)
		for range o.rounds {
			chord.Round(ctx, peers)
		}
		d := counts(sim.Net).minus(c)
		per := func(x int64) float64 { return float64(x) / float64(n*o.rounds) }
		correct := "yes"
		if err := sim.Check(); err != nil {
			correct = "NO: " + err.Error()
		}
		lookupRPCs := d.findSuccessor + d.nextHop
		r.maint.add(n, o.rounds, f2(per(d.neighbors)), f2(per(d.changed)), f2(per(d.ping)), f2(per(d.owns)), f2(per(lookupRPCs)),
			f2(per(d.neighbors+d.changed+d.ping+d.owns+lookupRPCs)), correct)
	}

	if !slices.Contains(o.failAt, n) {
		return nil
	}
	// The baseline: the same lookups on the whole ring.
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		r.fail.addSummary(n, "0", mode, o.failWant, lookups(o.failWant, mode))
	}
	killed := int(math.Round(o.failShare * float64(n)))
	sim.Kill(killed, rng)
	peers = sim.Live()
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		r.fail.addSummary(n, fmt.Sprintf("%d (%s)", killed, pct(o.failShare)), mode, o.failWant, lookups(o.failWant, mode))
	}
	rounds, err := chord.Converge(ctx, peers, 1000)
	if err != nil {
		return fmt.Errorf("after the failure: %w", err)
	}
	r.reconverge.add(n, killed, cfg.Backoff, rounds)
	return nil
}

// measureLatency builds two rings of o.latencyN peers whose round trips
// are drawn from 1 to 1000 ms (chord.AccessDelays: each peer's access
// delay log-uniform in [0.5, 500] ms, a round trip the sum of the two),
// one without and one with proximity neighbour selection, runs
// latencyRounds maintenance rounds on each, and times
// lookups on the virtual clock, as multiples of the median round trip
// between two random peers.
// latencyRounds is how many maintenance rounds run on a latency ring
// before its lookups are timed: about four minutes at the default
// intervals.
const latencyRounds = 128

func measureLatency(ctx context.Context, r *report, cfg chord.Config, o options) error {
	delay := chord.AccessDelays(500*time.Microsecond, 500*time.Millisecond, o.seed)
	for _, pns := range []bool{false, true} {
		c := cfg
		c.Proximity = pns
		sim, err := chord.NewLatencySim(ctx, c, o.latencyN, o.seed, delay)
		if err != nil {
			return err
		}
		peers := sim.Live()
		// Quiet maintenance first: proximity probes a few unknown
		// candidates per refresh, so the choice widens as it runs.
		for range latencyRounds {
			chord.Round(ctx, peers)
		}
		rng := rand.New(rand.NewPCG(o.seed, 99))
		var rtts []time.Duration
		for range 10000 {
			a, b := peers[rng.IntN(len(peers))], peers[rng.IntN(len(peers))]
			if a != b {
				rtts = append(rtts, delay(a.Addr(), b.Addr())+delay(b.Addr(), a.Addr()))
			}
		}
		slices.Sort(rtts)
		medRTT := rtts[len(rtts)/2]
		for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
			var lat []time.Duration
			hops := 0
			for range o.lookups {
				s := sim.Lookup(ctx, peers[rng.IntN(len(peers))], randomKey(rng), o.want, mode)
				if s.Err != nil || !s.Right {
					return fmt.Errorf("lookup failed or wrong: %v", s.Err)
				}
				lat = append(lat, s.Latency)
				hops += s.Hops
			}
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
			ms := func(d time.Duration) string { return f1(float64(d.Microseconds()) / 1000) }
			r.latency.add(o.latencyN, mode, pns, o.lookups, f2(float64(hops)/float64(o.lookups)), ms(medRTT),
				ms(p50), ms(p99), f2(float64(p50)/float64(medRTT)), f2(float64(p99)/float64(medRTT)))
		}
	}
	return nil
}

func randomKey(rng *rand.Rand) chord.ID {
	var id chord.ID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

type callCounts struct{ findSuccessor, nextHop, neighbors, changed, owns, ping int64 }

func counts(m *chord.MemNet) callCounts {
	return callCounts{m.Calls.FindSuccessor.Load(), m.Calls.NextHop.Load(), m.Calls.Neighbors.Load(),
		m.Calls.Changed.Load(), m.Calls.Owns.Load(), m.Calls.Ping.Load()}
}

func (a callCounts) minus(b callCounts) callCounts {
	return callCounts{a.findSuccessor - b.findSuccessor, a.nextHop - b.nextHop, a.neighbors - b.neighbors,
		a.changed - b.changed, a.owns - b.owns, a.ping - b.ping}
}

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
func pct(x float64) string {
	return strconv.FormatFloat(100*x, 'f', 2, 64) + "%"
}
