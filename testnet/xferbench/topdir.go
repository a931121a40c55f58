package main

import (
	"os"

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
