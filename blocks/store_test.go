package blocks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// sum is the CIDv1 of data under the given codec and hash function.
func sum(t testing.TB, codec, hash uint64, data []byte) cid.Cid {
	t.Helper()
	h, err := mh.Sum(data, hash, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(codec, h)
}

// randBlock is size random bytes and their raw sha2-256 CID.
func randBlock(t testing.TB, rng *rand.Rand, size int) ([]byte, cid.Cid) {
	t.Helper()
	data := make([]byte, size+7)
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	data = data[:size:size]
	return data, sum(t, cid.Raw, mh.SHA2_256, data)
}

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s *Store, c cid.Cid, data []byte) {
	t.Helper()
	if err := s.Put(c, data); err != nil {
		t.Fatal(err)
	}
}

// blockFile is where the package comment says a CIDv1 block lives.
func blockFile(dir string, c cid.Cid) string {
	k := KeyOf(c)
	return filepath.Join(dir, fmt.Sprintf("%02x", k[0]), c.String())
}

// all lists the whole store through Range, in ring order from key 0.
func all(s *Store) []cid.Cid {
	var cs []cid.Cid
	s.Range(Key{}, Key{}, func(_ Key, c cid.Cid) bool {
		cs = append(cs, c)
		return true
	})
	return cs
}

func wantStats(t *testing.T, s *Store, count int, bytes int64) {
	t.Helper()
	if st := s.Stats(); st.Count != count || st.Bytes != bytes {
		t.Fatalf("stats: %d blocks, %d bytes; want %d, %d", st.Count, st.Bytes, count, bytes)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	data := []byte("hello chord\n")
	v0h, _ := mh.Sum([]byte("a CIDv0 block"), mh.SHA2_256, -1)
	cases := []struct {
		name string
		data []byte
		c    cid.Cid
	}{
		// The CID that ipfs add --cid-version=1 --raw-leaves prints.
		{"raw sha2-256", data, cid.MustParse("bafkreihw4tqmgoax7pre32ehip4257lrrg32i2h3clcwvhunfimgbq5aua")},
		{"CIDv0", []byte("a CIDv0 block"), cid.NewCidV0(v0h)},
		{"sha2-512", data, sum(t, cid.Raw, mh.SHA2_512, data)},
		{"blake3", data, sum(t, cid.Raw, mh.BLAKE3, data)},
		{"sha3-256", data, sum(t, cid.DagCBOR, mh.SHA3_256, data)},
		{"empty", nil, sum(t, cid.Raw, mh.SHA2_256, nil)},
		{"2 MiB", bytes.Repeat([]byte{7}, MaxBlockSize), sum(t, cid.Raw, mh.SHA2_256, bytes.Repeat([]byte{7}, MaxBlockSize))},
	}
	var total int64
	for i, tc := range cases {
		if s.Has(tc.c) {
			t.Fatalf("%s: Has before Put", tc.name)
		}
		put(t, s, tc.c, tc.data)
		put(t, s, tc.c, tc.data) // idempotent
		total += int64(len(tc.data))
		wantStats(t, s, i+1, total)
		if !s.Has(tc.c) {
			t.Fatalf("%s: not Has after Put", tc.name)
		}
		got, err := s.Get(tc.c)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: got other bytes", tc.name)
		}
	}
	if _, err := os.Stat(blockFile(dir, cases[0].c)); err != nil {
		t.Fatalf("block not at its documented path: %v", err)
	}

	// Every kind of CID comes back from its file name after a reopen.
	s.Close()
	s = open(t, dir, Options{})
	wantStats(t, s, len(cases), total)
	listed := all(s)
	for _, tc := range cases {
		if !slices.ContainsFunc(listed, tc.c.Equals) {
			t.Errorf("%s: %s not listed after reopen", tc.name, tc.c)
		}
		if got, err := s.Get(tc.c); err != nil || !bytes.Equal(got, tc.data) {
			t.Errorf("%s: get after reopen: %v", tc.name, err)
		}
	}
	absent := sum(t, cid.Raw, mh.SHA2_256, []byte("absent"))
	if _, err := s.Get(absent); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get absent: %v, want ErrNotFound", err)
	} else if want := "get " + absent.String() + ": block not found"; err.Error() != want {
		t.Errorf("get absent: %q, want %q", err, want)
	}
}

