package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// RepoEnv is the environment variable that names the repo when --repo is not
// given.
const RepoEnv = "PEER_REPO"

// DefaultRepoName is the repo's directory name under the home directory when
// neither --repo nor $PEER_REPO is set.
const DefaultRepoName = ".chordshare"

// ResolveRepo picks the repo directory: flagValue if not empty, else
// $PEER_REPO, else ~/.chordshare. The result is absolute and cleaned, so
// messages name one directory however it was spelled.
func ResolveRepo(flagValue string) (string, error) {
	dir := flagValue
	if dir == "" {
		dir = os.Getenv(RepoEnv)
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the default repo: %w (use --repo DIR or $%s)", err, RepoEnv)
		}
		dir = filepath.Join(home, DefaultRepoName)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("repo %s: %w", dir, err)
	}
	return abs, nil
}

// MaxSocketPath is the longest Unix socket path this package accepts. Linux
// allows 107 bytes (sun_path is 108 with its NUL), the BSDs and macOS 103.
const MaxSocketPath = 103

// ErrSocketPathTooLong: the repo path is too long for a Unix socket inside it.
var ErrSocketPathTooLong = errors.New("unix socket path too long")

// SocketPath is the API socket of the repo at dir, or an error that says to
// pick a shorter repo path when the kernel could not bind or dial it.
func SocketPath(dir string) (string, error) {
	p := filepath.Join(dir, SocketName)
	if len(p) > MaxSocketPath {
		return "", fmt.Errorf("api socket %s is %d bytes, over the %d a unix socket path allows: use a shorter --repo path: %w",
			p, len(p), MaxSocketPath, ErrSocketPathTooLong)
	}
	return p, nil
}

// ErrNoDaemon: nothing is serving the API socket of the repo.
var ErrNoDaemon = errors.New("no daemon running")

// NoDaemonError is returned when no daemon answers on a repo's socket. It
// matches ErrNoDaemon with errors.Is.
type NoDaemonError struct {
	Repo string
}

func (e *NoDaemonError) Error() string {
	return fmt.Sprintf("no daemon running on repo %s (start one with: peer daemon --repo %s)", e.Repo, e.Repo)
}

// Is makes errors.Is(err, ErrNoDaemon) true.
func (e *NoDaemonError) Is(target error) bool { return target == ErrNoDaemon }

// HTTPError is a non-2xx answer from the daemon.
type HTTPError struct {
	StatusCode int
	Message    string // the api.Error text, or the status line if there was none
}

func (e *HTTPError) Error() string { return e.Message }

// Client talks to the daemon of one repo over its Unix socket. The zero value
// is not usable; make one with NewClient. A Client is safe for concurrent use.
type Client struct {
	repo string
	sock string
	hc   *http.Client
}

// NewClient returns a client for the daemon of the repo at dir (see
// ResolveRepo). It fails only if the socket path cannot work; whether a
// daemon runs shows on the first call.
func NewClient(dir string) (*Client, error) {
	sock, err := SocketPath(dir)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:       4,
		DisableCompression: true,
	}
	return &Client{repo: dir, sock: sock, hc: &http.Client{Transport: tr}}, nil
}

// Repo is the repo directory this client talks to.
func (c *Client) Repo() string { return c.repo }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, "/v1/status", nil, &s)
	return s, err
}

// Ring is GET /v1/ring.
func (c *Client) Ring(ctx context.Context) (Ring, error) {
	var r Ring
	err := c.get(ctx, "/v1/ring", nil, &r)
	return r, err
}

// Transfers is GET /v1/transfers.
func (c *Client) Transfers(ctx context.Context) (Transfers, error) {
	var t Transfers
	err := c.get(ctx, "/v1/transfers", nil, &t)
	return t, err
}

// Peers is GET /v1/peers.
func (c *Client) Peers(ctx context.Context) (Peers, error) {
	var p Peers
	err := c.get(ctx, "/v1/peers", nil, &p)
	return p, err
}

// Lookup is GET /v1/lookup?key=HEX: keyHex is a 64-digit hex ring position.
func (c *Client) Lookup(ctx context.Context, keyHex string) (Lookup, error) {
	var l Lookup
	err := c.get(ctx, "/v1/lookup", url.Values{"key": {keyHex}}, &l)
	return l, err
}

