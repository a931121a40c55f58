//go:build !linux

package blocks

import "os"

// writeFile writes data to the new, empty file f (direct_linux.go writes
// aligned blocks past the page cache).
func writeFile(f *os.File, data []byte) error {
	_, err := f.Write(data)
	return err
}
