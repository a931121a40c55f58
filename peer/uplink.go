package peer

import (
	"context"
	"io"
	"sync"
	"time"
)

// A node on a slow link shares one connection per peer between ring calls
// and block transfers. Left to TCP, block bytes fill every queue on the way
// (yamux, the socket buffers, the bottleneck's buffer) and a ring call
// waits behind tens of seconds of them: on an 80 kbit/s link, one 256 KiB
// block is 26 s against ring timeouts of a few seconds, so the node's calls
// and the calls to it time out and it falls out of the ring while it
// shares (issue 4). The uplink pacer sends block payloads at a share of the
// link's capacity, below it: the queues stay empty and ring calls, which
// are not paced, cross the link at once.

// bulkShare is the part of the uplink block payloads may use; the rest is
// left to ring calls, repair summaries and acknowledgements. On the
// testnet's 80 kbit/s node that kept every ring call under 500 ms while it
// shared (README, "Slow links").
const bulkShare = 0.8

// uplinkBurst is how far an idle uplink may send ahead of its rate: enough
// for a header and its first bytes at once, little enough not to queue.
const uplinkBurst = 100 * time.Millisecond

// uplink paces the block payloads a node sends to bulkShare of its
// uplink's capacity. Messages go whole, one at a time, in the order they
// asked (acquire): interleaved, n transfers would each take n times as
// long and all of them could miss their deadlines, where in turn the first
// ones finish; and a transfer's deadline starts once it has its turn.
// It is a virtual clock (GCRA): each chunk starts when the previous one
// ended at the rate, or at once on a link idle for uplinkBurst.
type uplink struct {
	rate  float64 // bytes per second
	chunk int     // bytes per write: about 50 ms at the rate
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	turn chan struct{} // one message at a time

	mu   sync.Mutex
	next time.Time
}

// newUplink paces to a link of capacity bytes per second; nil (no pacing)
// for 0.
func newUplink(capacity int64) *uplink {
	if capacity <= 0 {
		return nil
	}
	rate := float64(capacity) * bulkShare
	return &uplink{
		rate:  rate,
		chunk: min(max(int(rate/20), 1<<10), 16<<10),
		now:   time.Now,
		sleep: sleepCtx,
		turn:  make(chan struct{}, 1),
	}
}

// reserve books n bytes on the link and returns how long to wait before
// sending them.
func (u *uplink) reserve(n int) time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	start := u.next
	if floor := now.Add(-uplinkBurst); start.Before(floor) {
		start = floor
	}
	u.next = start.Add(time.Duration(float64(n) / u.rate * float64(time.Second)))
	return start.Sub(now)
}

// acquire waits for the uplink's turn: a message with a payload is sent
// whole before the next starts. The caller sends with send and then calls
// release.
func (u *uplink) acquire(ctx context.Context) error {
	select {
	case u.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (u *uplink) release() { <-u.turn }

// send writes one message, the concatenation of parts, to w at the paced
// rate, in chunks. It stops when ctx ends, leaving the rest unsent: the
// caller resets the stream, so a transfer given up on stops taking the
// link.
func (u *uplink) send(ctx context.Context, w io.Writer, parts ...[]byte) error {
	for _, b := range parts {
		for len(b) > 0 {
			k := min(len(b), u.chunk)
			if d := u.reserve(k); d > 0 {
				if err := u.sleep(ctx, d); err != nil {
					return err
				}
			} else if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := w.Write(b[:k]); err != nil {
				return err
			}
			b = b[k:]
		}
	}
	return nil
}
