package share

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	cid "github.com/ipfs/go-cid"
)

var errNotFound = errors.New("block not found")

// memStore is the in-memory block store the tests and benchmarks run
// against. It records every get and the most puts/gets ever in flight.
type memStore struct {
	mu     sync.RWMutex
	blocks map[string][]byte
	gets   map[string]int // by CID key: how often each block was asked for

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	puts        atomic.Int64
	// hook, if set, runs inside every Get and Put while it is counted in
	// flight: tests slow calls down or fail them there.
	hook func(ctx context.Context, c cid.Cid) error
}

func newMemStore() *memStore {
	return &memStore{blocks: make(map[string][]byte), gets: make(map[string]int)}
}

func (s *memStore) enter(ctx context.Context, c cid.Cid) error {
	n := s.inFlight.Add(1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if s.hook != nil {
		return s.hook(ctx, c)
	}
	return nil
}

func (s *memStore) Put(ctx context.Context, c cid.Cid, data []byte) error {
	defer s.inFlight.Add(-1)
	if err := s.enter(ctx, c); err != nil {
		return err
	}
	s.puts.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocks[c.KeyString()] = data
	return nil
}

func (s *memStore) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	defer s.inFlight.Add(-1)
	if err := s.enter(ctx, c); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets[c.KeyString()]++
	data, ok := s.blocks[c.KeyString()]
	if !ok {
		return nil, errNotFound
	}
	return data, nil
}

// getCount is how often c was asked for.
func (s *memStore) getCount(c cid.Cid) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gets[c.KeyString()]
}

// totalGets is how many gets were made.
func (s *memStore) totalGets() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, v := range s.gets {
		n += v
	}
	return n
}

func (s *memStore) resetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets = make(map[string]int)
	s.maxInFlight.Store(0)
}

// getterFunc adapts a function to Getter.
type getterFunc func(ctx context.Context, c cid.Cid) ([]byte, error)

func (f getterFunc) Get(ctx context.Context, c cid.Cid) ([]byte, error) { return f(ctx, c) }

// randomBytes is n bytes from a seeded generator, so failures reproduce and
// leaves are distinct.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// memFile is an in-memory io.WriterAt (no ReadAt, so no resume),
// safe for the concurrent WriteAt calls Fetch makes.
type memFile struct {
	mu  sync.Mutex
	buf []byte
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.buf)) {
		f.buf = append(f.buf, make([]byte, end-int64(len(f.buf)))...)
	}
	return copy(f.buf[off:], p), nil
}

func (f *memFile) bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf
}

// importBytes imports data into a fresh store and returns both.
func importBytes(t testing.TB, data []byte, opts ImportOptions) (cid.Cid, *memStore) {
	t.Helper()
	s := newMemStore()
	root, err := Import(context.Background(), bytes.NewReader(data), s, opts)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return root, s
}

// lendingStore is a memStore that is a LendingPutter. It keeps the lent
// bytes themselves and, unless copyAndRelease is set, holds every done
// back until the test calls them: no buffer it holds may be reused before.
type lendingStore struct {
	*memStore
	copyAndRelease bool
	mu             sync.Mutex
	dones          []func()
}

func (s *lendingStore) PutLent(ctx context.Context, c cid.Cid, data []byte, done func()) error {
	if s.copyAndRelease {
		err := s.Put(ctx, c, bytes.Clone(data))
		done()
		return err
	}
	s.mu.Lock()
	s.dones = append(s.dones, done)
	s.mu.Unlock()
	return s.Put(ctx, c, data)
}

// allocFile is a memFile that records Allocate, and can refuse it.
type allocFile struct {
	memFile
	allocated []int64
	refuse    error
}

func (f *allocFile) Allocate(size int64) error {
	f.allocated = append(f.allocated, size)
	return f.refuse
}

// An output that can reserve its space is asked to, once, for the file's
// size, before any block is written; a refusal (a full disk) fails the
// fetch.
func TestFetchAllocatesOutput(t *testing.T) {
	data := bytes.Repeat([]byte("chordshare "), 100_000)
	root, s := importBytes(t, data, ImportOptions{})
	f := &allocFile{}
	if err := Fetch(context.Background(), root, s, ToWriterAt(f), FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.allocated, []int64{int64(len(data))}) || !bytes.Equal(f.bytes(), data) {
		t.Errorf("allocated %v for a %d-byte file; bytes identical: %v", f.allocated, len(data), bytes.Equal(f.bytes(), data))
	}
	full := &allocFile{refuse: errors.New("no space left on device")}
	err := Fetch(context.Background(), root, s, ToWriterAt(full), FetchOptions{})
	if err == nil || !strings.Contains(err.Error(), "no space left") || len(full.bytes()) != 0 {
		t.Errorf("a refused allocation: err %v, %d bytes written", err, len(full.bytes()))
	}
}
