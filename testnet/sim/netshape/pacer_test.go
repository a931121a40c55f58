package netshape

import (
	"testing"
	"time"
)

// A link of 1 MB/s: 1,000 bytes take 1 ms.
func msLink() *pacer { return &pacer{rate: 1e6} }

func TestPacerQueuesInOrder(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	if got := p.book(t0, t0, 3000); !got.Equal(t0.Add(3 * time.Millisecond)) {
		t.Fatalf("first chunk through at +%v, want +3ms", got.Sub(t0))
	}
	if got := p.book(t0, t0, 2000); !got.Equal(t0.Add(5 * time.Millisecond)) {
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
	if got := p.book(t0, late, 16000); !got.Equal(late.Add(16 * time.Millisecond)) {
		t.Fatalf("late chunk through at +%v, want +1.016s", got.Sub(t0))
	}
	if got := p.book(t0, t0, 16000); !got.Equal(t0.Add(16 * time.Millisecond)) {
		t.Fatalf("chunk that can start now through at +%v, want +16ms (the link is free until +1s)", got.Sub(t0))
	}
	// A gap too short for the chunk is skipped: free from +996ms to +1s
	// (4 ms), the chunk needs 5 ms.
	if got := p.book(t0, t0.Add(996*time.Millisecond), 5000); !got.Equal(late.Add(21 * time.Millisecond)) {
		t.Fatalf("chunk through at +%v, want +1.021s (after the late one: the gap before it is too short)", got.Sub(t0))
	}
	// One that fits exactly fills it and joins both neighbours.
	if got := p.book(t0, t0.Add(996*time.Millisecond), 4000); !got.Equal(late) {
		t.Fatalf("chunk through at +%v, want +1s (the gap fits it exactly)", got.Sub(t0))
	}
	if len(p.busy) != 2 || !p.busy[1].start.Equal(t0.Add(996*time.Millisecond)) || !p.busy[1].end.Equal(late.Add(21*time.Millisecond)) {
		t.Fatalf("spans %v, want [0,16ms) and [996ms,1.021s)", p.busy)
	}
}

func TestPacerForgetsThePast(t *testing.T) {
	p, t0 := msLink(), time.Unix(1000, 0)
	p.book(t0, t0, 1000)
	later := t0.Add(time.Second)
	p.book(later, later, 1000)
	if len(p.busy) != 1 || !p.busy[0].start.Equal(later) {
		t.Fatalf("spans %v, want only the one at +1s", p.busy)
	}
}

func TestPacerUnlimited(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var none *pacer
	if got := none.book(t0, t0, 1<<20); !got.Equal(t0) {
		t.Fatalf("unshaped peer's bytes through at +%v, want at once", got.Sub(t0))
	}
	if got := (&pacer{}).book(t0, t0, 1<<20); !got.Equal(t0) {
		t.Fatalf("rate 0 took %v, want no time", got.Sub(t0))
	}
}
