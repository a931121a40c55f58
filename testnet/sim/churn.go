package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	mh "github.com/multiformats/go-multihash"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/internal/ctxtime"
	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

type churnFlags struct {
	common
	scale                   float64
	duration, session, down time.Duration
	quiet                   float64
	lookupRate, putRate     float64
	blockSize               int
	mode                    string
}

func churnCmd(ctx context.Context, args []string, out io.Writer) error {
	var f churnFlags
	fs := flag.NewFlagSet("churn", flag.ContinueOnError)
	f.register(fs, 200)
	fs.Float64Var(&f.scale, "scale", 10, "time scale: protocol intervals and session times are divided by it (network delays are not)")
	fs.DurationVar(&f.duration, "duration", 30*time.Minute, "scenario length, simulated time")
	fs.DurationVar(&f.session, "session", 30*time.Minute, "median session time (exponential), simulated time")
	fs.DurationVar(&f.down, "down", 5*time.Minute, "median time until a crashed peer's place is taken by a new peer (exponential), simulated time")
	fs.Float64Var(&f.quiet, "quiet", 0.3, "share of the scenario run without the workload, to count maintenance alone")
	fs.Float64Var(&f.lookupRate, "lookup-rate", 10, "lookups per second (wall clock), network-wide")
	fs.Float64Var(&f.putRate, "put-rate", 2, "block puts per second (wall clock), network-wide")
	fs.IntVar(&f.blockSize, "block-size", 4096, "bytes per block put")
	fs.StringVar(&f.mode, "lookup", "recursive", "lookup mode: recursive or iterative")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.parse(); err != nil {
		return err
	}
	header(out, fmt.Sprintf("Churn: %d peers, %s, profile %s, time scale %g", f.peers, f.vnodesDesc(), f.profile, f.scale), append([]string{"churn"}, args...))
	rep, err := runChurn(ctx, f)
	if err != nil {
		return err
	}
	rep.write(out, f)
	fmt.Fprintf(out, "Load average at the end: %s.\n\n", cpustat.LoadAvg())
	return nil
}

// churnReport is what a churn scenario measured.
type churnReport struct {
	Build                        time.Duration
	Wall                         time.Duration
	Crashes, Joins, JoinFailures int
	LiveMin, LiveMax             int
	LiveMean                     float64
	// Maintenance during the quiet part, per live peer and simulated second.
	QuietSim               time.Duration
	MaintCalls, MaintBytes float64
	// Lookups during the workload.
	Lookups, LookupErrors, Right, FirstLive int
	Hops                                    float64
	Latency                                 mockring.Dist
	FirstLookupError                        error
	FirstWrong                              error // the oracle's complaint about the first wrong answer not due to a newcomer
	WrongNewcomer                           int   // wrong only because the true successor joined within newcomerWindow
	OriginGone                              int   // lookups and failed puts whose asker crashed before the answer
	// Blocks.
	Puts, Acked               int
	FirstPutError             error
	WithLiveCopy, Retrievable int
	Lateness                  mockring.Dist
}

