//go:build !linux

package blocks

import (
	"errors"
	"os"
)

// errNoUnnamed: only Linux has O_TMPFILE; elsewhere puts use named temp
// files (Open's probe fails, so writeUnnamed is never called).
var errNoUnnamed = errors.New("unnamed files not supported on this system")

func probeUnnamed(*os.File) error { return errNoUnnamed }

func (s *Store) writeUnnamed(byte, string, []byte) error { return errNoUnnamed }
