package share

import (
	"context"
	"fmt"
	"sync"

	cid "github.com/ipfs/go-cid"
	"golang.org/x/sync/errgroup"
)

// NodeStore keeps verified internal nodes across fetches. peer passes its
// block store.
type NodeStore interface {
	Getter
	Putter
}

// FetchOptions tunes Fetch. The zero value is the default.
type FetchOptions struct {
	// Window is how many blocks may be in flight (asked of the Getter, or
	// fetched and waiting for their turn in a ToWriter output) at once
	// (default DefaultWindow).
	Window int
	// Attempts is how many times a block is asked of the Getter while the
	// bytes it returns do not match the CID (default DefaultAttempts). A
	// Getter error is not retried: the Getter already tries every replica
	// it knows.
	Attempts int
	// Progress, if set, is called with the bytes written (or found already
	// in place) so far and the file's size. Calls are serialized and done
	// never decreases.
	Progress func(done, total int64)
	// Nodes, if set, is asked first for internal nodes, and every internal
	// node fetched is put there once verified. Leaves are never stored:
	// the output holds them. This makes a resumed fetch cost no requests
	// at all for what it already has. A failing Get counts as a miss;
	// a failing Put fails the fetch, since it is the caller's store. It
	// is called from more than one goroutine (the next internal node is
	// fetched while the walk is still on the current one).
	Nodes NodeStore
	// Verified says the Getter returns only bytes it has itself checked
	// against the CID (peer's node does: its store and its block protocol
	// both verify). Fetch then does not hash them a second time.
	Verified bool
	// Release, if set, is handed each raw leaf's bytes once they are
	// written out and Fetch is done with them, so that a Getter with a
	// buffer pool can reuse them.
	Release func([]byte)
	// Locate, if set, is handed the links of each internal node as it is
	// read, before any of them is asked for, so that a Getter that must
	// find a block first (a ring lookup) can do that ahead, outside the
	// window. It must return at once and stop its work when ctx ends.
	Locate func(ctx context.Context, cids []cid.Cid)
}

func (o FetchOptions) withDefaults() (FetchOptions, error) {
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Window < 1 {
		return o, fmt.Errorf("window %d: want at least 1", o.Window)
	}
	if o.Attempts < 1 {
		return o, fmt.Errorf("attempts %d: want at least 1", o.Attempts)
	}
	return o, nil
}

// Fetch writes the file whose root is root to out, every block verified
// against its CID.
//
// The root may be a raw block (a one-block file) or a dag-pb UnixFS file
// node; directories, symlinks and other UnixFS types are refused with
// ErrNotFile. One goroutine walks the DAG depth-first, fetching internal
// nodes itself; it hands each raw leaf to a goroutine of its own, with at
// most opts.Window blocks in flight. Leaves that are dag-pb (DAGs made
// without --raw-leaves, never by Import) are fetched by the walker one at a
// time: correct, but without the window's parallelism.
//
// Resuming: with a ToWriterAt output that can be read back (a file), leaves
// whose bytes are already in place are verified and not fetched; internal
// nodes are refetched unless opts.Nodes holds them. Those are a small part
// of a DAG (one 8 KiB node per 174 leaves, i.e. per 43.5 MiB), so even then
// a resume costs a few round trips, not a refetch.
func Fetch(ctx context.Context, root cid.Cid, get Getter, out Output, opts FetchOptions) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return fmt.Errorf("fetch %s: %w", root, err)
	}
	if err := checkCID(root); err != nil {
		return fmt.Errorf("fetch %s: %w", root, err)
	}
	walked := &endgame{begun: make(chan struct{})}
	g, gctx := errgroup.WithContext(context.WithValue(ctx, endgameKey{}, walked))
	f := &fetcher{
		walked:   walked,
		g:        g,
		get:      get,
		nodes:    opts.Nodes,
		attempts: opts.Attempts,
		progress: opts.Progress,
		verified: opts.Verified,
		locate:   opts.Locate,
		slots:    make(chan struct{}, opts.Window),
	}
	f.sink, err = out.sink(f.release, opts.Release)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", root, err)
	}
	f.resume, _ = f.sink.(resumer)
	g.Go(func() error {
		err := f.walkRoot(gctx, root)
		// Every block is asked for (or the fetch is failing): the
		// requests in flight are the last ones.
		walked.begin()
		return err
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("fetch %s: %w", root, err)
	}
	if err := f.sink.finish(); err != nil {
		return fmt.Errorf("fetch %s: %w", root, err)
	}
	return nil
}

