package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// On ext4 without a journal (this machine's disk) a new inode is not taken
// from those deleted in the last 60 s (300 s more while their inode table
// block is dirty): every file creation in a block group scans past them
// (the kernel's find_inode_bit and recently_deleted), one buffer lookup
// each. An invocation's cleanup deletes some 9,000 files; the next
// invocation's first share, about 65 s later, then spent 5 ns/B of CPU in
// the stores' temp file creation instead of 0.7 (perf, README "Session 7"),
// which slowed the first share of whichever tree ran second in an A/B
// sitting. So the cleanup syncs (clean inode tables: 60 s) and leaves a
// stamp, and the next invocation waits out the window before it creates
// files of its own.

// cleanupStamp is the file whose modification time is the last cleanup's.
func cleanupStamp() string { return filepath.Join(os.TempDir(), "xferbench-cleanup") }

// removeAndStamp removes dir, writes its deletions back and stamps the
// time.
func removeAndStamp(dir, stamp string) error {
	err := os.RemoveAll(dir)
	syscall.Sync()
	return errors.Join(err, os.WriteFile(stamp, nil, 0o644))
}

// sinceCleanup is how much longer to wait for window to pass since the
// cleanup stamped at stamp: 0 if none is recorded or it is older.
func sinceCleanup(stamp string, window time.Duration, now time.Time) (time.Duration, error) {
	fi, err := os.Stat(stamp)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return max(0, fi.ModTime().Add(window).Sub(now)), nil
}

// waitAfterCleanup sleeps until window has passed since the last cleanup,
// and returns how long it slept.
func waitAfterCleanup(ctx context.Context, stamp string, window time.Duration) (time.Duration, error) {
	d, err := sinceCleanup(stamp, window, time.Now())
	if err != nil || d == 0 {
		return 0, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
}