func (r churnReport) write(out io.Writer, f churnFlags) {
	fmt.Fprintf(out, "Built converged (stepped, no delays) in %v; then every peer's timers (peer.Node.Run) ran with intervals ÷ %g (stabilize %v, fix-fingers %v, check-predecessor %v), for %v of simulated time (%v of wall clock). Sessions: exponential, median %v; a crashed peer's place (its access link) is taken by a new peer (new identity, empty store) after an exponential delay of median %v. Lookups: %s, want 1. A rejoin is a new peer: a crashed peer's blocks are gone with it.\n\n",
		r.Build.Round(time.Millisecond), f.scale, scaledDur(2*time.Second, f.scale), scaledDur(2*time.Second, f.scale), scaledDur(4*time.Second, f.scale),
		f.duration, r.Wall.Round(time.Millisecond), f.session, f.down, f.mode)
	fmt.Fprintf(out, "| crashes | joins | failed joins | live peers min / mean / max | timer lateness p50 / p99 / max |\n|---|---|---|---|---|\n| %d | %d | %d | %d / %.1f / %d | %s / %s / %s |\n\n",
		r.Crashes, r.Joins, r.JoinFailures, r.LiveMin, r.LiveMean, r.LiveMax, ms(r.Lateness.P50), ms(r.Lateness.P99), ms(r.Lateness.Max))
	fmt.Fprintf(out, "Maintenance alone (first %v simulated, no workload), per live peer and simulated second: **%.2f calls, %.0f B** of ring payload sent.\n\n", r.QuietSim.Round(time.Second), r.MaintCalls, r.MaintBytes)
	fmt.Fprintf(out, "| lookups | right | wrong: the successor joined < %v before | first live right | errors | hops mean | latency p50 | p90 | p99 |\n|---|---|---|---|---|---|---|---|---|\n| %d | %.2f%% | %.2f%% | %.2f%% | %d | %.2f | %s | %s | %s |\n\n",
		time.Duration(float64(newcomerWindowSim)).Round(time.Second), r.Lookups, pct(r.Right, r.Lookups), pct(r.WrongNewcomer, r.Lookups), pct(r.FirstLive, r.Lookups), r.LookupErrors, r.Hops, ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99))
	fmt.Fprintf(out, "Not counted: %d lookups and failed puts whose asker crashed before the answer.\n\n", r.OriginGone)
	fmt.Fprintf(out, "Right: the first node returned is the key's successor among the peers live when the answer came (Oracle.CheckLookup); first live right: the first live node returned is (CheckFirstLive). Latencies are wall clock: the network's delays are not scaled.\n\n")
	fmt.Fprintf(out, "| blocks put | acknowledged (W = 2 of r = 3) | at the end: a live peer holds a copy | lost (no live copy) | retrievable by Get from a random live peer |\n|---|---|---|---|---|\n| %d | %d | %d | %d | %d |\n\n",
		r.Puts, r.Acked, r.WithLiveCopy, r.Acked-r.WithLiveCopy, r.Retrievable)
	if r.FirstLookupError != nil {
		fmt.Fprintf(out, "First lookup error: %v\n\n", r.FirstLookupError)
	}
	if r.FirstWrong != nil {
		fmt.Fprintf(out, "First wrong answer: %v\n\n", r.FirstWrong)
	}
	if r.FirstPutError != nil {
		fmt.Fprintf(out, "First put error: %v\n\n", r.FirstPutError)
	}
}

// newcomerWindowSim is how recent (simulated time) a join must be for a
// lookup that misses the newcomer to be counted apart: a few stabilization
// rounds, the time its predecessors need to learn of it.
const newcomerWindowSim = 10 * time.Second

func (cn *churnNet) newcomerWindow() time.Duration { return scaledDur(newcomerWindowSim, cn.f.scale) }

func scaledDur(d time.Duration, scale float64) time.Duration {
	return time.Duration(float64(d) / scale)
}

// expDuration draws an exponential duration of the given median.
func expDuration(rng *mrand.Rand, median time.Duration) time.Duration {
	return time.Duration(rng.ExpFloat64() * float64(median) / math.Ln2)
}

// churnNet is the running scenario: which peers are up, their stores and
// the stop functions of their timers.
type churnNet struct {
	*simRing
	f      churnFlags
	base   peer.Config
	dir    string
	stores sync.Map // *peer.Node -> *blocks.Store
	joined sync.Map // peer address -> time.Time it joined (absent: at the start)

	mu                           sync.Mutex
	stops                        map[*peer.Node]context.CancelFunc
	timers                       sync.WaitGroup
	crashes, joins, joinFailures int
}

