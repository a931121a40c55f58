package blocks

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// writeSynced writes the whole block through short writes and EINTR, and
// fails, rather than spinning, on a write that makes no progress.
func TestWriteSyncedPartial(t *testing.T) {
	defer func(f func(int, [][]byte, int64, int) (int, error)) { pwritev2 = f }(pwritev2)
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000)

	calls := 0
	pwritev2 = func(fd int, iovs [][]byte, off int64, flags int) (int, error) {
		calls++
		if calls%3 == 0 {
			return 0, unix.EINTR
		}
		return unix.Pwritev2(fd, [][]byte{iovs[0][:min(len(iovs[0]), 1000)]}, off, flags)
	}
	if err := writeSynced(fd, data); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after short writes and EINTR: %d bytes, %v; want the %d written", len(got), err, len(data))
	}

	calls = 0
	pwritev2 = func(fd int, iovs [][]byte, off int64, flags int) (int, error) {
		if calls++; calls <= 3 {
			return 0, nil
		}
		return unix.Pwritev2(fd, iovs, off, flags)
	}
	if err := writeSynced(fd, data); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("writes that make no progress: %v, want io.ErrShortWrite", err)
	}
}
