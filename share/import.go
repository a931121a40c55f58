package share

import (
	"context"
	"errors"
	"fmt"
	"io"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"golang.org/x/sync/errgroup"
)

// ImportOptions tunes Import. The zero value is the default.
type ImportOptions struct {
	// ChunkSize is the leaf size in bytes (default DefaultChunkSize). Any
	// other size gives a different root CID, as `ipfs add --chunker` does.
	ChunkSize int
	// Parallelism is how many puts may be in flight at once (default
	// DefaultPutParallelism). It also bounds memory: a chunk is held until
	// its put returns.
	Parallelism int
	// Progress, if set, is called with the number of bytes read from the
	// input so far, from the goroutine that called Import.
	Progress func(bytesRead int64)
}

func (o ImportOptions) withDefaults() (ImportOptions, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Parallelism == 0 {
		o.Parallelism = DefaultPutParallelism
	}
	if o.ChunkSize < 1 || o.ChunkSize > chunker.ChunkSizeLimit {
		return o, fmt.Errorf("chunk size %d: want 1..%d", o.ChunkSize, chunker.ChunkSizeLimit)
	}
	if o.Parallelism < 1 {
		return o, fmt.Errorf("parallelism %d: want at least 1", o.Parallelism)
	}
	return o, nil
}

// Import reads r to its end, cuts it into a balanced UnixFS DAG with raw
// leaves and CIDv1 (the root `ipfs add --cid-version=1 --raw-leaves` prints
// for the same bytes), puts every block, and returns the root CID.
//
// It streams: the importer hands each block to put as soon as it exists,
// with at most opts.Parallelism puts in flight; when all slots are busy the
// importer waits, so memory stays at about Parallelism chunks whatever the
// file size. Import returns only after every put has succeeded; the first
// failure cancels the puts still running and is returned. A Read that blocks
// is not interrupted by ctx: close the reader to stop it.
func Import(ctx context.Context, r io.Reader, put Putter, opts ImportOptions) (cid.Cid, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return cid.Undef, fmt.Errorf("import: %w", err)
	}
	// cancel stops the puts in flight when the importer fails; errgroup
	// cancels them when a put fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallelism)

	if opts.Progress != nil {
		r = &progressReader{r: r, progress: opts.Progress}
	}
	split := newChunkSplitter(r, opts.ChunkSize, opts.Parallelism)
	params := helpers.DagBuilderParams{
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cidBuilder,
		Dagserv:    &putService{ctx: gctx, g: g, put: put, recycle: split.recycle},
	}
	db, err := params.New(split)
	if err != nil {
		return cid.Undef, fmt.Errorf("import: %w", err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		// Either a put failed first, and Add handed its error (the
		// group's cause) to the importer, or the importer failed on its
		// own (a read error) and the puts still running are now moot:
		// err is the cause either way, and what the canceled puts
		// return adds nothing.
		cancel()
		_ = g.Wait()
		return cid.Undef, importError(err)
	}
	if err := g.Wait(); err != nil {
		return cid.Undef, importError(err)
	}
	return root.Cid(), nil
}

// progressReader reports the running total of bytes read.
type progressReader struct {
	r        io.Reader
	n        int64
	progress func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.progress(p.n)
	}
	return n, err
}

// errReadOnly answers the DAGService reads that the balanced importer never
// makes (it builds, it does not append or modify).
var errReadOnly = errors.New("share: import's DAG service is write-only")

// putService is the DAGService boxo's importer writes through: Add starts
// the put in the errgroup and returns at once, blocking only while
// Parallelism puts are already in flight.
type putService struct {
	// ctx is the import's group context; the importer passes context.TODO.
	ctx context.Context
	g   *errgroup.Group
	put Putter
	// recycle takes back a raw leaf's chunk once a LendingPutter is done.
	recycle func([]byte)
}

func (s *putService) Add(_ context.Context, n ipld.Node) error {
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	c, data := n.Cid(), n.RawData()
	if len(data) > MaxBlockSize {
		return &putError{c, fmt.Errorf("%d bytes, over the %d byte block limit", len(data), MaxBlockSize)}
	}
	lp, lending := s.put.(LendingPutter)
	s.g.Go(func() error {
		var err error
		if lending && c.Type() == cid.Raw {
			// A raw leaf's bytes are the splitter's chunk, and nothing
			// else refers to them once the leaf is added: back to the
			// splitter once the putter is done.
			err = lp.PutLent(s.ctx, c, data, func() { s.recycle(data) })
		} else {
			err = s.put.Put(s.ctx, c, data)
		}
		if err != nil {
			return &putError{c, err}
		}
		return nil
	})
	return nil
}

// putError is a block's put that failed: "put CID: why". The Putter's
// error leaves the block to it (peer's Node says how many replicas took
// it and why the others did not), and Import returns it as it is: it
// says what failed, an "import: " before it nothing more.
type putError struct {
	c   cid.Cid
	err error
}

func (e *putError) Error() string { return fmt.Sprintf("put %s: %v", e.c, e.err) }

func (e *putError) Unwrap() error { return e.err }

// importError is err as Import returns it: "import: " before it unless
// it is a block's put.
func importError(err error) error {
	var pe *putError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("import: %w", err)
}

func (s *putService) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := s.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (s *putService) Get(context.Context, cid.Cid) (ipld.Node, error) { return nil, errReadOnly }

func (s *putService) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption, 1)
	ch <- &ipld.NodeOption{Err: errReadOnly}
	close(ch)
	return ch
}

func (s *putService) Remove(context.Context, cid.Cid) error { return errReadOnly }

func (s *putService) RemoveMany(context.Context, []cid.Cid) error { return errReadOnly }

// chunkSplitter cuts r into chunks of size bytes, the last one shorter, as
// boxo's size splitter does (same chunks, hence the same CIDs), but into
// buffers it gets back (recycle) once a LendingPutter is done with them.
// It keeps at most keep of them: the rest, and all of them once the
// import is over, are left to the garbage collector, so a daemon holds no
// more memory after a share than before it.
type chunkSplitter struct {
	r    io.Reader
	size int
	free chan []byte
	err  error // io.EOF once the input is read
}

func newChunkSplitter(r io.Reader, size, keep int) *chunkSplitter {
	return &chunkSplitter{r: r, size: size, free: make(chan []byte, keep)}
}

// Reader is part of chunker.Splitter.
func (s *chunkSplitter) Reader() io.Reader { return s.r }

// NextBytes returns the next chunk, or io.EOF after the last.
func (s *chunkSplitter) NextBytes() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	var buf []byte
	select {
	case buf = <-s.free:
	default:
		buf = make([]byte, s.size)
	}
	n, err := io.ReadFull(s.r, buf)
	switch {
	case err == nil:
		return buf, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.err = io.EOF
		return buf[:n], nil
	case errors.Is(err, io.EOF):
		s.err = io.EOF
		s.recycle(buf)
	}
	return nil, err
}

// recycle takes back a chunk for a later NextBytes, if there is room.
func (s *chunkSplitter) recycle(buf []byte) {
	if cap(buf) != s.size {
		return
	}
	select {
	case s.free <- buf[:s.size]:
	default:
	}
}
