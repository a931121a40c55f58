package peer

import (
	"context"
	"sync"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
)

// With `--uplink auto` the node finds its uplink's capacity itself, in the
// spirit of LEDBAT (RFC 6817): block payloads go paced from the start, and
// the round trips of single-hop ring calls (pings to the peer the blocks go
// to among them, probeUplink), against each peer's smallest round trip
// (the base delay), tell how long the uplink's queue is. While
// the queue stays short and the pacer is what holds the blocks back, the
// rate rises (doubling at first, by small steps once the link has shown
// its limit); when the queue grows past autoTarget while blocks are sent,
// the rate drops to what the link delivered meanwhile. A fast link, whose
// queue never grows, ends up paced far above anything it sends.
//
// What the link delivered comes from the queue itself: a ring call sent
// when w payload bytes had been handed to the link and answered with q of
// queuing delay left the queue at its start time plus q, behind those w
// bytes. Two such points some time apart give the rate at which the queue
// drained, the link's rate, whatever the pacer's. That is also why the
// controller does not spiral down on its own paced rate: with a queue the
// drained rate is the link's, and without one the rate only rises.

const (
	// autoTarget is the queuing delay the controller keeps the uplink
	// under: well below the ring's timeouts, above a loaded machine's
	// scheduling noise.
	autoTarget = 100 * time.Millisecond
	// autoStart is the capacity first assumed: the slowest link the
	// network is meant for (32 kbit/s), which slow start doubles from.
	autoStart = 4000
	// autoFloor is the least capacity ever assumed, below the slowest
	// link the network is meant for (32 kbit/s).
	autoFloor = 2 << 10
	// autoHigh is how many samples in a row must show the queue over
	// autoTarget before a cut once slow start has ended: one late answer
	// (a busy peer) is not a queue. In slow start one such answer halves
	// the estimate, since slow start may have overshot by up to 2×.
	autoHigh = 3
	// autoStep is the share of the capacity added per fresh sample with
	// a short queue once the link has shown its limit.
	autoStep = 1.0 / 32
	// autoDrainSpan is the least time between the two points whose bytes
	// give the drained rate, autoDrainWindow how far back they go.
	autoDrainSpan   = time.Second
	autoDrainWindow = 10 * time.Second
	// autoBaseWindow: each peer's base delay is its least round trip over
	// the last one to two of these.
	autoBaseWindow = 5 * time.Minute
	// autoBusy: a sample counts against the uplink only if block bytes
	// went this recently before its call.
	autoBusy = time.Second
	// autoUnpacedAbove (100 Mbit/s): past this estimate blocks go
	// unpaced, as without --uplink: a 256 KiB block is 20 ms of such a
	// link, and chunks and turns would cost a fast link CPU and
	// parallel transfers (xferbench, README "Slow links").
	autoUnpacedAbove = 12.5e6
	// While the pacer holds blocks back, the node pings the peer they go
	// to (probeUplink), one ping at a time, at most one per autoProbeGap
	// and so that pings of about autoProbeBytes (stream setup and
	// framing included) take at most autoProbeShare of the estimate.
	autoProbeGap     = 50 * time.Millisecond
	autoProbeBytes   = 200
	autoProbeShare   = 0.05
	autoProbeTimeout = 10 * time.Second
)

// probeGap is how long to wait after a ping before the next one.
func (c *uplinkControl) probeGap() time.Duration {
	return max(autoProbeGap, time.Duration(autoProbeBytes/(autoProbeShare*c.rate())*float64(time.Second)))
}

// uplinkControl estimates an uplink's capacity from ring call delays. Its
// methods take the time from the caller, so it is deterministic.
type uplinkControl struct {
	mu sync.Mutex

	capacity    float64 // bytes/s, estimated
	slowStart   bool    // no limit seen yet: double on each fresh short queue
	draining    bool    // cut, the queue not yet short: pace at half
	standingCut bool    // cut once for a queue that did not grow (answered)

	written     int64     // payload bytes handed to the link so far
	lastWrite   time.Time // when the last of them went
	lastLimited time.Time // when the pacer last held a chunk back
	changed     time.Time // the capacity's last change: older calls do not tell of it

	base      map[p2ppeer.ID]*baseDelay
	baseSince time.Time // the current base window's start
	recent    [autoHigh]time.Duration
	nRecent   int
	drained   []drainPoint
}

// baseDelay is a peer's least round trip in the current and the previous
// base window.
type baseDelay struct{ cur, prev time.Duration }

func (b *baseDelay) min() time.Duration {
	if b.prev > 0 && b.prev < b.cur {
		return b.prev
	}
	return b.cur
}

// drainPoint: the bytes written before a call sent at sent had left the
// link by at.
type drainPoint struct {
	sent, at time.Time
	bytes    int64
}

// A probe is what a ring call notes as it starts: when, and how many
// payload bytes had gone before it.
type probe struct {
	at      time.Time
	written int64
}

func newUplinkControl(now time.Time) *uplinkControl {
	return &uplinkControl{capacity: autoStart, slowStart: true, base: map[p2ppeer.ID]*baseDelay{}, baseSince: now}
}

// rate is the capacity the uplink paces to now.
func (c *uplinkControl) rate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capacity
}

// sent notes n payload bytes handed to the link at now; limited: the pacer
// held them back, so the capacity, not the node, bounded the sending.
func (c *uplinkControl) sent(now time.Time, n int, limited bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written += int64(n)
	c.lastWrite = now
	if limited {
		c.lastLimited = now
	}
}

func (c *uplinkControl) probe(now time.Time) probe {
	c.mu.Lock()
	defer c.mu.Unlock()
	return probe{at: now, written: c.written}
}

