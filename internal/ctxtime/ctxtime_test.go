package ctxtime

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestSleep: Sleep returns nil after d, and ctx's error as soon as ctx ends.
func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), time.Minute); err != nil || time.Since(start) != time.Minute {
			t.Fatalf("Sleep(1m) = %v after %v; want nil after 1m", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); err != context.DeadlineExceeded || time.Since(start) != time.Second {
			t.Fatalf("Sleep(1h) under a 1 s context = %v after %v; want %v after 1s", err, time.Since(start), context.DeadlineExceeded)
		}
	})
}
