package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"chordshare/peer/api"
	"chordshare/share"
)

// memBlocks is a block service in memory. failPut, if set, is asked before
// every put; getHook before every get (it may block or fail).
type memBlocks struct {
	mu      sync.Mutex
	m       map[string][]byte
	gets    atomic.Int64
	failPut func(ctx context.Context, c cid.Cid) error
	getHook func(ctx context.Context, c cid.Cid) error
}

func (m *memBlocks) Put(ctx context.Context, c cid.Cid, data []byte) error {
	if m.failPut != nil {
		if err := m.failPut(ctx, c); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[string(c.Hash())] = bytes.Clone(data)
	return nil
}

func (m *memBlocks) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	m.gets.Add(1)
	if m.getHook != nil {
		if err := m.getHook(ctx, c); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.m[string(c.Hash())]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", c, ErrBlockNotFound)
	}
	return data, nil
}

// serveAPI serves b's API on a socket in a new dir and returns a client.
func serveAPI(t *testing.T, b apiBackend) *api.Client {
	t.Helper()
	return serveAPIConfig(t, b, apiConfig{LookupTimeout: time.Second})
}

// serveAPIConfig is serveAPI with the API configured by cfg.
func serveAPIConfig(t *testing.T, b apiBackend, cfg apiConfig) *api.Client {
	t.Helper()
	dir := shortDir(t)
	sock, err := api.SocketPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenAPI(sock)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHandler(b, cfg)
	srv := newAPIServer(h, io.Discard)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	c, err := api.NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-served
		h.Wait()
	})
	return c
}

func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// progressLog records progress calls.
type progressLog struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (p *progressLog) add(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, [2]int64{done, total})
}

func (p *progressLog) last() [2]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		return [2]int64{-2, -2}
	}
	return p.calls[len(p.calls)-1]
}

func TestAPIShareFetchCat(t *testing.T) {
	f := &fakeRing{}
	c := serveAPI(t, f)
	ctx := testCtx(t)
	data := randomData(3<<20+12345, 1)

	var sp progressLog
	res, err := c.Share(ctx, bytes.NewReader(data), int64(len(data)), api.TransferOptions{Progress: sp.add})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(len(data)) || sp.last() != [2]int64{res.Size, res.Size} {
		t.Errorf("share: size %d, last progress %v; want %d", res.Size, sp.last(), len(data))
	}
	// The root is the one share.Import makes on its own.
	want, err := share.Import(ctx, bytes.NewReader(data), &memBlocks{}, share.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.CID != want.String() {
		t.Errorf("share: root %s, want %s", res.CID, want)
	}

	path := filepath.Join(t.TempDir(), "out")
	var fp progressLog
	fr, err := c.Fetch(ctx, res.CID, path, api.TransferOptions{Progress: fp.add})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched file differs (%d bytes, %v)", len(got), err)
	}
	if fr.Path != path || fr.Size != int64(len(data)) || fp.last() != [2]int64{fr.Size, fr.Size} {
		t.Errorf("fetch result %+v, last progress %v", fr, fp.last())
	}

	var out bytes.Buffer
	var cp progressLog
	n, err := c.Cat(ctx, res.CID, &out, api.TransferOptions{Progress: cp.add})
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("cat: %d bytes, %v; identical %v", n, err, bytes.Equal(out.Bytes(), data))
	}
	if cp.last() != [2]int64{n, n} {
		t.Errorf("cat: last progress %v", cp.last())
	}

	// An empty file is a file too.
	res, err = c.Share(ctx, bytes.NewReader(nil), 0, api.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if n, err := c.Cat(ctx, res.CID, &out, api.TransferOptions{}); err != nil || n != 0 {
		t.Errorf("cat of the empty file: %d, %v", n, err)
	}
}

