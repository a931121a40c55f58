package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// simPeer is one peer of the simulation: a ring node with a block store of
// its own, running its timers until it crashes.
type simPeer struct {
	n    *peer.Node
	st   *blocks.Store
	dir  string
	stop context.CancelFunc
	done chan struct{}
	dies time.Time // on the simulated clock
}

// sim is a ring of simPeers on a mocknet whose peers can crash for good.
type sim struct {
	net   *mockring.Net
	cfg   peer.Config
	rng   *rand.Rand
	base  string // store directories live under it
	scale float64

	mu     sync.Mutex
	live   []*simPeer
	all    []*simPeer // every peer that ever ran, for traffic counters
	blocks []cid.Cid
	data   map[cid.Cid][]byte
}

func newSim(cfg peer.Config, seed uint64, scale float64) (*sim, error) {
	base := "/dev/shm"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "churnsim-")
	if err != nil {
		return nil, err
	}
	return &sim{
		net:   mockring.NewNet(mockring.LinkLazy, mocknet.LinkOptions{}),
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(seed, 0x636875726e)),
		base:  dir,
		scale: scale,
		data:  map[cid.Cid][]byte{},
	}, nil
}

func (s *sim) close() {
	s.mu.Lock()
	live := slices.Clone(s.live)
	s.mu.Unlock()
	for _, p := range live {
		if p.stop != nil {
			p.stop()
			<-p.done
		}
	}
	s.net.Close()
	os.RemoveAll(s.base)
}

// newPeer makes a peer with an empty store; it is on no ring yet.
func (s *sim) newPeer() (*simPeer, error) {
	hosts, err := s.net.AddPeers(1, s.rng)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.base, "peer-")
	if err != nil {
		return nil, err
	}
	st, err := blocks.Open(dir, blocks.Options{})
	if err != nil {
		return nil, err
	}
	cfg := s.cfg
	cfg.Store = st
	n, err := peer.NewNode(hosts[0], cfg)
	if err != nil {
		return nil, err
	}
	return &simPeer{n: n, st: st, dir: dir}, nil
}

func addrInfo(n *peer.Node) p2ppeer.AddrInfo {
	return p2ppeer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}
}

// build joins count peers one after another, stepping maintenance rounds
// (no timers yet) until the ring is right.
func (s *sim) build(ctx context.Context, count int) error {
	for i := range count {
		p, err := s.newPeer()
		if err != nil {
			return err
		}
		var boot []p2ppeer.AddrInfo
		if i > 0 {
			boot = append(boot, addrInfo(s.live[s.rng.IntN(len(s.live))].n))
		}
		if err := p.n.Join(ctx, boot); err != nil {
			return fmt.Errorf("peer %d: %w", i, err)
		}
		s.live = append(s.live, p)
		s.all = append(s.all, p)
		// The newcomer notifies its successor and its predecessor takes
		// it in; the rest of the ring learns of it in the rounds below.
		// A round over every peer after each join would cost O(N²).
		p.n.Chord().Stabilize(ctx)
		ring := trueRing(s.live)
		for _, v := range p.n.Chord().Vnodes() {
			i := sort.Search(len(ring), func(i int) bool { return ring[i].id.Cmp(v.ID) >= 0 })
			pred := ring[(i+len(ring)-1)%len(ring)].p
			pred.n.Chord().Stabilize(ctx)
		}
		p.n.Chord().FixAllFingers(ctx)
	}
	if _, err := chord.Converge(ctx, s.chords(), 500); err != nil {
		return err
	}
	for _, c := range s.chords() {
		c.FixAllFingers(ctx)
	}
	return nil
}

func (s *sim) chords() []*chord.Node {
	out := make([]*chord.Node, len(s.live))
	for i, p := range s.live {
		out[i] = p.n.Chord()
	}
	return out
}

// liveSnapshot is the live peers now.
func (s *sim) liveSnapshot() []*simPeer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.live)
}

// ringPos is one vnode on the true ring.
type ringPos struct {
	id chord.ID
	p  *simPeer
}

