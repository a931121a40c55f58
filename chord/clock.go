package chord

import (
	"sync"
	"time"
)

// Clock is the node's source of time: the real one in daemons, a manual one in
// tests so round-trip estimates and timers are deterministic.
type Clock interface {
	Now() time.Time
	// After fires once after d, like time.After.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// VirtualClock is a Clock that moves only when advanced. A MemNet with
// link delays advances it by each message's delay, so a simulation that
// makes one call at a time measures round trips and lookup latencies
// exactly, with no sleeps.
type VirtualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []virtualTimer
}

type virtualTimer struct {
	at time.Time
	ch chan time.Time
}

// Now is the virtual time.
func (c *VirtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After fires once the clock has been advanced by d.
func (c *VirtualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, virtualTimer{c.now.Add(d), ch})
	return ch
}

// Advance moves the clock on by d and fires the timers now due.
func (c *VirtualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = kept
}
