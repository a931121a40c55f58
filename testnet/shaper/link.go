package main

import (
	"sync"
	"time"
)

// pacer is one direction of one node's access link: a queue that sends at
// rate bytes per second, shared by all of the node's connections. It is a
// virtual clock (GCRA): each reservation starts when the previous one ended
// and takes n/rate; the caller sleeps until its reservation ends. next may
// lag behind the caller's clock by at most slack, so a sleeper that wakes a
// little late does not lose the link's capacity, while an idle link never
// saves up more than slack of sending.
type pacer struct {
	mu    sync.Mutex
	rate  float64 // bytes per second; 0: unlimited
	slack time.Duration
	next  time.Time
}

// pacerSlack bounds both the burst an idle link may send at once and how
// late a sleeper may wake without the link losing capacity. Timers wake
// within about a millisecond on an idle machine, but tens of milliseconds
// late on one running many daemons on 2 cores (at load 17, 5 ms of slack
// lost up to 40% of the rate, 25 ms up to 25%).
const pacerSlack = 50 * time.Millisecond

func newPacer(bitsPerSecond float64) *pacer {
	if bitsPerSecond <= 0 {
		return nil
	}
	return &pacer{rate: bitsPerSecond / 8, slack: pacerSlack}
}

// reserve books n bytes on the link at time now and returns when the last
// of them has left it. A nil pacer is an unlimited link.
func (p *pacer) reserve(now time.Time, n int) time.Time {
	if p == nil {
		return now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.next
	if floor := now.Add(-p.slack); start.Before(floor) {
		start = floor
	}
	p.next = start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return p.next
}

// chunkSize is how many bytes one reservation carries on a path whose
// slowest link has the given rate (bytes/s; 0: unlimited): about 5 ms of
// sending, so a slow link is shared fairly among connections, within
// [minChunk, maxChunk].
func chunkSize(rate float64) int {
	const minChunk, maxChunk = 512, 64 << 10
	if rate <= 0 {
		return maxChunk
	}
	return max(minChunk, min(maxChunk, int(rate*0.005)))
}

// sleepUntil sleeps until t; it returns at once for a t in the past.
func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
