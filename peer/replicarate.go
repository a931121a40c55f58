package peer

import (
	"math"
	"slices"
	"sync"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// replicaRates is what a node has measured of the replicas it fetches
// blocks from: how long each takes per block (an EWMA over the last few)
// and how many requests to each are in flight. Get asks the replica whose
// next block should arrive first, (in flight + 1) x time per block, so a
// fetch with many blocks in flight pulls from several replicas at once, in
// proportion to their measured speed, and shifts its requests towards the
// faster ones as it learns them (the "least loaded, latency-weighted"
// balancing of Finagle and Linkerd).
//
// A block's time is its request-to-arrival time divided by the requests
// that were in flight to that replica with it: a replica that moves k
// blocks at once in time T delivers one per T/k. For a replica bound by
// its round trip rather than its bandwidth this keeps the expected wait
// near the round trip however many requests share it.
//
// While requests to a replica are in flight its estimate does not fade,
// and the oldest of them bounds it from below: a replica that has not
// answered in 3 s is no faster than 3 s (over the requests sharing it),
// measured or not, so requests stop piling onto a slow or stalled one
// before its first answer.
//
// An idle replica's estimate halves for every max(rateHalfLife,
// probeBlocks x its time per block) without a new sample: a replica
// avoided after a bad start (a cold stream, a burst of load) becomes worth
// a try again and is measured afresh, at a cost of about one block in
// probeBlocks of its own time, however slow its link.
type replicaRates struct {
	now   func() time.Time // time.Now; a test's clock
	mu    sync.Mutex
	peers map[p2ppeer.ID]*replicaRate
	// inflight is the node's requests in flight, to every replica;
	// loadArea, its integral over time (requests x seconds) up to loadAt:
	// a request's average load is the area over its life by its length.
	inflight int
	loadArea float64
	loadAt   time.Time
}

type replicaRate struct {
	blockTime time.Duration // EWMA of the time per block; 0 until measured
	sampled   time.Time     // when blockTime last took a sample
	// perLoad is an EWMA of a request's whole time (queues included) over
	// the node's requests in flight on average while it lasted
	// (wholeBlock).
	perLoad time.Duration
	started []time.Time // when each request in flight began
	fetched int64       // blocks received from it
	avoid   time.Time   // until then, count it as failurePenalty slow at least
}

const (
	// rateWeight is the weight of a new sample in the EWMA: about the last
	// five blocks count.
	rateWeight   = 0.3
	rateHalfLife = 100 * time.Millisecond
	probeBlocks  = 8
	// A replica that failed for another reason than not holding the block
	// counts as taking failurePenalty per block for failureMemory, so that
	// the next blocks try the others first, and later ones try it again.
	failurePenalty = time.Second
	failureMemory  = 5 * time.Second
	// maxRatePeers bounds the table; past it, peers with nothing in flight
	// are forgotten.
	maxRatePeers = 1024
)

func newReplicaRates() *replicaRates {
	return &replicaRates{now: time.Now, peers: map[p2ppeer.ID]*replicaRate{}}
}

// pick returns the index of the peer whose next block should arrive
// first: the least (in flight + 1) x time per block. A peer never measured
// counts as fast as the fastest measured one, so that each replica gets
// tried; when none is measured, its time per block is its round trip (rtt)
// plus blockAtModestRate, unknown ones last: the first requests go one per
// replica, nearest first, unless one is several times nearer.
func (r *replicaRates) pick(peers []p2ppeer.ID, rtt func(p2ppeer.ID) (time.Duration, bool)) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	est := make([]time.Duration, len(peers))
	best := time.Duration(-1)
	for i, p := range peers {
		if pr := r.peers[p]; pr != nil && pr.blockTime > 0 {
			est[i] = pr.estimate(now)
			if best < 0 || est[i] < best {
				best = est[i]
			}
		}
	}
	pick, pickCost := 0, time.Duration(0)
	for i, p := range peers {
		t, inflight := est[i], 0
		pr := r.peers[p]
		if pr != nil {
			inflight = len(pr.started)
		}
		if pr == nil || pr.blockTime == 0 {
			switch d, ok := rtt(p); {
			case best >= 0:
				t = best
			case ok:
				// A block is more than a round trip: a replica already
				// sending one is no better than an idle one twice as far
				// (on a slow link a second request to it queues behind the
				// whole first block, which its header cannot overtake).
				t = d + blockAtModestRate
			default:
				t = time.Hour
			}
		}
		if pr != nil {
			t = max(t, pr.overdue(now))
			if now.Before(pr.avoid) {
				t = max(t, failurePenalty)
			}
		}
		if cost := time.Duration(inflight+1) * max(t, time.Microsecond); i == 0 || cost < pickCost {
			pick, pickCost = i, cost
		}
	}
	return pick
}

