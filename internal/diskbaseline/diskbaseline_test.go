package diskbaseline

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFsync: the file holds the bytes, and a second write to the same
// path is refused (each baseline write makes a new file, as each block
// stored does).
func TestWriteFsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "block")
	data := []byte("256 KiB in the benchmarks")
	if err := WriteFsync(path, data); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %q, %v; want %q", got, err, data)
	}
	if err := WriteFsync(path, data); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteFsync = %v; want %v", err, fs.ErrExist)
	}
}
