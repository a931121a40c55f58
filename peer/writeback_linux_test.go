package peer

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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
	if err := newOutputFile(f).Allocate(size); err != nil {
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

// Whole aligned blocks go to the disk past the page cache (O_DIRECT), the
// rest through it, and the file reads back as written either way.
func TestOutputFileWritesAlignedBlocksPastTheCache(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := newOutputFile(f)
	defer out.closeDirect()
	if out.direct == nil {
		t.Skip("this file system refuses O_DIRECT")
	}
	const block = 256 << 10
	want := make([]byte, 2*block+100)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if err := out.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	// A pooled buffer, as a fetched block comes in: page-aligned.
	buf := getBuf(block)
	defer putBuf(buf)
	for _, off := range []int{block, 0} {
		copy(buf, want[off:off+block])
		if _, err := out.WriteAt(buf, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := out.WriteAt(want[2*block:], 2*block); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	resident := make([]byte, (len(want)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&resident[0]))); errno != 0 {
		t.Fatal(errno)
	}
	cached := 0
	for _, r := range resident[:2*block/os.Getpagesize()] {
		cached += int(r & 1)
	}
	if cached > 0 {
		t.Errorf("%d of the aligned blocks' %d pages are in the page cache: written through it", cached, 2*block/os.Getpagesize())
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the file does not read back as written")
	}
}
