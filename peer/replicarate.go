package peer

import (
	"sync"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// replicaRates is what a node has measured of the replicas it fetches
// blocks from: how long a block takes from each (an EWMA over the last
// few) and how many requests to each are in flight. Get asks the replica
// whose next block should arrive first, (in flight + 1) x block time, so a
// fetch with many blocks in flight pulls from several replicas at once and
// shifts its requests towards the faster ones as it learns them
// (Finagle's and Linkerd's "least loaded, latency-weighted" balancing).
type replicaRates struct {
	mu    sync.Mutex
	peers map[p2ppeer.ID]*replicaRate
}

type replicaRate struct {
	blockTime time.Duration // EWMA of a block's request-to-arrival time; 0 until measured
	inflight  int
	fetched   int64     // blocks received from it
	avoid     time.Time // until then, count it as failurePenalty slow at least
}

const (
	// rateWeight is the weight of a new sample in the EWMA: about the last
	// five blocks count.
	rateWeight = 0.3
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
	return &replicaRates{peers: map[p2ppeer.ID]*replicaRate{}}
}

// cost is the expected wait for one more block from p; prior stands in for
// a block time never measured (the round-trip time, when known).
func (r *replicaRates) cost(p p2ppeer.ID, prior time.Duration) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, inflight := prior, 0
	if pr := r.peers[p]; pr != nil {
		if pr.blockTime > 0 {
			t = pr.blockTime
		}
		if time.Now().Before(pr.avoid) {
			t = max(t, failurePenalty)
		}
		inflight = pr.inflight
	}
	return time.Duration(inflight+1) * max(t, time.Microsecond)
}

// start records a request to p and returns the function that records its
// end: ok with the time it took, or a failure (penalize: the replica failed
// in a way that says it is slow or gone, not merely that it lacks the
// block).
func (r *replicaRates) start(p p2ppeer.ID) (done func(took time.Duration, ok, penalize bool)) {
	r.mu.Lock()
	pr := r.peers[p]
	if pr == nil {
		if len(r.peers) >= maxRatePeers {
			r.forgetIdle()
		}
		pr = &replicaRate{}
		r.peers[p] = pr
	}
	pr.inflight++
	r.mu.Unlock()
	return func(took time.Duration, ok, penalize bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		pr.inflight--
		switch {
		case ok:
			pr.fetched++
			if pr.blockTime == 0 {
				pr.blockTime = took
			} else {
				pr.blockTime += time.Duration(rateWeight * float64(took-pr.blockTime))
			}
		case penalize:
			pr.avoid = time.Now().Add(failureMemory)
		}
	}
}

func (r *replicaRates) forgetIdle() {
	for p, pr := range r.peers {
		if pr.inflight == 0 {
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