// trueRing is the live peers' vnodes in ring order.
func trueRing(peers []*simPeer) []ringPos {
	var ring []ringPos
	for _, p := range peers {
		for _, v := range p.n.Chord().Vnodes() {
			ring = append(ring, ringPos{v.ID, p})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].id.Cmp(ring[j].id) < 0 })
	return ring
}

// preference is the true preference list of key: the first r distinct
// peers clockwise.
func preference(ring []ringPos, key chord.ID, r int) []*simPeer {
	i := sort.Search(len(ring), func(i int) bool { return ring[i].id.Cmp(key) >= 0 })
	var out []*simPeer
	for k := 0; k < len(ring) && len(out) < r; k++ {
		p := ring[(i+k)%len(ring)].p
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// seed stores count random blocks of size bytes on their r replicas
// directly (what a share leaves behind, without the time it takes).
func (s *sim) seed(count, size int) error {
	ring := trueRing(s.live)
	for range count {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(s.rng.Uint32())
		}
		c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(data)
		if err != nil {
			return err
		}
		for _, p := range preference(ring, chord.KeyID(c.Hash()), s.cfg.Replicas) {
			if err := p.st.Put(c, data); err != nil {
				return err
			}
		}
		s.blocks = append(s.blocks, c)
		s.data[c] = data
	}
	return nil
}

// start runs p's timers.
func (s *sim) start(p *simPeer) {
	ctx, stop := context.WithCancel(context.Background())
	p.stop, p.done = stop, make(chan struct{})
	go func() {
		defer close(p.done)
		p.n.Run(ctx)
	}()
}

// crash kills p with no goodbye and removes its store.
func (s *sim) crash(p *simPeer) {
	s.mu.Lock()
	s.live = slices.DeleteFunc(s.live, func(q *simPeer) bool { return q == p })
	s.mu.Unlock()
	_ = s.net.Crash(p.n.Host())
	if p.stop == nil { // stepped, never started
		p.n.Close()
		p.st.Close()
		os.RemoveAll(p.dir)
		return
	}
	p.stop()
	go func() {
		<-p.done
		p.n.Close()
		p.st.Close()
		os.RemoveAll(p.dir)
	}()
}

// joinNew makes a new peer join through a random live one; with run, its
// timers start too.
func (s *sim) joinNew(ctx context.Context, run bool) (*simPeer, error) {
	p, err := s.newPeer()
	if err != nil {
		return nil, err
	}
	live := s.liveSnapshot()
	var errs []error
	for range 3 {
		via := live[s.rng.IntN(len(live))]
		jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.n.Join(jctx, []p2ppeer.AddrInfo{addrInfo(via.n)})
		cancel()
		if err == nil {
			s.mu.Lock()
			s.live = append(s.live, p)
			s.all = append(s.all, p)
			s.mu.Unlock()
			if run {
				s.start(p)
			}
			return p, nil
		}
		errs = append(errs, err)
	}
	_ = s.net.Crash(p.n.Host())
	p.st.Close()
	os.RemoveAll(p.dir)
	return nil, errors.Join(errs...)
}

// copies counts, among live peers, the blocks with no copy at all and the
// copies missing from the true preference lists.
func (s *sim) copies() (lost, missing int) {
	live := s.liveSnapshot()
	ring := trueRing(live)
	for _, c := range s.blocks {
		gone := 0
		for _, p := range preference(ring, chord.KeyID(c.Hash()), s.cfg.Replicas) {
			if !p.st.Has(c) {
				gone++
			}
		}
		missing += gone
		if gone < s.cfg.Replicas {
			continue
		}
		held := false
		for _, p := range live {
			if p.st.Has(c) {
				held = true
				break
			}
		}
		if !held {
			lost++
		}
	}
	return lost, missing
}

// traffic sums every peer's ring bytes sent and repair bytes (blocks moved
// once each; summaries are counted by both ends, so halved).
func (s *sim) traffic() (ring, repair int64) {
	s.mu.Lock()
	all := slices.Clone(s.all)
	s.mu.Unlock()
	var summary int64
	for _, p := range all {
		ring += p.n.Stats().BytesOut.Load()
		_, r := p.n.RepairStatus()
		repair += r.BytesMoved
		summary += r.SummaryBytes
	}
	return ring, repair + summary/2
}

// exp draws a session length with the given median.
func exp(rng *rand.Rand, median time.Duration) time.Duration {
	mean := float64(median) / math.Ln2
	return time.Duration(-mean * math.Log(1-rng.Float64()))
}

// probes counts lookups and fetches made during churn.
type probes struct {
	lookups, lookupOK, lookupRight atomic.Int64
	fetches, fetchOK               atomic.Int64
}

// lookupProbe: a random live peer looks up a random key. OK: it answered;
// right: the first live peer of its answer is the true successor among
// the live peers at that moment.
func (s *sim) lookupProbe(ctx context.Context, pr *probes, p *simPeer, key chord.ID) {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Chord.LookupTimeout)
	res, err := p.n.Chord().Lookup(lctx, key, s.cfg.Replicas)
	cancel()
	if ctx.Err() != nil {
		return
	}
	pr.lookups.Add(1)
	if err != nil {
		return
	}
	pr.lookupOK.Add(1)
	now := s.liveSnapshot()
	chords := make([]*chord.Node, len(now))
	for i, q := range now {
		chords[i] = q.n.Chord()
	}
	alive := func(r chord.Ref) bool { return s.net.Alive(p2ppeer.ID(r.Addr)) }
	if chord.NewOracle(chords).CheckFirstLive(key, res, alive) == nil {
		pr.lookupRight.Add(1)
	}
}