// maxBody bounds an answer; a ring of 1,024 vnodes with full successor lists
// and fingers is a few MiB of JSON.
const maxBody = 64 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("GET %s: answer over %d bytes", path, maxBody)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// do sends a request and returns a 2xx answer for the caller to read and
// close; any other answer becomes an *HTTPError with the daemon's message.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "daemon", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if noDaemon(err) {
			return nil, &NoDaemonError{Repo: c.repo}
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s from daemon on repo %s: %w", method, path, c.repo, ctxErr)
		}
		return nil, fmt.Errorf("%s %s from daemon on repo %s: %w", method, path, c.repo, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err == nil && len(msg) <= maxBody {
		var e Error
		if json.Unmarshal(msg, &e) == nil && e.Error != "" {
			return nil, &HTTPError{StatusCode: resp.StatusCode, Message: e.Error}
		}
	}
	return nil, &HTTPError{StatusCode: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
}

// TransferOptions tune a share or a fetch.
type TransferOptions struct {
	// Stall is how long the daemon lets the transfer go without progress
	// before it gives up; 0: DefaultStallTimeout.
	Stall time.Duration
	// Progress, if set, is called as the transfer moves with the bytes
	// done and the file's size (-1 while unknown).
	Progress func(done, total int64)
	// Name, for a share, is the file's name as the daemon's transfer list
	// shows it; optional.
	Name string
}

func (o TransferOptions) query() url.Values {
	q := url.Values{}
	if o.Stall > 0 {
		q.Set("stall", o.Stall.String())
	}
	return q
}

func (o TransferOptions) progress(done, total int64) {
	if o.Progress != nil {
		o.Progress(done, total)
	}
}

// Share has the daemon share r's bytes on the ring and returns the root
// CID once every block has its write quorum. size is the number of bytes
// r holds, for progress; -1 if unknown. A failure to read r is returned as
// such.
func (c *Client) Share(ctx context.Context, r io.Reader, size int64, opts TransferOptions) (ShareResult, error) {
	// The transport sends the body from a goroutine of its own, which may
	// still run for a moment after an early answer: it ends with ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := opts.query()
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	if size >= 0 {
		q.Set("size", strconv.FormatInt(size, 10))
	}
	body := &readRecorder{r: r}
	return c.share(ctx, q, body, opts)
}

// ShareFile has the daemon read the file at path (absolute) itself and
// share it, which spares copying every byte through the API socket. size
// is the file's size as the caller sees it. The daemon must be able to read
// the same file: when it may not, the error is an *HTTPError with
// StatusCode 403 (http.StatusForbidden); when it finds another size there,
// 409 (http.StatusConflict). Share, with the bytes, is then the way.
func (c *Client) ShareFile(ctx context.Context, path string, size int64, opts TransferOptions) (ShareResult, error) {
	q := opts.query()
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	q.Set("path", path)
	q.Set("size", strconv.FormatInt(size, 10))
	return c.share(ctx, q, nil, opts)
}

// share posts a share and reads its events; body, if set, carries the
// file's bytes.
func (c *Client) share(ctx context.Context, q url.Values, body *readRecorder, opts TransferOptions) (ShareResult, error) {
	failed := func() error {
		if body == nil {
			return nil
		}
		return body.failed()
	}
	var r io.Reader
	if body != nil {
		r = body
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/share", q, r)
	if err != nil {
		if rerr := failed(); rerr != nil {
			return ShareResult{}, rerr
		}
		return ShareResult{}, err
	}
	defer resp.Body.Close()
	e, err := readEvents(resp.Body, opts)
	if rerr := failed(); rerr != nil {
		return ShareResult{}, rerr
	}
	if err != nil {
		return ShareResult{}, err
	}
	if e.Share == nil {
		return ShareResult{}, errors.New(e.Error)
	}
	return *e.Share, nil
}

// readRecorder keeps the first error of reading the body being sent, which
// the transport would otherwise report as a broken request.
type readRecorder struct {
	r   io.Reader
	err atomic.Pointer[error]
}

func (b *readRecorder) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read the file to share: %w", err)
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *readRecorder) failed() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Fetch has the daemon write the file root names to path, which must be
// absolute. An existing file there is overwritten, except that the parts
// of it that already hold the right bytes are kept rather than fetched
// again: a fetch that was interrupted resumes.
func (c *Client) Fetch(ctx context.Context, root, path string, opts TransferOptions) (FetchResult, error) {
	q := opts.query()
	q.Set("cid", root)
	q.Set("path", path)
	resp, err := c.do(ctx, http.MethodPost, "/v1/fetch", q, nil)
	if err != nil {
		return FetchResult{}, err
	}
	defer resp.Body.Close()
	e, err := readEvents(resp.Body, opts)
	if err != nil {
		return FetchResult{}, err
	}
	if e.Fetch == nil {
		return FetchResult{}, errors.New(e.Error)
	}
	return *e.Fetch, nil
}

// maxEventLine bounds one line of a transfer's answer.
const maxEventLine = 1 << 20

// readEvents reads a transfer's answer up to its final event, reporting
// progress on the way.
func readEvents(body io.Reader, opts TransferOptions) (Event, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return Event{}, fmt.Errorf("daemon's answer: %w", err)
		}
		opts.progress(e.Done, e.Total)
		if e.Final() {
			return e, nil
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return Event{}, fmt.Errorf("the daemon's answer ended before the result (did the daemon stop?): %w", err)
}

// ErrTruncated: a fetch's bytes stopped before the end of the file.
var ErrTruncated = errors.New("the daemon's answer was cut short")

// Cat writes the verified bytes of the file root names to w, in order, and
// returns how many it wrote. It succeeds only if the daemon confirmed the
// whole file (StatusTrailer) and the count matches its size: bytes already
// written to w when it fails are a prefix of the file, never the whole
// answer.
func (c *Client) Cat(ctx context.Context, root string, w io.Writer, opts TransferOptions) (int64, error) {
	q := opts.query()
	q.Set("cid", root)
	resp, err := c.do(ctx, http.MethodGet, "/v1/cat", q, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	size := int64(-1)
	if s := resp.Header.Get(SizeHeader); s != "" {
		if size, err = strconv.ParseInt(s, 10, 64); err != nil || size < 0 {
			return 0, fmt.Errorf("daemon's answer: bad %s %q", SizeHeader, s)
		}
	}
	opts.progress(0, size)
	out := &writeRecorder{w: w, size: size, opts: opts}
	_, err = io.Copy(out, resp.Body)
	switch {
	case out.err != nil:
		return out.n, out.err
	case err != nil:
		return out.n, fmt.Errorf("%w after %d bytes: %v", ErrTruncated, out.n, err)
	}
	switch status := resp.Trailer.Get(StatusTrailer); status {
	case StatusOK:
	case "":
		return out.n, fmt.Errorf("%w after %d bytes: no status trailer", ErrTruncated, out.n)
	default:
		return out.n, errors.New(status)
	}
	if size >= 0 && out.n != size {
		return out.n, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, out.n, size)
	}
	return out.n, nil
}

// writeRecorder counts and reports the bytes written and keeps the first
// write error apart from the answer's read errors.
type writeRecorder struct {
	w    io.Writer
	n    int64
	size int64
	opts TransferOptions
	err  error
}

func (o *writeRecorder) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	o.n += int64(n)
	if err != nil {
		o.err = fmt.Errorf("write output: %w", err)
		return n, o.err
	}
	o.opts.progress(o.n, o.size)
	return n, nil
}

// noDaemon reports whether a dial error means nobody listens on the socket:
// it does not exist (never started, or shut down cleanly) or it is stale (the
// daemon was killed and left it behind).
func noDaemon(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR)
}

// EventStream is an open GET /v1/events answer: Next returns its events one
// by one. Close it when done (or cancel the context it was opened with).
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// Events opens the daemon's event stream: first the remembered events with
// a Seq above since, then new ones as they happen.
func (c *Client) Events(ctx context.Context, since uint64) (*EventStream, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	return &EventStream{body: resp.Body, sc: sc}, nil
}

// Next blocks until the next event. It returns an error once the stream
// ended: the daemon stopped, the client fell behind and was cut off (open
// it again with since), or the stream was closed.
func (s *EventStream) Next() (NodeEvent, error) {
	if !s.sc.Scan() {
		err := s.sc.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return NodeEvent{}, fmt.Errorf("event stream ended: %w", err)
	}
	var e NodeEvent
	if err := json.Unmarshal(s.sc.Bytes(), &e); err != nil {
		return NodeEvent{}, fmt.Errorf("event stream: %w", err)
	}
	return e, nil
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
