package peer

import (
	"sync/atomic"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// request is one block request of a Get to one replica, as it goes: the
// block exchange marks it sent and records its answer's bytes as they
// arrive, and the Get reads that to decide whether to hedge it
// (replicaRates.keepReceiving). Times are unix nanoseconds, 0 until then.
type request struct {
	peer  p2ppeer.ID
	began time.Time
	// sent: the request is on its stream, its connection up (a first
	// request to a peer waits for the handshake, over its whole link).
	sent atomic.Int64
	// header: the answer's header arrived; last: bytes of it last did.
	header, last atomic.Int64
	got, total   atomic.Int64
	// sending and answering, if set, are called once, as the request is
	// written and as the header arrives.
	sending, answering func()
}

// markSent records that the request has been written. nil-safe: puts
// and repair watch nothing.
func (q *request) markSent() {
	if q != nil && q.sent.CompareAndSwap(0, time.Now().UnixNano()) && q.sending != nil {
		q.sending()
	}
}

// arrived records that got of the answer's total bytes have come (0 for
// the header alone).
func (q *request) arrived(got, total int) {
	if q == nil {
		return
	}
	now := time.Now().UnixNano()
	q.total.Store(int64(total))
	q.got.Store(int64(got))
	q.last.Store(now)
	if q.header.CompareAndSwap(0, now) && q.answering != nil {
		q.answering()
	}
}

// progress is how far the answer has come at now; ok is false before its
// header.
func (q *request) progress(now time.Time) (tp transferProgress, ok bool) {
	header := q.header.Load()
	if header == 0 {
		return transferProgress{}, false
	}
	// arrived sets these before the header's time: they are set. A later
	// arrival may be half recorded; the bound keeps got within total.
	tp.got = int(q.got.Load())
	tp.total = int(q.total.Load())
	tp.receiving = now.Sub(time.Unix(0, header))
	tp.silent = now.Sub(time.Unix(0, q.last.Load()))
	tp.got = min(tp.got, tp.total)
	return tp, true
}

// dialing says whether the request is still waiting for its connection
// (not yet written).
func (q *request) dialing() bool { return q.sent.Load() == 0 }
