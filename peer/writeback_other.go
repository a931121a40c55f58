//go:build !linux

package peer

import "os"

// flushBehind does nothing where sync_file_range(2) does not exist: the
// fsync at the end of a fetch writes the whole file.
func flushBehind(*os.File) (stop func()) { return func() {} }

// outputFile is a fetch's output file; reserving its space up front
// (Allocate) is Linux's only (writeback_linux.go).
type outputFile struct{ *os.File }

func newOutputFile(f *os.File) outputFile { return outputFile{f} }

func (outputFile) closeDirect() {}
