// Package blocks is a peer's local block store: content-addressed blocks on
// disk, checked against their CIDs on the way in and on the way out, and
// listed in ring order for a range of keys.
//
// It knows nothing of the ring beyond "a key is 32 bytes and ranges are
// ordered" (see Key and Store.Range).
//
// # Layout
//
//	DIR/00 .. ff/   one shard per first byte of the key, in hex
//	DIR/ab/NAME     one block: NAME is the CID's bytes in multibase base32
//	                (for CIDv1 that is its usual string, bafk...), the file's
//	                contents are exactly the block's bytes
//	DIR/ab/tmp-*    a put in progress where the file system has no unnamed
//	                files (O_TMPFILE); removed at Open
//
// The CID lives in the file name rather than in a header so that Open
// rebuilds the index from directory listings alone, without opening a file,
// and so that every file is the plain block that any IPFS tool can check.
// Base32 is case-insensitive, unlike the base58 of CIDv0 strings, so names
// survive case-folding file systems. 256 shards keep each directory near
// n/256 entries; keys are SHA-256 outputs and fill them evenly. A put's temp
// file sits in the shard it is renamed into, so that a put dirties one
// directory rather than two (8-19% less time per put than with a separate
// tmp directory, in a one-off measurement on the development machine).
// Where it can (Linux, and a file system with O_TMPFILE), a put writes an
// unnamed file instead and links it under its name: that adds one directory
// entry where a named temp file adds one and removes one at the rename, and
// a crash leaves no temp file behind. It costs 3-19% less CPU per put and
// gives 2-28% more puts per second at 1 to 8 writers (testnet/syncbench;
// blocks/BENCH.md).
//
// # One key, several CIDs
//
// The raw and dag-pb CIDs of the same multihash share a Key and, by
// construction, the same bytes, so the store keeps one file per key: the
// first Put wins and names the file, a Put under the other codec is an
// idempotent success, Get, Has and Delete accept either CID, and Range
// reports the CID that was put first.
//
// # Durability
//
// Put writes to a temp file (unnamed where it can), fsyncs it, renames or
// links it to its name and fsyncs the shard: a block is visible only whole,
// and once Put returns it survives a crash or a power loss. Each put makes
// its own two syncs (an unnamed file's is its write's, RWF_SYNC): on ext4
// concurrent fsyncs already share journal commits, and a group commit that
// had concurrent puts share fsync calls was slower (blocks/BENCH.md). Open
// removes the temp files a crash left.
// Open trusts what it finds (hashing a large store at every start would
// take minutes); Get verifies every read, removes a damaged block and
// reports ErrCorrupt so that the caller fetches it again from a replica.
package blocks

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multibase"
)

// MaxBlockSize is the largest block the store accepts, the block size cap of
// the wire protocol (DESIGN.md).
const MaxBlockSize = 2 << 20

var (
	// ErrNotFound: the store does not hold the block.
	ErrNotFound = errors.New("block not found")
	// ErrCorrupt: the block on disk no longer matches its CID. The store has
	// removed it; fetch it again from a replica.
	ErrCorrupt = errors.New("block corrupt on disk")
	// ErrFull: storing the block would exceed Options.MaxBytes.
	ErrFull = errors.New("block store full")
	// ErrTooLarge: the block is bigger than MaxBlockSize.
	ErrTooLarge = errors.New("block too large")
	// ErrMismatch: the bytes given to Put do not hash to the CID.
	ErrMismatch = errors.New("data does not match CID")
	// ErrBadCID: the CID is undefined or uses a hash function the store does
	// not trust (see Put).
	ErrBadCID = errors.New("CID not accepted")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("block store closed")
)

// Options configure a Store.
type Options struct {
	// MaxBytes caps the sum of the stored blocks' sizes (file system
	// overhead not counted); 0 means no limit.
	MaxBytes int64
}

// Stats is a snapshot of the store's size.
type Stats struct {
	Count    int   // blocks held
	Bytes    int64 // sum of their sizes
	MaxBytes int64 // Options.MaxBytes: 0 means no limit
	// NamedTemps: puts write named temp files and rename them, because
	// Open found no unnamed files (O_TMPFILE) here.
	NamedTemps bool
}