// answered takes a single-hop ring call to p, started as pr and answered at
// now, adjusts the capacity and returns the rate to pace block payloads
// to: bulkShare of the capacity, half that after a cut until the queue
// is short.
func (c *uplinkControl) answered(p p2ppeer.ID, pr probe, now time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	rtt := now.Sub(pr.at)
	if rtt <= 0 {
		return c.pacing()
	}
	q := rtt - c.baseOf(p, rtt, now)
	c.recent[c.nRecent%autoHigh] = q
	c.nRecent++

	// Calls that started before the last change say nothing of it; nor
	// do those made while no block went (the queue is someone else's: a
	// busy peer, this node's downlink).
	fresh := !pr.at.Before(c.changed)
	busy := !c.lastWrite.IsZero() && pr.at.Sub(c.lastWrite) <= autoBusy
	if q <= autoTarget {
		c.draining = false
	}
	if q > autoTarget {
		if !busy {
			return c.pacing()
		}
		c.drained = append(c.forget(now), drainPoint{sent: pr.at, at: pr.at.Add(q), bytes: pr.written})
		if fresh && c.slowStart {
			// The last doubling was one too many, as in TCP's slow start.
			c.cut(c.capacity/2, now)
			return c.pacing()
		}
		if !fresh || !c.queued() {
			return c.pacing()
		}
		drained, written, ok := c.rates(now)
		if !ok {
			return c.pacing()
		}
		// A growing queue drains slower than it fills: the link is the
		// limit and drained is its rate. A standing one may be the
		// node's (paced at the link's rate exactly) or a longer route's
		// (the base delay grew): it costs one cut by 1-bulkShare at
		// most, no more until the queue has been seen short again, so a
		// delay that pacing does not move does not pull the rate down
		// cut after cut.
		switch {
		case drained < 0.95*written:
			c.cut(min(c.capacity, drained), now)
		case !c.standingCut:
			c.cut(min(c.capacity, max(drained, c.capacity*bulkShare)), now)
			c.standingCut = true
		}
		return c.pacing()
	}
	c.drained = c.drained[:0]
	if q >= autoTarget/2 {
		return c.pacing()
	}
	c.standingCut = false
	// Only a call made while the pacer held blocks back shows the link
	// carries the current rate without a queue.
	if fresh && !c.lastLimited.IsZero() && c.lastLimited.After(c.changed) && !pr.at.After(c.lastLimited.Add(autoBusy)) {
		if c.slowStart {
			c.capacity *= 2
		} else {
			c.capacity += c.capacity * autoStep
		}
		c.changed = now
	}
	return c.pacing()
}

// cut lowers the capacity to to (autoFloor at least) and paces at half of
// it until a call sees the queue short.
func (c *uplinkControl) cut(to float64, now time.Time) {
	c.capacity = max(to, autoFloor)
	c.slowStart = false
	c.draining = true
	c.changed = now
	c.nRecent = 0
}

func (c *uplinkControl) pacing() float64 {
	r := c.capacity * bulkShare
	if c.draining {
		r /= 2
	}
	return r
}

// queued: the last autoHigh samples all saw a queue.
func (c *uplinkControl) queued() bool {
	if c.nRecent < autoHigh {
		return false
	}
	for _, q := range c.recent {
		if q <= autoTarget {
			return false
		}
	}
	return true
}

// rates is, over the last autoDrainWindow of queued calls if they span
// autoDrainSpan, the rate the queue drained at and the rate bytes were
// handed to the link at.
func (c *uplinkControl) rates(now time.Time) (drained, written float64, ok bool) {
	c.drained = c.forget(now)
	if len(c.drained) < 2 {
		return 0, 0, false
	}
	first, last := c.drained[0], c.drained[len(c.drained)-1]
	span, sent := last.at.Sub(first.at), last.sent.Sub(first.sent)
	if span < autoDrainSpan || sent <= 0 || last.bytes <= first.bytes {
		return 0, 0, false
	}
	b := float64(last.bytes - first.bytes)
	return b / span.Seconds(), b / sent.Seconds(), true
}

// forget drops the drain points older than autoDrainWindow.
func (c *uplinkControl) forget(now time.Time) []drainPoint {
	i := 0
	for i < len(c.drained) && now.Sub(c.drained[i].at) > autoDrainWindow {
		i++
	}
	return c.drained[i:]
}

// baseOf updates p's base delay with rtt and returns it; the windows turn
// every autoBaseWindow, forgetting peers not heard from in two of them.
func (c *uplinkControl) baseOf(p p2ppeer.ID, rtt time.Duration, now time.Time) time.Duration {
	if now.Sub(c.baseSince) >= autoBaseWindow {
		for id, b := range c.base {
			if b.cur == 0 {
				delete(c.base, id)
				continue
			}
			b.prev, b.cur = b.cur, 0
		}
		c.baseSince = now
	}
	b := c.base[p]
	if b == nil {
		b = &baseDelay{}
		c.base[p] = b
	}
	if b.cur == 0 || rtt < b.cur {
		b.cur = rtt
	}
	return b.min()
}

// probeUplink pings the peer blocks go to while the pacer holds them back,
// so that the controller hears of the queue every round trip or so, not
// only when the ring calls: the 80 kbit/s testnet node, with 2 vnodes,
// made a ring call every 8 s. A ping that fails says nothing (roundTrip
// feeds only answers to the controller).
func (n *Node) probeUplink(ctx context.Context) {
	for {
		var p p2ppeer.ID
		select {
		case <-ctx.Done():
			return
		case p = <-n.up.probes:
		}
		pctx, cancel := context.WithTimeout(ctx, autoProbeTimeout)
		_ = n.tr.Ping(pctx, chord.Ref{Addr: string(p)})
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.up.auto.probeGap()):
		}
	}
}
