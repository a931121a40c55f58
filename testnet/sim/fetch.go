package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/internal/cpustat"
	"chordshare/peer"
	"chordshare/share"
	"chordshare/testnet/sim/netshape"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

type fetchFlags struct {
	common
	size   int64
	ranks  string
	window int
	trace  string
}

// fetchResult is one fetch of the file.
type fetchResult struct {
	Rank                 float64
	FetcherDown, Holders float64 // bytes/s: the fetcher's downlink, the sum of the holders' uplinks
	HolderCount          int
	Bottleneck, Rate     float64
	// BlockBound is a floor under the time: the slowest block's size over
	// the fastest uplink among its holders, or the file over the fetcher's
	// downlink, whichever is longer.
	BlockBound time.Duration
	Elapsed    time.Duration
	Err        error
	Trace      traceSummary
}

func fetchCmd(ctx context.Context, args []string, out io.Writer) error {
	var f fetchFlags
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	f.register(fs, 30)
	size := fs.String("size", "64MiB", "file size")
	fs.StringVar(&f.ranks, "fetcher-ranks", "1", "fetchers, each by the rank of its downlink among the peers (0 slowest, 1 fastest), comma-separated")
	fs.IntVar(&f.window, "window", 0, "blocks in flight (0: share's default)")
	fs.StringVar(&f.trace, "trace", "", "write every fetcher's per-block timeline (each Get's steps) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.parse(); err != nil {
		return err
	}
	n, err := peer.ParseSize(*size)
	if err != nil || n <= 0 {
		return fmt.Errorf("-size %q: want a positive size", *size)
	}
	f.size = n
	header(out, fmt.Sprintf("Fetch: %s over %d peers, %s, profile %s", *size, f.peers, f.vnodesDesc(), f.profile), append([]string{"fetch"}, args...))
	res, err := runFetch(ctx, f, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "| fetcher (downlink rank) | fetcher downlink | holders | their uplinks, summed | bottleneck | time | throughput | ÷ bottleneck | time floor from the slowest block | time ÷ that floor |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res {
		status, got := "– (no rate limits)", rate(r.Rate)
		if r.Bottleneck > 0 {
			status = fmt.Sprintf("%.2f", r.Rate/r.Bottleneck)
		}
		if r.Err != nil {
			status, got = "failed: "+r.Err.Error(), "–"
		}
		fmt.Fprintf(out, "| %.2f | %s | %d | %s | %s | %v | %s | %s | %v | %.2f |\n", r.Rank, rate(r.FetcherDown), r.HolderCount, rate(r.Holders), rate(r.Bottleneck), r.Elapsed.Round(time.Millisecond), got, status, r.BlockBound.Round(time.Millisecond), ratio(r.Elapsed, r.BlockBound))
	}
	fmt.Fprintf(out, "\n| fetcher | first leaf asked | first leaf in | leaves/s (p10–p90 of arrivals) | last leaf asked | end | requests | hedged | dropped | mean wait for replica list | replicas used | first response | link idle after it | link lost to slow holders | rest over the floor | longest process stall |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res {
		t := r.Trace
		floor := time.Duration(0)
		if r.FetcherDown > 0 {
			floor = time.Duration(float64(f.size) / r.FetcherDown * float64(time.Second))
		}
		rest := r.Elapsed - floor - t.FirstResponse - t.Idle - t.HolderBound
		fmt.Fprintf(out, "| %.2f | %s | %s | %.1f | %s | %s | %d | %d | %d | %s | %d | %s | %s | %s | %s | %s |\n", r.Rank, ms(t.FirstLeafAsked), ms(t.FirstLeafIn), t.SteadyRate, ms(t.LastLeafAsked), ms(t.End), t.Requests, t.Hedges, t.Dropped, ms(t.Lookup), t.Replicas, ms(t.FirstResponse), ms(t.Idle), ms(t.HolderBound), ms(rest), ms(t.Stalled))
	}
	fmt.Fprintf(out, "\nWhere the time went, from every Get's steps (peer.Config.GetTrace; -trace FILE writes them): the floor is the file over the fetcher's downlink; then the time to the first response header, the time after it with no response being received, the link time lost while the holders sending had less uplink in all than the downlink, and the rest over the floor: the link was busy but carried less than its rate (until session 10 mostly the simulator's shaper: a stream carried 16–32 KiB per link latency and chunks left holes in the downlink; what is left is the process stalling, compare the longest stall, how late a 5 ms ticker ran, and bytes arriving up to such a stall late).\n")
	fmt.Fprintf(out, "\nBottleneck: the smaller of the fetcher's downlink and the sum of the uplinks of every peer holding a block of the file (issue 4's definition; it ignores that each block comes from one of only 3 holders, so it can be above what any schedule reaches). Time floor: no schedule ends before the slowest block has come from the fastest of its 3 holders at that holder's full uplink, nor before the file has crossed the fetcher's downlink. The fetcher is a client (capacity 0) so it holds no block itself; the file was shared by a random storing peer before the links were shaped; bytes are checked against the file's SHA-256.\n\nLoad average at the end: %s.\n\n", cpustat.LoadAvg())
	return nil
}

