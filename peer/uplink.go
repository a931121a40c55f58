package peer

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
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

// MinUplink is the least uplink capacity a node is paced to, bytes per
// second: at bulkShare of it a block's sender is still slowestSender, the
// slowest its receiver waits for (receiveLimit). Paced any slower, every
// put of a large block would run out of time at its receiver.
const MinUplink = int64(slowestSender / bulkShare)

// checkUplink reports a configured uplink capacity no node can run with.
func checkUplink(capacity int64) error {
	switch {
	case capacity == UplinkAuto || capacity == 0:
		return nil
	case capacity < 0:
		return fmt.Errorf("uplink %d: want 0 (unpaced), auto or at least %d bytes per second", capacity, MinUplink)
	case capacity < MinUplink:
		return fmt.Errorf("uplink %d bytes per second: below %d, too slow to send a %s block before its receiver gives up (0: unpaced)", capacity, MinUplink, ByteSize(maxBlockSize))
	}
	return nil
}

// uplinkBurst is how far an idle uplink may send ahead of its rate: enough
// for a header and its first bytes at once, little enough not to queue.
const uplinkBurst = 100 * time.Millisecond

// uplink paces the block payloads a node sends to bulkShare of its
// uplink's capacity. Messages go whole, one at a time, in the order they
// asked (acquire): interleaved, n transfers would each take n times as
// long and all of them could miss their deadlines, where in turn the first
// ones finish; and a transfer's deadline starts once it has its turn.
// Each chunk starts when the previous one ended at the rate, or at once on
// a link idle for uplinkBurst.
type uplink struct {
	pace  pacer          // bulkShare of the capacity, uplinkBurst of burst
	fixed int64          // the capacity configured (fixed capacity)
	stall time.Duration  // uplinkStall
	auto  *uplinkControl // set: the capacity is estimated (uplinkauto.go)
	// probes takes the peer a held-back chunk goes to: the estimating
	// uplink's prober pings it (Node.probeUplink).
	probes chan p2ppeer.ID

	turn chan struct{} // one message at a time

	// waiting are the moved callbacks of messages waiting for the turn
	// (take): each chunk the uplink sends is progress for them too, so a
	// share queued behind other uploads is not taken for stalled while
	// the queue moves (its stall guard counts moved calls).
	waitMu  sync.Mutex
	waiting map[*func()]struct{}
}

// newUplink paces to a link of capacity bytes per second; nil (no pacing)
// for 0.
func newUplink(capacity int64) *uplink {
	if capacity <= 0 {
		return nil
	}
	rate := float64(capacity) * bulkShare
	return &uplink{
		pace:  pacer{rate: rate, burst: uplinkBurst},
		fixed: capacity,
		stall: uplinkStall,
		turn:  make(chan struct{}, 1),
	}
}

// UplinkAuto as a capacity (Config.Uplink) has the node estimate it.
const UplinkAuto = -1

// newAutoUplink paces to the capacity its controller estimates.
func newAutoUplink(now time.Time) *uplink {
	u := newUplink(autoStart)
	u.auto = newUplinkControl(now)
	u.probes = make(chan p2ppeer.ID, 1)
	return u
}

// uplinkFor is the uplink of a node configured with capacity: fixed,
// estimated (UplinkAuto) or none (0).
func uplinkFor(capacity int64) *uplink {
	if capacity == UplinkAuto {
		return newAutoUplink(time.Now())
	}
	return newUplink(capacity)
}

// chunkSize is the bytes per write: about 50 ms at the present rate.
func (u *uplink) chunkSize() int {
	return min(max(int(u.pace.currentRate()/20), 1<<10), 16<<10)
}

func (u *uplink) now() time.Time {
	if u.pace.now != nil {
		return u.pace.now()
	}
	return time.Now()
}

// capacity is the capacity paced to, bytes/s: the configured one, or the
// estimate; 0 for no uplink.
func (u *uplink) capacity() int64 {
	if u == nil {
		return 0
	}
	if u.auto != nil {
		return int64(u.auto.rate())
	}
	// Not the rate divided back by bulkShare, which rounds some
	// capacities a byte short.
	return u.fixed
}

// paces reports whether a payload of n bytes goes paced, in a turn. An
// estimating uplink whose estimate passed autoUnpacedAbove sends it as an
// unpaced node does, and notes the bytes for its controller, which cuts
// the estimate, pacing again, if they make a queue.
func (u *uplink) paces(n int) bool {
	switch {
	case u == nil || n == 0:
		return false
	case u.auto == nil || u.auto.rate() < autoUnpacedAbove:
		return true
	}
	u.auto.sent(u.now(), n, false)
	return false
}

// probe notes a single-hop ring call's start for an estimating uplink; nil
// otherwise.
func (u *uplink) probe() *probe {
	if u == nil || u.auto == nil {
		return nil
	}
	pr := u.auto.probe(u.now())
	return &pr
}

