package peer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Allocate reserves the file's blocks without changing its size.
func TestOutputFileAllocate(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := (outputFile{f}).Allocate(size); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Size() != size {
		t.Errorf("size %d after Allocate, want %d", fi.Size(), size)
	}
	if st.Blocks*512 < size {
		t.Skipf("%d bytes reserved of %d: this file system does not preallocate", st.Blocks*512, size)
	}
}