// The raw and dag-pb CIDs of one multihash are one block, one file.
func TestOneKeyTwoCodecs(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	data := []byte("same bytes, two codecs")
	raw := sum(t, cid.Raw, mh.SHA2_256, data)
	pb := cid.NewCidV1(cid.DagProtobuf, raw.Hash())
	if KeyOf(raw) != KeyOf(pb) {
		t.Fatal("raw and dag-pb CIDs of one multihash have different keys")
	}
	put(t, s, raw, data)
	put(t, s, pb, data)
	wantStats(t, s, 1, int64(len(data)))
	if got, err := s.Get(pb); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get under the other codec: %q, %v", got, err)
	}
	if got := all(s); len(got) != 1 || !got[0].Equals(raw) {
		t.Fatalf("Range reports %v, want the CID that was put, %s", got, raw)
	}
	shard, _ := os.ReadDir(filepath.Dir(blockFile(dir, raw)))
	if len(shard) != 1 {
		t.Fatalf("%d files in the shard, want 1", len(shard))
	}
	if err := s.Delete(pb); err != nil {
		t.Fatal(err)
	}
	if s.Has(raw) {
		t.Fatal("deleting under one codec left the block")
	}
}

func TestPutRefuses(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	data := []byte("some block")
	good := sum(t, cid.Raw, mh.SHA2_256, data)
	short, _ := mh.Sum(data, mh.SHA2_256, 16)
	big := make([]byte, MaxBlockSize+1)
	cases := []struct {
		name string
		c    cid.Cid
		data []byte
		want error
	}{
		{"other bytes", good, []byte("some blocK"), ErrMismatch},
		{"missing a byte", good, data[1:], ErrMismatch},
		{"murmur3", sum(t, cid.Raw, mh.MURMUR3X64_64, data), data, ErrBadCID},
		{"md5", sum(t, cid.Raw, mh.MD5, data), data, ErrBadCID},
		{"truncated digest", cid.NewCidV1(cid.Raw, short), data, ErrBadCID},
		{"undefined", cid.Undef, data, ErrBadCID},
		{"too large", sum(t, cid.Raw, mh.SHA2_256, big), big, ErrTooLarge},
	}
	for _, tc := range cases {
		err := s.Put(tc.c, tc.data)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if s.Has(tc.c) {
			t.Errorf("%s: stored anyway", tc.name)
		}
	}
	wantStats(t, s, 0, 0)
	if files := filesUnder(t, dir); len(files) != 0 {
		t.Fatalf("refused puts left files: %v", files)
	}
}

// filesUnder lists the files in the shards of a store.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A block damaged on disk is detected by Get, removed, never served, and can
// be put again.
func TestGetDamaged(t *testing.T) {
	cases := map[string]func(path string) error{
		"bit flipped": func(p string) error {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x10
			return os.WriteFile(p, b, 0o600)
		},
		"truncated":      func(p string) error { return os.Truncate(p, 100) },
		"emptied":        func(p string) error { return os.Truncate(p, 0) },
		"appended to":    func(p string) error { return appendTo(p, []byte{0}) },
		"over 2 MiB now": func(p string) error { return os.Truncate(p, MaxBlockSize+1) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			data, c := randBlock(t, rand.New(rand.NewPCG(1, 2)), 4096)
			put(t, s, c, data)
			path := blockFile(dir, c)
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(c)
			if !errors.Is(err, ErrCorrupt) || got != nil {
				t.Fatalf("get damaged block: %d bytes, %v; want ErrCorrupt", len(got), err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("damaged file still there: %v", err)
			}
			wantStats(t, s, 0, 0)
			if _, err := s.Get(c); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second get: %v, want ErrNotFound", err)
			}
			put(t, s, c, data) // re-fetched from a replica
			if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after re-put: %v", err)
			}
		})
	}
}

