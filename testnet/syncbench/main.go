//go:build linux

// Command syncbench compares ways of writing 256 KiB blocks durably, the
// block store's job, on the disk of the directory it is given: whether a
// group commit (concurrent writers sharing one fsync) or other sync calls
// beat the store's one fsync of the file and one of its directory per
// block. blocks/BENCH.md reports what it found.
//
//	go run ./testnet/syncbench [-dir DIR] [-writers 8] [-time 30s] [-slot 100ms] [-ways LIST]
//
// All writers use the same way at a time, so that a group commit sees its
// real batches, and the ways take turns every slot, so that each sees the
// same disk (the disk of a shared VM changes speed from one second to the
// next). A way's rate is writers / its mean latency, and its ratio is that
// rate over the rate of "base", measured in the same run. CPU is the
// writing threads' own (RUSAGE_THREAD): it leaves out the kernel's flusher
// and journal threads.
//
// The ways, each ending with the block durable under its final name:
//
//	base        create the final name, write, fsync (no atomic visibility:
//	            the floor, as in the blocks benchmarks)
//	rename      temp file in the shard, write, fsync, rename, fsync the shard
//	            (blocks.Store before this comparison)
//	fdatasync   rename, with fdatasync for the file
//	tmpfile     O_TMPFILE in the shard, write, fsync, linkat, fsync the shard
//	tmpfiledata tmpfile, with fdatasync for the file
//	groupdir    rename, the shard fsyncs of concurrent puts done by one
//	            leader, one after the other (group commit)
//	groupdirpar groupdir, the leader fsyncing the shards in parallel
//	groupboth   groupdirpar, and the file syncs grouped too: the leader
//	            starts the writeback of every file (sync_file_range), then
//	            fdatasyncs each
//	syncfs      rename, with one syncfs per group for the files and one for
//	            the shards (flushes the whole file system, other
//	            processes' data included)
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"chordshare/internal/diskbaseline"
)

func main() {
	dir := flag.String("dir", ".", "write under this directory (a temp dir is made and removed in it)")
	writers := flag.Int("writers", 8, "concurrent writers")
	dur := flag.Duration("time", 30*time.Second, "how long to run")
	slot := flag.Duration("slot", 100*time.Millisecond, "how long each way runs before the next takes its turn")
	list := flag.String("ways", "base,rename,fdatasync,tmpfile,tmpfiledata,groupdir,groupdirpar,groupboth,syncfs", "ways to compare, comma-separated; the first is the baseline")
	flag.Parse()
	if err := run(*dir, *writers, *dur, *slot, strings.Split(*list, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

func run(parent string, writers int, dur, slot time.Duration, names []string) error {
	root, err := os.MkdirTemp(parent, "syncbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	b := newBench(root)
	var ways []func(uint64, []byte) error
	for _, n := range names {
		w, ok := b.ways()[n]
		if !ok {
			return fmt.Errorf("no way %q", n)
		}
		ways = append(ways, w)
	}
	for i := range 256 {
		if err := os.Mkdir(b.shard(uint64(i)), 0o700); err != nil {
			return err
		}
	}
	if err := syncDir(root); err != nil {
		return err
	}
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}

	type sums struct {
		lat, cpu []time.Duration
		n        []int
	}
	newSums := func() sums {
		return sums{make([]time.Duration, len(ways)), make([]time.Duration, len(ways)), make([]int, len(ways))}
	}
	total := newSums()
	var mu sync.Mutex
	var next atomic.Uint64
	var failed atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			runtime.LockOSThread() // for RUSAGE_THREAD
			s := newSums()
			for failed.Load() == nil && time.Since(start) < dur {
				w := int(time.Since(start)/slot) % len(ways)
				var r0, r1 unix.Rusage
				unix.Getrusage(unix.RUSAGE_THREAD, &r0)
				t := time.Now()
				if err := ways[w](next.Add(1), data); err != nil {
					err = fmt.Errorf("%s: %w", names[w], err)
					failed.Store(&err)
					return
				}
				s.lat[w] += time.Since(t)
				unix.Getrusage(unix.RUSAGE_THREAD, &r1)
				s.cpu[w] += time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
				s.n[w]++
			}
			mu.Lock()
			for w := range ways {
				total.lat[w] += s.lat[w]
				total.cpu[w] += s.cpu[w]
				total.n[w] += s.n[w]
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return *err
	}
	var load [3]float64
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(l), &load[0], &load[1], &load[2])
	}
	fmt.Printf("%d writers, %v in %v slots, 256 KiB blocks under %s; load %.2f %.2f %.2f\n", writers, dur, slot, parent, load[0], load[1], load[2])
	fmt.Printf("%-12s %6s %10s %9s %6s %12s\n", "way", "puts", "mean", "ops/s", "ratio", "CPU/put")
	baseRate := 0.0
	for w, n := range names {
		if total.n[w] == 0 {
			fmt.Printf("%-12s %6d\n", n, 0)
			continue
		}
		mean := total.lat[w] / time.Duration(total.n[w])
		rate := float64(writers) / mean.Seconds()
		if w == 0 {
			baseRate = rate
		}
		fmt.Printf("%-12s %6d %10v %9.0f %6.2f %12v\n", n, total.n[w], mean.Round(time.Microsecond), rate, rate/baseRate,
			(total.cpu[w] / time.Duration(total.n[w])).Round(time.Microsecond))
	}
	return nil
}

type bench struct {
	root string
	// The groups of the group-commit ways.
	dirs, dirsPar *group[string]
	files, fs     *group[*os.File]
	fsDirs        *group[string]
}

func newBench(root string) *bench {
	return &bench{
		root:    root,
		dirs:    newGroup(syncDirsSerial),
		dirsPar: newGroup(syncDirsParallel),
		files:   newGroup(syncFiles),
		fs:      newGroup(syncfsFiles),
		fsDirs:  newGroup(func(ds []string, errs []error) { syncfsPath(root, errs) }),
	}
}

// shard spreads block n over 256 shard directories, as the store's keys do.
func (b *bench) shard(n uint64) string {
	return filepath.Join(b.root, fmt.Sprintf("%02x", (n*2654435761)%256))
}

func (b *bench) ways() map[string]func(uint64, []byte) error {
	return map[string]func(uint64, []byte) error{
		"base": func(n uint64, data []byte) error {
			return diskbaseline.WriteFsync(filepath.Join(b.shard(n), fmt.Sprint(n)), data)
		},
		"rename":      func(n uint64, d []byte) error { return b.rename(n, d, fsync, syncDir) },
		"fdatasync":   func(n uint64, d []byte) error { return b.rename(n, d, fdatasync, syncDir) },
		"tmpfile":     func(n uint64, d []byte) error { return b.tmpfile(n, d, fsync) },
		"tmpfiledata": func(n uint64, d []byte) error { return b.tmpfile(n, d, fdatasync) },
		"groupdir":    func(n uint64, d []byte) error { return b.rename(n, d, fsync, b.dirs.do) },
		"groupdirpar": func(n uint64, d []byte) error { return b.rename(n, d, fsync, b.dirsPar.do) },
		"groupboth":   func(n uint64, d []byte) error { return b.rename(n, d, b.files.do, b.dirsPar.do) },
		"syncfs":      func(n uint64, d []byte) error { return b.rename(n, d, b.fs.do, b.fsDirs.do) },
	}
}

func (b *bench) rename(n uint64, data []byte, fileSync func(*os.File) error, dirSync func(string) error) error {
	shard := b.shard(n)
	f, err := os.CreateTemp(shard, "tmp-*")
	if err != nil {
		return err
	}
	if err := writeClose(f, data, fileSync); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(shard, fmt.Sprint(n))); err != nil {
		return err
	}
	return dirSync(shard)
}