func runChurn(ctx context.Context, f churnFlags) (churnReport, error) {
	var rep churnReport
	if f.scale <= 0 || f.duration <= 0 || f.session <= 0 || f.down <= 0 || f.quiet < 0 || f.quiet >= 1 {
		return rep, errors.New("want -scale, -duration, -session, -down positive and 0 <= -quiet < 1")
	}
	dir, err := os.MkdirTemp("", "chordsim-churn-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	base := scaled(f.chordConfig(peer.DefaultConfig()), f.scale)
	cn := &churnNet{f: f, base: base, dir: dir, stops: map[*peer.Node]context.CancelFunc{}}
	start := time.Now()
	var storeErr error
	first := make([]peer.BlockStore, f.peers)
	s, _, err := buildRing(ctx, f.common, base, func(i int, a netshape.Access) peer.Config {
		cfg, err := cn.config(fmt.Sprintf("p%d", i), a)
		if err != nil && storeErr == nil {
			storeErr = err
		}
		first[i] = cfg.Store
		return cfg
	})
	if err != nil {
		return rep, err
	}
	defer s.Close()
	if storeErr != nil {
		return rep, storeErr
	}
	cn.simRing = s
	for i, n := range s.Nodes {
		if first[i] != nil {
			cn.stores.Store(n, first[i])
		}
	}
	defer cn.stores.Range(func(_, v any) bool { v.(*blocks.Store).Close(); return true })
	rep.Build = time.Since(start)
	s.shape()

	runCtx, stopAll := context.WithCancel(ctx)
	defer func() { stopAll(); cn.timers.Wait() }()
	for _, n := range s.Nodes {
		cn.run(runCtx, n)
	}
	wall := time.Duration(float64(f.duration) / f.scale)
	quiet := time.Duration(float64(wall) * f.quiet)
	late := mockring.Lateness(ctx)
	start = time.Now()

	// Churn: one goroutine per place (access link): up for a session, then
	// crashed, then after a while a new peer takes the place.
	churnCtx, stopChurn := context.WithTimeout(runCtx, wall)
	defer stopChurn()
	var places sync.WaitGroup
	var liveSum, liveSamples atomic.Int64
	rep.LiveMin = len(s.Nodes)
	for i, n := range s.Nodes {
		rng := mrand.New(mrand.NewPCG(f.seed, uint64(i)+1))
		places.Go(func() { cn.place(churnCtx, i, n, rng) })
	}
	// Sample the live count.
	places.Go(func() {
		t := time.NewTicker(wall / 100)
		defer t.Stop()
		for {
			select {
			case <-churnCtx.Done():
				return
			case <-t.C:
				k := len(s.Live())
				liveSum.Add(int64(k))
				liveSamples.Add(1)
				cn.mu.Lock()
				rep.LiveMin, rep.LiveMax = min(rep.LiveMin, k), max(rep.LiveMax, k)
				cn.mu.Unlock()
			}
		}
	})

	// Quiet part: maintenance alone.
	before := mockring.Totals(cn.allNodes())
	liveAtStart := len(s.Live())
	if err := ctxtime.Sleep(churnCtx, quiet); err != nil && ctx.Err() != nil {
		return rep, ctx.Err()
	}
	d := mockring.Totals(cn.allNodes())
	meanLive := float64(liveAtStart+len(s.Live())) / 2
	simQuiet := time.Duration(float64(quiet) * f.scale)
	rep.QuietSim = simQuiet
	rep.MaintCalls = float64(d.CallsOut-before.CallsOut) / meanLive / simQuiet.Seconds()
	rep.MaintBytes = float64(d.BytesOut-before.BytesOut) / meanLive / simQuiet.Seconds()

	// Workload until the end of the scenario.
	mode, err := chord.ParseLookupMode(f.mode)
	if err != nil {
		return rep, err
	}
	w := newWorkload(runCtx, cn, mode)
	w.run(churnCtx, f.lookupRate, f.putRate)
	places.Wait()
	rep.Wall = time.Since(start)
	rep.Lateness = late()
	if liveSamples.Load() > 0 {
		rep.LiveMean = float64(liveSum.Load()) / float64(liveSamples.Load())
	}
	cn.mu.Lock()
	rep.Crashes, rep.Joins, rep.JoinFailures = cn.crashes, cn.joins, cn.joinFailures
	cn.mu.Unlock()
	w.report(&rep)

	// Blocks at the end, timers still running: does a live peer hold a
	// copy, and can a random live peer get it?
	live := s.Live()
	rng := mrand.New(mrand.NewPCG(f.seed, 0x656e64))
	var retrievable atomic.Int64
	var gets sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, b := range w.acked {
		for _, n := range live {
			if st := cn.storeOf(n); st != nil && st.Has(b) {
				rep.WithLiveCopy++
				break
			}
		}
		n := live[rng.IntN(len(live))]
		sem <- struct{}{}
		gets.Go(func() {
			defer func() { <-sem }()
			gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := n.Get(gctx, b); err == nil {
				retrievable.Add(1)
			}
		})
	}
	gets.Wait()
	rep.Retrievable = int(retrievable.Load())
	return rep, nil
}

// config is a peer's config: its vnodes from its access link, and a block
// store of its own unless it is a client.
func (cn *churnNet) config(name string, a netshape.Access) (peer.Config, error) {
	cfg := cn.base
	cfg.Chord.Vnodes = cn.f.vnodesOf(a)
	if cfg.Chord.Vnodes > 0 {
		st, err := blocks.Open(filepath.Join(cn.dir, name), blocks.Options{})
		if err != nil {
			return cfg, err
		}
		cfg.Store = st
	}
	return cfg, nil
}

// storeOf is n's block store (nil for a client).
func (cn *churnNet) storeOf(n *peer.Node) *blocks.Store {
	if v, ok := cn.stores.Load(n); ok {
		return v.(*blocks.Store)
	}
	return nil
}

func (cn *churnNet) allNodes() []*peer.Node {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return append([]*peer.Node(nil), cn.Nodes...)
}

// run starts n's timers.
func (cn *churnNet) run(ctx context.Context, n *peer.Node) {
	ctx, stop := context.WithCancel(ctx)
	cn.mu.Lock()
	cn.stops[n] = stop
	cn.mu.Unlock()
	cn.timers.Go(func() { n.Run(ctx) })
}

// place runs one place of the network: its peer lives a session, crashes,
// and a new peer with the same access link joins after a while.
func (cn *churnNet) place(ctx context.Context, i int, n *peer.Node, rng *mrand.Rand) {
	a := cn.access[i]
	for gen := 1; ; gen++ {
		if ctxtime.Sleep(ctx, scaledDur(expDuration(rng, cn.f.session), cn.f.scale)) != nil {
			return
		}
		cn.mu.Lock()
		stop := cn.stops[n]
		delete(cn.stops, n)
		cn.crashes++
		cn.mu.Unlock()
		stop()
		_ = cn.CrashNode(n)
		for {
			if ctxtime.Sleep(ctx, scaledDur(expDuration(rng, cn.f.down), cn.f.scale)) != nil {
				return
			}
			cfg, err := cn.config(fmt.Sprintf("p%d-%d", i, gen), a)
			if err != nil {
				cn.mu.Lock()
				cn.joinFailures++
				cn.mu.Unlock()
				continue
			}
			jctx, cancel := context.WithTimeout(ctx, cn.base.Chord.LookupTimeout)
			m, err := cn.AddNode(jctx, cfg, func(h host.Host) { cn.shaper.Set(h.ID(), a) })
			cancel()
			if err != nil {
				cn.mu.Lock()
				cn.joinFailures++
				cn.mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if cfg.Store != nil {
				cn.stores.Store(m, cfg.Store)
			}
			cn.joined.Store(string(m.Host().ID()), time.Now())
			cn.mu.Lock()
			cn.joins++
			cn.mu.Unlock()
			cn.run(ctx, m)
			n = m
			break
		}
	}
}

// workload makes lookups and puts at fixed rates from random live peers.
type workload struct {
	// life bounds every request: it outlives the scenario's end, so work in
	// flight then completes, and ends with the run.
	life context.Context
	cn   *churnNet
	mode chord.LookupMode

	mu         sync.Mutex
	rng        *mrand.Rand
	lookups    []lookupResult
	originGone int // lookups and puts whose asker crashed before the answer: not counted
	puts       int
	acked      []cid.Cid
	firstPut   error
}

type lookupResult struct {
	newcomer    bool // wrong because the true successor joined within newcomerWindow
	err, wrong  error
	hops        int
	latency     time.Duration
	right, live bool
}

func newWorkload(life context.Context, cn *churnNet, mode chord.LookupMode) *workload {
	return &workload{life: life, cn: cn, mode: mode, rng: mrand.New(mrand.NewPCG(cn.f.seed, 0x776f726b))}
}

// run issues work until ctx ends, then waits for what is in flight.
func (w *workload) run(ctx context.Context, lookupRate, putRate float64) {
	var wg sync.WaitGroup
	every := func(rate float64, do func()) {
		if rate <= 0 {
			return
		}
		wg.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					wg.Go(do)
				}
			}
		})
	}
	every(lookupRate, w.lookup)
	every(putRate, w.put)
	wg.Wait()
}

