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
}

type replicaRate struct {
	blockTime time.Duration // EWMA of the time per block; 0 until measured
	sampled   time.Time     // when blockTime last took a sample
	latency   time.Duration // EWMA of a request's whole time, queues included
	started   []time.Time   // when each request in flight began
	fetched   int64         // blocks received from it
	avoid     time.Time     // until then, count it as failurePenalty slow at least
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

// keepWaiting says whether a replica that has been sending a block for
// elapsed (first hedge delay: delay) should be left to finish alone, and
// when to ask again. It should unless another of the block's replicas
// (peers) is measured to deliver a block in under 1/outrunFactor of that
// time (its last requests' whole time, behind what is in flight to it:
// time per block alone would leave out the queue at the fetcher's own
// downlink, which every request waits in), or none of its answer has
// arrived for silentWaits delays (silent: a stall, not a busy link).
// "Measured": on a fetcher whose own link is the slow part every replica
// measures slow, so a hedge there never looks worth it; round trips say
// nothing of rates.
func (r *replicaRates) keepWaiting(peers []p2ppeer.ID, elapsed, silent, delay time.Duration) (time.Duration, bool) {
	left := silentWaits*delay - silent
	if left <= 0 {
		return 0, false
	}
	r.mu.Lock()
	alt := time.Duration(-1)
	for _, p := range peers {
		if pr := r.peers[p]; pr != nil && pr.latency > 0 {
			if t := pr.latency + time.Duration(len(pr.started))*pr.blockTime; alt < 0 || t < alt {
				alt = t
			}
		}
	}
	r.mu.Unlock()
	if alt < 0 {
		return left, true
	}
	if outrun := outrunFactor*alt - elapsed; outrun > 0 {
		// Look again once the other would have won, or sooner: its
		// estimate changes as its own blocks arrive.
		return min(left, max(outrun, delay)), true
	}
	return 0, false
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
	// outrunFactor: a replica sending a block is hedged once another is
	// measured to deliver one this many times sooner than it has taken.
	outrunFactor = 4
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
	r.mu.Unlock()
	return func(took time.Duration, how fetchOutcome) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if i := slices.IndexFunc(pr.started, began.Equal); i >= 0 {
			pr.started = slices.Delete(pr.started, i, i+1)
		}
		per := took / time.Duration(sharing)
		switch how {
		case fetchOK:
			pr.fetched++
			pr.sample(per, r.now())
			smooth(&pr.latency, took)
		case fetchSmall:
			pr.fetched++
		case fetchOutrun:
			// Lost a hedge race: it would have taken longer than this.
			// Without it a replica that is always outrun would stay
			// unmeasured, so always tried first, and always hedged.
			if per > pr.blockTime {
				pr.sample(per, r.now())
			}
		case fetchFailed:
			pr.avoid = r.now().Add(failureMemory)
		}
	}
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