func (b *bench) tmpfile(n uint64, data []byte, fileSync func(*os.File) error) error {
	shard := b.shard(n)
	fd, err := unix.Open(shard, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "tmpfile")
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := fileSync(f); err != nil {
		return err
	}
	// /proc/self/fd needs no privilege; AT_EMPTY_PATH may.
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD,
		filepath.Join(shard, fmt.Sprint(n)), unix.AT_SYMLINK_FOLLOW); err != nil {
		return err
	}
	return syncDir(shard)
}

func writeClose(f *os.File, data []byte, fileSync func(*os.File) error) error {
	_, err := f.Write(data)
	if err == nil {
		err = fileSync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func fsync(f *os.File) error     { return f.Sync() }
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncDirsSerial fsyncs each distinct directory of a group in turn.
func syncDirsSerial(dirs []string, errs []error) {
	done := map[string]error{}
	for i, d := range dirs {
		err, ok := done[d]
		if !ok {
			err = syncDir(d)
			done[d] = err
		}
		errs[i] = err
	}
}

// syncDirsParallel fsyncs the distinct directories of a group at once.
func syncDirsParallel(dirs []string, errs []error) {
	first := map[string]int{}
	var wg sync.WaitGroup
	for i, d := range dirs {
		if _, ok := first[d]; !ok {
			first[d] = i
			wg.Go(func() { errs[i] = syncDir(d) })
		}
	}
	wg.Wait()
	for i, d := range dirs {
		errs[i] = errs[first[d]]
	}
}

// syncFiles starts the writeback of every file of a group before waiting
// for any, so that one journal commit can carry them all.
func syncFiles(fs []*os.File, errs []error) {
	for _, f := range fs {
		unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	for i, f := range fs {
		errs[i] = fdatasync(f)
	}
}

func syncfsFiles(fs []*os.File, errs []error) {
	err := unix.Syncfs(int(fs[0].Fd()))
	for i := range errs {
		errs[i] = err
	}
}

func syncfsPath(path string, errs []error) {
	f, err := os.Open(path)
	if err == nil {
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
	}
	for i := range errs {
		errs[i] = err
	}
}

// group is a group commit: concurrent callers of do share one run of an
// expensive step. A caller adds its item to the batch being gathered; if
// no run is in progress it leads: it closes the batch and runs it.
// Otherwise it waits, and when the run in progress ends a waiter of the
// gathered batch leads that one. So do returns only after a run that
// started after it was called and included its item.
type group[T any] struct {
	run     func(items []T, errs []error)
	mu      sync.Mutex
	changed sync.Cond
	next    *batch[T]
	running bool
}

type batch[T any] struct {
	items []T
	errs  []error
	done  bool
}

func newGroup[T any](run func([]T, []error)) *group[T] {
	g := &group[T]{run: run}
	g.changed.L = &g.mu
	return g
}

func (g *group[T]) do(item T) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		g.next = &batch[T]{}
	}
	b := g.next
	i := len(b.items)
	b.items = append(b.items, item)
	for !b.done {
		if g.running || g.next != b {
			g.changed.Wait()
			continue
		}
		g.running, g.next = true, nil
		errs := make([]error, len(b.items))
		g.mu.Unlock()
		g.run(b.items, errs)
		g.mu.Lock()
		b.errs, b.done, g.running = errs, true, false
		g.changed.Broadcast()
	}
	return b.errs[i]
}
