// Package parallel runs a batch of independent calls on a few goroutines,
// as the testnet's tools run their lookup workloads.
package parallel

import (
	"context"
	"sync"
)

// Each calls do(i) for every i in [0, n), at most workers calls at a time,
// in order of i, until ctx ends: the indices not started by then are
// skipped. It returns once every call it started has returned; with
// workers < 1 and n > 0 no call starts and it waits for ctx to end.
func Each(ctx context.Context, n, workers int, do func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range work {
				do(i)
			}
		})
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}
