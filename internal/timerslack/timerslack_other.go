//go:build !linux

package timerslack

import "time"

// Widen does nothing: only Linux gives threads a timer slack to set.
func Widen(time.Duration) error { return nil }