type endgameKey struct{}

// endgame is a Fetch's endgame signal: begun is closed once every block
// is asked for.
type endgame struct {
	once  sync.Once
	begun chan struct{}
}

func (e *endgame) begin() { e.once.Do(func() { close(e.begun) }) }

// alwaysEndgame is the endgame of a Get outside a Fetch: begun.
var alwaysEndgame = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Endgame reports whether the fetch that ctx belongs to has asked for
// every block it needs, so that the Getter's requests still in flight are
// its last: a Getter may then ask another source for a block that comes
// slowly, which mid-fetch would only take link from the fetch's other
// blocks. Outside a Fetch it is true: a lone Get is its own last block.
func Endgame(ctx context.Context) bool {
	select {
	case <-EndgameBegun(ctx):
		return true
	default:
		return false
	}
}

// EndgameBegun is closed once Endgame(ctx) is true: a Getter that waits
// for its request mid-fetch wakes on it rather than polling Endgame.
func EndgameBegun(ctx context.Context) <-chan struct{} {
	if e, ok := ctx.Value(endgameKey{}).(*endgame); ok {
		return e.begun
	}
	return alwaysEndgame
}

// fetcher is the state of one Fetch. The walker goroutine alone assigns
// sequence numbers; leaf goroutines share only the sink, the window and
// the progress count.
type fetcher struct {
	walked   *endgame // every block is asked for: see Endgame
	g        *errgroup.Group
	get      Getter
	nodes    NodeStore
	attempts int
	verified bool // the Getter's blocks need no second check
	locate   func(context.Context, []cid.Cid)
	sink     sink
	resume   resumer // nil when the output cannot be read back

	// slots is the window: a block holds a slot from before it is asked
	// for until it is written out (or, for an internal node, decoded).
	slots chan struct{}
	seq   int64 // next piece's sequence number; walker only

	mu       sync.Mutex // serializes progress calls
	done     int64
	total    int64
	progress func(done, total int64)
}