func appendTo(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// Files wiped under the store are forgotten when noticed, and puts go on
// working even when the directories themselves are gone: on the test's
// temp dir and on tmpfs, where, unlike ext4, an unnamed file can still be
// created in a deleted directory (only its link fails).
func TestWipedFromDisk(t *testing.T) {
	t.Run("tempdir", func(t *testing.T) { testWipedFromDisk(t, t.TempDir(), false) })
	// Named temp files, where Open finds no unnamed ones.
	t.Run("named", func(t *testing.T) { testWipedFromDisk(t, t.TempDir(), true) })
	t.Run("tmpfs", func(t *testing.T) {
		// /dev/shm: tmpfs on Linux, absent elsewhere.
		dir, err := os.MkdirTemp("/dev/shm", "blocks-wiped-")
		if err != nil {
			t.Skipf("no /dev/shm: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		testWipedFromDisk(t, dir, false)
	})
}

func testWipedFromDisk(t *testing.T, dir string, named bool) {
	s := open(t, dir, Options{})
	if named {
		s.named = true
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var cs []cid.Cid
	for range 3 {
		data, c := randBlock(t, rng, 1000)
		put(t, s, c, data)
		cs = append(cs, c)
	}
	os.Remove(blockFile(dir, cs[0]))
	if _, err := s.Get(cs[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get wiped block: %v, want ErrNotFound", err)
	}
	wantStats(t, s, 2, 2000)
	os.Remove(blockFile(dir, cs[1]))
	if s.Has(cs[1]) {
		t.Fatal("Has reports a wiped block")
	}
	wantStats(t, s, 1, 1000)

	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	data, c := randBlock(t, rng, 1000)
	put(t, s, c, data)
	if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after wiping the directories: %v", err)
	}
	// A shard a put wrote into before the wipe (the store may hold its
	// directory open): the put makes it again too.
	for {
		data, c = randBlock(t, rng, 1000)
		if KeyOf(c)[0] == KeyOf(cs[2])[0] {
			break
		}
	}
	put(t, s, c, data)
	if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get from a shard wiped after a put: %v", err)
	}
}

// Whatever a crash leaves in temp files is removed at Open and never
// listed, even a complete block; files that are not blocks are left alone.
func TestOpenRemovesTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	data, c := randBlock(t, rng, 500)
	put(t, s, c, data)
	s.Close()

	k := KeyOf(c)
	shard := filepath.Join(dir, fmt.Sprintf("%02x", k[0]))
	whole, wc := randBlock(t, rng, 500)
	temps := map[string][]byte{
		filepath.Join(shard, "tmp-123"):                  data[:100],
		filepath.Join(dir, "7f", "tmp-"+wc.String()):     whole,
		filepath.Join(dir, "00", "tmp-dir", "tmp-inner"): data,
	}
	// Not blocks of this store: a stray file, a block in the wrong shard
	// and a hand-made second name for the stored block's key.
	pb := cid.NewCidV1(cid.DagProtobuf, c.Hash())
	foreign := map[string][]byte{
		filepath.Join(dir, "00", "README"):                          data,
		filepath.Join(dir, fmt.Sprintf("%02x", k[0]+1), c.String()): data,
		filepath.Join(shard, pb.String()):                           data,
	}
	for _, files := range []map[string][]byte{temps, foreign} {
		for p, b := range files {
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	s = open(t, dir, Options{})
	for p := range temps {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("temp file %s survived Open: %v", p, err)
		}
	}
	for p := range foreign {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a file that is not a block was removed: %v", err)
		}
	}
	wantStats(t, s, 1, 500)
	if got := all(s); len(got) != 1 || !got[0].Equals(c) {
		t.Fatalf("Range lists %v, want only %s", got, c)
	}
	if s.Has(wc) {
		t.Fatal("a block from a temp file became visible")
	}
}

func TestCapacity(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1000})
	rng := rand.New(rand.NewPCG(7, 8))
	block := func(n int) ([]byte, cid.Cid) { return randBlock(t, rng, n) }
	d1, c1 := block(400)
	d2, c2 := block(400)
	put(t, s, c1, d1)
	put(t, s, c2, d2)
	d3, c3 := block(400)
	err := s.Put(c3, d3)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("put over the limit: %v, want ErrFull", err)
	}
	for _, want := range []string{c3.String(), "limit of 1000 bytes", "400-byte block", "800 bytes stored"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	put(t, s, c1, d1) // held already: no new bytes, no error
	d4, c4 := block(200)
	put(t, s, c4, d4) // exactly at the limit
	wantStats(t, s, 3, 1000)
	if err := s.Delete(c2); err != nil {
		t.Fatal(err)
	}
	put(t, s, c3, d3)
	if st := s.Stats(); st.MaxBytes != 1000 {
		t.Fatalf("MaxBytes %d", st.MaxBytes)
	}
	s.Close()

	// Lowering the limit keeps what is stored and refuses more.
	s = open(t, dir, Options{MaxBytes: 500})
	wantStats(t, s, 3, 1000)
	if d, c := block(1); !errors.Is(s.Put(c, d), ErrFull) {
		t.Fatal("put accepted over a lowered limit")
	}

	if _, err := Open(t.TempDir(), Options{MaxBytes: -1}); err == nil {
		t.Fatal("negative MaxBytes accepted")
	}
}

