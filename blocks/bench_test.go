package blocks

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"chordshare/internal/cpustat"
	"chordshare/internal/diskbaseline"
)

// benchSize is the chunk size of share's files: the blocks that dominate.
const benchSize = 256 << 10

// Each benchmark runs the store next to a baseline doing the least any store
// must: write+fsync of the same bytes to a new file in a directory on the
// same disk (what os.WriteFile does, plus the fsync), or a plain
// os.ReadFile. The store does more on purpose: it hashes every block on the
// way in and out, and renames and fsyncs the directory so that a block is
// visible only whole and survives power loss. BENCH.md reports the ratios.
//
// The disk of a shared VM is noisy over seconds, so Put and Get alternate
// one store operation with one baseline operation, each timed on its own:
// both see the same disk, and their ratio is stable where back-to-back
// runs are not. Their ns/op is that of a pair.

// pair accumulates the time spent in the store and in the baseline, and
// the CPU time of the calling thread in each (cpustat.ThreadTime: the caller locks
// its goroutine to its thread; the runtime's own threads are not counted).
type pair struct{ store, base, storeCPU, baseCPU time.Duration }

// run times op into *into and its thread's CPU time into *cpu.
func run(into, cpu *time.Duration, op func() error) error {
	c0, start := cpustat.ThreadTime(), time.Now()
	err := op()
	*into += time.Since(start)
	*cpu += cpustat.ThreadTime() - c0
	return err
}

// do runs the store's and the baseline's operation of iteration i, in an
// order that alternates so that neither always runs in the other's wake.
func (p *pair) do(i int, store, base func() error) error {
	if i%2 == 1 {
		if err := run(&p.base, &p.baseCPU, base); err != nil {
			return err
		}
		return run(&p.store, &p.storeCPU, store)
	}
	if err := run(&p.store, &p.storeCPU, store); err != nil {
		return err
	}
	return run(&p.base, &p.baseCPU, base)
}

// add sums q into p.
func (p *pair) add(q pair) {
	p.store += q.store
	p.base += q.base
	p.storeCPU += q.storeCPU
	p.baseCPU += q.baseCPU
}

// report gives each side's rate as writers operations per mean latency, the
// ratio of the store's rate to the baseline's, and each side's CPU time per
// operation where it is measured.
func (p pair) report(b *testing.B, writers int) {
	n := float64(b.N * writers)
	mbs := func(d time.Duration) float64 { return n * benchSize / 1e6 / d.Seconds() }
	b.ReportMetric(mbs(p.store), "store-MB/s")
	b.ReportMetric(n/p.store.Seconds(), "store-ops/s")
	b.ReportMetric(mbs(p.base), "base-MB/s")
	b.ReportMetric(n/p.base.Seconds(), "base-ops/s")
	b.ReportMetric(p.base.Seconds()/p.store.Seconds(), "store/base")
	if p.storeCPU > 0 {
		// b.N operations of each side in all, whatever the writers.
		b.ReportMetric(float64(p.storeCPU.Microseconds())/float64(b.N), "store-cpu-us/op")
		b.ReportMetric(float64(p.baseCPU.Microseconds())/float64(b.N), "base-cpu-us/op")
	}
}

// distinct makes data a new block: its first 8 bytes become n.
func distinct(b *testing.B, data []byte, n uint64) cid.Cid {
	binary.LittleEndian.PutUint64(data, n)
	return sum(b, cid.Raw, mh.SHA2_256, data)
}

// BenchmarkPut: the caller has made the CID (not timed); Put's own check of
// the bytes against it is timed.
func BenchmarkPut(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	data, _ := randBlock(b, rand.New(rand.NewPCG(1, 1)), benchSize)
	s := open(b, b.TempDir(), Options{})
	dir := b.TempDir()
	var p pair
	for i := 0; b.Loop(); i++ {
		c := distinct(b, data, uint64(i))
		err := p.do(i,
			func() error { return s.Put(c, data) },
			func() error { return diskbaseline.WriteFsync(filepath.Join(dir, strconv.Itoa(i)), data) })
		if err != nil {
			b.Fatal(err)
		}
	}
	p.report(b, 1)
}

// BenchmarkPutParallel is 8 writers at once, as a peer receiving blocks from
// several others is: fsyncs overlap, so rates go past one writer's. Each
// writer alternates store and baseline puts; a rate is writers / mean
// latency, both sides measured under the same mixed load.
func BenchmarkPutParallel(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	dir := b.TempDir()
	var next, writers atomic.Uint64
	var mu sync.Mutex
	var all pair
	b.SetParallelism(8 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		writers.Add(1)
		data, _ := randBlock(b, rand.New(rand.NewPCG(next.Add(1), 2)), benchSize)
		var p pair
		for i := 0; pb.Next(); i++ {
			n := next.Add(1)
			c := distinct(b, data, n)
			err := p.do(i,
				func() error { return s.Put(c, data) },
				func() error { return diskbaseline.WriteFsync(filepath.Join(dir, strconv.FormatUint(n, 10)), data) })
			if err != nil {
				b.Error(err) // Fatal must not be called off the benchmark's goroutine
				return
			}
		}
		mu.Lock()
		all.add(p)
		mu.Unlock()
	})
	all.report(b, int(writers.Load()))
}

// BenchmarkGet reads 64 blocks (16 MiB) round-robin; both sides read from
// the page cache.
func BenchmarkGet(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 64
	data, _ := randBlock(b, rand.New(rand.NewPCG(1, 3)), benchSize)
	s := open(b, b.TempDir(), Options{})
	dir := b.TempDir()
	var cs []cid.Cid
	for i := range n {
		c := distinct(b, data, uint64(i))
		put(b, s, c, data)
		cs = append(cs, c)
		if err := diskbaseline.WriteFsync(filepath.Join(dir, strconv.Itoa(i)), data); err != nil {
			b.Fatal(err)
		}
	}
	var p pair
	for i := 0; b.Loop(); i++ {
		err := p.do(i,
			func() error { _, err := s.Get(cs[i%n]); return err },
			func() error { _, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i%n))); return err })
		if err != nil {
			b.Fatal(err)
		}
	}
	p.report(b, 1)
}

// BenchmarkVerify is the hashing that Put and Get add to the baseline: one
// 256 KiB block checked against its CID, no I/O.
func BenchmarkVerify(b *testing.B) {
	data, c := randBlock(b, rand.New(rand.NewPCG(1, 4)), benchSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := verify(c, data); err != nil {
			b.Fatal(err)
		}
	}
}
