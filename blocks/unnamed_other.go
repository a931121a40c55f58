//go:build !linux

package blocks

import "os"

// createUnnamed: only Linux has O_TMPFILE; elsewhere puts use named temp
// files.
func createUnnamed(dir string) (*os.File, error) { return nil, errNoUnnamed }

func linkUnnamed(f *os.File, path string) error { return errNoUnnamed }
