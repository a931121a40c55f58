package peer

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
)

// linkSim is a node's uplink in virtual time: a FIFO queue drained at
// rate, fed by a sender paced by an uplinkControl, and ring calls whose
// requests wait behind the queue. Everything steps in tick.
type linkSim struct {
	t    *testing.T
	c    *uplinkControl
	now  time.Time
	tick time.Duration

	rate   float64       // the link's bytes/s
	base   time.Duration // a call's round trip without a queue
	offer  float64       // bytes/s the node has to send; 0: always more
	every  time.Duration // a ring call every
	pacing float64       // bytes/s the controller paces to
	credit float64       // the pacer's bytes allowed now
	queue  float64       // bytes in the link's queue
	calls  []simCall     // calls out, by answer time
	sent   float64       // bytes handed to the link
	out    float64       // bytes that crossed it
	worstQ time.Duration // the longest queue seen since reset
	cuts   int           // capacity decreases
}

type simCall struct {
	pr probe
	at time.Time
}

func newLinkSim(t *testing.T, rate float64, base time.Duration) *linkSim {
	now := time.Unix(1000, 0)
	c := newUplinkControl(now)
	return &linkSim{t: t, c: c, now: now, tick: 5 * time.Millisecond, rate: rate, base: base, every: 300 * time.Millisecond, pacing: c.rate() * bulkShare}
}

var simPeer = p2ppeer.ID("sim peer")

// run steps the link for d.
func (s *linkSim) run(d time.Duration) {
	end := s.now.Add(d)
	nextCall := s.now
	for s.now.Before(end) {
		dt := s.tick.Seconds()
		// The sender: paced, with a burst of uplinkBurst, and limited by
		// what it has to send.
		s.credit = min(s.credit+s.pacing*dt, s.pacing*uplinkBurst.Seconds())
		want := s.credit
		limited := true
		if s.offer > 0 && s.offer*dt < want {
			want, limited = s.offer*dt, false
		}
		if want >= 1 {
			s.c.sent(s.now, int(want), limited)
			s.credit -= float64(int(want))
			s.queue += float64(int(want))
			s.sent += float64(int(want))
		}
		// The link.
		d := min(s.queue, s.rate*dt)
		s.queue -= d
		s.out += d
		if q := time.Duration(s.queue / s.rate * float64(time.Second)); q > s.worstQ {
			s.worstQ = q
		}
		// Ring calls: the request waits out the queue it finds.
		if !s.now.Before(nextCall) {
			q := time.Duration(s.queue / s.rate * float64(time.Second))
			s.calls = append(s.calls, simCall{pr: s.c.probe(s.now), at: s.now.Add(s.base + q)})
			nextCall = nextCall.Add(s.every)
		}
		for len(s.calls) > 0 && !s.calls[0].at.After(s.now) {
			before := s.c.rate()
			s.pacing = s.c.answered(simPeer, s.calls[0].pr, s.now)
			if s.c.rate() < before {
				s.cuts++
			}
			s.calls = s.calls[1:]
		}
		s.now = s.now.Add(s.tick)
	}
}

// The controller finds links from the slowest the network is for to a
// fast one: after the first seconds the queue stays short and the link
// carries most of its rate (no spiral down), and the estimate is near the
// rate.
func TestUplinkControlFindsTheLinkRate(t *testing.T) {
	for _, rate := range []float64{4000, 10_000, 100_000, 1e6} {
		for _, base := range []time.Duration{20 * time.Millisecond, 400 * time.Millisecond} {
			t.Run(fmt.Sprintf("%.0fBps/%v", rate, base), func(t *testing.T) {
				s := newLinkSim(t, rate, base)
				s.run(30 * time.Second)
				startQ := s.worstQ
				s.worstQ, s.out = 0, 0
				s.run(120 * time.Second)
				got := s.c.rate()
				t.Logf("first 30 s: longest queue %v; then: longest queue %v, carried %.2f of the link, estimate %.2f of it, %d cuts", startQ, s.worstQ, s.out/120/rate, got/rate, s.cuts)
				if startQ > time.Second {
					t.Errorf("the queue reached %v while the controller found the link", startQ)
				}
				if s.worstQ > time.Second {
					t.Errorf("the queue reached %v once found", s.worstQ)
				}
				if s.out/120 < 0.6*rate {
					t.Errorf("the link carried %.0f B/s of %.0f", s.out/120, rate)
				}
				if got < 0.7*rate || got > 2*rate {
					t.Errorf("estimated %.0f B/s for a link of %.0f", got, rate)
				}
			})
		}
	}
}

// On a link no sender fills, the delay never grows: the rate only rises,
// doubling, far past anything a loopback transfer needs within seconds.
func TestUplinkControlFastLinkNeverCuts(t *testing.T) {
	s := newLinkSim(t, 1e12, time.Millisecond)
	s.every = 200 * time.Millisecond
	s.run(5 * time.Second)
	if got := s.c.rate(); got < 1e9 || s.cuts > 0 {
		t.Fatalf("after 5 s on a fast link: %.0f B/s estimated, %d cuts; want over 1 GB/s, none", got, s.cuts)
	}
}

