package peer

import (
	"sync"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// request is one block request of a Get to one replica, as it goes: the
// block exchange marks it sent and records its answer's bytes as they
// arrive, and the Get reads that to decide whether to hedge it
// (replicaRates.keepReceiving). Its times are offsets from began, taken
// with the monotonic clock: a wall clock step (NTP) neither fakes nor
// hides a stall.
type request struct {
	peer  p2ppeer.ID
	began time.Time
	// sending and answering, if set, are called once per request (not per
	// attempt), as it is first written and as a header first arrives.
	sending, answering func()
	// turned, if set (one slot), gets a token whenever the request starts
	// or stops answering (an attempt's header; a retry after one): what
	// its Get judges it by changes then.
	turned chan struct{}
	// moved, if set, is called whenever bytes of the answer arrive: the
	// stall guard of the transfer the Get is part of (Node.getMoving).
	moved func()

	mu sync.Mutex
	// Of the present attempt (reset): sent, the request is on its
	// stream, its connection up (a first request to a peer waits for the
	// handshake, over its whole link); answered, its header arrived,
	// header after began; last, when bytes of it last did.
	sent, answered                 bool
	header, last                   time.Duration
	got, total                     int
	calledSending, calledAnswering bool
}

// reset forgets what an earlier attempt of the request recorded: a retry
// on another stream starts over, and its rate is its own. nil-safe.
func (q *request) reset() {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.answered {
		q.turn()
	}
	q.sent, q.answered = false, false
	q.header, q.last, q.got, q.total = 0, 0, 0, 0
}

// turn tells the Get, if it listens, that the request started or stopped
// answering.
func (q *request) turn() {
	select {
	case q.turned <- struct{}{}:
	default: // a token is already there, or nobody listens (nil)
	}
}

// markSent records that the request has been written. nil-safe: puts
// and repair watch nothing.
func (q *request) markSent() {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.sent = true
	call := q.sending != nil && !q.calledSending
	q.calledSending = true
	q.mu.Unlock()
	if call {
		q.sending()
	}
}

// arrived records that got of the answer's total bytes have come (0 for
// the header alone).
func (q *request) arrived(got, total int) {
	if q == nil {
		return
	}
	at := time.Since(q.began)
	q.mu.Lock()
	q.got, q.total, q.last = min(got, total), total, at
	if !q.answered {
		q.answered, q.header = true, at
		q.turn()
	}
	call := q.answering != nil && !q.calledAnswering
	q.calledAnswering = true
	q.mu.Unlock()
	if call {
		q.answering()
	}
	if q.moved != nil {
		q.moved()
	}
}

// progress is how far the answer has come at now; ok is false before its
// header.
func (q *request) progress(now time.Time) (tp transferProgress, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.answered {
		return transferProgress{}, false
	}
	at := now.Sub(q.began)
	return transferProgress{got: q.got, total: q.total, receiving: at - q.header, silent: at - q.last}, true
}

// dialing says whether the request is still waiting for its connection
// (not yet written).
func (q *request) dialing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.sent
}