// Concurrent puts cannot overshoot the limit between them.
func TestCapacityConcurrent(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1000})
	rng := rand.New(rand.NewPCG(9, 10))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 30 {
		data, c := randBlock(t, rng, 100)
		wg.Go(func() {
			err := s.Put(c, data)
			if err != nil && !errors.Is(err, ErrFull) {
				t.Error(err)
			}
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 10 {
		t.Fatalf("%d puts of 100 bytes succeeded under a 1000-byte limit, want 10", ok)
	}
	wantStats(t, s, 10, 1000)
}

// tempModes runs test once with each way a put makes its temp file:
// unnamed (O_TMPFILE, skipped where Open found the system without it) and
// named, which Open falls back to.
func tempModes(t *testing.T, test func(t *testing.T, open func(dir string) *Store)) {
	for _, named := range []bool{false, true} {
		t.Run(map[bool]string{false: "unnamed", true: "named"}[named], func(t *testing.T) {
			test(t, func(dir string) *Store {
				s := open(t, dir, Options{})
				if s.named && !named {
					t.Skip("no unnamed files here")
				}
				s.named = named
				if s.Stats().NamedTemps != named {
					t.Fatalf("Stats().NamedTemps = %v, want %v", !named, named)
				}
				return s
			})
		})
	}
}

// Puts, gets, deletes and ranges from many goroutines; run with -race. The
// index must agree with the disk afterwards.
func TestConcurrent(t *testing.T) { tempModes(t, testConcurrent) }

func testConcurrent(t *testing.T, openMode func(string) *Store) {
	dir := t.TempDir()
	s := openMode(dir)
	type block struct {
		data []byte
		c    cid.Cid
	}
	rng := rand.New(rand.NewPCG(11, 12))
	var bs []block
	for range 64 {
		data, c := randBlock(t, rng, 1+rng.IntN(20000))
		bs = append(bs, block{data, c})
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for range 300 {
				b := bs[rng.IntN(len(bs))]
				switch rng.IntN(6) {
				case 0, 1:
					if err := s.Put(b.c, b.data); err != nil {
						t.Error(err)
					}
				case 2:
					got, err := s.Get(b.c)
					if err != nil && !errors.Is(err, ErrNotFound) || err == nil && !bytes.Equal(got, b.data) {
						t.Errorf("get %s: %v", b.c, err)
					}
				case 3:
					if err := s.Delete(b.c); err != nil {
						t.Error(err)
					}
				case 4:
					s.Has(b.c)
					s.Stats()
				case 5:
					var from, to Key
					from[0], to[0] = byte(rng.Uint32()), byte(rng.Uint32())
					s.Range(from, to, func(Key, cid.Cid) bool { return true })
				}
			}
		})
	}
	// Many puts of one block at once: one file, counted once.
	one := bs[0]
	s.Delete(one.c)
	for range 8 {
		wg.Go(func() {
			if err := s.Put(one.c, one.data); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	before := s.Stats()
	listed := all(s)
	s.Close()
	s = openMode(dir)
	if after := s.Stats(); after != before {
		t.Fatalf("reopened store has %+v, the running one had %+v", after, before)
	}
	if !slices.EqualFunc(all(s), listed, cid.Cid.Equals) {
		t.Fatal("reopened store lists other blocks")
	}
	for _, c := range listed {
		if _, err := s.Get(c); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPutReplacesStray: a file under a block's name that the store does not
// hold, as a put whose shard fsync failed leaves, is replaced by the next
// put of that block.
func TestPutReplacesStray(t *testing.T) { tempModes(t, testPutReplacesStray) }

func testPutReplacesStray(t *testing.T, openMode func(string) *Store) {
	dir := t.TempDir()
	s := openMode(dir)
	data, c := randBlock(t, rand.New(rand.NewPCG(21, 22)), 3000)
	if err := os.WriteFile(blockFile(dir, c), data[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	put(t, s, c, data)
	if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after put over a stray file: %d bytes, %v", len(got), err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*", tempPrefix+"*")); len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
}

// TestPutBlocked: a put whose name is taken by a directory fails with an
// error that names the file, leaves no temp file, and holds no descriptor
// (each put's own is closed; the shard's is opened once).
func TestPutBlocked(t *testing.T) { tempModes(t, testPutBlocked) }

func testPutBlocked(t *testing.T, openMode func(string) *Store) {
	dir := t.TempDir()
	s := openMode(dir)
	data, c := randBlock(t, rand.New(rand.NewPCG(23, 24)), 3000)
	if err := os.MkdirAll(filepath.Join(blockFile(dir, c), "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		des, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return -1 // no /proc: descriptors not counted
		}
		return len(des)
	}
	var before int
	for i := range 6 {
		err := s.Put(c, data)
		if err == nil || !strings.Contains(err.Error(), blockFile(dir, c)) {
			t.Fatalf("put over a directory: %v, want an error naming %s", err, blockFile(dir, c))
		}
		if i == 0 {
			before = fds()
		}
	}
	if after := fds(); after != before {
		t.Errorf("descriptors open after the first failed put %d, after 5 more %d", before, after)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*", tempPrefix+"*")); len(tmp) != 0 {
		t.Fatalf("temp files left: %v", tmp)
	}
	wantStats(t, s, 0, 0)
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	rng := rand.New(rand.NewPCG(13, 14))
	want := map[cid.Cid][]byte{}
	for i := range 150 {
		data, c := randBlock(t, rng, rng.IntN(10000))
		put(t, s, c, data)
		if i%5 == 0 {
			if err := s.Delete(c); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want[c] = data
	}
	listed, stats := all(s), s.Stats()
	s.Close()

	s = open(t, dir, Options{})
	if got := s.Stats(); got != stats || got.Count != len(want) {
		t.Fatalf("reopened: %+v, before: %+v, want %d blocks", got, stats, len(want))
	}
	if !slices.EqualFunc(all(s), listed, cid.Cid.Equals) {
		t.Fatal("reopened store lists other blocks or another order")
	}
	for c, data := range want {
		if got, err := s.Get(c); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %s after reopen: %v", c, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	data, c := randBlock(t, rand.New(rand.NewPCG(15, 16)), 10)
	put(t, s, c, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(c, data); !errors.Is(err, ErrClosed) {
		t.Errorf("put after close: %v", err)
	}
	if _, err := s.Get(c); !errors.Is(err, ErrClosed) {
		t.Errorf("get after close: %v", err)
	}
	if err := s.Delete(c); !errors.Is(err, ErrClosed) {
		t.Errorf("delete after close: %v", err)
	}
}
