package netshape

import (
	"slices"
	"sync"
	"time"
)

// pacer is one direction of a peer's access link: a calendar of the spans
// of time its bytes occupy. A chunk is booked into the first free span at
// or after the time it can start (first fit), so a chunk that can only
// start later — the receiver's slot for a chunk still crossing a slow
// sender's uplink — leaves the link free for others until then; a single
// "busy until" time would hold every later chunk behind it and leave the
// link idle meanwhile.
type pacer struct {
	rate float64 // bytes per second; 0: not limited

	mu   sync.Mutex
	busy []span // disjoint, in order
}

type span struct{ start, end time.Time }

const (
	// bulkChunk is the unit in which bulk writes are booked: small enough
	// that streams sharing a link interleave and a reset wastes little,
	// large enough that a fast link needs few timers.
	bulkChunk = 16 << 10
	// catchUp is how far in the past a stream with bytes queued may book
	// its next chunk: the link would have sent them while the writing
	// goroutine waited for a CPU. Spans that ended longer ago than this
	// are forgotten.
	catchUp = 20 * time.Millisecond
	// smallWrite is the largest write that does not queue behind bulk
	// data: a ring call or a request.
	smallWrite = 2048
)

// duration is the time n bytes take on the link.
func (p *pacer) duration(n int) time.Duration {
	if p == nil || p.rate <= 0 {
		return 0
	}
	return time.Duration(float64(n) / p.rate * float64(time.Second))
}

// book reserves the link for n bytes from the first free span at or after
// from and returns when they are through. now is the wall clock.
func (p *pacer) book(now, from time.Time, n int) time.Time {
	d := p.duration(n)
	if d == 0 {
		return from
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	forget := 0
	for forget < len(p.busy) && !p.busy[forget].end.After(now.Add(-catchUp)) {
		forget++
	}
	p.busy = p.busy[forget:]
	start, i := from, 0
	for ; i < len(p.busy); i++ {
		b := p.busy[i]
		if !b.end.After(start) {
			continue
		}
		if !b.start.Before(start.Add(d)) {
			break // the gap before b fits
		}
		start = b.end
	}
	end := start.Add(d)
	// Insert [start, end) before busy[i], merged with the spans it touches.
	switch {
	case i > 0 && p.busy[i-1].end.Equal(start) && i < len(p.busy) && p.busy[i].start.Equal(end):
		p.busy[i-1].end = p.busy[i].end
		p.busy = slices.Delete(p.busy, i, i+1)
	case i > 0 && p.busy[i-1].end.Equal(start):
		p.busy[i-1].end = end
	case i < len(p.busy) && p.busy[i].start.Equal(end):
		p.busy[i].start = start
	default:
		p.busy = slices.Insert(p.busy, i, span{start, end})
	}
	return end
}

// small is when a small write started at from is through: it takes its
// own time on the link but does not wait behind booked bulk, as a short
// flow's packets interleave with a long flow's on a real link. Without
// that, one 256 KiB block on a 32 kbit/s uplink would hold every ring call
// of that peer for a minute.
func (p *pacer) small(from time.Time, n int) time.Time {
	return from.Add(p.duration(n))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
