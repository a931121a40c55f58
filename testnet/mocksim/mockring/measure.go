package mockring

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/internal/ctxtime"
	"chordshare/peer"
	"chordshare/testnet/internal/parallel"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Traffic is a sum of peer.RingStats.
type Traffic struct {
	CallsOut, CallsIn, BytesOut, BytesIn, FailedCalls int64
}

// Totals sums the ring traffic counters of nodes.
func Totals(nodes []*peer.Node) Traffic {
	var t Traffic
	for _, n := range nodes {
		s := n.Stats()
		t.CallsOut += s.CallsOut.Load()
		t.CallsIn += s.CallsIn.Load()
		t.BytesOut += s.BytesOut.Load()
		t.BytesIn += s.BytesIn.Load()
		t.FailedCalls += s.FailedCalls.Load()
	}
	return t
}

func (t Traffic) minus(u Traffic) Traffic {
	return Traffic{t.CallsOut - u.CallsOut, t.CallsIn - u.CallsIn, t.BytesOut - u.BytesOut,
		t.BytesIn - u.BytesIn, t.FailedCalls - u.FailedCalls}
}

// echoProtocol answers one message with the same bytes, the shape of a
// ring RPC (new stream, request, close-write, response), so its round trip
// is what one ring call costs on the network without the work behind it.
const echoProtocol = "/mocksim/echo/1.0.0"

func registerEcho(h host.Host) {
	h.SetStreamHandler(echoProtocol, func(s network.Stream) {
		defer s.Close()
		b, err := io.ReadAll(io.LimitReader(s, 64))
		if err != nil {
			s.Reset()
			return
		}
		_, _ = s.Write(b)
	})
}

