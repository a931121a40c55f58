package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
	"chordshare/peer/api"
)

// fakeRing answers the API from fixed values; Lookup returns lookupErr or
// echoes the key, and blocks while block is open. Its blocks are a
// memBlocks.
type fakeRing struct {
	memBlocks
	lookupErr error
	block     chan struct{}
	gotKey    chord.ID
}

func (f *fakeRing) Status() api.Status {
	return api.Status{ID: "12D3KooWfake", Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWfake"}, Capacity: 2}
}

func (f *fakeRing) Ring() api.Ring {
	return api.Ring{ID: "12D3KooWfake", Vnodes: []api.Vnode{{ID: "aa"}, {ID: "bb"}}}
}

func (f *fakeRing) Lookup(ctx context.Context, key chord.ID) (api.Lookup, error) {
	f.gotKey = key
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return api.Lookup{}, fmt.Errorf("lookup: %w", ctx.Err())
		}
	}
	if f.lookupErr != nil {
		return api.Lookup{}, f.lookupErr
	}
	return api.Lookup{Key: key.Hex(), Hops: 3}, nil
}

func do(t *testing.T, h http.Handler, method, target string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type = %q, want application/json", method, target, ct)
	}
	return rec.Code, rec.Body.Bytes()
}

func TestAPIHandlerAnswers(t *testing.T) {
	f := &fakeRing{}
	h := newAPIHandler(f, apiConfig{LookupTimeout: time.Second})

	code, body := do(t, h, "GET", "/v1/status")
	var s api.Status
	if code != 200 || json.Unmarshal(body, &s) != nil || s.ID != "12D3KooWfake" || s.Capacity != 2 {
		t.Errorf("status: %d %s", code, body)
	}
	code, body = do(t, h, "GET", "/v1/ring")
	var r api.Ring
	if code != 200 || json.Unmarshal(body, &r) != nil || len(r.Vnodes) != 2 {
		t.Errorf("ring: %d %s", code, body)
	}
	key := strings.Repeat("ab", 31) + "CD" // upper case is hex too
	code, body = do(t, h, "GET", "/v1/lookup?key="+key)
	var l api.Lookup
	if code != 200 || json.Unmarshal(body, &l) != nil || l.Hops != 3 {
		t.Errorf("lookup: %d %s", code, body)
	}
	if f.gotKey.Hex() != strings.ToLower(key) {
		t.Errorf("node got key %s, want %s", f.gotKey.Hex(), key)
	}
}

func TestAPIHandlerErrors(t *testing.T) {
	valid := "/v1/lookup?key=" + strings.Repeat("00", 32)
	cases := []struct {
		name   string
		ring   *fakeRing
		method string
		target string
		code   int
		msg    string
	}{
		{"unknown path", &fakeRing{}, "GET", "/v1/nope", 404, "no endpoint /v1/nope"},
		{"post", &fakeRing{}, "POST", "/v1/status", 405, "only GET"},
		{"no key", &fakeRing{}, "GET", "/v1/lookup", 400, "missing key"},
		{"short key", &fakeRing{}, "GET", "/v1/lookup?key=abcd", 400, "64 hex digits"},
		{"not hex", &fakeRing{}, "GET", "/v1/lookup?key=" + strings.Repeat("zz", 32), 400, "64 hex digits"},
		{"no route", &fakeRing{lookupErr: fmt.Errorf("vnode 3: %w", chord.ErrNoRoute)}, "GET", valid, 503, "no live route"},
		{"timeout", &fakeRing{lookupErr: fmt.Errorf("ask peer: %w", context.DeadlineExceeded)}, "GET", valid, 504, "deadline"},
		{"peer failed", &fakeRing{lookupErr: errors.New("dial backoff\n  * [/ip4/1.2.3.4/tcp/1] refused")}, "GET", valid, 502, "dial backoff * [/ip4/1.2.3.4/tcp/1] refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, newAPIHandler(tc.ring, apiConfig{LookupTimeout: time.Second}), tc.method, tc.target)
			var e api.Error
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q is not an api.Error: %v", body, err)
			}
			if code != tc.code || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", code, e.Error, tc.code, tc.msg)
			}
			if strings.Contains(e.Error, "\n") {
				t.Errorf("error %q spans lines", e.Error)
			}
		})
	}
}

func TestAPIHandlerBoundsLookups(t *testing.T) {
	f := &fakeRing{block: make(chan struct{})}
	code, body := do(t, newAPIHandler(f, apiConfig{LookupTimeout: 20 * time.Millisecond}), "GET", "/v1/lookup?key="+strings.Repeat("00", 32))
	if code != http.StatusGatewayTimeout {
		t.Errorf("got %d %s, want 504 once the lookup timeout passed", code, body)
	}
}