// transferProgress is how far one request's answer has come: got of its
// total bytes (the size its header gave), the header received receiving
// ago and the last bytes silent ago.
type transferProgress struct {
	got, total        int
	receiving, silent time.Duration
}

// rate is the rate the answer comes at, in bytes per second: over its
// whole transfer, or since the previous look (prev) if it has sped up
// since (the fetch's other blocks ended and left it the link). The faster
// of the two: a hedge is only worth it when even that is slow. 0: none of
// the payload has arrived, nothing to go by.
func (tp transferProgress) rate(prev transferProgress) float64 {
	if tp.got == 0 || tp.receiving <= 0 {
		return 0
	}
	r := float64(tp.got) / tp.receiving.Seconds()
	if dt := tp.receiving - prev.receiving; prev.receiving > 0 && dt > 0 && tp.got > prev.got {
		r = max(r, float64(tp.got-prev.got)/dt.Seconds())
	}
	return r
}

// keepReceiving says whether a replica that is sending a block, progress
// so far tp (prev at the previous look; zero at the first), should be left
// to finish alone (first hedge delay: delay), and when to look again;
// if not, the replica to ask (the index in peers of the one expected to
// deliver first; -1: the usual pick).
//
// In a fetch's endgame (its every block asked, endgame), it is hedged
// when another of the block's replicas (peers) is expected
// to deliver the whole block in under 1/hedgeMargin of the time this one
// still needs at the rate it has come so far (remaining bytes / rate):
// the fetch's last blocks stuck on a slow holder, while a fast one idles.
// Not when it is near its end, however slow it was: a slow link's last
// block is not doubled. On a fetcher whose own downlink is the slow part
// every replica measures slow (the other's expected time counts the
// fetcher's own queue, wholeBlock), so no hedge there; unmeasured
// replicas never trigger it, round trips say nothing of rates.
//
// Only a replica whose time per block under load beats this block's
// whole time (so far and to come) is asked.
//
// Mid-fetch it is not: the fetcher's downlink is busy with the window's
// other blocks, and a block that comes slowly only holds one slot of it,
// while a second request would take link from the others. Nothing is then
// to decide before the stall rule could fire: again is that time. Its rate is
// only trusted once minProgress of it has come, or a second has passed.
//
// It is also hedged once none of its answer has arrived for silentWaits
// delays: a downlink shared with the fetch's other requests still brings
// each of them some bytes, so that silence is a stall.
func (r *replicaRates) keepReceiving(peers []p2ppeer.ID, tp, prev transferProgress, delay time.Duration, endgame bool) (again time.Duration, to int, keep bool) {
	left := silentWaits*delay - tp.silent
	if left <= 0 {
		return 0, -1, false
	}
	if !endgame {
		// Only the stall rule applies: nothing to decide before its
		// silence would reach silentWaits delays (the caller looks again
		// sooner when the endgame begins).
		return left, -1, true
	}
	// In the endgame, often: the other replicas' expected times fall as
	// the fetch's other blocks end, and a look is a lock and a few sums.
	again = min(left, max(min(delay/4, maxHedgeLook), minHedgeLook))
	rate := tp.rate(prev)
	if rate == 0 || tp.got < minProgress && tp.receiving < time.Second {
		return again, -1, true
	}
	remaining := time.Duration(float64(tp.total-tp.got) / rate * float64(time.Second))
	whole := tp.receiving + remaining
	r.mu.Lock()
	defer r.mu.Unlock()
	alt, to := time.Duration(-1), -1
	now := r.now()
	for i, p := range peers {
		t, ok := r.wholeBlock(p, now)
		// Its time per block, measured under the fetch's full load, must
		// beat this block's whole time under the present one too: a
		// replica slow by its own link gains nothing from a lighter load.
		if ok && r.peers[p].blockTime < whole && (alt < 0 || t < alt) {
			alt, to = t, i
		}
	}
	if alt >= 0 && hedgeMargin*alt < remaining {
		return 0, to, false
	}
	return again, -1, true
}

