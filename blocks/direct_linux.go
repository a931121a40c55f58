package blocks

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Blocks whose length and buffer are page-aligned (every 256 KiB leaf a
// share makes, in the peer's pooled buffers) are written with O_DIRECT,
// past the page cache. A put is fsynced at once anyway, so the cache
// bought a copy and dirty pages to write back. On a VM whose free memory goes back to
// the host (virtio-balloon free page reporting, as on the benchmark
// machine), each page the cache takes from free memory also costs a host
// fault: 512 files of 256 KiB, each written and fsynced, cost 5.0-5.5 ns of
// CPU per byte and 2.2-3.0 s through the cache, 1.5 ns/B and 0.7-1.0 s
// with O_DIRECT. Where the file system refuses O_DIRECT (EINVAL), the
// bytes go through the cache as before. Gets still read through the cache,
// which keeps a block served often: direct reads cost no less CPU in a
// fetch (xferbench, one A/B pair) and made BenchmarkGet 0.17-0.19x a plain
// read of cached bytes instead of 0.40-0.50x.

// directAlign is the alignment asked of a direct transfer's buffer address
// and length: a page, which covers any logical block size up to it.
const directAlign = 4096

func directable(b []byte) bool {
	return len(b) > 0 && len(b)%directAlign == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign == 0
}

// setDirect turns O_DIRECT on or off for f, and reports whether it could.
func setDirect(f *os.File, on bool) bool {
	conn, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = conn.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			return
		}
		if on {
			fl |= unix.O_DIRECT
		} else {
			fl &^= unix.O_DIRECT
		}
		_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
		ok = err == nil
	})
	return ok
}

// writeFile writes data to the new, empty file f: directly when it can.
func writeFile(f *os.File, data []byte) error {
	if directable(data) && setDirect(f, true) {
		n, err := f.Write(data)
		if n > 0 || !errors.Is(err, unix.EINVAL) {
			return err
		}
		// The file system takes O_DIRECT but not this transfer.
		if !setDirect(f, false) {
			return err
		}
	}
	_, err := f.Write(data)
	return err
}
