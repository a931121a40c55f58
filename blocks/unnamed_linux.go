package blocks

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// writeUnnamed makes data durable under name in shard b through an unnamed
// file (O_TMPFILE): a crash or kill before the link leaves nothing behind,
// and linking costs one directory entry where a named temp file costs two
// (create, and remove by the rename). It works on the shard's directory
// through the descriptor the store keeps open (Store.shardDir) and on the
// file through a raw descriptor, so a put makes five system calls: create,
// write-and-sync (pwritev2 with RWF_SYNC, fsync's guarantees for the bytes
// written and the file's metadata), link, close and the shard's fsync.
// Through paths and os.File it made ten (the shard opened and closed, the
// file's flags read, a separate fsync), and every long one can have Go's
// runtime hand the goroutine's P to another thread.
func (s *Store) writeUnnamed(b byte, name string, data []byte) error {
	for retried := false; ; retried = true {
		d, err := s.shardDir(b)
		if err == nil {
			err = putUnnamed(d, name, data)
		}
		if err == nil || retried || !errors.Is(err, fs.ErrNotExist) && !deleted(d) {
			return err
		}
		// The shard was wiped under us (gone, or the directory kept open
		// deleted: on ext4 O_TMPFILE in it fails with EPERM, on tmpfs only
		// the link fails); make it again, durably, as Open does, and put
		// once more.
		if err := s.remakeShard(b, d); err != nil {
			return err
		}
	}
}

// putUnnamed writes data durably under name in the directory d.
func putUnnamed(d *os.File, name string, data []byte) error {
	fd, err := createUnnamed(d)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := writeSynced(fd, data); err != nil {
		return fmt.Errorf("write %s in %s: %w", name, d.Name(), err)
	}
	if err := link(fd, d, name); err != nil {
		return err
	}
	// If this fsync fails the block is left visible but not indexed: Put
	// reports the failure, so the caller does not count it as durable, and a
	// retry writes and syncs it again (it replaces the file). Sync's error
	// names d.
	return d.Sync()
}

// deleted reports whether the directory d has been removed.
func deleted(d *os.File) bool {
	var st unix.Stat_t
	return d != nil && unix.Fstat(int(d.Fd()), &st) == nil && st.Nlink == 0
}

// createUnnamed opens a new file that has no name yet in the directory d.
// File systems without O_TMPFILE fail it.
func createUnnamed(d *os.File) (int, error) {
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, &os.PathError{Op: "open O_TMPFILE", Path: d.Name(), Err: err}
	}
	return fd, nil
}

// writeSynced writes data at the start of the file fd and returns once the
// bytes and the file's metadata (its size, its blocks) are durable, as a
// write followed by fsync would.
func writeSynced(fd int, data []byte) error {
	if len(data) == 0 {
		// RWF_SYNC syncs what a write wrote; an empty one writes nothing.
		return unix.Fsync(fd)
	}
	for off := 0; off < len(data); {
		n, err := pwritev2(fd, [][]byte{data[off:]}, int64(off), unix.RWF_SYNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			// No error and no progress: looping would spin for ever.
			return io.ErrShortWrite
		}
		off += n
	}
	return nil
}

// pwritev2 is unix.Pwritev2; tests replace it to make short writes, EINTR
// and writes that make no progress.
var pwritev2 = unix.Pwritev2

// linkUnnamed gives the unnamed file fd the name name in the directory d;
// name must not exist. The link goes through /proc/self/fd, which needs
// no privilege, where AT_EMPTY_PATH may need CAP_DAC_READ_SEARCH.
func linkUnnamed(fd int, d *os.File, name string) error {
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	if err := unix.Linkat(unix.AT_FDCWD, proc, int(d.Fd()), name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: proc, New: d.Name() + "/" + name, Err: err}
	}
	return nil
}

// link is linkUnnamed. A file already under name is one that no put
// acknowledged (one whose shard fsync failed): it is replaced, as a rename
// would.
func link(fd int, d *os.File, name string) error {
	err := linkUnnamed(fd, d, name)
	if errors.Is(err, fs.ErrExist) {
		if err = unix.Unlinkat(int(d.Fd()), name, 0); err != nil {
			return &os.PathError{Op: "remove", Path: d.Name() + "/" + name, Err: err}
		}
		err = linkUnnamed(fd, d, name)
	}
	return err
}

// probeUnnamed reports whether puts can use unnamed files in the directory
// d: it creates one, writes a byte with RWF_SYNC and links it, as a put
// would, then removes the link. The link gets a temp file's name, so that
// a crash before its removal leaves a file the next Open removes.
func probeUnnamed(d *os.File) error {
	fd, err := createUnnamed(d)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := writeSynced(fd, []byte{0}); err != nil {
		return err
	}
	name := tempPrefix + "probe"
	if err := linkUnnamed(fd, d, name); err != nil {
		return err
	}
	return unix.Unlinkat(int(d.Fd()), name, 0)
}
