package peer

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flushBehindEvery is how often flushBehind starts the writeback of what
// a fetch wrote meanwhile: at a few hundred MB/s, a few MB each time.
const flushBehindEvery = 20 * time.Millisecond

// flushBehind starts writing f's dirty pages to disk every
// flushBehindEvery, without waiting for them (sync_file_range(2),
// SYNC_FILE_RANGE_WRITE), until stop is called; stop waits for the
// goroutine to end and may be called more than once. A fetch ends with an
// fsync of its output (it is reported done only once its bytes are
// durable); with the disk writing behind the transfer, that fsync finds
// little left to do instead of writing the whole file while the client
// waits (a 256 MiB fetch: 2-11 ms left against 110-360 ms). It is only
// a hint: the fsync still makes the file durable and reports errors.
func flushBehind(f *os.File) (stop func()) {
	conn, err := f.SyscallConn()
	if err != nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(flushBehindEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				_ = conn.Control(func(fd uintptr) {
					_ = unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
				})
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// outputFile is a fetch's output file, with Allocate for share's output
// (share.ToWriterAt): fallocate(2) of the whole file before its blocks
// arrive. The space is then reserved (no disk filling up halfway through),
// and each write skips ext4's delayed allocation of every page it dirties:
// 256 MiB in 256 KiB writes took 0.21-0.23 ns/B of CPU instead of
// 0.25-0.28. A file system without fallocate just goes without.
//
// Its WriteAt sends whole aligned blocks (every leaf but maybe the last)
// through a second descriptor opened with O_DIRECT, past the page cache.
// The fetch ends with an fsync anyway, so the cache bought nothing but a
// copy; and on a VM whose free memory goes back to the host (virtio
// balloon free page reporting, as on the benchmark machine) every page the
// cache takes from free memory costs a host fault as well: 128 MiB written
// into a new file cost 0.5 s of system time and 1.7-2.0 s of wall time
// through the cache, 0.05 s and 0.35 s with O_DIRECT (dd, bs=256K).
type outputFile struct {
	*os.File
	direct *os.File // f opened again with O_DIRECT; nil where that fails
}

// newOutputFile wraps f; closeDirect closes the second descriptor.
func newOutputFile(f *os.File) outputFile {
	// Reopened through /proc rather than by path: the same inode, even if
	// the path has changed since.
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return outputFile{File: f}
	}
	return outputFile{File: f, direct: d}
}

func (f outputFile) closeDirect() {
	if f.direct != nil {
		_ = f.direct.Close()
	}
}

// directAlign is the alignment O_DIRECT gets here for the buffer's
// address, the offset and the length: a page, which covers any logical
// block size up to it.
const directAlign = 4096

func (f outputFile) WriteAt(b []byte, off int64) (int, error) {
	if f.direct != nil && len(b) > 0 && len(b)%directAlign == 0 && off%directAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign == 0 {
		n, err := f.direct.WriteAt(b, off)
		// EINVAL: the file system wants another alignment, or no O_DIRECT
		// for this write; the cache takes it.
		if n > 0 || !errors.Is(err, unix.EINVAL) {
			return n, err
		}
	}
	return f.File.WriteAt(b, off)
}

func (f outputFile) Allocate(size int64) error {
	if size == 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return err
}
