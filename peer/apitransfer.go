package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/peer/api"
	"chordshare/share"
)

// progressInterval is how often a transfer's answer reports progress.
const progressInterval = 100 * time.Millisecond

// transferParams are the query parameters the transfer endpoints share.
type transferParams struct {
	cid   cid.Cid       // fetch, cat
	stall time.Duration // how long without progress before giving up
}

func parseTransferParams(q url.Values, needCID bool) (transferParams, error) {
	p := transferParams{stall: api.DefaultStallTimeout}
	if s := q.Get("stall"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return p, fmt.Errorf("stall %q: want a positive duration such as 90s", s)
		}
		p.stall = d
	}
	if needCID {
		s := q.Get("cid")
		if s == "" {
			return p, errors.New("missing cid")
		}
		c, err := cid.Decode(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CID: %v", s, err)
		}
		p.cid = c
	}
	return p, nil
}

// eventStream writes a transfer's NDJSON answer. Only the handler's
// goroutine uses it.
type eventStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	enc *json.Encoder
	err error // the first write error: the client has gone
}

func startEvents(w http.ResponseWriter, rc *http.ResponseController) *eventStream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	s := &eventStream{w: w, rc: rc, enc: json.NewEncoder(w)}
	s.flush()
	return s
}

func (s *eventStream) flush() {
	if s.err == nil {
		if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.err = err
		}
	}
}

func (s *eventStream) send(e api.Event) {
	s.sendAny(e)
	s.flush()
}

// sendAny writes one line without flushing it.
func (s *eventStream) sendAny(v any) {
	if s.err == nil {
		s.err = s.enc.Encode(v)
	}
}

// run runs op in a goroutine of its own and sends progress() every
// progressInterval while it runs (when it changed), then op's result, which
// must be a final event. It returns when op has.
func (s *eventStream) run(progress func() api.Event, op func() api.Event) {
	done := make(chan api.Event, 1)
	go func() { done <- op() }()
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	var last api.Event
	for {
		select {
		case final := <-done:
			s.send(final)
			return
		case <-t.C:
			if e := progress(); e != last {
				s.send(e)
				last = e
			}
		}
	}
}

// share imports the request body onto the ring: POST /v1/share.
func (h *apiHandler) share(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := parseTransferParams(q, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	total := int64(-1)
	if s := q.Get("size"); s != "" {
		if total, err = strconv.ParseInt(s, 10, 64); err != nil || total < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("size %q: want a number of bytes", s))
			return
		}
	}
	var src io.Reader = r.Body
	name := displayName(q.Get("name"))
	if path := q.Get("path"); path != "" {
		f, size, status, err := openInput(path)
		if err != nil {
			writeError(w, status, OneLine(err.Error()))
			return
		}
		defer f.Close()
		if total >= 0 && size != total {
			// Not the file the client opened: another mount namespace,
			// a path like /dev/stdin that names the daemon's own, or a
			// file replaced since.
			writeError(w, http.StatusConflict, fmt.Sprintf("%s holds %d bytes here, the client saw %d", path, size, total))
			return
		}
		src, total = f, size
		if q.Get("name") == "" {
			name = displayName(filepath.Base(path))
		}
	}
	h.transfers.Add(1)
	defer h.transfers.Done()

	rc := http.NewResponseController(w)
	// Progress flows back while the file still arrives. A writer that
	// cannot do both (a test recorder) holds the events until the end.
	_ = rc.EnableFullDuplex()
	ctx, guard, stop := watchStalls(r.Context(), p.stall)
	defer stop()
	// A read of the body waits for the client however long it takes; once
	// the transfer is over (stalled, cancelled) it must return.
	unblocked := make(chan struct{})
	stopUnblock := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		_ = rc.SetReadDeadline(time.Now())
	})
	defer func() {
		if !stopUnblock() {
			<-unblocked
		}
	}()

	var stored atomic.Int64
	start := time.Now()
	id := h.startTransfer("share", name, "", func() (int64, int64) { return stored.Load(), total })
	ev := startEvents(w, rc)
	ev.run(func() api.Event {
		return api.Event{Done: stored.Load(), Total: total}
	}, func() api.Event {
		root, size, err := importStream(ctx, h.b, src, guard, &stored)
		if err != nil {
			msg := "share: " + OneLine(stallCause(ctx, err).Error())
			fmt.Fprintf(h.cfg.Log, "%s (after %s)\n", msg, FormatSize(size))
			h.endTransfer(id, "share", name, "", size, msg)
			return api.Event{Done: stored.Load(), Total: total, Error: msg}
		}
		fmt.Fprintf(h.cfg.Log, "shared %s: %s in %v\n", root, FormatSize(size), time.Since(start).Round(time.Millisecond))
		h.endTransfer(id, "share", name, root.String(), size, "")
		return api.Event{Done: size, Total: size, Share: &api.ShareResult{CID: root.String(), Size: size}}
	})
}