func (w *workload) pick(storing bool) *peer.Node {
	live := w.cn.Live()
	w.mu.Lock()
	defer w.mu.Unlock()
	for range 100 {
		n := live[w.rng.IntN(len(live))]
		if !storing || w.cn.storeOf(n) != nil {
			return n
		}
	}
	return nil
}

func (w *workload) lookup() {
	n := w.pick(false)
	var key chord.ID
	_, _ = rand.Read(key[:])
	ctx, cancel := context.WithTimeout(w.life, w.cn.base.Chord.LookupTimeout)
	defer cancel()
	t := time.Now()
	res, err := n.Chord().LookupMode(ctx, key, 1, w.mode)
	r := lookupResult{err: err, hops: res.Hops, latency: time.Since(t)}
	if w.cn.Dead(n) {
		w.mu.Lock()
		w.originGone++
		w.mu.Unlock()
		return // the asker crashed meanwhile: its answer says nothing
	}
	if err == nil {
		o := w.cn.Oracle()
		r.wrong = o.CheckLookup(key, res)
		r.right = r.wrong == nil
		if !r.right {
			// A peer that joined moments ago is not yet in its
			// predecessors' lists: count those misses apart.
			if at, ok := w.cn.joined.Load(o.Successor(key).Addr); ok && time.Since(at.(time.Time)) < w.cn.newcomerWindow() {
				r.newcomer = true
			}
		}
		r.live = o.CheckFirstLive(key, res, func(ref chord.Ref) bool { return w.cn.Net.Alive(p2pID(ref.Addr)) }) == nil
	}
	w.mu.Lock()
	w.lookups = append(w.lookups, r)
	w.mu.Unlock()
}

