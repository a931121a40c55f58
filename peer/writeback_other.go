//go:build !linux

package peer

import "os"

// flushBehind does nothing where sync_file_range(2) does not exist: the
// fsync at the end of a fetch writes the whole file.
func flushBehind(*os.File) (stop func()) { return func() {} }

// outputFile is the file a fetch writes; direct writes (O_DIRECT) are
// Linux's only (directout_linux.go).
type outputFile struct{ *os.File }

func newOutputFile(f *os.File) *outputFile { return &outputFile{f} }