// answered hands the controller the call's answer and paces to its new
// estimate.
func (u *uplink) answered(p p2ppeer.ID, pr *probe) {
	if pr == nil {
		return
	}
	u.pace.setRate(u.auto.answered(p, *pr, u.now()))
}

// transferTimeout bounds a block stream carrying size bytes paced by u
// (nil: unpaced): the network's bound, or, on an uplink whose share is
// slower than the slowest link that bound allows for, the time the share
// needs for the bytes plus the same fixed part.
func (u *uplink) transferTimeout(size int) time.Duration {
	d := transferTimeout(size)
	if u == nil {
		return d
	}
	return max(d, blockStreamBase+time.Duration(float64(size)/u.pace.currentRate()*float64(time.Second)))
}

// uplinkStall is how long one chunk's write may block before its message
// gives up the turn until the write is done: paced below the link, a write
// blocks only when the receiver stopped taking bytes (its window is full),
// and a receiver that does not read must not hold every other upload.
const uplinkStall = time.Second

// acquire waits for the uplink's turn: a message with a payload is sent
// whole before the next starts, unless its receiver stalls it. The caller
// sends with the turn's send and then releases it. moved, if set, is
// called whenever the message the wait is behind sends a chunk, under the
// uplink's waitMu: it must not block, nor wait for the uplink.
func (u *uplink) acquire(ctx context.Context, moved func()) (*turn, error) {
	if err := u.take(ctx, moved); err != nil {
		return nil, err
	}
	return &turn{u: u, held: true}, nil
}

func (u *uplink) take(ctx context.Context, moved func()) error {
	select {
	case u.turn <- struct{}{}: // free: no wait for moved to be told of
		return nil
	default:
	}
	if moved != nil {
		u.waitMu.Lock()
		if u.waiting == nil {
			u.waiting = map[*func()]struct{}{}
		}
		u.waiting[&moved] = struct{}{}
		u.waitMu.Unlock()
		defer func() {
			u.waitMu.Lock()
			delete(u.waiting, &moved)
			u.waitMu.Unlock()
		}()
	}
	select {
	case u.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// A turn is one message's hold on its uplink.
type turn struct {
	u    *uplink
	peer p2ppeer.ID // whom the message goes to, for the prober; may be empty
	mu   sync.Mutex
	held bool
}

// release gives the turn back if it holds it; a nil turn, or one released
// already, does nothing.
func (t *turn) release() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held {
		t.held = false
		<-t.u.turn
	}
}

// regain waits for the turn again if a stalled write gave it up; moved is
// take's.
func (t *turn) regain(ctx context.Context, moved func()) error {
	t.mu.Lock()
	held := t.held
	t.mu.Unlock()
	if held {
		return nil
	}
	if err := t.u.take(ctx, moved); err != nil {
		return err
	}
	t.mu.Lock()
	t.held = true
	t.mu.Unlock()
	return nil
}

// send writes one message, the concatenation of parts, to w at the paced
// rate, in chunks. It stops when ctx ends, leaving the rest unsent: the
// caller resets the stream, so a transfer given up on stops taking the
// link. A chunk whose write blocks for u.stall gives the turn to the next
// message; the rest of this one waits for the turn again. moved, if set,
// is called after each chunk written.
func (t *turn) send(ctx context.Context, w io.Writer, moved func(), parts ...[]byte) error {
	u := t.u
	for _, b := range parts {
		for len(b) > 0 {
			if err := t.regain(ctx, moved); err != nil {
				return err
			}
			k := min(len(b), u.chunkSize())
			limited, err := u.pace.pace(ctx, k, false)
			if err != nil {
				return err
			}
			if u.auto != nil {
				u.auto.sent(u.now(), k, limited)
				if limited && t.peer != "" {
					select {
					case u.probes <- t.peer:
					default: // a ping is asked for already
					}
				}
			}
			if err := t.write(w, b[:k]); err != nil {
				return err
			}
			if moved != nil {
				moved()
			}
			u.movedForWaiting()
			b = b[k:]
		}
	}
	return nil
}

// movedForWaiting tells the messages waiting for the turn that a chunk
// went.
func (u *uplink) movedForWaiting() {
	u.waitMu.Lock()
	defer u.waitMu.Unlock()
	for moved := range u.waiting {
		(*moved)()
	}
}

// write writes b to w, giving the turn up if that takes u.stall.
func (t *turn) write(w io.Writer, b []byte) error {
	yielded := make(chan struct{})
	timer := time.AfterFunc(t.u.stall, func() {
		t.release()
		close(yielded)
	})
	_, err := w.Write(b)
	if !timer.Stop() {
		<-yielded
	}
	return err
}