// A share by path gives the root a share of the bytes gives and reports
// the file's size for progress; a path where the daemon finds a file of
// another size than the client saw is refused.
func TestAPIShareFileByPath(t *testing.T) {
	c := serveAPI(t, &fakeRing{})
	ctx := testCtx(t)
	data := randomData(2<<20+777, 7)
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A size other than the daemon finds there: not the client's file.
	var he *api.HTTPError
	if _, err := c.ShareFile(ctx, path, int64(len(data))+1, api.TransferOptions{}); !errors.As(err, &he) || he.StatusCode != http.StatusConflict {
		t.Fatalf("share by path of another size: %v, want a 409", err)
	}
	var sp progressLog
	res, err := c.ShareFile(ctx, path, int64(len(data)), api.TransferOptions{Progress: sp.add})
	if err != nil {
		t.Fatal(err)
	}
	want, err := share.Import(ctx, bytes.NewReader(data), &memBlocks{}, share.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.CID != want.String() || res.Size != int64(len(data)) || sp.last() != [2]int64{res.Size, res.Size} {
		t.Errorf("share by path: %+v, last progress %v; want root %s, %d bytes", res, sp.last(), want, len(data))
	}
}

func TestAPIShareReportsQuorumFailureWhileSending(t *testing.T) {
	// The ring refuses the 3rd block while the client still has most of a
	// 64 MiB body to send: the client gets the daemon's reason, not a
	// broken pipe, and does not have to send the rest.
	var puts atomic.Int64
	f := &fakeRing{}
	f.failPut = func(_ context.Context, c cid.Cid) error {
		if puts.Add(1) >= 3 {
			return errors.New("only 1 of 3 replicas acknowledged, 2 needed")
		}
		return nil
	}
	c := serveAPI(t, f)
	body := &countingReader{r: io.LimitReader(rand.NewChaCha8([32]byte{9}), 64<<20)}
	_, err := c.Share(testCtx(t), body, 64<<20, api.TransferOptions{})
	if err == nil || !strings.Contains(err.Error(), "only 1 of 3 replicas acknowledged") || !strings.HasPrefix(err.Error(), "share: ") {
		t.Fatalf("err = %v, want the daemon's quorum error", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	if n := body.n.Load(); n >= 64<<20 {
		t.Errorf("the client sent all %d bytes after the share had failed", n)
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type failingReader struct {
	r     io.Reader
	after int64
	n     int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n >= f.after {
		return 0, errors.New("input/output error")
	}
	p = p[:min(int64(len(p)), f.after-f.n)]
	n, err := f.r.Read(p)
	f.n += int64(n)
	return n, err
}

func TestAPIShareReportsReadError(t *testing.T) {
	c := serveAPI(t, &fakeRing{})
	r := &failingReader{r: rand.NewChaCha8([32]byte{3}), after: 1 << 20}
	_, err := c.Share(testCtx(t), r, 4<<20, api.TransferOptions{})
	if err == nil || !strings.Contains(err.Error(), "read the file to share: input/output error") {
		t.Fatalf("err = %v, want the read error", err)
	}
}

func TestAPIFetchUnknownCIDLeavesNoFile(t *testing.T) {
	c := serveAPI(t, &fakeRing{})
	ctx := testCtx(t)
	unknown := "bafkreihw4tqmgoax7pre32ehip4257lrrg32i2h3clcwvhunfimgbq5aua"
	path := filepath.Join(t.TempDir(), "out")
	_, err := c.Fetch(ctx, unknown, path, api.TransferOptions{})
	if err == nil || !strings.Contains(err.Error(), "block not found") {
		t.Fatalf("fetch: err = %v, want block not found", err)
	}
	if _, serr := os.Lstat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("a fetch that got nothing left %s behind: %v", path, serr)
	}
	// An existing file is left as it was.
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, unknown, path, api.TransferOptions{}); err == nil {
		t.Fatal("fetch of an unknown CID succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "precious" {
		t.Errorf("existing file now holds %q", got)
	}

	var out bytes.Buffer
	_, err = c.Cat(ctx, unknown, &out, api.TransferOptions{})
	var he *api.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway || !strings.Contains(he.Message, "block not found") || out.Len() != 0 {
		t.Errorf("cat: err = %v, %d bytes written; want 502 block not found", err, out.Len())
	}
}

func TestAPIFetchResumesIntoPartialFile(t *testing.T) {
	f := &fakeRing{}
	c := serveAPI(t, f)
	ctx := testCtx(t)
	data := randomData(4<<20, 2) // 16 leaves and a root
	res, err := c.Share(ctx, bytes.NewReader(data), int64(len(data)), api.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(path, data[:3<<20], 0o600); err != nil { // 12 leaves in place
		t.Fatal(err)
	}
	f.gets.Store(0)
	if _, err := c.Fetch(ctx, res.CID, path, api.TransferOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("resumed file differs")
	}
	if g := f.gets.Load(); g != 1+4 {
		t.Errorf("resume asked for %d blocks, want 5 (the root and the 4 missing leaves)", g)
	}
}

func TestAPICatFailureAfterFirstByteIsAnError(t *testing.T) {
	f := &fakeRing{}
	c := serveAPI(t, f)
	ctx := testCtx(t)
	data := randomData(8<<20, 4)
	res, err := c.Share(ctx, bytes.NewReader(data), int64(len(data)), api.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The 17th leaf fails, once the first bytes have reached us: cat
	// writes in file order, so the failure comes after the first byte
	// whatever order the window's Gets run in.
	sum, err := mh.Sum(data[16*share.DefaultChunkSize:17*share.DefaultChunkSize], mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	failing := cid.NewCidV1(cid.Raw, sum)
	out := &firstWriteSignal{first: make(chan struct{})}
	f.getHook = func(ctx context.Context, c cid.Cid) error {
		if !c.Equals(failing) {
			return nil
		}
		select {
		case <-out.first:
			return errors.New("replica went away")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n, err := c.Cat(ctx, res.CID, out, api.TransferOptions{})
	if err == nil || !strings.Contains(err.Error(), "replica went away") {
		t.Fatalf("cat: %d bytes, err = %v; want the daemon's error from the trailer", n, err)
	}
	if n == 0 || n > 16*share.DefaultChunkSize || !bytes.Equal(out.Bytes(), data[:n]) {
		t.Errorf("cat wrote %d bytes: want a true prefix of the first %d", n, 16*share.DefaultChunkSize)
	}
}

// firstWriteSignal is a buffer that closes first at its first write.
type firstWriteSignal struct {
	bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func (w *firstWriteSignal) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	return w.Buffer.Write(p)
}

func TestAPITransfersStall(t *testing.T) {
	f := &fakeRing{}
	c := serveAPI(t, f)
	ctx := testCtx(t)
	res, err := c.Share(ctx, bytes.NewReader(randomData(1<<20, 5)), 1<<20, api.TransferOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Every replica hangs: only the stall timeout ends the fetch.
	f.getHook = func(ctx context.Context, c cid.Cid) error {
		<-ctx.Done()
		return ctx.Err()
	}
	opts := api.TransferOptions{Stall: 200 * time.Millisecond}
	start := time.Now()
	_, err = c.Fetch(ctx, res.CID, filepath.Join(t.TempDir(), "out"), opts)
	if err == nil || !strings.Contains(err.Error(), "stalled: no progress for 200ms") {
		t.Errorf("fetch: err = %v, want a stall", err)
	}
	_, err = c.Cat(ctx, res.CID, io.Discard, opts)
	var he *api.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusGatewayTimeout || !strings.Contains(he.Message, "stalled") {
		t.Errorf("cat: err = %v, want 504 stalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("two stalled transfers took %v", d)
	}

	// A share whose puts hang stalls too.
	f.failPut = func(ctx context.Context, _ cid.Cid) error {
		<-ctx.Done()
		return ctx.Err()
	}
	_, err = c.Share(ctx, bytes.NewReader(randomData(1<<20, 6)), 1<<20, opts)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("share: err = %v, want a stall", err)
	}
}

func TestAPITransferBadRequests(t *testing.T) {
	h := newAPIHandler(&fakeRing{}, apiConfig{LookupTimeout: time.Second})
	okCID := "bafkreihw4tqmgoax7pre32ehip4257lrrg32i2h3clcwvhunfimgbq5aua"
	cases := []struct {
		method, target string
		code           int
		msg            string
	}{
		{"GET", "/v1/share", 405, "only POST"},
		{"POST", "/v1/cat?cid=" + okCID, 405, "only GET"},
		{"GET", "/v1/cat", 400, "missing cid"},
		{"GET", "/v1/cat?cid=nope", 400, `"nope" is not a CID`},
		{"GET", "/v1/cat?cid=" + okCID + "&stall=soon", 400, `stall "soon"`},
		{"POST", "/v1/fetch?cid=" + okCID + "&path=rel/out", 400, "want an absolute path"},
		{"POST", "/v1/fetch?cid=" + okCID + "&path=/nonexistent-dir/out", 400, "no such file or directory"},
		{"POST", "/v1/share?size=-3", 400, `size "-3"`},
		{"POST", "/v1/share?path=rel/in", 400, "want an absolute path"},
		{"POST", "/v1/share?path=/nonexistent-dir/in", 400, "no such file or directory"},
		{"POST", "/v1/share?path=/", 400, "not a regular file"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tc.code || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s: %d %s; want %d containing %q", tc.method, tc.target, rec.Code, rec.Body.Bytes(), tc.code, tc.msg)
		}
	}
}

// The guard, on synctest's virtual clock: the watcher's looks (every
// timeout/4) and the test's sleeps are exact, where on a busy machine a
// look that comes late moved the cancellation by as much.
func TestStallGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout, tick = 300 * time.Millisecond, 75 * time.Millisecond
		ctx, g, stop := watchStalls(context.Background(), timeout)
		defer stop()
		// Progress more often than the timeout keeps it going.
		for range 10 {
			time.Sleep(timeout / 2)
			g.touch()
		}
		// A blocked write to the client is the client's pace, not a stall.
		g.busy.Add(1)
		time.Sleep(3*timeout + tick/2)
		if ctx.Err() != nil {
			t.Fatal("cancelled while moving or busy")
		}
		g.busy.Add(-1)
		start := time.Now()
		<-ctx.Done()
		// Busy counts as progress up to the watcher's last look, under a
		// tick before.
		if d := time.Since(start); d <= timeout-tick || d > timeout {
			t.Errorf("cancelled %v after the last progress, want within a tick (%v) of the %v timeout", d, tick, timeout)
		}
		if err := stallCause(ctx, context.Canceled); !errors.Is(err, errStalled) || err.Error() != "stalled: no progress for 300ms" {
			t.Errorf("cause = %v", err)
		}
	})
}