// openInput opens the file a share names by path (POST /v1/share?path=):
// the daemon reads it itself, which spares the client's copy of every byte
// through the API socket. On failure it gives the status to answer with:
// 403 when the daemon may not read it (the client can send the bytes
// instead), 400 for anything else. Only a regular file is opened: opening
// a FIFO would block until someone writes to it.
func openInput(path string) (f *os.File, size int64, status int, err error) {
	if !filepath.IsAbs(path) {
		return nil, 0, http.StatusBadRequest, fmt.Errorf("path %q: want an absolute path", path)
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, 0, http.StatusBadRequest, fmt.Errorf("%s is not a regular file", path)
	}
	f, err = os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, 0, http.StatusForbidden, err
		}
		return nil, 0, http.StatusBadRequest, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, 0, http.StatusBadRequest, err
	}
	return f, fi.Size(), 0, nil
}

// fetch writes a file into a path: POST /v1/fetch. An existing file is
// not truncated first: what it holds already is verified and kept, which
// is how an interrupted fetch resumes.
func (h *apiHandler) fetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := parseTransferParams(q, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	path := q.Get("path")
	if !filepath.IsAbs(path) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path %q: want an absolute path", path))
		return
	}
	path = filepath.Clean(path)
	f, created, err := openOutput(path)
	if err != nil {
		writeError(w, http.StatusBadRequest, OneLine(err.Error()))
		return
	}
	h.transfers.Add(1)
	defer h.transfers.Done()

	ctx, guard, stop := watchStalls(r.Context(), p.stall)
	defer stop()
	out := newOutputFile(f)
	defer out.closeDirect()
	stopFlush := flushBehind(f)
	defer stopFlush()
	var done, total atomic.Int64
	total.Store(-1)
	start := time.Now()
	id := h.startTransfer("fetch", path, p.cid.String(), func() (int64, int64) { return done.Load(), total.Load() })
	ev := startEvents(w, http.NewResponseController(w))
	ev.run(func() api.Event {
		return api.Event{Done: done.Load(), Total: total.Load()}
	}, func() api.Event {
		err := share.Fetch(ctx, p.cid, progressGetter(h.b, guard), share.ToWriterAt(out), share.FetchOptions{
			Progress: func(d, t int64) {
				done.Store(d)
				total.Store(t)
				guard.touch()
			},
			Nodes:    h.cfg.Nodes,
			Verified: h.cfg.VerifiedBlocks,
			Locate:   h.cfg.Locate,
			Release:  h.release(),
		})
		stopFlush()
		if err == nil {
			// Verified is not enough: the bytes are on disk before we say so.
			if err = f.Sync(); err != nil {
				err = fmt.Errorf("sync %s: %w", path, err)
			}
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
		if err != nil {
			msg := OneLine(stallCause(ctx, err).Error())
			switch {
			case created && total.Load() < 0:
				// Not even the root arrived: nothing to resume from.
				_ = os.Remove(path)
			case total.Load() >= 0:
				msg += fmt.Sprintf(" (the partial file %s is kept: fetch again to resume)", path)
			}
			fmt.Fprintf(h.cfg.Log, "%s\n", msg)
			h.endTransfer(id, "fetch", path, p.cid.String(), done.Load(), msg)
			return api.Event{Done: done.Load(), Total: total.Load(), Error: msg}
		}
		size := total.Load()
		fmt.Fprintf(h.cfg.Log, "fetched %s to %s: %s in %v\n", p.cid, path, FormatSize(size), time.Since(start).Round(time.Millisecond))
		h.endTransfer(id, "fetch", path, p.cid.String(), size, "")
		return api.Event{Done: size, Total: size, Fetch: &api.FetchResult{CID: p.cid.String(), Path: path, Size: size}}
	})
}

