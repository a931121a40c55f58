package netshape

import (
	"slices"
	"sync"
	"time"
)

// pacer is one direction of a peer's access link: a calendar of the spans
// of time its bytes occupy. A chunk takes the free time at or after the
// time it can start (see book), so a chunk that can only start later — the
// receiver's slot for a chunk still crossing a slow sender's uplink —
// leaves the link free for others until then; a single "busy until" time
// would hold every later chunk behind it and leave the link idle meanwhile.
type pacer struct {
	rate float64 // bytes per second; 0: not limited

	mu   sync.Mutex
	busy []span // disjoint, in order
	// smallUntil is when the small writes sent are through (small).
	smallUntil time.Time
	// forgot is the latest time before which spans were forgotten: nothing
	// is booked before it, as the link's use there is no longer known.
	forgot time.Time
}

type span struct{ start, end time.Time }

const (
	// bulkChunk is the unit in which bulk writes are booked: small enough
	// that streams sharing a link interleave and a reset wastes little,
	// large enough that a fast link needs few timers.
	bulkChunk = 16 << 10
	// memory is how long a link remembers its booked spans, and so how far
	// back a stream with bytes queued may book its next chunk: the link
	// would have sent them while mocknet held the stream's previous write
	// (up to a link latency, 500 ms on the heterogeneous profile) or the
	// writing goroutine waited for a CPU. Spans older than that are
	// forgotten.
	memory = time.Second
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

// book reserves the link for n bytes from from on, in the free time
// left between the spans already booked, and returns when the first of
// them goes and when the last is through. A chunk may so be split over
// several gaps, as a real link sends whichever packets are there: booked
// whole into the first gap that fits it (first fit), chunks placed at
// their own times (a slow sender's, on a receiver's downlink) left holes
// shorter than a chunk that nothing could fill, 12% of a 12.4 MB/s
// downlink taken by 25 senders (the 64 MiB fetch). now is the wall clock.
func (p *pacer) book(now, from time.Time, n int) (first, end time.Time) {
	d := p.duration(n)
	if d == 0 {
		return from, from
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A caller's now can be older than another's that forgot spans since
	// (it read the clock, then waited for the lock or a CPU): its from may
	// lie in time whose spans are gone, which it would book again.
	p.forgot = later(p.forgot, now.Add(-memory))
	from = later(from, p.forgot)
	forget := 0
	for forget < len(p.busy) && !p.busy[forget].end.After(p.forgot) {
		forget++
	}
	p.busy = p.busy[forget:]
	// Walk the spans from from, taking the gaps between them until d is
	// had; the taken pieces and the spans between them become one span.
	i := 0
	for i < len(p.busy) && !p.busy[i].end.After(from) {
		i++
	}
	at, first := from, time.Time{}
	j := i // the spans busy[i:j] lie within the booking
	for {
		if j < len(p.busy) && !p.busy[j].start.After(at) {
			at = later(at, p.busy[j].end)
			j++
			continue
		}
		free := d
		if j < len(p.busy) {
			free = min(d, p.busy[j].start.Sub(at))
		}
		if first.IsZero() {
			first = at
		}
		at = at.Add(free)
		if d -= free; d == 0 {
			break
		}
	}
	end = at
	// busy[i:j] and the pieces taken become [start, end), joined with a
	// span that touches either end.
	start := first
	if i < j {
		start = earlier(start, p.busy[i].start)
	}
	if i > 0 && p.busy[i-1].end.Equal(start) {
		i--
		start = p.busy[i].start
	}
	joined := span{start, end}
	if j < len(p.busy) && p.busy[j].start.Equal(end) {
		joined.end = p.busy[j].end
		j++
	}
	p.busy = slices.Replace(p.busy, i, j, joined)
	return first, end
}

// small is when a small write started at now is through: it takes its own
// time on the link but does not wait behind booked bulk, as a short flow's
// packets interleave with a long flow's on a real link. Without that, one
// 256 KiB block on a 32 kbit/s uplink would hold every ring call of that
// peer for a minute. Small writes queue behind each other, though, and
// their time is booked too, at the first free time from now: together
// with bulk they get the link's rate, not as much again per stream.
func (p *pacer) small(now time.Time, n int) time.Time {
	d := p.duration(n)
	if d == 0 {
		return now
	}
	p.mu.Lock()
	end := later(now, p.smallUntil).Add(d)
	p.smallUntil = end
	p.mu.Unlock()
	p.book(now, now, n)
	return end
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