// Store is an on-disk block store. It is safe for concurrent use. One
// process at a time may open a directory; the repo lock of the daemon that
// owns it guarantees that.
type Store struct {
	dir string
	max int64

	// mu guards everything below. File I/O of puts and reads happens
	// outside it; only unlinks run under it, so that a Delete cannot remove
	// the file of a block put again after it looked.
	mu       sync.RWMutex
	idx      index
	bytes    int64                 // sum of the indexed blocks' sizes
	reserved int64                 // bytes of puts in flight, counted against max
	inflight map[Key]chan struct{} // closed when that key's put ends
	seq      uint64
	closed   bool
	puts     sync.WaitGroup // puts in flight, so Close can wait for them

	// named: puts write named temp files and rename them, because Open
	// found that unnamed files cannot be created and linked in dir.
	named bool

	// dirs holds the shard directories that puts of unnamed files have
	// opened (shardDir), kept open until Close so that a put neither opens
	// nor closes one; goneDirs, those found deleted (remakeShard).
	dirsMu   sync.Mutex
	dirs     [256]*os.File
	goneDirs []*os.File
}

// Open opens the store in dir, creating it if needed. It removes the temp
// files a crash left behind and rebuilds the index from the shard
// directories. Files it does not recognise as blocks are left alone and not
// counted.
func Open(dir string, opts Options) (*Store, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("open block store %s: MaxBytes %d is negative", dir, opts.MaxBytes)
	}
	s := &Store{
		dir:      dir,
		max:      opts.MaxBytes,
		inflight: make(map[Key]chan struct{}),
	}
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("open block store %s: %w", dir, err)
	}
	return s, nil
}

func (s *Store) open() error {
	_, err := os.Stat(s.dir)
	fresh := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	if fresh {
		// The shards are fsynced into dir below; dir's own entry must be
		// durable too, or a power loss could take all of it.
		if err := syncDir(filepath.Dir(s.dir)); err != nil {
			return err
		}
	}
	created := false
	for b := range 256 {
		shard := filepath.Join(s.dir, shardName(byte(b)))
		switch err := os.Mkdir(shard, 0o700); {
		case err == nil:
			created = true
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		if err := s.scan(byte(b), shard); err != nil {
			return err
		}
	}
	if created {
		// A put fsyncs only the shard it renames into, so the shards' own
		// names must be durable before the first put.
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	named, err := s.probeUnnamed()
	s.named = named
	return err
}

// probeUnnamed reports whether puts must use named temp files: the
// system's probeUnnamed writes an unnamed file in shard 00 and links it, as
// a put would. Any failure means named files (no O_TMPFILE, no /proc, no
// pwritev2 or RWF_SYNC, ...): the named path reports its own errors, if
// any, at the first put.
func (s *Store) probeUnnamed() (named bool, err error) {
	d, err := s.shardDir(0)
	if err != nil {
		return false, err
	}
	return probeUnnamed(d) != nil, nil
}

// shardDir returns shard b's directory, opened the first time and kept
// open until Close.
func (s *Store) shardDir(b byte) (*os.File, error) {
	s.dirsMu.Lock()
	defer s.dirsMu.Unlock()
	if d := s.dirs[b]; d != nil {
		return d, nil
	}
	d, err := os.Open(filepath.Join(s.dir, shardName(b)))
	if err != nil {
		return nil, err
	}
	s.dirs[b] = d
	return d, nil
}

// remakeShard makes shard b's directory again, durably, as Open does, once
// it has been found missing: d, the one shardDir kept, if any, is of a
// deleted directory. d is kept open until Close, not closed now: puts that
// still hold it use its descriptor (they fail, and leave nothing behind),
// and a close could let a new file take the number under them.
func (s *Store) remakeShard(b byte, d *os.File) error {
	s.dirsMu.Lock()
	if d != nil && s.dirs[b] == d {
		s.dirs[b] = nil
		s.goneDirs = append(s.goneDirs, d)
	}
	s.dirsMu.Unlock()
	if err := os.MkdirAll(filepath.Join(s.dir, shardName(b)), 0o700); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// scan indexes the blocks of one shard directory and removes its temp
// files: puts that never reached their rename, so never visible and never
// acknowledged.
func (s *Store) scan(b byte, shard string) error {
	des, err := os.ReadDir(shard)
	if err != nil {
		return err
	}
	es := make([]entry, 0, len(des))
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tempPrefix) {
			if err := os.RemoveAll(filepath.Join(shard, de.Name())); err != nil {
				return err
			}
			continue
		}
		if !de.Type().IsRegular() {
			continue
		}
		c, ok := parseFileName(de.Name())
		if !ok {
			continue
		}
		k := KeyOf(c)
		if k[0] != b {
			continue // not where Put would have put it: not ours
		}
		info, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while we listed
		}
		if err != nil {
			return err
		}
		s.seq++
		es = append(es, entry{key: k, cid: c, size: info.Size(), seq: s.seq})
	}
	slices.SortStableFunc(es, func(a, b entry) int { return a.key.Cmp(b.key) })
	// Put never makes two files for one key, but a user copying blocks in
	// by hand could (raw and dag-pb names of one multihash). The index must
	// hold each key once: keep the first name in directory order, so that
	// the choice is the same at every Open.
	es = slices.CompactFunc(es, func(a, b entry) bool { return a.key == b.key })
	for _, e := range es {
		s.bytes += e.size
	}
	s.idx.buckets[b] = es
	s.idx.count += len(es)
	return nil
}