func (f *fetcher) acquire(ctx context.Context) error {
	select {
	case f.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (f *fetcher) release() { <-f.slots }

func (f *fetcher) report(n int64) {
	if f.progress == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done += n
	f.progress(f.done, f.total)
}

// walkRoot learns the file's size from the root, readies the output and
// walks the DAG.
func (f *fetcher) walkRoot(ctx context.Context, root cid.Cid) error {
	if root.Type() == cid.Raw {
		// A one-block file: its size is known only once it is here, so
		// there is nothing to check against a partial output first. Its
		// one block is all the fetch asks for: the endgame from the start.
		f.walked.begin()
		if err := f.acquire(ctx); err != nil {
			return err
		}
		data, err := f.fetch(ctx, root)
		if err != nil {
			f.release()
			return err
		}
		f.total = int64(len(data))
		f.report(0)
		if err := f.sink.start(f.total); err != nil {
			f.release()
			return err
		}
		if err := f.sink.write(f.next(), 0, data, false); err != nil {
			return err
		}
		f.report(f.total)
		return nil
	}
	n, err := f.node(ctx, root)
	if err != nil {
		return err
	}
	f.total = int64(n.size)
	f.report(0)
	if err := f.sink.start(f.total); err != nil {
		return err
	}
	return f.walk(ctx, n, 0, 0)
}

// next numbers the pieces of the file in order.
func (f *fetcher) next() int64 {
	s := f.seq
	f.seq++
	return s
}

// walk emits the pieces of node n, which starts at offset off of the file.
func (f *fetcher) walk(ctx context.Context, n *fileNode, off int64, depth int) error {
	if f.locate != nil && len(n.links) > 0 {
		f.locate(ctx, n.links)
	}
	if len(n.data) > 0 {
		if err := f.acquire(ctx); err != nil {
			return err
		}
		if err := f.sink.write(f.next(), off, n.data, false); err != nil {
			return err
		}
		f.report(int64(len(n.data)))
		off += int64(len(n.data))
	}
	// The next internal node is fetched while this one's subtree is
	// walked: otherwise the window drains each time the walk moves on to
	// the next internal node (every 174 leaves), waiting for its round trip.
	var next *nodeFuture
	for i, c := range n.links {
		size := int64(n.sizes[i])
		if c.Type() == cid.Raw {
			if size > MaxBlockSize {
				return fmt.Errorf("%w: raw leaf %s of %d bytes, over the %d byte block limit", ErrMalformed, c, size, MaxBlockSize)
			}
			if err := f.acquire(ctx); err != nil {
				return err
			}
			seq, leafOff := f.next(), off
			f.g.Go(func() error { return f.leaf(ctx, seq, c, leafOff, size) })
		} else {
			if depth+1 >= maxDepth {
				return fmt.Errorf("%w: deeper than %d levels", ErrMalformed, maxDepth)
			}
			var child *fileNode
			var err error
			if next != nil && next.index == i {
				child, err = next.wait(ctx)
			} else {
				child, err = f.node(ctx, c)
			}
			if err != nil {
				return err
			}
			next = f.prefetchAfter(ctx, n.links, i)
			if int64(child.size) != size {
				return fmt.Errorf("%w: node %s holds %d bytes, its parent says %d", ErrMalformed, c, child.size, size)
			}
			if err := f.walk(ctx, child, off, depth+1); err != nil {
				return err
			}
		}
		off += size
	}
	return nil
}

// leaf gets raw leaf c into the output at off, unless it is there already.
// It holds a window slot, which the sink frees.
func (f *fetcher) leaf(ctx context.Context, seq int64, c cid.Cid, off, size int64) error {
	if f.resume != nil {
		ok, err := f.resume.have(c, off, size)
		if err != nil {
			f.release()
			return err
		}
		if ok {
			f.release()
			f.report(size)
			return nil
		}
	}
	data, err := f.fetch(ctx, c)
	if err != nil {
		f.release()
		return err
	}
	if int64(len(data)) != size {
		f.release()
		return fmt.Errorf("%w: leaf %s is %d bytes, its parent says %d", ErrMalformed, c, len(data), size)
	}
	if err := f.sink.write(seq, off, data, true); err != nil {
		return err
	}
	f.report(size)
	return nil
}

// nodeFuture is an internal node being fetched ahead of the walk.
type nodeFuture struct {
	index int // its place among its parent's links
	done  chan struct{}
	n     *fileNode
	err   error
}

func (p *nodeFuture) wait(ctx context.Context) (*fileNode, error) {
	select {
	case <-p.done:
		return p.n, p.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// prefetchAfter starts fetching the first internal node among links after
// index i, if any. It holds a window slot while the request is out, like
// any block; its error, if any, is the walk's when it gets there.
func (f *fetcher) prefetchAfter(ctx context.Context, links []cid.Cid, i int) *nodeFuture {
	for j := i + 1; j < len(links); j++ {
		if links[j].Type() == cid.Raw {
			continue
		}
		p := &nodeFuture{index: j, done: make(chan struct{})}
		c := links[j]
		f.g.Go(func() error {
			p.n, p.err = f.node(ctx, c)
			close(p.done)
			return nil
		})
		return p
	}
	return nil
}

// node returns internal node c, decoded, from opts.Nodes or the Getter.
func (f *fetcher) node(ctx context.Context, c cid.Cid) (*fileNode, error) {
	if f.nodes != nil {
		if data, err := f.nodes.Get(ctx, c); err == nil && verify(c, data) == nil {
			n, err := decodeFileNode(data)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", c, err)
			}
			return n, nil
		}
	}
	if err := f.acquire(ctx); err != nil {
		return nil, err
	}
	data, err := f.fetch(ctx, c)
	f.release()
	if err != nil {
		return nil, err
	}
	n, err := decodeFileNode(data)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", c, err)
	}
	// Only nodes with links: a dag-pb leaf carries file bytes, which the
	// output already keeps.
	if f.nodes != nil && len(n.links) > 0 {
		if err := f.nodes.Put(ctx, c, data); err != nil {
			return nil, fmt.Errorf("store node %s: %w", c, err)
		}
	}
	return n, nil
}

// fetch asks the Getter for block c until its bytes match c, at most
// f.attempts times.
func (f *fetcher) fetch(ctx context.Context, c cid.Cid) ([]byte, error) {
	var err error
	for range f.attempts {
		data, gerr := f.get.Get(ctx, c)
		if gerr != nil {
			return nil, fmt.Errorf("get %s: %w", c, gerr)
		}
		if f.verified && len(data) <= MaxBlockSize {
			return data, nil
		}
		if err = verify(c, data); err == nil {
			return data, nil
		}
	}
	return nil, fmt.Errorf("get %s: %w (%d attempts)", c, err, f.attempts)
}