// wholeBlock is the time p is expected to take for a block asked now:
// its requests' whole time (queues included) scaled to the node's
// requests now in flight, this one included. The scaling is the queue at
// the fetcher's own downlink: a request that took 1 s among 32 in flight
// takes about 3/32 s among 2 (the fetch's last blocks), and about 33/32 s
// among 32 (mid-fetch, where every replica then looks as slow as the link
// makes it). The requests in flight to p are in that count already (they
// are not added again at p's time per block, which was measured under the
// fetch's load and would count that load twice); and, as for pick, it is
// no less than p's oldest request in flight says. Unmeasured, or failed
// within failureMemory: no (a hedge goes to a replica known to be good).
// r.mu held.
func (r *replicaRates) wholeBlock(p p2ppeer.ID, now time.Time) (time.Duration, bool) {
	pr := r.peers[p]
	if pr == nil || pr.perLoad == 0 || now.Before(pr.avoid) {
		return 0, false
	}
	return max(time.Duration(r.inflight+1)*pr.perLoad, pr.overdue(now)), true
}

// minRateSample is the smallest block whose time is a sample of a
// replica's rate: a smaller one (an internal DAG node, a file's last
// leaf) takes about a round trip however slow the link, and would make a
// slow replica look fast.
const minRateSample = 64 << 10

// blockAtModestRate is the time a block takes at a modest rate: 256 KiB
// at ~20 Mbit/s.
const blockAtModestRate = 100 * time.Millisecond

const (
	// silentWaits is how many hedge delays without any block bytes
	// arriving a replica that has begun sending a block gets before another
	// is asked anyway.
	silentWaits = 31
	// hedgeMargin: a replica sending a block is hedged once another is
	// expected to deliver the whole block this many times sooner than the
	// first needs for the rest of it.
	hedgeMargin = 2
	// A block being received is looked at every quarter hedge delay,
	// within these bounds.
	minHedgeLook = 10 * time.Millisecond
	maxHedgeLook = 100 * time.Millisecond
	// minProgress: a transfer's first bytes come in a burst or a trickle
	// (a read of the stream's buffer); its rate is taken from this much on.
	minProgress = 32 << 10
)

// startedBefore says whether a request to p that began before t is still
// in flight.
func (r *replicaRates) startedBefore(p p2ppeer.ID, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := r.peers[p]
	return pr != nil && slices.ContainsFunc(pr.started, func(s time.Time) bool { return s.Before(t) })
}

// expected is the wait p's measurement predicts for a request just
// started: requests in flight (this one included) x time per block.
func (r *replicaRates) expected(p p2ppeer.ID) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := r.peers[p]
	if pr == nil || pr.blockTime == 0 {
		return 0, false
	}
	return time.Duration(max(len(pr.started), 1)) * pr.estimate(r.now()), true
}

// estimate is the time per block at now: while requests are in flight,
// the measured one or more if they are overdue; once idle, the measured
// one halved for every half-life since it was sampled.
func (pr *replicaRate) estimate(now time.Time) time.Duration {
	if len(pr.started) > 0 {
		return max(pr.blockTime, pr.overdue(now))
	}
	halfLife := max(rateHalfLife, probeBlocks*pr.blockTime)
	age := now.Sub(pr.sampled)
	return time.Duration(float64(pr.blockTime) * math.Exp2(-float64(age)/float64(halfLife)))
}

