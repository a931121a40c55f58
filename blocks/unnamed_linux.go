package blocks

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// createUnnamed opens a new file in dir that has no name yet (O_TMPFILE):
// a crash or kill before linkUnnamed leaves nothing behind, and linking it
// costs one directory entry where a named temp file costs two (create, and
// remove by the rename). File systems without O_TMPFILE fail it.
func createUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir+"/(unnamed)"), nil
}

// linkUnnamed gives the unnamed file f the name path, which must not exist.
// The link goes through /proc/self/fd, which needs no privilege, where
// AT_EMPTY_PATH may need CAP_DAC_READ_SEARCH.
func linkUnnamed(f *os.File, path string) error {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: proc, New: path, Err: err}
	}
	return nil
}
