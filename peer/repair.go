package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/internal/ctxtime"
	"chordshare/merkle"
	"chordshare/peer/api"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Repair keeps every block at r replicas (DESIGN.md, "Churn, repair").
//
// Each vnode v is the first replica of the keys on its arc (pred(v), v]; the
// preference list of those keys is this peer and the next r-1 distinct peers
// of v's successor list. A repair round compares, for every vnode, the arc
// with each of those peers by Merkle range summaries (package merkle): two
// replicas in sync exchange one hash; where they differ, only the missing
// blocks move, pushed to the replica that lacks them or pulled from the one
// that has them. The same round is the join handoff (a new vnode's arc is
// pulled from its successors, which held it) and the answer to a crash (the
// dead peer drops out of the successor lists through stabilization, the
// preference list gains the next peer, and the round fills it). A change in
// a vnode's arc or replica peers starts a round at the next check; otherwise
// rounds run every RepairConfig.Interval, which also catches blocks lost on
// disk.

// RepairProtocol is the stream protocol of range summaries and leave
// notices. 1.0.0 also carried hinted blocks, which now go by the block
// protocol (hint_for).
const RepairProtocol = "/chordshare/repair/1.1.0"

const (
	// maxRepairQueries bounds the ranges in one SUMMARY request.
	maxRepairQueries = 256
	// maxListedCID bounds one listed CID (a SHA-256 CIDv1 is 36 bytes).
	maxListedCID = 128
	// repairLeaf is the most CIDs an answer lists for one range; both
	// sides must agree on it.
	repairLeaf = 64
	// maxRepairMessage: a SUMMARY answer lists at most repairLeaf CIDs
	// for each of maxRepairQueries ranges (2 MiB), with a few bytes of
	// framing per CID and per answer.
	maxRepairMessage = maxRepairQueries * (repairLeaf*(maxListedCID+2) + 16)
	// maxHints bounds the blocks this peer holds for others.
	maxHints = 100_000
	// maxBusyWait caps the wait a BUSY peer asks for (retry_after_ms is
	// the peer's word) before its deferred comparisons run again.
	maxBusyWait = 5 * time.Second
)

// repairMerkle is the reconciliation shape; both sides must agree on Leaf.
var repairMerkle = merkle.Options{Fanout: 16, Leaf: repairLeaf, Batch: maxRepairQueries, MaxDepth: 40}

// RepairConfig times and paces repair.
type RepairConfig struct {
	// Interval is how often every arc is compared with its replicas when
	// nothing seems to have changed. 0 turns periodic repair off (rounds
	// then run only when called, as tests and simulators do).
	Interval time.Duration
	// Check is how often the repair loop looks for a changed arc or
	// replica set and for hints to deliver.
	Check time.Duration
	// Rate is the most bytes per second repair sends and receives (blocks
	// and summaries); 0 is no limit. Blocks move one at a time, so a slow
	// link is also never asked for more than one block at once.
	Rate int64
	// LeaveMemory is how long a peer that announced its leave is kept out
	// of replica sets, in case stabilization has not dropped it yet.
	LeaveMemory time.Duration
	// ScanRate bounds the stored keys per second this peer checks (a
	// file check each) to answer other peers' summaries (scanBudget); 0
	// is no limit.
	ScanRate int
}

// DefaultRepairConfig is what a daemon runs with. A file check costs 2-4
// us here, so ScanRate takes at most about a tenth of a core; replicas in
// sync ask about 2/3 of a peer's store a minute, which stays within it up
// to ~4 M blocks stored.
func DefaultRepairConfig() RepairConfig {
	return RepairConfig{Interval: time.Minute, Check: time.Second, Rate: 1 << 20, LeaveMemory: time.Minute, ScanRate: 50_000}
}

// RoundStats is what a repair round (or a handoff) did.
type RoundStats struct {
	Blocks, Bytes int64 // blocks moved and their bytes
	SummaryBytes  int64 // summary requests and answers, framing included
	// Missing counts the block copies found missing on one side of a
	// comparison; Failed those that could not be moved.
	Missing, Failed int64
	Exchanges       int64 // summary round trips
}

