package share

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"sync"

	cid "github.com/ipfs/go-cid"
)

// Output is where Fetch writes the file. Make one with ToWriterAt (a file:
// blocks land at their offsets as they arrive, and an interrupted fetch
// resumes) or ToWriter (a pipe or stdout: bytes go out in order).
type Output struct {
	at io.WriterAt
	w  io.Writer
}

// ToWriterAt writes each verified block at its offset as soon as it arrives.
// Fetch looks for three more methods on w, all of which *os.File has:
//   - ReadAt (io.ReaderAt): before fetching a raw leaf, Fetch reads the bytes
//     already at its offset and skips the fetch if they hash to the leaf's
//     CID. This is how a fetch into a partly written file resumes, and it
//     needs no journal: the file is its own record of what is done.
//   - Stat() (fs.FileInfo, error): only offsets below the size the output
//     had before the fetch are checked, so a fetch into a new file does not
//     read and hash its own empty space.
//   - Truncate(int64) error: the output is set to the file's size first, so
//     a longer old file does not keep a stale tail.
//
// And one that *os.File lacks: Allocate(size int64) error, called after
// Truncate, to reserve the file's disk space before any block arrives (a
// full disk then fails the fetch at once, and writes into reserved space
// cost less CPU than allocating it page by page).
func ToWriterAt(w io.WriterAt) Output { return Output{at: w} }

// ToWriter writes the file in order to w, which need not seek. Blocks that
// arrive ahead of their turn wait in memory; that buffer is bounded by
// FetchOptions.Window, since a block's slot in the window is freed only when
// the block has been written out.
func ToWriter(w io.Writer) Output { return Output{w: w} }

// sink is one fetch's view of an Output.
type sink interface {
	// start is called once, with the file's size, before any write.
	start(size int64) error
	// write takes piece seq (pieces are numbered in file order) of the
	// file, at offset off, and frees the piece's window slot (release)
	// once the piece is written; a leaf's bytes (leaf) then go to the
	// caller's Release.
	write(seq, off int64, data []byte, leaf bool) error
	// finish is called after every piece was written.
	finish() error
}

// resumer is a sink that can tell whether it already holds a leaf.
type resumer interface {
	have(c cid.Cid, off, size int64) (bool, error)
}

func (o Output) sink(release func(), give func([]byte)) (sink, error) {
	if give == nil {
		give = func([]byte) {}
	}
	switch {
	case o.at != nil:
		return &atSink{w: o.at, release: release, give: give}, nil
	case o.w != nil:
		return &streamSink{w: o.w, release: release, give: give, pending: make(map[int64]piece)}, nil
	}
	return nil, errors.New("no output: use ToWriterAt or ToWriter")
}

// atSink writes at offsets, in any order.
type atSink struct {
	w       io.WriterAt
	release func()
	give    func([]byte) // FetchOptions.Release
	// prior is the output's size before this fetch: only bytes below it
	// can be left over from an earlier one.
	prior int64
}

func (s *atSink) start(size int64) error {
	s.prior = math.MaxInt64
	if st, ok := s.w.(interface{ Stat() (fs.FileInfo, error) }); ok {
		fi, err := st.Stat()
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		s.prior = fi.Size()
	}
	if t, ok := s.w.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(size); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	if a, ok := s.w.(interface{ Allocate(int64) error }); ok {
		if err := a.Allocate(size); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	return nil
}

func (s *atSink) have(c cid.Cid, off, size int64) (bool, error) {
	r, ok := s.w.(io.ReaderAt)
	if !ok || off+size > s.prior {
		return false, nil
	}
	buf := make([]byte, size)
	n, err := r.ReadAt(buf, off)
	if n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("output: read at %d: %w", off, err)
	}
	return verify(c, buf) == nil, nil
}

func (s *atSink) write(_, off int64, data []byte, leaf bool) error {
	if _, err := s.w.WriteAt(data, off); err != nil {
		return fmt.Errorf("output: write at %d: %w", off, err)
	}
	s.release()
	if leaf {
		s.give(data)
	}
	return nil
}

func (s *atSink) finish() error { return nil }

// streamSink writes pieces in sequence order, holding early ones back.
type streamSink struct {
	w       io.Writer
	release func()
	give    func([]byte) // FetchOptions.Release

	mu      sync.Mutex // held across the Write, which keeps writes in order
	next    int64      // sequence number of the piece to write next
	written int64
	size    int64
	pending map[int64]piece // by sequence number, all > next
}

type piece struct {
	data []byte
	leaf bool
}

func (s *streamSink) start(size int64) error {
	s.size = size
	return nil
}

func (s *streamSink) write(seq, _ int64, data []byte, leaf bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := piece{data, leaf}
	if seq != s.next {
		s.pending[seq] = p
		return nil
	}
	for {
		if _, err := s.w.Write(p.data); err != nil {
			return fmt.Errorf("output: write at %d: %w", s.written, err)
		}
		s.written += int64(len(p.data))
		s.next++
		s.release()
		if p.leaf {
			s.give(p.data)
		}
		var ok bool
		if p, ok = s.pending[s.next]; !ok {
			return nil
		}
		delete(s.pending, s.next)
	}
}

func (s *streamSink) finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) != 0 || s.written != s.size {
		return fmt.Errorf("output: wrote %d of %d bytes", s.written, s.size)
	}
	return nil
}