func (w *workload) put() {
	n := w.pick(true)
	if n == nil {
		return
	}
	data := make([]byte, w.cn.f.blockSize)
	_, _ = rand.Read(data)
	sum, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		return
	}
	c := cid.NewCidV1(cid.Raw, sum)
	ctx, cancel := context.WithTimeout(w.life, w.cn.base.Chord.LookupTimeout)
	defer cancel()
	err = n.Put(ctx, c, data)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && w.cn.Dead(n) {
		w.originGone++
		return
	}
	w.puts++
	if err != nil {
		if w.firstPut == nil {
			w.firstPut = err
		}
		return
	}
	w.acked = append(w.acked, c)
}

func (w *workload) report(rep *churnReport) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lat []time.Duration
	hops := 0
	for _, r := range w.lookups {
		rep.Lookups++
		if r.err != nil {
			if rep.LookupErrors++; rep.FirstLookupError == nil {
				rep.FirstLookupError = r.err
			}
			continue
		}
		lat = append(lat, r.latency)
		hops += r.hops
		switch {
		case r.right:
			rep.Right++
		case r.newcomer:
			rep.WrongNewcomer++
		case rep.FirstWrong == nil:
			rep.FirstWrong = r.wrong
		}
		if r.live {
			rep.FirstLive++
		}
	}
	if len(lat) > 0 {
		rep.Hops = float64(hops) / float64(len(lat))
	}
	rep.Latency = mockring.NewDist(lat)
	rep.Puts, rep.Acked, rep.FirstPutError = w.puts, len(w.acked), w.firstPut
	rep.OriginGone = w.originGone
}

func p2pID(addr string) p2ppeer.ID { return p2ppeer.ID(addr) }
