package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// fsTopdirFL is FS_TOPDIR_FL of linux/fs.h (chattr +T).
const fsTopdirFL = 0x00020000

// markTopDir flags dir as the top of a directory hierarchy, for ext4's
// Orlov allocator: each directory made in it is placed like one at the
// file system's root, in a block group of its own choosing, not next to
// dir. The files of an invocation then stay off the groups where /tmp's
// other users (test dirs, Go build dirs, an earlier invocation) create
// and delete files all the time: on ext4 without a journal, every file
// created in a group scans past the inodes deleted there in the last
// minutes (find_inode_bit, recently_deleted), which cost the block
// stores 2-5 ns/B of a share instead of 0.7 (README, "Session 7").
func markTopDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsTopdirFL != 0 {
		return err
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFL))
}

// ownBase is the directory under tmp where this user's invocations make
// their temp dirs: kept from one to the next (the top-dir flag lives on
// it), so it must be ours alone: made 0700 and, if it was there already,
// a directory (not a link) that this user owns.
func ownBase(tmp string) (string, error) {
	base := filepath.Join(tmp, fmt.Sprintf("xbt-%d", os.Getuid()))
	if err := os.Mkdir(base, 0o700); err != nil && !os.IsExist(err) {
		return "", err
	}
	fi, err := os.Lstat(base)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is not a private directory of this user: remove it, or set TMPDIR", base)
	}
	return base, nil
}
