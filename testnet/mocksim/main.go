// Command mocksim measures a ring of peer.Node on libp2p's mocknet: real
// streams, protobuf messages and libp2p plumbing, one process, shaped
// links. It builds a converged ring by stepping maintenance (no timers),
// then, with every link given the same one-way latency, measures:
//
//  1. lookup hops, recursive and iterative, each answer checked against
//     the true ring;
//  2. lookup latency, also as a multiple of the measured round trip;
//  3. maintenance traffic per peer with the timers running (peer.Node.Run);
//  4. memory per peer, against the bare mocknet hosts of the same run;
//  5. lookups right after a share of the peers crashed at once.
//
// It prints a markdown report on stdout and progress on stderr.
//
//	go run ./testnet/mocksim -n 1000 -capacity 8 -latency 10ms
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"time"

	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"
)

type options struct {
	peers, capacity        int
	latency                time.Duration
	links                  mockring.LinkMode
	lookups, parallel      int
	rttSamples             int
	warmup, window         time.Duration
	failShare              float64
	seed                   uint64
	maxRounds, phaseRounds int
	phaseWarmup, backoff   int
	proximity              bool
	timersGOGC             int
	skipMaint, skipFail    bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mocksim:", err)
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mocksim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.peers, "n", 1000, "peers on the ring")
	fs.IntVar(&o.capacity, "capacity", chord.DefaultConfig().Vnodes, "vnodes per peer")
	fs.DurationVar(&o.latency, "latency", 10*time.Millisecond, "one-way delay of every link")
	links := fs.String("links", "lazy", "when peers are linked: lazy (at first dial) or pairs (every pair up front)")
	fs.IntVar(&o.lookups, "lookups", 2000, "lookups per mode and experiment")
	fs.IntVar(&o.parallel, "parallel", 16, "lookups in flight at once")
	fs.IntVar(&o.rttSamples, "rtt-samples", 200, "round trips measured between random peers")
	fs.DurationVar(&o.warmup, "warmup", 10*time.Second, "timers run this long before traffic is counted")
	fs.DurationVar(&o.window, "window", 60*time.Second, "maintenance traffic is counted over this window")
	fs.Float64Var(&o.failShare, "fail", 0.2, "share of peers crashed at once")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of peer IDs, bootstrap choices, lookups and crashes")
	fs.IntVar(&o.maxRounds, "max-rounds", 50, "maintenance rounds allowed for the built ring to check right")
	fs.IntVar(&o.phaseRounds, "phase-rounds", 30, "maintenance rounds stepped to count each phase's traffic (fix-fingers needs a whole cycle of fingers)")
	fs.IntVar(&o.phaseWarmup, "phase-warmup", 2*chord.DefaultConfig().Backoff, "rounds stepped, uncounted, before the stepped count and before the crash, so quiet vnodes have backed off")
	fs.IntVar(&o.backoff, "backoff", chord.DefaultConfig().Backoff, "chord Backoff: quiet vnodes run maintenance every 2, 4, ... up to this many intervals (1: every interval)")
	fs.BoolVar(&o.proximity, "proximity", chord.DefaultConfig().Proximity, "proximity neighbour selection for fingers")
	fs.IntVar(&o.timersGOGC, "timers-gogc", 400, "GOGC while the timers run")
	fs.BoolVar(&o.skipMaint, "skip-maintenance", false, "do not run the timers")
	fs.BoolVar(&o.skipFail, "skip-failure", false, "do not crash peers")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.links, err = mockring.ParseLinkMode(*links); err != nil {
		return o, err
	}
	switch {
	case o.peers < 2:
		return o, fmt.Errorf("-n %d: want at least 2 peers", o.peers)
	case o.capacity < 1 || o.capacity > chord.MaxVnodes:
		return o, fmt.Errorf("-capacity %d: want 1..%d", o.capacity, chord.MaxVnodes)
	case o.latency < 0 || o.lookups < 1 || o.parallel < 1 || o.rttSamples < 1:
		return o, fmt.Errorf("-latency must not be negative; -lookups, -parallel and -rtt-samples must be positive")
	case o.window <= 0 || o.warmup < 0:
		return o, fmt.Errorf("-window must be positive, -warmup not negative")
	case o.failShare <= 0 || o.failShare >= 1:
		return o, fmt.Errorf("-fail %v: want a share in (0, 1)", o.failShare)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	cfg := peer.DefaultConfig()
	cfg.Chord.Vnodes = o.capacity
	cfg.Chord.Backoff = o.backoff
	cfg.Chord.Proximity = o.proximity
	if err := cfg.Validate(); err != nil {
		return err
	}
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "mocksim: "+format+"\n", a...)
	}
	rep := &report{w: stdout, o: o, cfg: cfg.Chord}
	rep.header(args, runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), cpustat.LoadAvg())

	memBase := mockring.ReadMem()
	r, err := mockring.NewRing(mockring.Options{Peers: o.peers, Config: cfg, Links: o.links, Seed: o.seed})
	if err != nil {
		return err
	}
	defer r.Close()
	memHosts := mockring.ReadMem()
	linksBare := r.Net.Links()

	progress("building a ring of %d peers × %d vnodes (links: %s) ...", o.peers, o.capacity, o.links)
	build, err := r.Build(ctx, o.maxRounds)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	rep.build(build)
	memRing := mockring.ReadMem()
	connsRing, linksRing := r.ConnsPerPeer(), r.Net.Links()

	r.SetLatency(o.latency)
	rtt, err := r.EchoRTT(ctx, o.rttSamples)
	if err != nil {
		return fmt.Errorf("round trips: %w", err)
	}
	rep.roundTrip(rtt)

	qs := r.Queries(o.lookups)
	var rows []lookupRow
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		for pass := 1; pass <= 2; pass++ {
			progress("%s lookups, pass %d ...", mode, pass)
			rows = append(rows, lookupRow{pass, r.Lookups(ctx, qs, mode, 1, o.parallel)})
		}
	}
	rep.lookups(rows)
	rep.memory([]memRow{
		{"bare mocknet hosts", memHosts, fmt.Sprint(linksBare), "0", memBase},
		{"+ ring nodes, built", memRing, fmt.Sprint(linksRing), fmt.Sprintf("%.1f", connsRing), memBase},
		{"+ lookups done", mockring.ReadMem(), fmt.Sprint(r.Net.Links()), fmt.Sprintf("%.1f", r.ConnsPerPeer()), memBase},
		{"ring nodes alone (built − bare hosts)", memRing, "–", "–", memHosts},
	})

	if !o.skipMaint {
		// Stepped rounds send the same calls at any latency; without it
		// they take seconds instead of minutes.
		progress("%d + %d stepped maintenance rounds ...", o.phaseWarmup, o.phaseRounds)
		r.SetLatency(0)
		phases := r.PhaseCalls(ctx, o.phaseWarmup, o.phaseRounds)
		r.SetLatency(o.latency)
		progress("timers running: %v warm-up, %v window ...", o.warmup, o.window)
		before := cpustat.LoadAvg()
		// A thousand peers share one heap here, and collecting it while
		// the timers run stalls them all at once, which real peers in
		// their own processes never see: collect less often meanwhile.
		gc := debug.SetGCPercent(o.timersGOGC)
		m, err := r.Maintenance(ctx, o.warmup, o.window)
		debug.SetGCPercent(gc)
		if err != nil {
			return fmt.Errorf("maintenance: %w", err)
		}
		near, fingers := r.SRTTs()
		rep.maintenance(m, phases, before, cpustat.LoadAvg(), near, fingers)
	}

	if !o.skipFail {
		// The crash hits a ring known to be right. Repairing whatever the
		// timers left needs no latency and is much faster without.
		progress("stepped rounds until the ring is right ...")
		r.SetLatency(0)
		rounds, err := r.Converge(ctx, o.maxRounds)
		if err != nil {
			return fmt.Errorf("before the crash: %w", err)
		}
		// Quiet rounds first, so the crash meets vnodes at their
		// backed-off intervals, as it would on a quiet ring.
		r.PhaseCalls(ctx, o.phaseWarmup, 0)
		r.SetLatency(o.latency)
		killed, err := r.Crash(o.failShare)
		if err != nil {
			return fmt.Errorf("crash: %w", err)
		}
		qs := r.Queries(o.lookups)
		var rows []mockring.LookupReport
		for _, want := range []int{1, cfg.Chord.SuccessorListLen} {
			for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
				progress("%s lookups (want %d) after %d peers crashed ...", mode, want, len(killed))
				rows = append(rows, r.Lookups(ctx, qs, mode, want, o.parallel))
			}
		}
		progress("stepped rounds until the ring is right again ...")
		r.SetLatency(0)
		after, err := r.Converge(ctx, o.maxRounds)
		if err != nil {
			return fmt.Errorf("after the crash: %w", err)
		}
		rep.failure(len(killed), rounds, rows, after)
	}
	rep.p("Load average at the end: %s.", cpustat.LoadAvg())
	return ctx.Err()
}