func (s *RoundStats) add(o RoundStats) {
	s.Blocks += o.Blocks
	s.Bytes += o.Bytes
	s.SummaryBytes += o.SummaryBytes
	s.Missing += o.Missing
	s.Failed += o.Failed
	s.Exchanges += o.Exchanges
}

// rangeStore is a block store that lists ring ranges: blocks.Store.
type rangeStore interface {
	BlockStore
	Range(from, to blocks.Key, fn func(blocks.Key, cid.Cid) bool)
	Delete(c cid.Cid) error
}

// repairState is the node's repair bookkeeping.
type repairState struct {
	cfg    RepairConfig
	pace   pacer
	kick   chan struct{} // a leave notice: check now
	active atomic.Bool   // a round is running
	left   atomic.Bool   // this node is leaving: no more rounds

	blocks, bytes, summary, rounds atomic.Int64
	refused                        atomic.Int64 // summary requests answered BUSY

	// scan bounds the keys checked to answer summaries.
	scan scanBudget

	mu        sync.Mutex
	lastRound time.Time
	lastTick  time.Time // the clock of RepairTick when it last ran a round
	lastViews []arcView // as of the last round
	under     map[underKey]int64
	// deferred are the comparisons a BUSY peer put off; RepairTick runs
	// them alone, not a whole round, deferWait after the round (the
	// longest wait a busy peer asked for), at retryAt on its clock.
	deferred  map[underKey]bool
	deferWait time.Duration
	retryAt   time.Time
	leaving   map[p2ppeer.ID]time.Time
	hints     map[p2ppeer.ID]map[blocks.Key]cid.Cid
	// nhints counts the hints held and those being written (holdHint);
	// maxHints bounds it.
	nhints, maxHints int
}

type underKey struct {
	vnode chord.ID
	peer  p2ppeer.ID
}

func newRepairState(cfg RepairConfig) *repairState {
	return &repairState{
		cfg:     cfg,
		pace:    pacer{rate: float64(cfg.Rate)},
		kick:    make(chan struct{}, 1),
		under:   map[underKey]int64{},
		leaving: map[p2ppeer.ID]time.Time{},
		hints:   map[p2ppeer.ID]map[blocks.Key]cid.Cid{},

		maxHints: maxHints,
		scan:     scanBudget{rate: float64(cfg.ScanRate), burst: float64(cfg.ScanRate), now: time.Now},
	}
}

// scanBudget is a token bucket of stored keys to check for other peers'
// summaries, refilled at rate per second up to burst (rate 0: no limit).
// A request is answered while the bucket is not in debt, and then pays
// for the keys it made us check: one request may overdraw it by one pass
// over the store (its ranges are disjoint), after which requests are
// refused until it has refilled. The cost of a request is known only
// once it is answered, so requests admitted together may each overdraw
// it: the rate holds on average, and a burst is bounded by a pass per
// concurrent request, not by one.
type scanBudget struct {
	rate, burst float64
	now         func() time.Time

	mu     sync.Mutex
	tokens float64
	at     time.Time // when tokens was last refilled; zero: full
}