func echo(ctx context.Context, from, to host.Host) (time.Duration, error) {
	start := time.Now()
	s, err := from.NewStream(ctx, to.ID(), echoProtocol)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if _, err := s.Write([]byte("ping")); err != nil {
		return 0, err
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	if _, err := io.ReadAll(s); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// EchoRTT measures the round trip of one request and response between
// count random pairs of live peers, on a connection already open (the
// first exchange of each pair opens it and is not counted).
func (r *Ring) EchoRTT(ctx context.Context, count int) (Dist, error) {
	live := r.Live()
	var samples []time.Duration
	for range count {
		a, b := live[r.rng.IntN(len(live))], live[r.rng.IntN(len(live))]
		if a == b {
			continue
		}
		if _, err := echo(ctx, a.Host(), b.Host()); err != nil {
			return Dist{}, err
		}
		d, err := echo(ctx, a.Host(), b.Host())
		if err != nil {
			return Dist{}, err
		}
		samples = append(samples, d)
	}
	return NewDist(samples), nil
}

// Dist summarizes durations with nearest-rank percentiles.
type Dist struct {
	N                              int
	Mean, P50, P90, P99, P999, Max time.Duration
}

// NewDist summarizes xs.
func NewDist(xs []time.Duration) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	var sum time.Duration
	for _, x := range xs {
		sum += x
	}
	return Dist{
		N: len(xs), Mean: sum / time.Duration(len(xs)),
		P50: Rank(xs, 0.50), P90: Rank(xs, 0.90), P99: Rank(xs, 0.99), P999: Rank(xs, 0.999), Max: xs[len(xs)-1],
	}
}

// Rank is the nearest-rank p-quantile of sorted (p = 0.99: the p99).
func Rank[T any](sorted []T, p float64) T {
	return sorted[max(int(math.Ceil(p*float64(len(sorted))))-1, 0)]
}

// Query is one lookup to make: from the live peer at index From of Live()
// as it was when the query was drawn (draw again after a crash), for Key.
type Query struct {
	From int
	Key  chord.ID
}

// Queries draws count random lookups among the live peers.
func (r *Ring) Queries(count int) []Query {
	live := len(r.Live())
	qs := make([]Query, count)
	for i := range qs {
		qs[i].From = r.rng.IntN(live)
		for j := range qs[i].Key {
			qs[i].Key[j] = byte(r.rng.Uint32())
		}
	}
	return qs
}

// LookupReport summarizes a batch of lookups.
type LookupReport struct {
	Mode        chord.LookupMode
	Want        int
	Lookups     int
	Errors      int
	Right       int // first successor returned is the true one (Oracle.CheckLookup)
	FirstLive   int // first live successor returned is the true one (Oracle.CheckFirstLive)
	MeanHops    float64
	P50Hops     int
	P99Hops     int
	MaxHops     int
	Latency     Dist  // of the lookups that returned an answer
	Calls       int64 // ring RPCs sent by all peers during the batch
	FailedCalls int64
	FirstError  error
	// Lateness is how late the simulator's timers ran during the batch.
	Lateness Dist
	// Spans are the lookups that returned an answer: who asked, when.
	Spans []LookupSpan
}

// LookupSpan is one lookup's origin and time.
type LookupSpan struct {
	From       p2ppeer.ID
	Start, End time.Time
}

// CallsPerLookup is the mean number of ring RPCs per lookup.
func (l LookupReport) CallsPerLookup() float64 {
	if l.Lookups == 0 {
		return 0
	}
	return float64(l.Calls) / float64(l.Lookups)
}

// Lookups runs qs in the given mode, concurrency at a time, each asking for
// want successors, and checks each answer against the true ring of live
// peers. Nothing else may use the ring meanwhile: the RPC counts are
// network-wide. If ctx ends first, the report covers the lookups made.
func (r *Ring) Lookups(ctx context.Context, qs []Query, mode chord.LookupMode, want, concurrency int) LookupReport {
	live := r.Live()
	o := r.Oracle()
	type result struct {
		done        bool
		hops        int
		latency     time.Duration
		start       time.Time
		err         error
		right, live bool
	}
	results := make([]result, len(qs))
	before := Totals(r.Nodes)
	late := lateness(ctx)
	parallel.Each(ctx, len(qs), concurrency, func(i int) {
		q := qs[i]
		t := time.Now()
		res, err := live[q.From].Chord().LookupMode(ctx, q.Key, want, mode)
		results[i] = result{done: true, hops: res.Hops, latency: time.Since(t), start: t, err: err}
		if err == nil {
			results[i].right = o.CheckLookup(q.Key, res) == nil
			results[i].live = o.CheckFirstLive(q.Key, res, r.alive) == nil
		}
	})
	rep := LookupReport{Mode: mode, Want: want, Lateness: late()}
	d := Totals(r.Nodes).minus(before)
	rep.Calls, rep.FailedCalls = d.CallsOut, d.FailedCalls
	var hops []int
	var lat []time.Duration
	for i, x := range results {
		if !x.done {
			continue
		}
		rep.Lookups++
		if x.err != nil {
			if rep.Errors++; rep.FirstError == nil {
				rep.FirstError = x.err
			}
			continue
		}
		hops = append(hops, x.hops)
		lat = append(lat, x.latency)
		rep.Spans = append(rep.Spans, LookupSpan{live[qs[i].From].Host().ID(), x.start, x.start.Add(x.latency)})
		if x.right {
			rep.Right++
		}
		if x.live {
			rep.FirstLive++
		}
	}
	if len(hops) > 0 {
		slices.Sort(hops)
		sum := 0
		for _, h := range hops {
			sum += h
		}
		rep.MeanHops = float64(sum) / float64(len(hops))
		rep.P50Hops, rep.P99Hops, rep.MaxHops = Rank(hops, 0.50), Rank(hops, 0.99), hops[len(hops)-1]
	}
	rep.Latency = NewDist(lat)
	return rep
}

// MaintenanceReport is the ring traffic of the maintenance timers.
type MaintenanceReport struct {
	Peers          int
	Warmup, Window time.Duration
	Traffic        Traffic // during the window, all peers together
	// CPU is the process's user+system CPU time during the window: if it
	// nears Window × Procs the simulator could not keep up with the timers
	// and the rates undercount a real ring's.
	CPU   time.Duration
	Procs int // GOMAXPROCS
	// Lateness is how late the simulator's timers ran during the window.
	Lateness Dist
	// RightRunning: the ring checked right at the end of the window, the
	// timers still running. RightStopped: checked again once every timer
	// loop had returned.
	RightRunning, RightStopped error
}

// CallsPerPeerSecond is the mean ring RPCs each peer sent per second.
func (m MaintenanceReport) CallsPerPeerSecond() float64 {
	return float64(m.Traffic.CallsOut) / float64(m.Peers) / m.Window.Seconds()
}

// BytesPerPeerSecond is the mean ring message bytes each peer sent per
// second (requests it made and responses it served).
func (m MaintenanceReport) BytesPerPeerSecond() float64 {
	return float64(m.Traffic.BytesOut) / float64(m.Peers) / m.Window.Seconds()
}

// Maintenance runs every live peer's timers (peer.Node.Run) for warmup,
// counts their traffic over window, stops them and reports.
func (r *Ring) Maintenance(ctx context.Context, warmup, window time.Duration) (MaintenanceReport, error) {
	live := r.Live()
	rep := MaintenanceReport{Peers: len(live), Warmup: warmup, Window: window, Procs: runtime.GOMAXPROCS(0)}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, n := range live {
		wg.Go(func() { n.Run(runCtx) })
	}
	defer func() { stop(); wg.Wait() }()
	if err := ctxtime.Sleep(ctx, warmup); err != nil {
		return rep, err
	}
	before, cpu0 := Totals(live), cpustat.ProcessTime()
	late := lateness(ctx)
	err := ctxtime.Sleep(ctx, window)
	rep.Lateness = late()
	if err != nil {
		return rep, err
	}
	rep.Traffic, rep.CPU = Totals(live).minus(before), cpustat.ProcessTime()-cpu0
	rep.RightRunning = r.Oracle().Check(r.Chords())
	stop()
	wg.Wait()
	rep.RightStopped = r.Oracle().Check(r.Chords())
	return rep, nil
}

// Lateness starts measuring how late the process's timers run (see
// lateness); the function it returns stops and reports.
func Lateness(ctx context.Context) (stop func() Dist) { return lateness(ctx) }

// lateness measures how late a goroutine that sleeps 10 ms at a time
// wakes up, until stop is called: when the simulator's process is short of
// CPU (its own work, garbage collection, other processes), every timer and
// message in it is late by as much, and latencies and timeouts measured
// meanwhile include it.
func lateness(ctx context.Context) (stop func() Dist) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan []time.Duration)
	go func() {
		var late []time.Duration
		const tick = 10 * time.Millisecond
		t := time.NewTimer(tick)
		defer t.Stop()
		for {
			start := time.Now()
			select {
			case <-ctx.Done():
				done <- late
				return
			case <-t.C:
				late = append(late, time.Since(start)-tick)
				t.Reset(tick)
			}
		}
	}()
	return func() Dist {
		cancel()
		return NewDist(<-done)
	}
}