// shortDir is a temp dir short enough for a Unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestListenAPI(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, api.SocketName)

	// A stale socket (its daemon was killed) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	ln, err := listenAPI(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %04o, want 0600", perm)
	}

	// Served end to end through the real client.
	srv := newAPIServer(newAPIHandler(&fakeRing{}, apiConfig{LookupTimeout: time.Second}), io.Discard)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	c, err := api.NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s, err := c.Status(ctx); err != nil || s.ID != "12D3KooWfake" {
		t.Errorf("status over the socket: %+v, %v", s, err)
	}
	c.Close()
	srv.Close()
	wg.Wait()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after close: %v", err)
	}

	// Something that is not a socket is not ours to remove.
	if err := os.WriteFile(sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := listenAPI(sock); err == nil {
		ln.Close()
		t.Fatal("listenAPI replaced a regular file")
	} else if !strings.Contains(err.Error(), "file is in the way") {
		t.Errorf("err = %v", err)
	}
}

// flakyJoiner fails its first failures calls.
type flakyJoiner struct {
	failures int
	calls    int
	retries  int // beforeRetry calls
	last     []libp2ppeer.AddrInfo
}

func (j *flakyJoiner) retried() { j.retries++ }

func (j *flakyJoiner) Join(ctx context.Context, boot []libp2ppeer.AddrInfo) error {
	j.calls++
	j.last = boot
	if j.calls <= j.failures {
		return errors.New("all dials failed\n  * [/ip4/127.0.0.1/tcp/1] connection refused")
	}
	return nil
}

func TestJoinRingRetriesThenGivesUp(t *testing.T) {
	boot, err := ParseBootstrap([]string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"})
	if err != nil {
		t.Fatal(err)
	}
	opts := DaemonOptions{BootstrapAttempts: 3, BootstrapBackoff: time.Millisecond}
	ctx := context.Background()

	t.Run("succeeds after retries", func(t *testing.T) {
		j := &flakyJoiner{failures: 2}
		var log strings.Builder
		if err := joinRing(ctx, j, boot, opts, time.Second, &log, j.retried); err != nil {
			t.Fatal(err)
		}
		if j.calls != 3 || j.retries != 2 {
			t.Errorf("calls = %d, retries = %d, want 3 and 2", j.calls, j.retries)
		}
		if n := strings.Count(log.String(), "\n"); n != 2 || !strings.Contains(log.String(), "attempt 1 of 3") {
			t.Errorf("log = %q, want one line per failed attempt", log.String())
		}
	})
	t.Run("gives up", func(t *testing.T) {
		j := &flakyJoiner{failures: 100}
		err := joinRing(ctx, j, boot, opts, time.Second, io.Discard, j.retried)
		if err == nil || j.calls != 3 || !strings.Contains(err.Error(), "gave up after 3 attempts") ||
			!strings.Contains(err.Error(), "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA") {
			t.Errorf("calls %d, err = %v", j.calls, err)
		}
	})
	t.Run("stops when cancelled", func(t *testing.T) {
		j := &flakyJoiner{failures: 100}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := joinRing(cctx, j, boot, DaemonOptions{BootstrapAttempts: 100, BootstrapBackoff: time.Hour}, time.Second, io.Discard, j.retried)
		if !errors.Is(err, context.Canceled) || j.calls != 1 {
			t.Errorf("calls %d, err = %v, want one call and context.Canceled", j.calls, err)
		}
	})
	t.Run("no bootstrap creates a ring", func(t *testing.T) {
		j := &flakyJoiner{}
		if err := joinRing(ctx, j, nil, opts, time.Second, io.Discard, j.retried); err != nil || j.calls != 1 || len(j.last) != 0 {
			t.Errorf("calls %d, boot %v, err %v", j.calls, j.last, err)
		}
	})
}

func TestWithoutPeer(t *testing.T) {
	const a = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
	const b = "12D3KooWLLrBnKJmCmqFRLZXnkAqCsCKqJ3PNDWKtFpTw3X2HJvy"
	infos, err := ParseBootstrap([]string{"/ip4/127.0.0.1/tcp/1/p2p/" + a, "/ip4/127.0.0.1/tcp/2/p2p/" + b})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := libp2ppeer.Decode(a)
	got := withoutPeer(infos, self)
	if len(got) != 1 || got[0].ID.String() != b {
		t.Errorf("got %v, want only %s", got, b)
	}
	if len(infos) != 2 {
		t.Error("withoutPeer changed its input")
	}
}

// Go's profiles are on the API only when the daemon asks for them.
func TestAPIHandlerPprof(t *testing.T) {
	off := newAPIHandler(&fakeRing{}, apiConfig{LookupTimeout: time.Second})
	if code, _ := do(t, off, http.MethodGet, "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("without Pprof: /debug/pprof/cmdline answered %d, want 404", code)
	}
	on := newAPIHandler(&fakeRing{}, apiConfig{LookupTimeout: time.Second, Pprof: true})
	for path, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/heap?debug=1": "heap profile"} {
		rec := httptest.NewRecorder()
		on.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("with Pprof: %s answered %d: %.200s", path, rec.Code, rec.Body)
		}
	}
	if code, _ := do(t, on, http.MethodGet, "/v1/status"); code != http.StatusOK {
		t.Errorf("with Pprof: /v1/status answered %d", code)
	}
}
