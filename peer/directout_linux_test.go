package peer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Whole aligned blocks in pooled buffers go to the disk directly where the
// file system allows it; the rest through the page cache; the file holds
// all of it either way.
func TestOutputFileDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	raw, _, err := openOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newOutputFile(raw)
	const block = 256 << 10
	want := make([]byte, 2*block+1000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if err := f.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off, end int
		pooled   bool
	}{
		{block, 2 * block, true},     // aligned, pooled: direct
		{2 * block, len(want), true}, // the tail: buffered
		{0, 100, false},              // unaligned buffer and length: buffered
		{100, block, false},          // unaligned offset: buffered
	} {
		b := want[w.off:w.end]
		if w.pooled {
			b = getBuf(w.end - w.off)
			copy(b, want[w.off:w.end])
		}
		if n, err := f.WriteAt(b, int64(w.off)); err != nil || n != len(b) {
			t.Fatalf("write at %d: %d, %v", w.off, n, err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the file does not hold what was written")
	}
	if f.direct == nil || f.noDirect.Load() {
		t.Skipf("%s takes no O_DIRECT writes: all were buffered", filepath.Dir(path))
	}
	if n := f.directOnes.Load(); n != 1 {
		t.Errorf("%d direct writes, want 1 (the aligned pooled block)", n)
	}
}
