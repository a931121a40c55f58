package blocks

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"
)

// cachedPages is how many of the file at path's pages are in the page
// cache (mincore(2) of a mapping of it).
func cachedPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
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
	return err == nil && cachedPages(t, path) == 0
}

// An aligned block is written past the page cache (O_DIRECT), an
// unaligned one through it, and both read back whole; where the file
// system does not bypass the cache (tmpfs, ramfs), they still read back.
func TestAlignedBlocksAreWrittenPastThePageCache(t *testing.T) {
	dir := t.TempDir()
	bypass := bypassesCache(t, dir)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	aligned, ac := randBlock(t, rng, 256<<10)
	if uintptr(unsafe.Pointer(&aligned[0]))%4096 != 0 {
		t.Skip("the test's buffer is not page-aligned")
	}
	odd, oc := randBlock(t, rng, 1000)
	for _, b := range []struct {
		data   []byte
		c      cid.Cid
		direct bool
	}{{aligned, ac, true}, {odd, oc, false}} {
		if err := s.Put(b.c, b.data); err != nil {
			t.Fatal(err)
		}
		e, _ := s.idx.find(KeyOf(b.c))
		path := s.path(e)
		afterPut := cachedPages(t, path)
		got, err := s.GetWith(b.c, func(n int) []byte { return make([]byte, n) })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b.data) {
			t.Fatalf("%d-byte block read back wrong", len(b.data))
		}
		if b.direct && bypass && afterPut > 0 {
			t.Errorf("aligned block: %d pages cached after its put; want none", afterPut)
		}
		if !b.direct && afterPut == 0 {
			t.Errorf("unaligned block: not in the page cache after its put")
		}
	}
	if !bypass {
		t.Skip("this file system does not keep O_DIRECT writes out of the page cache: only read-back checked")
	}
}
