package chord

import (
	"sync"
	"time"
)

// rttEstimator is the TCP retransmission-timer estimator of RFC 6298 for one
// peer: a smoothed round trip and its variation give the timeout, so a peer
// 1000 ms away is waited for and a 1 ms peer that stops answering is dropped
// quickly.
type rttEstimator struct {
	srtt, rttvar time.Duration
	measured     bool
	backoff      int // consecutive timeouts; each doubles the RTO
}

const (
	rttAlpha = 8 // srtt gain 1/8
	rttBeta  = 4 // rttvar gain 1/4
)

func (e *rttEstimator) observe(rtt time.Duration) {
	if !e.measured {
		e.srtt, e.rttvar, e.measured = rtt, rtt/2, true
	} else {
		diff := e.srtt - rtt
		if diff < 0 {
			diff = -diff
		}
		e.rttvar += (diff - e.rttvar) / rttBeta
		e.srtt += (rtt - e.srtt) / rttAlpha
	}
	e.backoff = 0
}

func (e *rttEstimator) rto(c *Config) time.Duration {
	d := c.InitialRTO
	if e.measured {
		d = e.srtt + 4*e.rttvar
	}
	// Clamp first, then back off, as RFC 6298 does: a 1 ms peer that
	// stops answering waits MinRTO, then twice that, and so on.
	d = max(d, c.MinRTO)
	for i := 0; i < e.backoff && d < c.MaxRTO; i++ {
		d *= 2
	}
	return min(d, c.MaxRTO)
}

// rttTable holds one estimator per peer address.
type rttTable struct {
	mu     sync.Mutex
	cfg    *Config
	byPeer map[string]*rttEstimator
}

func newRTTTable(cfg *Config) *rttTable {
	return &rttTable{cfg: cfg, byPeer: make(map[string]*rttEstimator)}
}

func (t *rttTable) get(addr string) *rttEstimator {
	e := t.byPeer[addr]
	if e == nil {
		e = &rttEstimator{}
		t.byPeer[addr] = e
	}
	return e
}

// Timeout is how long to wait for a single round trip to addr.
func (t *rttTable) Timeout(addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.get(addr).rto(t.cfg)
}

// Observe records a completed round trip.
func (t *rttTable) Observe(addr string, rtt time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(addr).observe(rtt)
}

// TimedOut records a call that got no answer in time.
func (t *rttTable) TimedOut(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(addr)
	if e.backoff < 8 {
		e.backoff++
	}
}

// SRTT returns the smoothed round trip to addr, if one has been measured.
func (t *rttTable) SRTT(addr string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byPeer[addr]
	if !ok || !e.measured {
		return 0, false
	}
	return e.srtt, true
}

// Forget drops the estimate of a peer that left.
func (t *rttTable) Forget(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byPeer, addr)
}

// forgetAll drops every estimate.
func (t *rttTable) forgetAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.byPeer)
}

// ForgetRTTs drops every round-trip estimate, as when the node's network
// changed under it: each peer is timed from InitialRTO again, and
// proximity measures it afresh. The simulator (testnet/sim) builds its ring
// on an undelayed network and shapes the links afterwards.
func (n *Node) ForgetRTTs() { n.rtt.forgetAll() }