// Put stores data as the block c. It checks first that data is at most
// MaxBlockSize (ErrTooLarge), that c uses a hash function the store trusts
// (ErrBadCID) and that data hashes to c (ErrMismatch); it then writes the
// block durably (see the package comment) unless that would exceed
// Options.MaxBytes (ErrFull). Putting a block the store holds, under any CID
// with the same multihash, succeeds without writing.
//
// Trusted hash functions are those kubo accepts (boxo's verifcid default
// allowlist: SHA-2 256/512, SHA-3, BLAKE2, BLAKE3, ... with digests of at
// least 20 bytes). Any peer can push blocks, and a block is only as
// trustworthy as its hash: under murmur3 or a truncated digest, a peer could
// forge other bytes for a CID and replicas would serve them.
func (s *Store) Put(c cid.Cid, data []byte) error {
	if len(data) > MaxBlockSize {
		return fmt.Errorf("put %s: %w: %d bytes, the limit is %d", c, ErrTooLarge, len(data), MaxBlockSize)
	}
	if err := verify(c, data); err != nil {
		return fmt.Errorf("put %s: %w", c, err)
	}
	k := KeyOf(c)
	n := int64(len(data))
	done, err := s.reserve(k, n)
	if err != nil {
		return fmt.Errorf("put %s: %w", c, err)
	}
	if done == nil {
		return nil // already held
	}
	err = s.write(k, c, data)

	s.mu.Lock()
	delete(s.inflight, k)
	close(done)
	s.reserved -= n
	if err == nil {
		s.seq++
		s.idx.insert(entry{key: k, cid: c, size: n, seq: s.seq})
		s.bytes += n
	}
	s.mu.Unlock()
	s.puts.Done()

	if err != nil {
		return fmt.Errorf("put %s: %w", c, err)
	}
	return nil
}

// reserve claims the right to write key k's n bytes. It returns a nil
// channel if the block is already held; otherwise the caller must write it,
// then close the channel, clear the claim and call s.puts.Done. A second put
// of the same key waits for the first rather than writing twice, so the
// byte count and the one-file-per-key rule stay right.
func (s *Store) reserve(k Key, n int64) (chan struct{}, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if _, ok := s.idx.find(k); ok {
			s.mu.Unlock()
			return nil, nil
		}
		if wait, ok := s.inflight[k]; ok {
			s.mu.Unlock()
			<-wait
			continue // it may have failed: look again
		}
		if used := s.bytes + s.reserved; s.max > 0 && used+n > s.max {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: a %d-byte block on top of %d bytes stored would exceed the limit of %d bytes",
				ErrFull, n, used, s.max)
		}
		done := make(chan struct{})
		s.inflight[k] = done
		s.reserved += n
		s.puts.Add(1)
		s.mu.Unlock()
		return done, nil
	}
}

