package netshape

import (
	"math/rand/v2"
	"testing"
	"time"
)

// A link of 1 MB/s: 1,000 bytes take 1 ms.
func msLink() *pacer { return &pacer{rate: 1e6} }

func TestPacerQueuesInOrder(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	if got := through(p.book(t0, t0, 3000)); !got.Equal(t0.Add(3 * time.Millisecond)) {
		t.Fatalf("first chunk through at +%v, want +3ms", got.Sub(t0))
	}
	if got := through(p.book(t0, t0, 2000)); !got.Equal(t0.Add(5 * time.Millisecond)) {
		t.Fatalf("second chunk through at +%v, want +5ms (behind the first)", got.Sub(t0))
	}
	if len(p.busy) != 1 {
		t.Fatalf("touching spans not merged: %v", p.busy)
	}
}

// TestPacerBackfills: a chunk that can only start later (a slow sender's,
// on the receiver's downlink) does not hold back one that can start now.
func TestPacerBackfills(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	late := t0.Add(time.Second)
	if got := through(p.book(t0, late, 16000)); !got.Equal(late.Add(16 * time.Millisecond)) {
		t.Fatalf("late chunk through at +%v, want +1.016s", got.Sub(t0))
	}
	if got := through(p.book(t0, t0, 16000)); !got.Equal(t0.Add(16 * time.Millisecond)) {
		t.Fatalf("chunk that can start now through at +%v, want +16ms (the link is free until +1s)", got.Sub(t0))
	}
	// One that fits exactly fills the gap and joins both neighbours.
	if got := through(p.book(t0, t0.Add(996*time.Millisecond), 4000)); !got.Equal(late) {
		t.Fatalf("chunk through at +%v, want +1s (the gap fits it exactly)", got.Sub(t0))
	}
	if len(p.busy) != 2 || !p.busy[1].start.Equal(t0.Add(996*time.Millisecond)) || !p.busy[1].end.Equal(late.Add(16*time.Millisecond)) {
		t.Fatalf("spans %v, want [0,16ms) and [996ms,1.016s)", p.busy)
	}
}

// TestPacerFillsShortGaps: a chunk is split over the gaps it meets, as a
// link sends whatever packets are there: a gap shorter than a chunk is
// used, not left idle (booked whole, first fit, it was skipped).
func TestPacerFillsShortGaps(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	p.book(t0, t0, 3000)                         // [0, 3ms)
	p.book(t0, t0.Add(4*time.Millisecond), 2000) // [4, 6ms): free [3, 4ms)
	first, end := p.book(t0, t0, 2000)           // 1 ms in the gap, 1 ms after +6ms
	if !first.Equal(t0.Add(3*time.Millisecond)) || !end.Equal(t0.Add(7*time.Millisecond)) {
		t.Fatalf("chunk from +%v to +%v, want +3ms to +7ms (the 1 ms gap used)", first.Sub(t0), end.Sub(t0))
	}
	if len(p.busy) != 1 || !p.busy[0].start.Equal(t0) || !p.busy[0].end.Equal(t0.Add(7*time.Millisecond)) {
		t.Fatalf("spans %v, want one, [0, 7ms)", p.busy)
	}
	// A span straddling from: the chunk starts after it.
	first, end = p.book(t0, t0.Add(5*time.Millisecond), 1000)
	if !first.Equal(t0.Add(7*time.Millisecond)) || !end.Equal(t0.Add(8*time.Millisecond)) || len(p.busy) != 1 {
		t.Fatalf("chunk from +%v to +%v, spans %v: want +7ms to +8ms, one span", first.Sub(t0), end.Sub(t0), p.busy)
	}
}

// through is when a booking's last byte is through.
func through(_, end time.Time) time.Time { return end }

func TestPacerForgetsThePast(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	p.book(t0, t0, 1000)
	later := t0.Add(memory + time.Millisecond)
	p.book(later, later, 1000)
	if len(p.busy) != 1 || !p.busy[0].start.Equal(later) {
		t.Fatalf("spans %v, want only the last one", p.busy)
	}
}

func TestPacerUnlimited(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var none *pacer
	if got := through(none.book(t0, t0, 1<<20)); !got.Equal(t0) {
		t.Fatalf("unshaped peer's bytes through at +%v, want at once", got.Sub(t0))
	}
	if got := through((&pacer{}).book(t0, t0, 1<<20)); !got.Equal(t0) {
		t.Fatalf("rate 0 took %v, want no time", got.Sub(t0))
	}
}

// TestPacerStaleNow: a booking whose now is older than another's that has
// forgotten spans since does not book the forgotten time a second time.
func TestPacerStaleNow(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	p.book(t0, t0, 1e6) // [0, 1s)
	fresh := t0.Add(memory + 500*time.Millisecond)
	p.book(fresh, fresh, 1000) // forgets [0, 1s)
	stale := t0.Add(memory - 100*time.Millisecond)
	first, _ := p.book(stale, stale.Add(-memory), 1000)
	if first.Before(fresh.Add(-memory)) {
		t.Fatalf("a stale booking starts at +%v, in time forgotten (the link was busy there until +1s)", first.Sub(t0))
	}
}

// TestPacerNeverOverbooks: random bookings, some in the past (a stream
// catching up), leave disjoint spans whose time is exactly what was booked:
// no time is sold twice, however the chunks were split over gaps.
func TestPacerNeverOverbooks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		p, t0 := msLink(), time.Unix(1000, 0)
		now := t0.Add(memory)
		var booked time.Duration
		for range 50 {
			from := t0.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
			n := 1 + r.IntN(20000)
			first, end := p.book(now, from, n)
			booked += p.duration(n)
			if first.Before(from) || end.Sub(first) < p.duration(n) {
				t.Fatalf("round %d: %d bytes from +%v booked [+%v, +%v)", round, n, from.Sub(t0), first.Sub(t0), end.Sub(t0))
			}
		}
		var busy time.Duration
		for i, s := range p.busy {
			if !s.end.After(s.start) || i > 0 && !s.start.After(p.busy[i-1].end) {
				t.Fatalf("round %d: spans %v not disjoint, apart and in order", round, p.busy)
			}
			busy += s.end.Sub(s.start)
		}
		if busy != booked {
			t.Fatalf("round %d: the link is busy %v, %v was booked", round, busy, booked)
		}
	}
}