// fetchProbe: a random live peer fetches a random block.
func (s *sim) fetchProbe(ctx context.Context, pr *probes, p *simPeer, c cid.Cid) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	data, err := p.n.Get(fctx, c)
	cancel()
	if ctx.Err() != nil {
		return
	}
	pr.fetches.Add(1)
	if err == nil && string(data) == string(s.data[c]) {
		pr.fetchOK.Add(1)
	}
}

// maintain runs one tick of every live peer's timers: each step with the
// probability tick/interval, peers in parallel.
func (s *sim) maintain(ctx context.Context, cfg peer.Config, tick time.Duration, now time.Time) {
	type work struct {
		p                           *simPeer
		stab, check, finger, repair bool
	}
	chance := func(interval time.Duration) bool { return s.rng.Float64() < float64(tick)/float64(interval) }
	var jobs []work
	for _, p := range s.liveSnapshot() {
		jobs = append(jobs, work{p, chance(cfg.Chord.StabilizeInterval), chance(cfg.Chord.CheckPredecessorInterval),
			chance(cfg.Chord.FixFingerInterval), chance(cfg.Repair.Check)})
	}
	ch := make(chan work)
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for w := range ch {
				c := w.p.n.Chord()
				if w.stab {
					c.Stabilize(ctx)
				}
				if w.check {
					c.CheckPredecessors(ctx)
				}
				if w.finger {
					c.FixFingers(ctx)
				}
				if w.repair {
					w.p.n.RepairTick(ctx, now)
				}
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
}

// probe makes lookups and fetches from random live peers, in parallel.
func (s *sim) probe(ctx context.Context, pr *probes, lookups, fetches int) {
	live := s.liveSnapshot()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2*runtime.GOMAXPROCS(0))
	for i := range lookups + fetches {
		p := live[s.rng.IntN(len(live))]
		var key chord.ID
		for j := range key {
			key[j] = byte(s.rng.Uint32())
		}
		c := s.blocks[s.rng.IntN(len(s.blocks))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if i < lookups {
				s.lookupProbe(ctx, pr, p, key)
			} else {
				s.fetchProbe(ctx, pr, p, c)
			}
		})
	}
	wg.Wait()
}

// moved sums the repair counters of every peer that ever ran: rounds and
// blocks moved.
func (s *sim) moved() (rounds, blocks int64) {
	s.mu.Lock()
	all := slices.Clone(s.all)
	s.mu.Unlock()
	for _, p := range all {
		_, r := p.n.RepairStatus()
		rounds += r.Rounds
		blocks += r.BlocksMoved
	}
	return rounds, blocks
}