// Delay while the node sends no blocks is not its uplink's: nothing
// changes.
func TestUplinkControlIgnoresDelayWhenIdle(t *testing.T) {
	c := newUplinkControl(time.Unix(1000, 0))
	at := time.Unix(1000, 0)
	for i := range 50 {
		rtt := 10 * time.Millisecond
		if i > 5 {
			rtt = 3 * time.Second // a peer, or this node's downlink, slow
		}
		c.answered(simPeer, c.probe(at), at.Add(rtt))
		at = at.Add(rtt + 100*time.Millisecond)
	}
	if got := c.rate(); got != autoStart {
		t.Fatalf("capacity %.0f after delays with no block sent, want %d", got, autoStart)
	}
}

// A delay pacing does not move (the route got longer, the peer is
// loaded) while the node sends less than its rate: the cut that ends slow
// start and one for the standing queue, then no more for two minutes, not
// a spiral down to the floor on its own, paced rate.
func TestUplinkControlNoSpiralOnAStandingDelay(t *testing.T) {
	s := newLinkSim(t, 1e9, 10*time.Millisecond)
	s.offer = 2e6
	s.run(20 * time.Second)
	before := s.c.rate()
	s.base += 500 * time.Millisecond
	s.run(120 * time.Second)
	if got := s.c.rate(); got < 0.4*before || s.cuts > 2 {
		t.Fatalf("a standing 500 ms more took the estimate from %.0f to %.0f B/s (%d cuts)", before, got, s.cuts)
	}
}

// A node with an estimating uplink paces its puts from the start, learns
// from its single-hop ring calls (a call answered with no queue while the
// pacer held a put back doubles the estimate) and shows the estimate in
// its status.
func TestNodeWithAutoUplinkLearnsFromRingCalls(t *testing.T) {
	r, stores := storedRing(t, 2)
	a, b := r.nodes[0], r.nodes[1]
	start := time.Unix(1000, 0)
	a.cfg.Uplink, a.up = UplinkAuto, newAutoUplink(start)
	a.tr.up = a.up
	clock := &virtualClock{t: start}
	clock.pace(a.up)
	// Each reading of the clock is a millisecond on: a ring call takes
	// one, with no queue.
	a.up.pace.now = func() time.Time {
		clock.mu.Lock()
		defer clock.mu.Unlock()
		clock.t = clock.t.Add(time.Millisecond)
		return clock.t
	}
	if st := a.Status(); !st.UplinkAuto || st.Uplink != autoStart {
		t.Fatalf("status before any call: uplink %d, auto %v; want %d, true", st.Uplink, st.UplinkAuto, autoStart)
	}
	data := bytes.Repeat([]byte("auto "), 8<<10) // 40 KiB: 10 s at the start rate
	c := rawBlock(t, data)
	ctx := context.Background()
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	if !stores[b].Has(c) {
		t.Fatal("the put did not land")
	}
	if clock.slept < 5*time.Second {
		t.Fatalf("a put of %d bytes at %d B/s waited %v for the pacer", len(data), autoStart, clock.slept)
	}
	if err := a.tr.Ping(ctx, chord.Ref{Addr: string(b.Host().ID())}); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.Uplink != 2*autoStart {
		t.Fatalf("status after a call with no queue: uplink %d, want %d", st.Uplink, 2*autoStart)
	}
	if got, want := a.up.pace.currentRate(), 2*autoStart*bulkShare; got != want {
		t.Fatalf("pacing at %.0f B/s, want %.0f", got, want)
	}
}