// Mem is the process's memory after a full collection.
type Mem struct {
	HeapInuse, Sys uint64
	Goroutines     int
}

// ReadMem collects garbage twice (the second pass frees what finalizers
// released) and reads the memory statistics.
func ReadMem() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{HeapInuse: ms.HeapInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
}

// PerPeer is (m - base) / peers, in bytes and goroutines.
func (m Mem) PerPeer(base Mem, peers int) (heap, sys, goroutines float64) {
	p := float64(peers)
	return (float64(m.HeapInuse) - float64(base.HeapInuse)) / p,
		(float64(m.Sys) - float64(base.Sys)) / p,
		float64(m.Goroutines-base.Goroutines) / p
}

// ConnsPerPeer is the mean number of open connections of the live peers.
func (r *Ring) ConnsPerPeer() float64 {
	live := r.Live()
	total := 0
	for _, n := range live {
		total += len(n.Host().Network().Conns())
	}
	return float64(total) / float64(len(live))
}

func (l LookupReport) String() string {
	return fmt.Sprintf("%s want=%d: %d lookups, %d errors, right %d, first-live %d, hops mean %.2f p50 %d p99 %d max %d, latency p50 %v p99 %v, %.1f calls/lookup",
		l.Mode, l.Want, l.Lookups, l.Errors, l.Right, l.FirstLive, l.MeanHops, l.P50Hops, l.P99Hops, l.MaxHops,
		l.Latency.P50, l.Latency.P99, l.CallsPerLookup())
}

