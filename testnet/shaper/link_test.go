package main

import (
	"testing"
	"time"
)

func TestPacerPacesSharedLink(t *testing.T) {
	p := newPacer(8000) // 1000 bytes/s
	t0 := time.Unix(0, 0)
	// Idle link: the first 1000 bytes end 1 s later, less the slack it may lag.
	if got, want := p.reserve(t0, 1000), t0.Add(time.Second-pacerSlack); !got.Equal(want) {
		t.Fatalf("first reservation ends at %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// A second connection at the same instant queues behind the first.
	if got, want := p.reserve(t0, 500), t0.Add(1500*time.Millisecond-pacerSlack); !got.Equal(want) {
		t.Fatalf("second reservation ends at %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// A sender that wakes a little late loses nothing.
	late := t0.Add(1500*time.Millisecond - pacerSlack + pacerSlack/2)
	if got, want := p.reserve(late, 1000), t0.Add(2500*time.Millisecond-pacerSlack); !got.Equal(want) {
		t.Fatalf("late reservation ends at %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// After a long idle time the link saves up no more than the slack.
	idle := t0.Add(time.Hour)
	if got, want := p.reserve(idle, 1000), idle.Add(time.Second-pacerSlack); !got.Equal(want) {
		t.Fatalf("after idling: ends at %v, want %v", got.Sub(idle), want.Sub(idle))
	}
	var unlimited *pacer
	if got := unlimited.reserve(t0, 1<<30); !got.Equal(t0) {
		t.Fatalf("an unlimited link made a sender wait until %v", got)
	}
}

func TestChunkSize(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want int
	}{{0, 64 << 10}, {4000, 512}, {1e6, 5000}, {12.5e6, 62500}, {1e9, 64 << 10}} {
		if got := chunkSize(c.rate); got != c.want {
			t.Errorf("chunkSize(%v) = %d, want %d", c.rate, got, c.want)
		}
	}
}