// While the pacer holds a put back, the node pings the peer it goes to:
// on loopback, with no ring call to learn from, the estimate doubles from
// 32 kbit/s at each answer, and a 1 MiB put that would take over four
// minutes at the start rate takes seconds.
func TestAutoUplinkProbesWhileHeldBack(t *testing.T) {
	r, stores := storedRing(t, 2)
	a, b := r.nodes[0], r.nodes[1]
	a.cfg.Uplink, a.up = UplinkAuto, newAutoUplink(time.Now())
	a.tr.up = a.up
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.probeUplink(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	data := bytes.Repeat([]byte("probe "), 1<<20/6)
	c := rawBlock(t, data)
	start := time.Now()
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !stores[b].Has(c) {
		t.Fatal("the put did not land")
	}
	est := a.up.capacity()
	t.Logf("a put of %d bytes took %v; estimate %d B/s", len(data), took, est)
	if est < 1e6 {
		t.Fatalf("estimate %d B/s after a put on loopback, want over 1 MB/s", est)
	}
}

// Past autoUnpacedAbove an estimating uplink sends blocks unpaced, noting
// them; when they make a queue that grows, the estimate is cut to the rate
// it drains at and blocks go paced again.
func TestAutoUplinkUnpacedOnAFastLinkUntilAQueue(t *testing.T) {
	at := time.Unix(1000, 0)
	u := newAutoUplink(at)
	u.pace.now = func() time.Time { return at }
	if !u.paces(1 << 10) {
		t.Fatal("at the start estimate a block went unpaced")
	}
	u.auto.capacity = 2 * autoUnpacedAbove
	// The base delay: a call with no queue.
	u.auto.answered(simPeer, u.auto.probe(at), at.Add(10*time.Millisecond))
	const block = 1 << 20
	unpaced := 0
	for i := range 6 {
		at = at.Add(400 * time.Millisecond)
		if u.paces(block) {
			break // the cut came
		}
		unpaced++
		if u.auto.written != int64(i+1)*block {
			t.Fatalf("%d unpaced blocks noted as %d bytes", i+1, u.auto.written)
		}
		// The queue grows by 200 ms a call.
		pr := u.auto.probe(at)
		u.auto.answered(simPeer, pr, at.Add(10*time.Millisecond+time.Duration(i+1)*200*time.Millisecond))
	}
	if unpaced < autoHigh {
		t.Fatalf("%d blocks went unpaced before the queue was seen, want %d", unpaced, autoHigh)
	}
	if !u.paces(block) {
		t.Fatalf("after a growing queue the estimate is %.0f B/s, blocks still unpaced", u.auto.rate())
	}
	t.Logf("estimate after the queue: %.0f B/s", u.auto.rate())
	// A block every 400 ms grew the queue by 200 ms of the link each
	// time: the link drains two thirds of what was written.
	if got, want := u.auto.rate(), block/0.4/1.5; got < 0.9*want || got > 1.1*want {
		t.Fatalf("estimate %.0f B/s after the queue, want the rate it drained at, %.0f", got, want)
	}
}

// A node configured with UplinkAuto is wired as the tests above wire one
// by hand: its ring transport feeds the controller and Run starts the
// prober, so a put on loopback lifts the estimate off the start rate.
func TestNodeConfiguredWithAutoUplinkRunsItsProber(t *testing.T) {
	cfg := testConfig()
	cfg.Uplink = UplinkAuto
	// No ring maintenance in the test's time: the calls out are the
	// prober's.
	cfg.Chord.StabilizeInterval = time.Hour
	cfg.Chord.FixFingerInterval = time.Hour
	cfg.Chord.CheckPredecessorInterval = time.Hour
	r, stores := storedRingOf(t, cfg, 2)
	a, b := r.nodes[0], r.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	data := bytes.Repeat([]byte("wired "), 256<<10/6) // 80 s at the start rate
	c := rawBlock(t, data)
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	if !stores[b].Has(c) {
		t.Fatal("the put did not land")
	}
	if est := a.Status().Uplink; est < 1e6 {
		t.Fatalf("estimate %d B/s after a put on loopback, want over 1 MB/s", est)
	}
	if b.tr.stats.CallsIn.Load() == 0 {
		t.Fatal("the prober never pinged the peer the put went to")
	}
}

// The base delays are bounded by the peers called lately: one not called
// for two base windows is forgotten, and a peer's base is its least round
// trip over the last one to two windows, so a route that got longer
// becomes the base within two.
func TestUplinkControlForgetsOldBaseDelays(t *testing.T) {
	at := time.Unix(1000, 0)
	c := newUplinkControl(at)
	gone, stays := p2ppeer.ID("gone"), p2ppeer.ID("stays")
	call := func(p p2ppeer.ID, rtt time.Duration) {
		c.answered(p, c.probe(at), at.Add(rtt))
		at = at.Add(rtt + time.Second)
	}
	call(gone, 10*time.Millisecond)
	call(stays, 10*time.Millisecond)
	for range 3 {
		at = at.Add(autoBaseWindow)
		call(stays, 50*time.Millisecond)
	}
	if _, ok := c.base[gone]; ok || len(c.base) != 1 {
		t.Fatalf("base delays of %d peers kept, %q among them: want only %q", len(c.base), gone, stays)
	}
	if got := c.base[stays].min(); got != 50*time.Millisecond {
		t.Fatalf("base delay %v two windows after the route grew to 50ms", got)
	}
}

// However little a queue drained, the estimate stays at autoFloor at
// least: a pacer at a near-zero rate would hold a chunk for hours.
func TestUplinkControlKeepsToTheFloor(t *testing.T) {
	s := newLinkSim(t, 1000, 20*time.Millisecond) // 8 kbit/s, below any link meant for
	s.run(300 * time.Second)
	t.Logf("estimate %.0f B/s, %d cuts, longest queue %v", s.c.rate(), s.cuts, s.worstQ)
	if got := s.c.rate(); got < autoFloor {
		t.Fatalf("estimate %.0f B/s, below the floor of %d", got, autoFloor)
	}
}
