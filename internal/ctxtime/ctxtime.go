// Package ctxtime waits on the wall clock for as long as a context lets it.
// It imports nothing of this module, so that the node (peer) and the
// testnet's tools can share it.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, whichever is first; it returns ctx's
// error if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
