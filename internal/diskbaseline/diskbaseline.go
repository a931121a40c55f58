// Package diskbaseline is the least any durable write of a block costs: a
// new file created, written and fsync'd, with none of the block store's
// hashing, rename or directory fsync. The store's benchmarks, xferbench and
// syncbench compare against it, so that they measure one baseline.
package diskbaseline

import "os"

// WriteFsync creates path (it must not exist), writes data to it, fsyncs
// and closes it.
func WriteFsync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
