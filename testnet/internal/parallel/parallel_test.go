package parallel

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
)

// TestEach: every index runs once; with every worker's call held, no more
// start (synctest.Wait: the rest wait on the feed) and they are the first
// indices; once ctx ends the feed stops, and Each waits for the calls
// started.
func TestEach(t *testing.T) {
	const n, workers = 100, 3
	var mu sync.Mutex
	var ran []int
	Each(context.Background(), n, workers, func(i int) {
		mu.Lock()
		ran = append(ran, i)
		mu.Unlock()
	})
	slices.Sort(ran)
	for i, r := range ran {
		if r != i || len(ran) != n {
			t.Fatalf("ran %v; want each of [0, %d) once", ran, n)
		}
	}

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		held, returned := make(chan struct{}), make(chan struct{})
		var started []int
		go func() {
			Each(ctx, n, workers, func(i int) {
				mu.Lock()
				started = append(started, i)
				mu.Unlock()
				<-held
			})
			close(returned)
		}()
		synctest.Wait()
		slices.Sort(started)
		if !slices.Equal(started, []int{0, 1, 2}) {
			t.Fatalf("with every call held: %v started; want [0 1 2]", started)
		}
		cancel()
		synctest.Wait()
		select {
		case <-returned:
			t.Fatal("Each returned before the calls it started")
		default:
		}
		close(held)
		<-returned
		if len(started) != workers {
			t.Fatalf("after cancelling: %d calls; want the %d started before", len(started), workers)
		}
	})
}
