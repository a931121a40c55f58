package peer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"

	"chordshare/peer/api"
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
	out := newOutputFile(f)
	defer out.closeDirect()
	if err := out.Allocate(size); err != nil {
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

// residentPages is how many of the first n bytes' pages of the file at
// path are in the page cache (mincore(2) of a mapping of it).
func residentPages(t *testing.T, path string, n int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (n+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident
}

// bypassesCache reports whether dir's file system keeps a page written
// with O_DIRECT out of the page cache. Not all do: tmpfs takes O_DIRECT
// (Linux 6.6 on) but is the page cache, and ramfs refuses it.
func bypassesCache(t *testing.T, dir string) bool {
	t.Helper()
	path := filepath.Join(dir, "direct-probe")
	defer os.Remove(path)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false
	}
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(page)
	_, err = unix.Pwrite(fd, page, 0)
	unix.Close(fd)
	return err == nil && residentPages(t, path, len(page)) == 0
}

// Whole aligned blocks go to the disk past the page cache (O_DIRECT), the
// rest through it, and the file reads back as written either way: also
// through the first descriptor, whose cached pages of the range (read by
// a resume's check of what the file holds) the direct writes replace.
// Where O_DIRECT does not bypass the cache (tmpfs, ramfs, no /proc),
// only the read-back is checked.
func TestOutputFileWritesAlignedBlocksPastTheCache(t *testing.T) {
	dir := t.TempDir()
	bypass := bypassesCache(t, dir)
	f, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := newOutputFile(f)
	defer out.closeDirect()
	const block = 256 << 10
	want := make([]byte, 2*block+100)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if err := out.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	stale := make([]byte, len(want))
	if _, err := out.ReadAt(stale, 0); err != nil {
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
	cached := residentPages(t, f.Name(), 2*block)
	got := make([]byte, len(want))
	if _, err := out.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the file does not read back as written")
	}
	if out.direct == nil || !bypass {
		t.Skipf("O_DIRECT here: reopened %v, bypasses the page cache %v; only the read-back checked", out.direct != nil, bypass)
	}
	if cached > 0 {
		t.Errorf("%d of the aligned blocks' %d pages are in the page cache: written through it", cached, 2*block/os.Getpagesize())
	}
}

// A fetch closes the output's second, O_DIRECT descriptor whether it ends
// whole, resumed or failed: the daemon's open descriptors do not grow
// with the fetches it ran.
func TestFetchesLeaveNoDescriptorOpen(t *testing.T) {
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		return len(ents)
	}
	f := &fakeRing{}
	c := serveAPI(t, f)
	ctx := testCtx(t)
	data := randomData(1<<20, 9)
	res, err := c.Share(ctx, bytes.NewReader(data), int64(len(data)), api.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const fetches = 8
	before := openFDs()
	for i := range fetches {
		path := filepath.Join(dir, strconv.Itoa(i))
		if i%2 == 1 { // a partial file: the fetch resumes
			if err := os.WriteFile(path, data[:len(data)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Fetch(ctx, res.CID, path, api.TransferOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A fetch that fails once its output is open.
	f.getHook = func(context.Context, cid.Cid) error { return errors.New("no replica") }
	for i := range fetches {
		if _, err := c.Fetch(ctx, res.CID, filepath.Join(dir, "failed"+strconv.Itoa(i)), api.TransferOptions{}); err == nil {
			t.Fatal("a fetch with no replica succeeded")
		}
	}
	// Less than one a fetch: the API connection may have been redialled.
	if after := openFDs(); after-before >= fetches {
		t.Errorf("%d descriptors open before %d fetches, %d after", before, 2*fetches, after)
	}
}