// Phases is the ring traffic of stepped maintenance: each phase of
// chord.Round run once on every live peer, Rounds times over.
type Phases struct {
	Peers, Rounds                   int
	Stabilize, CheckPred, FixFinger Traffic
}

// PhaseCalls steps warmup uncounted rounds (so that quiet vnodes reach
// their backed-off intervals), then rounds maintenance rounds on the live
// peers, one phase at a time on all of them, and counts each phase's
// traffic. Divided by the timer intervals it gives the traffic the timers
// should cause, which cross-checks Maintenance when the simulator cannot
// keep up with them.
func (r *Ring) PhaseCalls(ctx context.Context, warmup, rounds int) Phases {
	live := r.Live()
	for range warmup {
		r.parallel(ctx, (*chord.Node).Stabilize)
		r.parallel(ctx, (*chord.Node).CheckPredecessors)
		r.parallel(ctx, (*chord.Node).FixFingers)
	}
	ph := Phases{Peers: len(live), Rounds: rounds}
	step := func(into *Traffic, f func(*chord.Node, context.Context)) {
		before := Totals(live)
		r.parallel(ctx, f)
		d := Totals(live).minus(before)
		into.CallsOut += d.CallsOut
		into.BytesOut += d.BytesOut
		into.FailedCalls += d.FailedCalls
	}
	for range rounds {
		step(&ph.Stabilize, (*chord.Node).Stabilize)
		step(&ph.CheckPred, (*chord.Node).CheckPredecessors)
		step(&ph.FixFinger, (*chord.Node).FixFingers)
	}
	return ph
}

// PerPeerSecond turns the stepped counts into what each peer sends per
// second when every phase runs on its timer: each timer fires on average
// once per interval (it is re-armed uniformly in [interval/2, 3·interval/2)).
func (p Phases) PerPeerSecond(cfg chord.Config) (calls, bytes float64) {
	per := func(t Traffic, every time.Duration) (float64, float64) {
		k := float64(p.Peers*p.Rounds) * every.Seconds()
		return float64(t.CallsOut) / k, float64(t.BytesOut) / k
	}
	for _, x := range []struct {
		t     Traffic
		every time.Duration
	}{{p.Stabilize, cfg.StabilizeInterval}, {p.CheckPred, cfg.CheckPredecessorInterval}, {p.FixFinger, cfg.FixFingerInterval}} {
		c, b := per(x.t, x.every)
		calls, bytes = calls+c, bytes+b
	}
	return calls, bytes
}

// SRTTs are the live peers' smoothed round-trip estimates of their ring
// neighbours: of the peers in a predecessor or successor list (which
// stabilization calls directly), and of the peers that are only fingers.
func (r *Ring) SRTTs() (neighbours, fingersOnly Dist) {
	var nb, fo []time.Duration
	for _, n := range r.Live() {
		c := n.Chord()
		near, far := map[string]bool{}, map[string]bool{}
		for _, st := range c.States() {
			near[st.Predecessor.Addr] = true
			for _, s := range st.Successors {
				near[s.Addr] = true
			}
			for _, f := range st.Fingers {
				far[f.Node.Addr] = true
			}
		}
		for addr := range near {
			if d, ok := c.RTT(addr); ok && addr != c.Addr() {
				nb = append(nb, d)
			}
		}
		for addr := range far {
			if d, ok := c.RTT(addr); ok && addr != c.Addr() && !near[addr] {
				fo = append(fo, d)
			}
		}
	}
	return NewDist(nb), NewDist(fo)
}