func rate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.2f MB/s", bps/1e6)
	default:
		return fmt.Sprintf("%.1f kB/s", bps/1e3)
	}
}

// recordingPutter remembers every CID it put.
type recordingPutter struct {
	share.Putter
	mu    sync.Mutex
	cids  []cid.Cid
	sizes []int
}

func (r *recordingPutter) Put(ctx context.Context, c cid.Cid, data []byte) error {
	r.mu.Lock()
	r.cids = append(r.cids, c)
	r.sizes = append(r.sizes, len(data))
	r.mu.Unlock()
	return r.Putter.Put(ctx, c, data)
}

func runFetch(ctx context.Context, f fetchFlags, out io.Writer) ([]fetchResult, error) {
	var ranks []float64
	for _, s := range strings.Split(f.ranks, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("-fetcher-ranks: %q is not a rank in [0, 1]", s)
		}
		ranks = append(ranks, r)
	}
	access, err := netshape.Draw(f.profile, f.peers, f.seed)
	if err != nil {
		return nil, err
	}
	// Fetchers: the peers at those ranks of downlink; they run as clients.
	byDown := make([]int, f.peers)
	for i := range byDown {
		byDown[i] = i
	}
	slices.SortStableFunc(byDown, func(a, b int) int {
		switch {
		case access[a].Down < access[b].Down:
			return -1
		case access[a].Down > access[b].Down:
			return 1
		}
		return 0
	})
	fetchers := map[int]float64{}
	for _, r := range ranks {
		fetchers[byDown[int(r*float64(f.peers-1)+0.5)]] = r
	}
	dir, err := os.MkdirTemp("", "chordsim-fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	base := f.chordConfig(peer.DefaultConfig())
	traces := map[int]*getTrace{}
	for i := range fetchers {
		traces[i] = &getTrace{}
	}
	var traceOut io.Writer
	if f.trace != "" {
		tf, err := os.Create(f.trace)
		if err != nil {
			return nil, err
		}
		defer tf.Close()
		traceOut = tf
	}
	var stores []*blocks.Store
	var openErr error
	s, _, err := buildRing(ctx, f.common, base, func(i int, a netshape.Access) peer.Config {
		cfg := base
		cfg.Chord.Vnodes = f.vnodesOf(a)
		if _, ok := fetchers[i]; ok {
			cfg.Chord.Vnodes = 0
			cfg.GetTrace = traces[i].record
		}
		if cfg.Chord.Vnodes > 0 {
			st, err := blocks.Open(filepath.Join(dir, fmt.Sprint(i)), blocks.Options{})
			if err != nil {
				openErr = err
			} else {
				stores = append(stores, st)
				cfg.Store = st
			}
		}
		return cfg
	})
	defer func() {
		for _, st := range stores {
			st.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if openErr != nil {
		return nil, openErr
	}

	// Share from a random storing peer, unshaped.
	rng := rand.New(rand.NewPCG(f.seed, 0x6665746368))
	var sharer *peer.Node
	for sharer == nil {
		i := rng.IntN(f.peers)
		if _, ok := fetchers[i]; !ok && f.vnodesOf(access[i]) > 0 {
			sharer = s.Nodes[i]
		}
	}
	data := make([]byte, f.size)
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8 && i+k < len(data); k++ {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	want := sha256.Sum256(data)
	rec := &recordingPutter{Putter: sharer}
	start := time.Now()
	root, err := share.Import(ctx, bytes.NewReader(data), rec, share.ImportOptions{})
	if err != nil {
		return nil, fmt.Errorf("share: %w", err)
	}
	fmt.Fprintf(out, "Shared %d blocks (root %s) in %v on the unshaped network.\n\n", len(rec.cids), root, time.Since(start).Round(time.Millisecond))
	data = nil

	// The holders of the file's blocks.
	upOf := map[p2ppeer.ID]float64{}
	for i, n := range s.Nodes {
		upOf[n.Host().ID()] = access[i].Up
	}
	holders := map[p2ppeer.ID]bool{}
	var slowestBlock time.Duration
	for k, c := range rec.cids {
		ps, err := sharer.Replicas(ctx, c)
		if err != nil {
			return nil, err
		}
		best := 0.0
		for _, p := range ps {
			holders[p] = true
			best = max(best, upOf[p])
		}
		if best > 0 {
			slowestBlock = max(slowestBlock, time.Duration(float64(rec.sizes[k])/best*float64(time.Second)))
		}
	}
	var up float64
	for p := range holders {
		up += upOf[p]
	}
	s.shape()
	// The ring was built unshaped, so every round-trip estimate is near
	// zero: a few maintenance rounds and lookups on the shaped network let
	// the estimators (and the timeouts and replica order they drive) learn
	// the links before anything is timed.
	if _, _, err := s.warmUp(ctx, 2, 30); err != nil {
		return nil, fmt.Errorf("after shaping: %w", err)
	}
	for i := range fetchers {
		for _, q := range s.Queries(20) {
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, _ = s.Nodes[i].Chord().Lookup(lctx, q.Key, 1)
			cancel()
		}
		// The maintenance round a client's daemon runs every couple of
		// seconds (it measures its gateways).
		s.Nodes[i].Chord().Stabilize(ctx)
	}

	var res []fetchResult
	for _, i := range slices.Sorted(maps.Keys(fetchers)) {
		r := fetchResult{Rank: fetchers[i], FetcherDown: access[i].Down, Holders: up, HolderCount: len(holders)}
		r.Bottleneck = min(r.FetcherDown, r.Holders)
		r.BlockBound = slowestBlock
		if r.FetcherDown > 0 {
			r.BlockBound = max(r.BlockBound, time.Duration(float64(f.size)/r.FetcherDown*float64(time.Second)))
		}
		limit := 10 * time.Minute
		if r.Bottleneck > 0 {
			limit += 3 * time.Duration(float64(f.size)/r.Bottleneck*float64(time.Second))
		}
		fctx, cancel := context.WithTimeout(ctx, limit)
		// Blocks land at their offsets as they arrive, as `peer fetch -o
		// FILE` writes them: one slow block does not hold the others back.
		buf := &memFile{}
		traces[i].start()
		lateness := watchLateness()
		start := time.Now()
		err := share.Fetch(fctx, root, s.Nodes[i], share.ToWriterAt(buf), share.FetchOptions{Window: f.window, Locate: s.Nodes[i].Locate})
		cancel()
		r.Elapsed = time.Since(start)
		events := traces[i].stop()
		r.Trace = summarize(start, events, upOf, r.FetcherDown)
		r.Trace.Stalled = lateness()
		if traceOut != nil {
			writeTrace(traceOut, fmt.Sprintf("fetcher rank %.2f, downlink %s, %v", r.Rank, rate(r.FetcherDown), r.Elapsed.Round(time.Millisecond)), start, events, upOf)
		}
		r.Rate = float64(f.size) / r.Elapsed.Seconds()
		if got := sha256.Sum256(buf.b); err == nil && got != want {
			err = fmt.Errorf("fetched bytes differ from the file")
		}
		r.Err = err
		res = append(res, r)
	}
	return res, nil
}

// memFile is an in-memory io.WriterAt, the file a fetch writes.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}