// write makes data durable under its final name: it is synced in a temp
// file (fsync, or the write's own RWF_SYNC on the unnamed path) before the
// rename or link, so the final name only ever points at a whole block, and
// the shard is fsynced after, so the name outlives a power loss.
func (s *Store) write(k Key, c cid.Cid, data []byte) (err error) {
	if !s.named {
		return s.writeUnnamed(k[0], fileName(c), data)
	}
	shard := filepath.Join(s.dir, shardName(k[0]))
	f, err := os.CreateTemp(shard, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// The shard was wiped under us; make it again, durably, as Open does.
		if err = s.remakeShard(k[0], nil); err == nil {
			f, err = os.CreateTemp(shard, tempPrefix+"*")
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(shard, fileName(c))); err != nil {
		return err
	}
	// If this fsync fails the block is left visible but not indexed: Put
	// reports the failure, so the caller does not count it as durable, and a
	// retry writes and syncs it again (it replaces the file).
	return syncDir(shard)
}

// Get returns the block c (any CID with c's multihash), verified against c.
// A block missing on disk is forgotten and reported as ErrNotFound; a block
// that no longer matches its CID is removed and reported as ErrCorrupt.
// The caller owns the returned slice.
func (s *Store) Get(c cid.Cid) ([]byte, error) {
	return s.GetWith(c, nil)
}

// GetWith is Get, reading the block into alloc(size) rather than a new
// slice, so that a caller with a buffer pool does not allocate a block per
// read. alloc must return a slice of length size. nil means make.
func (s *Store) GetWith(c cid.Cid, alloc func(size int) []byte) ([]byte, error) {
	k := KeyOf(c)
	s.mu.RLock()
	closed := s.closed
	e, ok := s.idx.find(k)
	s.mu.RUnlock()
	switch {
	case closed:
		return nil, fmt.Errorf("get %s: %w", c, ErrClosed)
	case !ok:
		return nil, notIndexed{c}
	}
	path := s.path(e)
	data, err := readBlock(path, alloc)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.drop(e, false)
		return nil, fmt.Errorf("get %s: %w (its file %s is gone)", c, ErrNotFound, path)
	case errors.Is(err, errOversize):
		return nil, s.corrupt(c, e, err)
	case err != nil:
		return nil, fmt.Errorf("get %s: %w", c, err)
	}
	if err := verify(c, data); err != nil {
		return nil, s.corrupt(c, e, err)
	}
	return data, nil
}

// notIndexed is Get's error for a block the store does not hold. Its
// message is formatted only when asked for: a fetch asks its own store
// for every block first, and most blocks are elsewhere (formatting the
// CID in base32 each time was 4% of a fetcher's CPU).
type notIndexed struct{ c cid.Cid }

func (e notIndexed) Error() string { return fmt.Sprintf("get %s: %v", e.c, ErrNotFound) }
func (e notIndexed) Unwrap() error { return ErrNotFound }

// corrupt removes a damaged block and says so.
func (s *Store) corrupt(c cid.Cid, e entry, why error) error {
	if err := s.drop(e, true); err != nil {
		return fmt.Errorf("get %s: %w (%v), but removing it failed: %v", c, ErrCorrupt, why, err)
	}
	return fmt.Errorf("get %s: %w (%v); removed it", c, ErrCorrupt, why)
}

// drop forgets e, and removes its file if asked, unless e has been replaced
// since it was read.
func (s *Store) drop(e entry, removeFile bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.idx.find(e.key); !ok || cur.seq != e.seq {
		return nil
	}
	if removeFile {
		if err := os.Remove(s.path(e)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // keep it indexed: the next Get tries again
		}
	}
	s.idx.remove(e.key)
	s.bytes -= e.size
	return nil
}

// errOversize: a block file bigger than any Put writes, hence damaged.
var errOversize = errors.New("file larger than the largest block")

// readBlock reads a block file into alloc(its size), refusing to read more
// than MaxBlockSize.
func readBlock(path string, alloc func(int) []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if info.Size() > MaxBlockSize {
		return nil, fmt.Errorf("%w: %d bytes", errOversize, info.Size())
	}
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	data := alloc(int(info.Size()))
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	return data, nil
}

// Has reports whether the store holds the block c (any CID with c's
// multihash). It checks that the file still exists, so that blocks wiped
// from disk are forgotten (and repaired) without waiting for a Get; it does
// not read or verify the block.
func (s *Store) Has(c cid.Cid) bool {
	s.mu.RLock()
	e, ok := s.idx.find(KeyOf(c))
	s.mu.RUnlock()
	if !ok {
		return false
	}
	if _, err := os.Lstat(s.path(e)); errors.Is(err, fs.ErrNotExist) {
		s.drop(e, false)
		return false
	}
	return true
}

