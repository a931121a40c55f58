// Command churnsim measures repair under churn on libp2p's mocknet: real
// peer.Nodes (ring, block and repair protocols, real block stores) with
// their timers running, peers crashing after exponential session times and
// new ones joining in their place, while probes look up keys and fetch
// blocks. Every interval and session is divided by -scale, so that a ring
// with 2-second stabilization and 10-minute sessions runs in minutes;
// figures are reported in simulated time.
//
// `sim churn` (testnet/sim) is the other churn harness and asks another
// question: whether lookups stay right and fast, with real timers on shaped
// links, so its figures follow the machine's load. This one asks whether
// blocks survive: its churn runs step the clock (no timers, no delays, so
// the load does not matter), every block is checked on its true preference
// list, and it times a crash to full replication. Their churn differs too:
// here a crashed peer is replaced at once and the blocks are stored before
// the churn; there a place stays empty for a drawn down time and blocks come
// from a put workload. What they share is mockring.Net, internal/ctxtime
// and internal/cpustat.
//
//	go run ./testnet/churnsim -report testnet/churnsim/REPORT.md
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/internal/ctxtime"
	"chordshare/peer"
)

type options struct {
	peers, blocks, size, vnodes int
	scale                       float64
	medians                     []time.Duration
	duration                    time.Duration
	seed                        uint64
	crashPeers                  int
	crashBlocks                 []int
	crashRuns                   int
	skipChurn, skipCrash        bool
	skipTimers                  bool
	crashSize                   int
	crashRate                   int64
	tick                        time.Duration
	lookupsPerTick              int
	fetchesPerTick              int
}

func main() {
	var o options
	var medians, crashBlocks, report string
	flag.IntVar(&o.peers, "n", 200, "peers in the churn runs")
	flag.IntVar(&o.blocks, "blocks", 10000, "blocks stored (r = 3) in the churn runs")
	flag.IntVar(&o.size, "size", 1024, "block size in bytes")
	flag.IntVar(&o.vnodes, "vnodes", 1, "vnodes per peer")
	flag.Float64Var(&o.scale, "scale", 10, "crash runs: simulated seconds per wall-clock second")
	flag.DurationVar(&o.tick, "tick", time.Second, "churn runs: simulated time step")
	flag.IntVar(&o.lookupsPerTick, "lookups", 20, "churn runs: lookups per tick")
	flag.IntVar(&o.fetchesPerTick, "fetches", 5, "churn runs: fetches per tick")
	flag.StringVar(&medians, "medians", "10m,2.8m,1.4m,40s,20s", "median session times (simulated), one churn run each")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "simulated length of each churn run")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed")
	flag.IntVar(&o.crashPeers, "crash-n", 50, "peers in the crash-to-replication runs")
	flag.StringVar(&crashBlocks, "crash-blocks", "1000,4000,16000", "blocks stored in the crash-to-replication runs")
	flag.IntVar(&o.crashRuns, "crash-runs", 3, "crashes per crash-to-replication run")
	flag.BoolVar(&o.skipChurn, "no-churn", false, "skip the churn runs")
	flag.BoolVar(&o.skipCrash, "no-crash", false, "skip the crash-to-replication runs")
	flag.IntVar(&o.crashSize, "crash-size", 4096, "block size in the crash runs with real timers")
	flag.Int64Var(&o.crashRate, "crash-rate", 256<<10, "repair rate (bytes/s per peer, wall clock) in the crash runs with real timers")
	flag.BoolVar(&o.skipTimers, "no-timers", false, "skip the crash-to-replication runs with real timers")
	flag.StringVar(&report, "report", "", "also write a Markdown report to this file")
	flag.Parse()
	var err error
	if o.medians, err = parseDurations(medians); err != nil {
		fail(err)
	}
	if o.crashBlocks, err = parseInts(crashBlocks); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var out io.Writer = os.Stdout
	var buf strings.Builder
	if report != "" {
		out = io.MultiWriter(os.Stdout, &buf)
	}
	if err := run(ctx, o, out); err != nil {
		fail(err)
	}
	if report != "" {
		if err := os.WriteFile(report, []byte(buf.String()), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "churnsim:", err)
	os.Exit(1)
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("bad duration %q", f)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// scaledConfig is the daemon's configuration with every interval divided
// by scale. Timeouts are not scaled: they guard against a loaded machine,
// which does not get faster with the simulated clock.
func scaledConfig(o options) peer.Config {
	cfg := peer.DefaultConfig()
	c := chord.TestConfig()
	d := chord.DefaultConfig()
	sc := func(x time.Duration) time.Duration { return time.Duration(float64(x) / o.scale) }
	c.Vnodes = o.vnodes
	c.StabilizeInterval = sc(d.StabilizeInterval)
	c.FixFingerInterval = sc(d.FixFingerInterval)
	c.CheckPredecessorInterval = sc(d.CheckPredecessorInterval)
	cfg.Chord = c
	r := peer.DefaultRepairConfig()
	cfg.Repair.Check = sc(r.Check)
	cfg.Repair.Interval = sc(r.Interval)
	cfg.Repair.Rate = o.crashRate
	cfg.Repair.LeaveMemory = sc(r.LeaveMemory)
	return cfg
}

func run(ctx context.Context, o options, out io.Writer) error {
	fmt.Fprintf(out, "# Repair under churn (testnet/churnsim)\n\n")
	fmt.Fprintf(out, "`go run ./testnet/churnsim %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(out, "Run %s on %s/%s, %d CPUs (GOMAXPROCS %d), shared with other work (load average at start: %s).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), cpustat.LoadAvg())
	fmt.Fprintf(out, "Links: mocknet, no added latency. r = 3, %d vnode(s) per peer, blocks of %d bytes, stored in real "+
		"block stores (tmpfs). Intervals are the daemon's defaults: stabilize 2 s, fix-fingers 2 s, check-predecessor 4 s, "+
		"repair check 1 s, full repair round 60 s.\n\n", o.vnodes, o.size)
	if !o.skipChurn {
		cfg := peer.DefaultConfig()
		cfg.Chord.Vnodes = o.vnodes
		cfg.Repair.Rate = 0 // RPCs take no simulated time; bytes are counted instead
		// A BUSY answer's wait is wall time, which the simulated clock
		// does not see: no summary budget.
		cfg.Repair.ScanRate = 0
		if err := churnRuns(ctx, o, cfg, out); err != nil {
			return err
		}
	}
	if !o.skipCrash {
		cfg := peer.DefaultConfig()
		cfg.Chord.Vnodes = o.vnodes
		cfg.Repair.Rate, cfg.Repair.ScanRate = 0, 0
		if err := crashSteppedRuns(ctx, o, cfg, out); err != nil {
			return err
		}
		if o.skipTimers {
			return nil
		}
		if err := crashRuns(ctx, o, scaledConfig(o), out); err != nil {
			return err
		}
	}
	return nil
}

