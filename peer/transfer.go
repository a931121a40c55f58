package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/share"
)

// errStalled ends a transfer that made no progress for its stall timeout.
var errStalled = errors.New("stalled")

// stallGuard tells a transfer that is moving from one that is stuck. A
// transfer touches it as bytes of a block arrive (a fetch's; a 2 MiB block
// on a slow link takes minutes) or are written to a replica (a share's),
// and at every block stored or fetched; while a write to the API client is
// blocked (a slow reader of `peer fetch` output) it is busy, which is the
// client's pace and not a stall.
type stallGuard struct {
	// moved: progress since the watcher last looked. A touch only sets
	// it, without reading the clock: a fetch touches it at every read of
	// every block.
	moved atomic.Bool
	busy  atomic.Int32
}

func (g *stallGuard) touch() {
	// Loaded first: while set, the many readers of a fast fetch leave the
	// shared cache line alone.
	if !g.moved.Load() {
		g.moved.Store(true)
	}
}

// watchStalls returns a context that is cancelled with an errStalled cause
// once the guard has seen no progress for timeout (to within a tick of its
// watcher, a quarter of it, 1 s at most). stop ends the watcher and waits
// for it; call it when the transfer is over.
func watchStalls(ctx context.Context, timeout time.Duration) (_ context.Context, _ *stallGuard, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{}
	tick := max(min(timeout/4, time.Second), time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now() // of the last look that saw progress
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now()
				if g.moved.Swap(false) || g.busy.Load() > 0 {
					last = now
					continue
				}
				if now.Sub(last) >= timeout {
					cancel(fmt.Errorf("%w: no progress for %v", errStalled, timeout))
					return
				}
			}
		}
	}()
	return ctx, g, func() { cancel(nil); <-done }
}

// stallCause replaces the error of a transfer that the stall watcher ended
// (which reads "context canceled" from deep inside) with the reason.
func stallCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

// blockService is what transfers need of the node; *Node implements it.
type blockService interface {
	share.Putter
	share.Getter
}

type getterFunc func(ctx context.Context, c cid.Cid) ([]byte, error)

func (f getterFunc) Get(ctx context.Context, c cid.Cid) ([]byte, error) { return f(ctx, c) }

// importStream shares r through svc: every block goes to the ring, and the
// root is returned once all of them have their write quorum. stored counts
// the file bytes (raw leaves) acknowledged so far.
func importStream(ctx context.Context, svc share.Putter, r io.Reader, g *stallGuard, stored *atomic.Int64) (root cid.Cid, size int64, err error) {
	if m, ok := svc.(movingPutter); ok {
		svc = touchingPutter{m, g}
	}
	var put share.Putter = &progressPutter{svc: svc, g: g, stored: stored}
	if lp, ok := svc.(share.LendingPutter); ok {
		put = &lendingProgressPutter{progressPutter{svc: svc, g: g, stored: stored}, lp}
	}
	br := &busyReader{r: r, g: g}
	root, err = share.Import(ctx, br, put, share.ImportOptions{})
	return root, br.n, err
}

// progressPutter counts what each put stored and touches the guard.
type progressPutter struct {
	svc    share.Putter
	g      *stallGuard
	stored *atomic.Int64
}

func (p *progressPutter) Put(ctx context.Context, c cid.Cid, data []byte) error {
	return p.progress(c, len(data), p.svc.Put(ctx, c, data))
}

// progress records a put of c's size bytes that ended with err.
func (p *progressPutter) progress(c cid.Cid, size int, err error) error {
	if err != nil {
		return err
	}
	if c.Type() == cid.Raw {
		p.stored.Add(int64(size))
	}
	p.g.touch()
	return nil
}

// lendingProgressPutter is a progressPutter over a share.LendingPutter,
// which it stays, so that Import recycles the chunks.
type lendingProgressPutter struct {
	progressPutter
	lp share.LendingPutter
}

func (p *lendingProgressPutter) PutLent(ctx context.Context, c cid.Cid, data []byte, done func()) error {
	size := len(data) // data may be reused once PutLent returns
	return p.progress(c, size, p.lp.PutLent(ctx, c, data, done))
}

// movingPutter is a LendingPutter that tells of a block's bytes as they
// go to its replicas: *Node.
type movingPutter interface {
	putMoving(ctx context.Context, c cid.Cid, data []byte, done, moved func()) error
}

// touchingPutter puts through a movingPutter, touching the guard at every
// part of a block written: a leaf's write quorum on a slow uplink takes
// minutes (issue 3).
type touchingPutter struct {
	m movingPutter
	g *stallGuard
}

func (p touchingPutter) Put(ctx context.Context, c cid.Cid, data []byte) error {
	return p.m.putMoving(ctx, c, data, nil, p.g.touch)
}

func (p touchingPutter) PutLent(ctx context.Context, c cid.Cid, data []byte, done func()) error {
	return p.m.putMoving(ctx, c, data, done, p.g.touch)
}

// busyReader marks the guard busy while it waits for the client's bytes.
type busyReader struct {
	r io.Reader
	g *stallGuard
	n int64
}

func (b *busyReader) Read(p []byte) (int, error) {
	b.g.busy.Add(1)
	n, err := b.r.Read(p)
	b.g.busy.Add(-1)
	b.n += int64(n)
	return n, err
}

// movingGetter is a Getter that tells of a block's bytes as they arrive:
// *Node.
type movingGetter interface {
	getMoving(ctx context.Context, c cid.Cid, moved func()) ([]byte, error)
}

// progressGetter touches the guard at every block that arrives and, from
// a movingGetter, at every part of one.
func progressGetter(svc share.Getter, g *stallGuard) share.Getter {
	get := svc.Get
	if m, ok := svc.(movingGetter); ok {
		get = func(ctx context.Context, c cid.Cid) ([]byte, error) { return m.getMoving(ctx, c, g.touch) }
	}
	return getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
		data, err := get(ctx, c)
		if err == nil {
			g.touch()
		}
		return data, err
	})
}

// openOutput opens path for a fetch without truncating it, so that a fetch
// into a partial file resumes (share.ToWriterAt). created says whether the
// file is new, and so whether a fetch that wrote nothing should remove it.
func openOutput(path string) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, false, fmt.Errorf("%s is not a regular file", path)
	}
	return f, false, nil
}

// storeNodes lets a fetch keep the internal nodes of a DAG in the peer's
// block store (share.FetchOptions.Nodes), so that resuming a fetch asks the
// ring only for what is missing. It is a cache: a full store is no reason
// to fail the fetch. A node found corrupt is told in node's events (the
// store removes it, so the Get that follows finds it missing, not
// corrupt).
type storeNodes struct {
	s    *blocks.Store
	node *Node
}

func (n storeNodes) Get(_ context.Context, c cid.Cid) ([]byte, error) {
	data, err := n.s.Get(c)
	if errors.Is(err, blocks.ErrCorrupt) {
		n.node.blockCorrupt(err, "", "fetching it from another replica")
	}
	return data, err
}

func (n storeNodes) Put(_ context.Context, c cid.Cid, data []byte) error {
	if err := n.s.Put(c, data); err != nil && !errors.Is(err, blocks.ErrFull) {
		return err
	}
	return nil
}