// admit reports whether a request may be answered now, or how long until
// one may.
func (b *scanBudget) admit() (wait time.Duration, ok bool) {
	if b.rate <= 0 {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens > 0 {
		return 0, true
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
}

// spend takes the keys an answered request checked.
func (b *scanBudget) spend(keys int) {
	if b.rate <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens -= float64(keys)
}

func (b *scanBudget) refill() {
	now := b.now()
	if b.at.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
	}
	b.at = now
}

// busyError is a peer's BUSY answer to a summary request.
type busyError struct{ retryAfter time.Duration }

func (e *busyError) Error() string {
	return fmt.Sprintf("peer busy answering summaries: ask again in %v", e.retryAfter)
}

// pacer spaces traffic to a byte rate, a virtual clock (GCRA): each
// transfer starts when the ones before it have drained at that rate. At
// most burst of sending accumulates over idle time; repair's pacer has
// none, so a slow link never sees more than one block at once.
type pacer struct {
	rate  float64 // bytes per second; 0: unpaced
	burst time.Duration
	now   func() time.Time                                 // nil: time.Now
	sleep func(ctx context.Context, d time.Duration) error // nil: ctxtime.Sleep

	mu   sync.Mutex
	next time.Time
}

func (p *pacer) wait(ctx context.Context, n int) error {
	_, err := p.pace(ctx, n, false)
	return err
}

// drained books n bytes that already went (a pulled block, an answer:
// their size is known only once they are in) and returns once they have
// drained, so that the next transfer does not start early. Booking them
// with wait would return when they could have started, letting the next
// one through a whole slot ahead of its time.
func (p *pacer) drained(ctx context.Context, n int) error {
	_, err := p.pace(ctx, n, true)
	return err
}

// pace books n bytes and waits their turn; limited says it had to wait.
func (p *pacer) pace(ctx context.Context, n int, toEnd bool) (limited bool, err error) {
	if d := p.book(n, toEnd); d > 0 {
		sleep := ctxtime.Sleep
		if p.sleep != nil {
			sleep = p.sleep
		}
		if err := sleep(ctx, d); err != nil {
			return true, err
		}
		limited = true
	}
	return limited, ctx.Err()
}

// book books n bytes and returns how long to wait until they may start
// or, with toEnd, until they have drained; 0 when unpaced.
func (p *pacer) book(n int, toEnd bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate <= 0 {
		return 0
	}
	now := time.Now()
	if p.now != nil {
		now = p.now()
	}
	start := p.next
	if floor := now.Add(-p.burst); start.Before(floor) {
		start = floor
	}
	p.next = start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	until := start
	if toEnd {
		until = p.next
	}
	return until.Sub(now)
}

// currentRate and setRate read and change the rate of a pacer in use (an
// uplink that finds its rate itself).
func (p *pacer) currentRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

func (p *pacer) setRate(r float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = r
}

// arcView is one vnode's arc and the other peers that replicate it.
type arcView struct {
	vnode chord.ID
	arc   merkle.Range
	peers []p2ppeer.ID
}

func sameViews(a, b []arcView) bool {
	return slices.EqualFunc(a, b, func(x, y arcView) bool {
		return x.vnode == y.vnode && x.arc == y.arc && slices.Equal(x.peers, y.peers)
	})
}

func (n *Node) rangeStore() (rangeStore, bool) {
	st, ok := n.cfg.Store.(rangeStore)
	return st, ok
}

// arcViews lists the arcs this peer is first replica of: every vnode whose
// predecessor is known.
func (n *Node) arcViews() []arcView {
	passOver := func(p p2ppeer.ID) bool { return p == n.h.ID() || n.rep.isLeaving(p) }
	var out []arcView
	for _, st := range n.ring.States() {
		if st.Predecessor.IsZero() {
			continue
		}
		out = append(out, arcView{
			vnode: st.Self.ID,
			arc:   merkle.Range{Lo: merkle.Key(st.Predecessor.ID), Hi: merkle.Key(st.Self.ID)},
			peers: firstPeers(nil, st.Successors, n.cfg.Replicas-1, passOver),
		})
	}
	return out
}

var errRoundRunning = errors.New("a repair round is already running")

// RepairRound compares every arc this peer is first replica of with the
// arc's other replicas and moves the blocks either side lacks. It returns
// what it did; an error names the comparisons that failed (the others
// still ran). Only one round runs at a time.
func (n *Node) RepairRound(ctx context.Context) (RoundStats, error) {
	return n.repairRound(ctx, nil)
}

// repairRound runs a round over the comparisons in only, or all of them
// (only nil). A peer that answers BUSY is not asked again this round: its
// comparisons are deferred to the time it gave, and count as neither
// done nor under-replicated, so that a busy peer is not asked again each
// check (every pair in sync would then be compared every second, and
// keep it busy).
func (n *Node) repairRound(ctx context.Context, only map[underKey]bool) (RoundStats, error) {
	st, ok := n.rangeStore()
	if !ok || n.rep.left.Load() {
		return RoundStats{}, nil
	}
	if !n.rep.active.CompareAndSwap(false, true) {
		return RoundStats{}, errRoundRunning
	}
	defer n.rep.active.Store(false)

	views := n.arcViews()
	for _, v := range views {
		scrub(st, v.arc)
	}
	var total RoundStats
	var errs []error
	n.rep.mu.Lock()
	under := map[underKey]int64{}
	if only != nil {
		maps.Copy(under, n.rep.under)
	}
	before := n.rep.under
	n.rep.mu.Unlock()
	deferred := map[underKey]bool{}
	busy := map[p2ppeer.ID]bool{} // answered BUSY: not asked again this round
	var wait time.Duration        // the longest wait a busy peer asked for
	for _, v := range views {
		for _, p := range v.peers {
			key := underKey{v.vnode, p}
			if only != nil && !only[key] {
				continue
			}
			if !busy[p] {
				rs, err := n.syncArc(ctx, st, v.arc, p, true)
				total.add(rs)
				var b *busyError
				switch {
				case err == nil:
					under[key] = rs.Failed
					continue
				case ctx.Err() != nil:
					return total, ctx.Err()
				case !errors.As(err, &b):
					under[key] = max(rs.Failed, 1)
					errs = append(errs, fmt.Errorf("arc %s..%s with %s: %w",
						chord.ID(v.arc.Lo).String(), chord.ID(v.arc.Hi).String(), p.ShortString(), err))
					continue
				}
				busy[p] = true
				wait = max(wait, min(b.retryAfter, maxBusyWait))
			}
			deferred[key] = true
			under[key] = before[key] // not compared: as the last comparison left it
		}
	}
	n.rep.mu.Lock()
	n.rep.under = under
	n.rep.deferred = deferred
	n.rep.deferWait = wait
	if only == nil {
		n.rep.lastViews = views
	}
	n.rep.lastRound = time.Now()
	n.rep.mu.Unlock()
	n.rep.rounds.Add(1)
	if total.Blocks > 0 {
		n.Publish(api.NodeEvent{Kind: api.EventRepair, Count: total.Blocks,
			Message: fmt.Sprintf("repair moved %d blocks (%s)", total.Blocks, FormatSize(total.Bytes))})
	}
	var left int64
	for _, c := range under {
		left += c
	}
	if left > 0 {
		n.Publish(api.NodeEvent{Kind: api.EventUnderReplicated, Count: left,
			Message: fmt.Sprintf("%d block copies still missing from their replicas after a repair round", left)})
	}
	if len(errs) > 0 {
		return total, fmt.Errorf("repair: %w", errors.Join(errs...))
	}
	return total, nil
}

// scrub forgets the blocks on arc whose files are gone from disk (Has
// checks), so that the summaries this peer gives do not claim them and
// they are fetched again. A round scrubs the arcs it compares; a peer
// answering summaries checks the ranges it is asked about as it lists them
// (scrubbedSource).
func scrub(st rangeStore, arc merkle.Range) {
	st.Range(blocks.Key(arc.Lo), blocks.Key(arc.Hi), func(_ blocks.Key, c cid.Cid) bool {
		st.Has(c) // drops the index entry of a missing file
		return true
	})
}

// syncArc reconciles arc with p and moves what differs: the blocks p
// lacks are pushed to it; with pull, the blocks it has and we lack are
// fetched from it.
func (n *Node) syncArc(ctx context.Context, st rangeStore, arc merkle.Range, p p2ppeer.ID, pull bool) (RoundStats, error) {
	var rs RoundStats
	ex := func(ctx context.Context, qs []merkle.Query) ([]merkle.Answer, error) {
		req := &pb.RepairRequest{Type: pb.RepairRequest_SUMMARY, Queries: encodeQueries(qs)}
		if err := n.rep.pace.wait(ctx, proto.Size(req)); err != nil {
			return nil, err
		}
		resp, err := n.repairExchange(ctx, p, req, repairTimeout)
		rs.Exchanges++
		rs.SummaryBytes += int64(protoFramed(req))
		if err != nil {
			return nil, err // BUSY included: the caller decides when to ask again
		}
		size := protoFramed(resp)
		rs.SummaryBytes += int64(size)
		n.rep.summary.Add(int64(protoFramed(req) + size))
		if err := n.rep.pace.drained(ctx, size); err != nil {
			return nil, err
		}
		return decodeAnswers(resp.GetAnswers(), len(qs))
	}
	d, err := merkle.Reconcile(ctx, storeSource{st}, arc, ex, repairMerkle)
	if err != nil {
		return rs, err
	}
	rs.Missing = int64(len(d.OnlyLocal))
	if pull {
		rs.Missing += int64(len(d.OnlyRemote))
	}
	errs, err := n.pushArc(ctx, p, d.OnlyLocal, &rs)
	if err != nil {
		return rs, err
	}
	if pull {
		for _, it := range d.OnlyRemote {
			c, _ := cid.Cast(it.Val) // decodeAnswers checked it
			data, err := n.pullFrom(ctx, p, c)
			size := len(data)
			if err == nil {
				err = n.storeLocal(c, data)
				putBuf(data)
			}
			if err != nil {
				rs.Failed++
				errs = append(errs, err)
				if ctx.Err() != nil {
					return rs, ctx.Err()
				}
				continue
			}
			rs.moved(n, size)
			if err := n.rep.pace.drained(ctx, size); err != nil {
				return rs, err
			}
		}
	}
	if len(errs) > 0 {
		return rs, fmt.Errorf("%d of %d blocks not moved: %w", rs.Failed, rs.Missing, errs[0])
	}
	return rs, nil
}

// pushArc puts the blocks of items, from this node's store, on p at the
// repair pace, counting them in rs; it returns the puts' errors, and err
// if ctx ended. A put p refuses (errPutRefused: it is receiving all the
// puts it has room for) ends the push, the rest counted as not moved:
// they would most likely be refused too, each after its pace, and the
// next round tries them again.
func (n *Node) pushArc(ctx context.Context, p p2ppeer.ID, items []merkle.Item, rs *RoundStats) (errs []error, err error) {
	for i, it := range items {
		c, _ := cid.Cast(it.Val) // our own store's CIDs
		data, _, err := n.readLocal(c)
		if err != nil {
			if errors.Is(err, blocks.ErrCorrupt) {
				n.blockCorrupt(err, "", "not pushed to "+p.ShortString())
			}
			continue // lost here too (the scrub or the next round sees to it)
		}
		size := len(data)
		if err := n.rep.pace.wait(ctx, size); err != nil {
			putBuf(data)
			return errs, err
		}
		err = n.storeAt(ctx, p, c, data)
		putBuf(data)
		if err != nil {
			rs.Failed++
			errs = append(errs, err)
			if ctx.Err() != nil {
				return errs, ctx.Err()
			}
			if errors.Is(err, errPutRefused) {
				rs.Failed += int64(len(items) - i - 1)
				return errs, nil
			}
			continue
		}
		rs.moved(n, size)
	}
	return errs, nil
}

// pullFrom fetches block c from p for repair, as one of the requests in
// flight to p that the node's Gets choose replicas by (replicaRates): on
// a slow holder a repair pull holds the link for a whole block, and a
// fetch asking that holder too would queue behind it. It counts as load
// only: its end is neither a sample of p's rate nor a failure to avoid p
// for, so the Gets' rules run on what Gets measure.
func (n *Node) pullFrom(ctx context.Context, p p2ppeer.ID, c cid.Cid) ([]byte, error) {
	done := n.blocks.rates.start(p)
	began := time.Now()
	data, err := n.fetchFrom(ctx, p, c)
	done(time.Since(began), fetchAside)
	return data, err
}

func (rs *RoundStats) moved(n *Node, size int) {
	rs.Blocks++
	rs.Bytes += int64(size)
	n.rep.blocks.Add(1)
	n.rep.bytes.Add(int64(size))
}

// repairTimeout bounds a summary exchange: its answer is at most a few
// hundred KiB.
const repairTimeout = 30 * time.Second

// protoFramed is m's size on the wire with its varint length.
func protoFramed(m proto.Message) int {
	s := proto.Size(m)
	return s + protowire.SizeVarint(uint64(s))
}

// repairExchange sends one repair request to p and checks the status.
func (n *Node) repairExchange(ctx context.Context, p p2ppeer.ID, req *pb.RepairRequest, timeout time.Duration) (*pb.RepairResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp := &pb.RepairResponse{}
	if err := requestResponse(ctx, n.h, p, RepairProtocol, req, resp, maxRepairMessage); err != nil {
		return nil, err
	}
	switch resp.GetStatus() {
	case pb.RepairResponse_OK:
		return resp, nil
	case pb.RepairResponse_BUSY:
		return nil, &busyError{time.Duration(resp.GetRetryAfterMs()) * time.Millisecond}
	}
	return nil, fmt.Errorf("remote error: %.200s", resp.GetError())
}

// storeSource lists a block store's ring range for package merkle.
type storeSource struct{ st rangeStore }

// Both sources summarize from keys alone (merkle.KeySource).
var _, _ merkle.KeySource = storeSource{}, scrubbedSource{}

func (s storeSource) Each(r merkle.Range, fn func(merkle.Item) bool) {
	s.st.Range(blocks.Key(r.Lo), blocks.Key(r.Hi), func(k blocks.Key, c cid.Cid) bool {
		return fn(merkle.Item{Key: merkle.Key(k), Val: c.Bytes()})
	})
}

// EachKey lists the keys alone: summaries hash nothing else, and each
// CID's bytes would be a copy.
func (s storeSource) EachKey(r merkle.Range, fn func(merkle.Key) bool) {
	s.st.Range(blocks.Key(r.Lo), blocks.Key(r.Hi), func(k blocks.Key, _ cid.Cid) bool {
		return fn(merkle.Key(k))
	})
}

// scrubbedSource is storeSource passing over, and forgetting, the blocks
// whose files are gone: what a peer answering summaries lists, so that it
// never claims a block it lost and only the ranges asked about are checked.
// checked counts the keys checked (scanBudget).
type scrubbedSource struct {
	st      rangeStore
	checked *int
}

func (s scrubbedSource) Each(r merkle.Range, fn func(merkle.Item) bool) {
	s.st.Range(blocks.Key(r.Lo), blocks.Key(r.Hi), func(k blocks.Key, c cid.Cid) bool {
		if !s.has(c) {
			return true
		}
		return fn(merkle.Item{Key: merkle.Key(k), Val: c.Bytes()})
	})
}

func (s scrubbedSource) EachKey(r merkle.Range, fn func(merkle.Key) bool) {
	s.st.Range(blocks.Key(r.Lo), blocks.Key(r.Hi), func(k blocks.Key, c cid.Cid) bool {
		return !s.has(c) || fn(merkle.Key(k))
	})
}

func (s scrubbedSource) has(c cid.Cid) bool {
	*s.checked++
	return s.st.Has(c)
}

// emptySource is a peer that stores nothing.
type emptySource struct{}

func (emptySource) Each(merkle.Range, func(merkle.Item) bool) {}

func encodeQueries(qs []merkle.Query) []*pb.RangeQuery {
	out := make([]*pb.RangeQuery, len(qs))
	for i, q := range qs {
		rq := &pb.RangeQuery{Lo: q.Range.Lo[:], Hi: q.Range.Hi[:], Count: uint32(q.Summary.Count)}
		if q.Summary.Count > 0 {
			rq.Hash = q.Summary.Hash[:]
		}
		out[i] = rq
	}
	return out
}

var errBadRepairMessage = errors.New("malformed repair message")

func decodeQueries(in []*pb.RangeQuery) ([]merkle.Query, error) {
	if len(in) > maxRepairQueries {
		return nil, fmt.Errorf("%w: %d queries", errBadRepairMessage, len(in))
	}
	out := make([]merkle.Query, len(in))
	for i, q := range in {
		if len(q.GetLo()) != 32 || len(q.GetHi()) != 32 || (len(q.GetHash()) != 32 && len(q.GetHash()) != 0) {
			return nil, fmt.Errorf("%w: bad range bounds or hash", errBadRepairMessage)
		}
		copy(out[i].Range.Lo[:], q.GetLo())
		copy(out[i].Range.Hi[:], q.GetHi())
		copy(out[i].Summary.Hash[:], q.GetHash())
		out[i].Summary.Count = int(q.GetCount())
	}
	if !merkle.Disjoint(out) {
		return nil, fmt.Errorf("%w: overlapping ranges", errBadRepairMessage)
	}
	return out, nil
}

func encodeAnswers(as []merkle.Answer) []*pb.RangeAnswer {
	out := make([]*pb.RangeAnswer, len(as))
	for i, a := range as {
		ra := &pb.RangeAnswer{Match: a.Match, Count: uint32(a.Count), Listed: a.Listed}
		for _, it := range a.Items {
			ra.Cids = append(ra.Cids, it.Val)
		}
		out[i] = ra
	}
	return out
}

// decodeAnswers turns listed CIDs into items keyed as the store keys them;
// merkle.Reconcile checks that they lie in their ranges and in order.
func decodeAnswers(in []*pb.RangeAnswer, want int) ([]merkle.Answer, error) {
	if len(in) != want {
		return nil, fmt.Errorf("%w: %d answers to %d queries", errBadRepairMessage, len(in), want)
	}
	out := make([]merkle.Answer, len(in))
	for i, a := range in {
		out[i] = merkle.Answer{Match: a.GetMatch(), Count: int(a.GetCount()), Listed: a.GetListed()}
		if len(a.GetCids()) > repairMerkle.Leaf {
			return nil, fmt.Errorf("%w: %d CIDs listed", errBadRepairMessage, len(a.GetCids()))
		}
		for _, b := range a.GetCids() {
			if len(b) > maxListedCID {
				return nil, fmt.Errorf("%w: CID of %d bytes", errBadRepairMessage, len(b))
			}
			c, err := cid.Cast(b)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errBadRepairMessage, err)
			}
			out[i].Items = append(out[i].Items, merkle.Item{Key: merkle.Key(blocks.KeyOf(c)), Val: b})
		}
	}
	return out, nil
}