type churnResult struct {
	median                           time.Duration
	deaths                           int
	lost, missingEnd, missingSettled int
	settle                           time.Duration // simulated
	lookups, lookupOK, lookupRight   int64
	fetches, fetchOK                 int64
	ringBps, repairBps               float64 // per peer per simulated second
	cpu, wall                        time.Duration
}

func churnRuns(ctx context.Context, o options, cfg peer.Config, out io.Writer) error {
	fmt.Fprintf(out, "## Continuous churn: %d peers, %d blocks, %v simulated per run\n\n", o.peers, o.blocks, o.duration)
	fmt.Fprintf(out, "Simulated time in steps of %v: in each step, sessions that ended crash, every live peer runs each "+
		"maintenance step (stabilize, check-predecessor, fix-fingers, repair check) with probability step/interval, "+
		"then %d lookups and %d fetches probe the ring. RPCs take no simulated time (a dead peer fails at once on mocknet), "+
		"so the figures do not depend on the machine's load. ", o.tick, o.lookupsPerTick, o.fetchesPerTick)
	fmt.Fprintf(out, "Each peer lives an exponentially distributed session, then crashes (no goodbye) and a new peer "+
		"with an empty store joins through a random live peer, so the ring keeps %d peers. "+
		"Lookups: a random live peer looks up a random key (answered: no error; right: the first live peer of the answer "+
		"is the true successor among the live peers when it returns). Fetches: a random live peer gets a random block through "+
		"the network path (peer.Node.Get). Lost: blocks no live peer holds at the end. Missing: copies absent from "+
		"the true preference lists at the end of the churn, and after it stops and the ring settles. "+
		"Bytes are per peer per simulated second: ring maintenance (every ring RPC, requests and responses, "+
		"as in testnet/mocksim) and repair (blocks moved, including the handoff to joiners, plus range summaries).\n\n", o.peers)
	fmt.Fprintln(out, "| median session | deaths | lost | missing at end / settled (after) | lookups answered | lookups right | fetches ok | ring B/peer/s | repair B/peer/s | CPU / wall |")
	fmt.Fprintln(out, "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, m := range o.medians {
		r, err := churnRun(ctx, o, cfg, m)
		if err != nil {
			return fmt.Errorf("churn at median %v: %w", m, err)
		}
		fmt.Fprintf(out, "| %v | %d | %d | %d / %d (%v) | %s | %s | %s | %.0f | %.0f | %v / %v |\n",
			m, r.deaths, r.lost, r.missingEnd, r.missingSettled, r.settle.Round(time.Second),
			pct(r.lookupOK, r.lookups), pct(r.lookupRight, r.lookups), pct(r.fetchOK, r.fetches),
			r.ringBps, r.repairBps, r.cpu.Round(time.Second), r.wall.Round(time.Second))
	}
	fmt.Fprintln(out)
	return nil
}

