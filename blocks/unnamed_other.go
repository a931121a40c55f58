//go:build !linux

package blocks

import (
	"errors"
	"os"
)

// errNoUnnamed: only Linux has O_TMPFILE; elsewhere puts use named temp
// files.
var errNoUnnamed = errors.New("unnamed files not supported on this system")

func createUnnamed(dir string) (*os.File, error) { return nil, errNoUnnamed }

func linkUnnamed(f *os.File, path string) error { return errNoUnnamed }