// serveRepair answers one inbound repair stream; a bad request resets the
// stream and nothing else.
func (n *Node) serveRepair(s network.Stream) {
	ctx, cancel := context.WithTimeout(n.life, transferTimeout(maxRepairMessage))
	defer cancel()
	defer bound(ctx, s)()
	req := &pb.RepairRequest{}
	if err := readMsg(bufio.NewReader(s), req, maxRepairMessage); err != nil {
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	from := s.Conn().RemotePeer()
	resp := &pb.RepairResponse{}
	switch req.GetType() {
	case pb.RepairRequest_SUMMARY:
		qs, err := decodeQueries(req.GetQueries())
		if err != nil {
			_ = s.ResetWithError(resetBadMessage)
			return
		}
		n.answerSummary(qs, resp)
		n.rep.summary.Add(int64(protoFramed(req) + protoFramed(resp)))
	case pb.RepairRequest_LEAVING:
		n.peerLeaving(from)
	default:
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	if err := writeMsg(s, resp); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

// answerSummary fills resp with this peer's answers to qs, or BUSY while
// its scanBudget is spent.
func (n *Node) answerSummary(qs []merkle.Query, resp *pb.RepairResponse) {
	st, ok := n.rangeStore()
	if !ok {
		resp.Answers = encodeAnswers(merkle.Answers(emptySource{}, qs, repairMerkle.Leaf))
		return
	}
	if wait, ok := n.rep.scan.admit(); !ok {
		n.rep.refused.Add(1)
		resp.Status = pb.RepairResponse_BUSY
		resp.RetryAfterMs = uint32(min(wait.Milliseconds()+1, math.MaxUint32))
		resp.Error = "busy answering summaries" // what a peer that predates BUSY prints
		return
	}
	checked := 0
	resp.Answers = encodeAnswers(merkle.Answers(scrubbedSource{st, &checked}, qs, repairMerkle.Leaf))
	n.rep.scan.spend(checked)
}

// runRepair is the repair loop: RepairTick at every Check (jittered),
// and at once on a leave notice.
func (n *Node) runRepair(ctx context.Context) {
	if _, ok := n.rangeStore(); !ok || n.rep.cfg.Check <= 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(n.rep.cfg.Check)):
		case <-n.rep.kick:
		}
		if n.rep.left.Load() {
			return
		}
		n.RepairTick(ctx, time.Now())
	}
}