func pct(a, b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%% of %d", 100*float64(a)/float64(b), b)
}

// churnRun steps a ring through simulated time, one tick at a time:
// sessions that end crash their peer and a new one joins; each live peer
// runs each maintenance step with the probability that its interval gives
// (a timer re-armed at random, as the daemon's are); then probes run on
// the ring as it stands. RPCs take no simulated time, so the figures do
// not depend on how loaded the machine is.
func churnRun(ctx context.Context, o options, cfg peer.Config, median time.Duration) (churnResult, error) {
	res := churnResult{median: median}
	s, err := newSim(cfg, o.seed, o.scale)
	if err != nil {
		return res, err
	}
	defer s.close()
	if err := s.build(ctx, o.peers); err != nil {
		return res, err
	}
	if err := s.seed(o.blocks, o.size); err != nil {
		return res, err
	}
	now := time.Unix(0, 0).UTC() // the simulated clock
	for _, p := range s.live {
		p.dies = now.Add(exp(s.rng, median))
	}
	ring0, rep0 := s.traffic()
	cpu0, wall0 := cpustat.ProcessTime(), time.Now()
	var pr probes
	ticks := int(o.duration / o.tick)
	for range ticks {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		now = now.Add(o.tick)
		for _, p := range s.liveSnapshot() {
			if p.dies.After(now) {
				continue
			}
			s.crash(p)
			res.deaths++
			np, err := s.joinNew(ctx, false)
			if err != nil {
				fmt.Fprintf(os.Stderr, "churnsim: join failed: %v\n", err)
				continue
			}
			np.dies = now.Add(exp(s.rng, median))
		}
		s.maintain(ctx, cfg, o.tick, now)
		s.probe(ctx, &pr, o.lookupsPerTick, o.fetchesPerTick)
	}
	res.wall, res.cpu = time.Since(wall0), cpustat.ProcessTime()-cpu0
	ring1, rep1 := s.traffic()
	simSeconds := o.duration.Seconds()
	res.ringBps = float64(ring1-ring0) / float64(o.peers) / simSeconds
	res.repairBps = float64(rep1-rep0) / float64(o.peers) / simSeconds
	res.lost, res.missingEnd = s.copies()
	res.lookups, res.lookupOK, res.lookupRight = pr.lookups.Load(), pr.lookupOK.Load(), pr.lookupRight.Load()
	res.fetches, res.fetchOK = pr.fetches.Load(), pr.fetchOK.Load()

	// Churn stops: how long until every block has r copies again.
	res.missingSettled = res.missingEnd
	for res.settle = 0; res.missingSettled > 0 && res.settle < 10*time.Minute && ctx.Err() == nil; res.settle += o.tick {
		now = now.Add(o.tick)
		s.maintain(ctx, cfg, o.tick, now)
		_, res.missingSettled = s.copies()
	}
	fmt.Fprintf(os.Stderr, "median %v: %d deaths, lost %d, missing %d -> %d in %v, lookups %d/%d/%d, fetches %d/%d, wall %v\n",
		median, res.deaths, res.lost, res.missingEnd, res.missingSettled, res.settle, res.lookupRight, res.lookupOK, res.lookups,
		res.fetchOK, res.fetches, res.wall.Round(time.Second))
	return res, ctx.Err()
}

