package parallel

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestEach: every index runs once, never more than workers at a time; once
// ctx ends the feed stops (a select with both ready goes on with odds 1/2 a
// step, so fewer than n/2 start but for odds of 2^-37), and Each waits for
// the calls started.
func TestEach(t *testing.T) {
	const n, workers = 100, 3
	var ran [n]atomic.Int32
	var now, most atomic.Int32
	Each(context.Background(), n, workers, func(i int) {
		k := now.Add(1)
		for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
		}
		ran[i].Add(1)
		now.Add(-1)
	})
	for i := range ran {
		if got := ran[i].Load(); got != 1 {
			t.Fatalf("index %d ran %d times; want 1", i, got)
		}
	}
	if m := most.Load(); m > workers {
		t.Fatalf("%d calls at once; want at most %d", m, workers)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var started, returned atomic.Int32
	Each(ctx, n, workers, func(i int) {
		started.Add(1)
		if i == 10 {
			cancel()
		}
		returned.Add(1)
	})
	if s, r := started.Load(), returned.Load(); s >= n/2 || s != r {
		t.Fatalf("after cancelling at index 10: %d started, %d returned; want fewer than %d started, all returned", s, r, n/2)
	}
}