// RepairTick is one check of the repair loop at time now: it delivers
// hints, then runs a round if an arc or its replica peers changed since
// the last round (a join, a leave, a crash noticed by stabilization), or
// if Interval has passed since the last round (then blocks held outside
// their preference lists are offered to it too). It does not wait for a
// changing view to settle: the time from a crash to the round that
// restores its copies is what decides whether blocks survive churn
// (testnet/churnsim/REPORT.md), and a round over unchanged arcs costs one
// summary per replica. A round that left copies unmoved is tried again at the
// next tick. Run calls it on a timer; simulators call it on a virtual
// clock.
func (n *Node) RepairTick(ctx context.Context, now time.Time) {
	if n.rep.left.Load() {
		return
	}
	n.deliverHints(ctx)
	n.checkLostNeighbours(ctx)
	views := n.arcViews()
	r := n.rep
	r.mu.Lock()
	changed := !sameViews(views, r.lastViews)
	due := r.cfg.Interval > 0 && now.Sub(r.lastTick) >= r.cfg.Interval
	deferred := maps.Clone(r.deferred)
	retry := len(deferred) > 0 && !now.Before(r.retryAt)
	r.mu.Unlock()
	if !changed && !due {
		if retry {
			_, _ = n.repairRound(ctx, deferred)
			r.mu.Lock()
			r.retryAt = now.Add(r.deferWait)
			r.mu.Unlock()
		}
		return
	}
	_, _ = n.RepairRound(ctx) // what failed is retried: see below
	if due {
		if st, ok := n.rangeStore(); ok {
			rs, _ := n.offerStrays(ctx, st) // the next due tick tries again
			if rs.Blocks > 0 {
				n.Publish(api.NodeEvent{Kind: api.EventRepair, Count: rs.Blocks,
					Message: fmt.Sprintf("repair moved %d blocks held outside their replicas (%s)", rs.Blocks, FormatSize(rs.Bytes))})
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastTick = now
	r.retryAt = now.Add(r.deferWait)
	for _, c := range r.under {
		if c > 0 {
			r.lastViews = nil // not all moved: compare again next tick
			break
		}
	}
}

// checkLostNeighbours asks chord to stabilize and to check predecessors
// now, rather than at its next timers, when a vnode's successor or
// predecessor has lost its connection. The arc of a crashed first replica
// has no one to repair it until its successor gives up on it (two missed
// pings) and its predecessor has dropped it and notified the next one: that
// wait is most of the time from a crash to full replication
// (testnet/churnsim/REPORT.md). A peer that is only disconnected answers
// and stays.
func (n *Node) checkLostNeighbours(ctx context.Context) {
	self := string(n.h.ID())
	lost := func(r chord.Ref) bool {
		return !r.IsZero() && r.Addr != self && n.h.Network().Connectedness(p2ppeer.ID(r.Addr)) != network.Connected
	}
	var pred, succ bool
	for _, st := range n.ring.States() {
		pred = pred || lost(st.Predecessor)
		succ = succ || (len(st.Successors) > 0 && lost(st.Successors[0]))
	}
	n.dropLostNeighbours(ctx, succ, pred)
}

// dropLostNeighbours runs now, rather than at chord's next timers, what
// drops a lost successor (succ) and a lost predecessor (pred).
func (n *Node) dropLostNeighbours(ctx context.Context, succ, pred bool) {
	if succ {
		// The first round drops the lost successor, the second takes the
		// next one's list and notifies it.
		n.ring.Stabilize(ctx)
		n.ring.Stabilize(ctx)
	}
	if pred {
		// Chord clears a predecessor after two missed pings in a row.
		n.ring.CheckPredecessors(ctx)
		n.ring.CheckPredecessors(ctx)
	}
}

// jitter spreads d over [d/2, 3d/2), so peers' rounds do not line up.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// repairStatus fills the status's repair fields.
func (n *Node) repairStatus(st *api.Status) {
	r := n.rep
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.under {
		st.UnderReplicated += c
	}
	st.Repair = api.Repair{
		Rounds:       r.rounds.Load(),
		BlocksMoved:  r.blocks.Load(),
		BytesMoved:   r.bytes.Load(),
		SummaryBytes: r.summary.Load(),
		Refused:      r.refused.Load(),
		HintsPending: int64(r.nhints),
		LastRound:    r.lastRound,
		InProgress:   r.active.Load(),
	}
}

// RepairStatus is the repair part of Status, for simulators that hold
// Nodes rather than daemons.
func (n *Node) RepairStatus() (underReplicated int64, r api.Repair) {
	var st api.Status
	n.repairStatus(&st)
	return st.UnderReplicated, st.Repair
}