// release is what a fetch hands the blocks it is done with.
func (h *apiHandler) release() func([]byte) {
	if h.cfg.VerifiedBlocks {
		return ReleaseBlock
	}
	return nil
}

// cat streams a file's bytes: GET /v1/cat. The size goes in a header before
// the bytes; whether they are all there goes in a trailer after them, since
// a failure after the first byte can no longer change the status code.
func (h *apiHandler) cat(w http.ResponseWriter, r *http.Request) {
	p, err := parseTransferParams(r.URL.Query(), true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.transfers.Add(1)
	defer h.transfers.Done()

	ctx, guard, stop := watchStalls(r.Context(), p.stall)
	defer stop()
	out := &catWriter{w: w, g: guard}
	out.total.Store(-1)
	start := time.Now()
	id := h.startTransfer("cat", "", p.cid.String(), func() (int64, int64) { return out.sent.Load(), out.total.Load() })
	err = share.Fetch(ctx, p.cid, progressGetter(h.b, guard), share.ToWriter(out), share.FetchOptions{
		Progress: func(_, t int64) {
			out.total.Store(t)
			guard.touch()
		},
		Nodes:    h.cfg.Nodes,
		Verified: h.cfg.VerifiedBlocks,
		Locate:   h.cfg.Locate,
		Release:  h.release(),
	})
	if err != nil {
		err = stallCause(ctx, err)
		msg := OneLine(err.Error())
		fmt.Fprintf(h.cfg.Log, "cat: %s\n", msg)
		h.endTransfer(id, "cat", "", p.cid.String(), out.sent.Load(), msg)
		if !out.started {
			writeError(w, fetchStatus(err), msg)
			return
		}
		w.Header().Set(api.StatusTrailer, headerValue(msg))
		return
	}
	out.begin() // an empty file is never written to
	w.Header().Set(api.StatusTrailer, api.StatusOK)
	h.endTransfer(id, "cat", "", p.cid.String(), out.sent.Load(), "")
	fmt.Fprintf(h.cfg.Log, "sent %s: %s in %v\n", p.cid, FormatSize(out.total.Load()), time.Since(start).Round(time.Millisecond))
}

// catWriter sends the answer's header before the first byte, once the
// file's size is known (share.Fetch reports it before it writes).
type catWriter struct {
	w       http.ResponseWriter
	g       *stallGuard
	total   atomic.Int64
	sent    atomic.Int64
	started bool // set and read under share's ordered-output lock, and after Fetch returns
}

func (c *catWriter) begin() {
	if c.started {
		return
	}
	c.started = true
	hd := c.w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set(api.SizeHeader, strconv.FormatInt(c.total.Load(), 10))
	hd.Set("Trailer", api.StatusTrailer)
	c.w.WriteHeader(http.StatusOK)
}

func (c *catWriter) Write(p []byte) (int, error) {
	c.begin()
	c.g.busy.Add(1)
	defer c.g.busy.Add(-1)
	n, err := c.w.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// fetchStatus is the status code of a fetch that failed before its first
// byte.
func fetchStatus(err error) int {
	switch {
	case errors.Is(err, share.ErrMalformed), errors.Is(err, share.ErrNotFile):
		return http.StatusUnprocessableEntity
	case errors.Is(err, errStalled):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// headerValue makes msg safe as an HTTP header value: one line of
// printable ASCII.
func headerValue(msg string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, msg)
}