// Delete removes the block c (any CID with c's multihash). Deleting a block
// the store does not hold is not an error, so repair and handoff can retry
// freely.
func (s *Store) Delete(c cid.Cid) error {
	k := KeyOf(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("delete %s: %w", c, ErrClosed)
	}
	e, ok := s.idx.find(k)
	if !ok {
		return nil
	}
	// The removal's directory entry is not fsynced: a block that comes
	// back after a crash is still whole and valid, merely kept.
	if err := os.Remove(s.path(e)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", c, err)
	}
	s.idx.remove(k)
	s.bytes -= e.size
	return nil
}

// Range calls fn for each stored key on the half-open arc (from, to] of the
// ring, in ring order starting just after from, with the CID it was put
// under, until fn returns false. When from >= to the arc wraps past 2^256-1
// to 0; from == to means the whole circle, ending with from itself.
//
// It costs O(log n + k). fn runs without the store's lock held, so it may
// call the store; a block put or deleted during Range may or may not be
// reported. Range lists the index: a block damaged or wiped on disk is
// listed until a Get or Has notices.
func (s *Store) Range(from, to Key, fn func(Key, cid.Cid) bool) {
	if from.Cmp(to) < 0 {
		s.walk(&from, &to, fn)
		return
	}
	if s.walk(&from, nil, fn) {
		s.walk(nil, &to, fn)
	}
}

// walk calls fn in ascending order for the keys k with lo < k <= hi, a nil
// bound being open, and reports whether fn asked for more. It copies one
// bucket at a time under the lock, so fn runs unlocked and memory stays
// near n/256 entries whatever the range.
func (s *Store) walk(lo, hi *Key, fn func(Key, cid.Cid) bool) bool {
	first, last := 0, 255
	if lo != nil {
		first = int(lo[0])
	}
	if hi != nil {
		last = int(hi[0])
	}
	var batch []entry
	for b := first; b <= last; b++ {
		s.mu.RLock()
		es := s.idx.buckets[b]
		i, j := 0, len(es)
		if lo != nil && b == first {
			i = after(es, *lo)
		}
		if hi != nil && b == last {
			j = after(es, *hi)
		}
		batch = append(batch[:0], es[i:j]...)
		s.mu.RUnlock()
		for _, e := range batch {
			if !fn(e.key, e.cid) {
				return false
			}
		}
	}
	return true
}

// Stats reports the store's size.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Count: s.idx.count, Bytes: s.bytes, MaxBytes: s.max, NamedTemps: s.named}
}

// Close waits for puts in flight, so that nothing writes to the directory
// once it returns, and closes the shard directories they kept open. Put,
// Get and Delete then fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.puts.Wait()
	s.dirsMu.Lock()
	defer s.dirsMu.Unlock()
	for b, d := range s.dirs {
		if d != nil {
			d.Close()
			s.dirs[b] = nil
		}
	}
	for _, d := range s.goneDirs {
		d.Close()
	}
	s.goneDirs = nil
	return nil
}

// verify checks that c is a CID the store trusts and that data hashes to it.
func verify(c cid.Cid, data []byte) error {
	if !c.Defined() {
		return fmt.Errorf("%w: undefined", ErrBadCID)
	}
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCID, err)
	}
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadCID, err)
	}
	if !bytes.Equal(got.Hash(), c.Hash()) {
		return fmt.Errorf("%w: the %d bytes given are %s", ErrMismatch, len(data), got)
	}
	return nil
}

func (s *Store) path(e entry) string {
	return filepath.Join(s.dir, shardName(e.key[0]), fileName(e.cid))
}

func shardName(b byte) string { return hex.EncodeToString([]byte{b}) }

// tempPrefix starts the names of temp files. Block names are base32 with the
// multibase prefix 'b', so they never start with it.
const tempPrefix = "tmp-"

var base32 = multibase.MustNewEncoder(multibase.Base32)

// fileName is c's bytes in lower-case multibase base32, whatever c's version.
func fileName(c cid.Cid) string { return base32.Encode(c.Bytes()) }

// parseFileName is the inverse of fileName; it refuses any other spelling,
// so that each block has exactly one name.
func parseFileName(name string) (cid.Cid, bool) {
	enc, raw, err := multibase.Decode(name)
	if err != nil || enc != multibase.Base32 {
		return cid.Undef, false
	}
	c, err := cid.Cast(raw)
	if err != nil || fileName(c) != name {
		return cid.Undef, false
	}
	return c, true
}

// syncDir fsyncs a directory, making the names created or renamed in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