func crashRuns(ctx context.Context, o options, cfg peer.Config, out io.Writer) error {
	fmt.Fprintf(out, "## Crash to full replication: %d peers, one crash at a time\n\n", o.crashPeers)
	fmt.Fprintf(out, "Real timers here (peer.Node.Run), every interval divided by %g: 1 wall second = %g simulated seconds; "+
		"repair paced at %d B/s per peer of wall clock; blocks of %d bytes. RTO %v..%v (wall, not scaled). ",
		o.scale, o.scale, cfg.Repair.Rate, o.crashSize, cfg.Chord.MinRTO, cfg.Chord.MaxRTO)
	fmt.Fprintf(out, "A stable ring with its timers running; a random peer crashes; time until every block is back on "+
		"all r peers of its true preference list (polled every %v wall), in simulated seconds.\n\n", 50*time.Millisecond)
	fmt.Fprintln(out, "| blocks on the ring | blocks the dead peer held | their bytes | time to full replication (simulated) | wall |")
	fmt.Fprintln(out, "| ---: | ---: | ---: | ---: | ---: |")
	for _, count := range o.crashBlocks {
		s, err := newSim(cfg, o.seed+uint64(count), o.scale)
		if err != nil {
			return err
		}
		if err := s.build(ctx, o.crashPeers); err != nil {
			s.close()
			return err
		}
		if err := s.seed(count, o.crashSize); err != nil {
			s.close()
			return err
		}
		for _, p := range s.live {
			s.start(p)
		}
		for range o.crashRuns {
			live := s.liveSnapshot()
			victim := live[s.rng.IntN(len(live))]
			held := victim.st.Stats().Count
			start := time.Now()
			s.crash(victim)
			missing := 1
			for missing > 0 && time.Since(start) < 2*time.Minute && ctx.Err() == nil {
				_ = ctxtime.Sleep(ctx, 50*time.Millisecond) // the loop checks ctx
				_, missing = s.copies()
			}
			took := time.Since(start)
			state := ""
			if missing > 0 {
				state = fmt.Sprintf(" (not done: %d copies missing)", missing)
			}
			fmt.Fprintf(out, "| %d | %d | %s | %.1f s%s | %v |\n", count, held, peer.FormatSize(int64(held*o.crashSize)),
				took.Seconds()*o.scale, state, took.Round(10*time.Millisecond))
		}
		s.close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprintln(out)
	return nil
}

// crashSteppedRuns crash one peer at a time on a stepped ring (as the
// churn runs step it) and count the simulated seconds until every block is
// on its r replicas again: the time failure detection and repair
// scheduling take, transfers being instant.
func crashSteppedRuns(ctx context.Context, o options, cfg peer.Config, out io.Writer) error {
	fmt.Fprintf(out, "## Crash to full replication on the simulated clock: %d peers\n\n", o.crashPeers)
	fmt.Fprintf(out, "Stepped as the churn runs are (steps of %v); RPCs and transfers take no simulated time, so this is "+
		"the time failure detection and repair scheduling take. Each row: one crash of a random peer, the ring "+
		"quiet before it.\n\n", o.tick)
	fmt.Fprintln(out, "| blocks on the ring | blocks the dead peer held | copies to restore | time to full replication (simulated) | blocks moved |")
	fmt.Fprintln(out, "| ---: | ---: | ---: | ---: | ---: |")
	for _, count := range o.crashBlocks {
		s, err := newSim(cfg, o.seed+uint64(count), o.scale)
		if err != nil {
			return err
		}
		err = func() error {
			defer s.close()
			if err := s.build(ctx, o.crashPeers); err != nil {
				return err
			}
			if err := s.seed(count, o.size); err != nil {
				return err
			}
			now := time.Unix(0, 0).UTC()
			for range 5 { // every peer's first (due) round
				now = now.Add(o.tick)
				s.maintain(ctx, cfg, o.tick, now)
			}
			for range o.crashRuns {
				live := s.liveSnapshot()
				victim := live[s.rng.IntN(len(live))]
				held := victim.st.Stats().Count
				_, moved0 := s.moved()
				s.crash(victim)
				_, missing := s.copies()
				restore := missing
				var took time.Duration
				for missing > 0 && took < 10*time.Minute && ctx.Err() == nil {
					now = now.Add(o.tick)
					took += o.tick
					s.maintain(ctx, cfg, o.tick, now)
					_, missing = s.copies()
				}
				_, moved1 := s.moved()
				state := ""
				if missing > 0 {
					state = fmt.Sprintf(" (not done: %d missing)", missing)
				}
				fmt.Fprintf(out, "| %d | %d | %d | %v%s | %d |\n", count, held, restore, took, state, moved1-moved0)
			}
			return ctx.Err()
		}()
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(out)
	return nil
}