// overdue is the time per block the requests in flight show at least: the
// oldest one's age over the requests sharing the replica.
func (pr *replicaRate) overdue(now time.Time) time.Duration {
	if len(pr.started) == 0 {
		return 0
	}
	return now.Sub(slices.MinFunc(pr.started, time.Time.Compare)) / time.Duration(len(pr.started))
}

// fetchOutcome is how a request to a replica ended.
type fetchOutcome int

const (
	fetchOK     fetchOutcome = iota // the block arrived: a sample
	fetchSmall                      // a block under minRateSample arrived: its time is a round trip, no sample
	fetchRaced                      // cancelled in a race for a small block (all replicas asked at once): no sample
	fetchLacked                     // the replica does not hold it: says nothing of its speed
	fetchOutrun                     // cancelled when another replica answered first: the time so far is a lower bound
	fetchFailed                     // any other failure: the replica is slow, gone or lying
	fetchAside                      // not a Get's (a repair pull): it held the replica and the link, no sample
)

// start records a request to p and returns the function that records how
// it ended, after took.
func (r *replicaRates) start(p p2ppeer.ID) (done func(took time.Duration, how fetchOutcome)) {
	r.mu.Lock()
	pr := r.peers[p]
	if pr == nil {
		if len(r.peers) >= maxRatePeers {
			r.forgetIdle()
		}
		pr = &replicaRate{}
		r.peers[p] = pr
	}
	began := r.now()
	pr.started = append(pr.started, began)
	sharing := len(pr.started)
	r.addLoad(began, 1)
	load, area := float64(r.inflight), r.loadArea
	r.mu.Unlock()
	return func(took time.Duration, how fetchOutcome) {
		r.mu.Lock()
		defer r.mu.Unlock()
		now := r.now()
		if i := slices.IndexFunc(pr.started, began.Equal); i >= 0 {
			pr.started = slices.Delete(pr.started, i, i+1)
			r.addLoad(now, -1)
			// The load it met is the average over its life: requests
			// that began or ended while it came shared the link with it
			// for part of its time. (No time passed on a test's clock:
			// the load at its start.)
			if life := now.Sub(began).Seconds(); life > 0 {
				load = max((r.loadArea-area)/life, 1)
			}
		}
		per := took / time.Duration(sharing)
		switch how {
		case fetchOK:
			pr.fetched++
			pr.sample(per, now)
			smooth(&pr.perLoad, time.Duration(float64(took)/load))
		case fetchSmall:
			pr.fetched++
		case fetchOutrun:
			// Lost a hedge race: it would have taken longer than this.
			// Without it a replica that is always outrun would stay
			// unmeasured, so always tried first, and always hedged.
			if per > pr.blockTime {
				pr.sample(per, now)
			}
		case fetchFailed:
			pr.avoid = now.Add(failureMemory)
		}
	}
}

// addLoad changes the requests in flight by d at now, adding the time
// since the last change to loadArea. r.mu held.
func (r *replicaRates) addLoad(now time.Time, d int) {
	if !r.loadAt.IsZero() && now.After(r.loadAt) {
		r.loadArea += float64(r.inflight) * now.Sub(r.loadAt).Seconds()
	}
	r.loadAt = now
	r.inflight += d
}

func (pr *replicaRate) sample(per time.Duration, now time.Time) {
	smooth(&pr.blockTime, per)
	pr.sampled = now
}

// smooth moves the average avg rateWeight of the way to sample x; the
// first sample (avg still 0) sets it.
func smooth(avg *time.Duration, x time.Duration) {
	if *avg == 0 {
		*avg = x
		return
	}
	*avg += time.Duration(rateWeight * float64(x-*avg))
}

func (r *replicaRates) forgetIdle() {
	for p, pr := range r.peers {
		if len(pr.started) == 0 {
			delete(r.peers, p)
		}
	}
}

// fetched reports how many blocks came from p.
func (r *replicaRates) fetched(p p2ppeer.ID) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pr := r.peers[p]; pr != nil {
		return pr.fetched
	}
	return 0
}
