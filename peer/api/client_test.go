package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs handler on the API socket of a fresh repo and returns the repo.
func serve(t *testing.T, handler http.Handler) string {
	t.Helper()
	dir := shortTempDir(t)
	sock, err := SocketPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return dir
}

// shortTempDir is a temp dir short enough for a Unix socket whatever the
// test's name.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newClient(t *testing.T, dir string) *Client {
	t.Helper()
	c, err := NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientDecodesAnswers(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Status{ID: "12D3KooWtest", Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWtest"}, Capacity: 8})
	})
	mux.HandleFunc("GET /v1/ring", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Ring{ID: "12D3KooWtest", Vnodes: []Vnode{{ID: "ab", Successors: []Neighbour{{Peer: "other", Vnode: 3}}}}})
	})
	mux.HandleFunc("GET /v1/lookup", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Lookup{Key: r.URL.Query().Get("key"), Hops: 2})
	})
	c := newClient(t, serve(t, mux))

	s, err := c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "12D3KooWtest" || s.Capacity != 8 || len(s.Addrs) != 1 {
		t.Errorf("status = %+v", s)
	}
	r, err := c.Ring(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Vnodes) != 1 || r.Vnodes[0].Successors[0].Peer != "other" || r.Vnodes[0].Successors[0].Vnode != 3 {
		t.Errorf("ring = %+v", r)
	}
	key := strings.Repeat("0f", 32)
	l, err := c.Lookup(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if l.Key != key || l.Hops != 2 {
		t.Errorf("lookup = %+v", l)
	}
}

func TestClientReturnsDaemonErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/lookup", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(Error{Error: "key: want 64 hex digits"})
	})
	mux.HandleFunc("/v1/ring", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "plain text, not JSON", http.StatusInternalServerError)
	})
	c := newClient(t, serve(t, mux))

	_, err := c.Lookup(ctx(t), "xyz")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || he.Error() != "key: want 64 hex digits" {
		t.Errorf("lookup error = %#v, want HTTPError 400 with the daemon's message", err)
	}
	_, err = c.Ring(ctx(t))
	if !errors.As(err, &he) || he.StatusCode != http.StatusInternalServerError || !strings.Contains(he.Error(), "500") {
		t.Errorf("ring error = %v, want HTTPError 500 naming the status", err)
	}
	// Status is not served at all: the mux's 404 is not JSON either.
	_, err = c.Status(ctx(t))
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("status error = %v, want HTTPError 404", err)
	}
}

func TestClientNoDaemon(t *testing.T) {
	check := func(t *testing.T, dir string) {
		t.Helper()
		_, err := newClient(t, dir).Status(ctx(t))
		if !errors.Is(err, ErrNoDaemon) {
			t.Fatalf("err = %v, want ErrNoDaemon", err)
		}
		want := "no daemon running on repo " + dir + " (start one with: peer daemon --repo " + dir + ")"
		if err.Error() != want {
			t.Errorf("err = %q\nwant  %q", err, want)
		}
	}
	t.Run("no socket", func(t *testing.T) { check(t, shortTempDir(t)) })
	t.Run("no repo", func(t *testing.T) { check(t, filepath.Join(shortTempDir(t), "missing")) })
	t.Run("stale socket", func(t *testing.T) {
		// A daemon killed with SIGKILL leaves its socket behind: connecting
		// to it is refused.
		dir := shortTempDir(t)
		sock, _ := SocketPath(dir)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		if _, err := os.Stat(sock); err != nil {
			t.Fatalf("stale socket should still exist: %v", err)
		}
		check(t, dir)
	})
}

func TestClientHonoursContext(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	c := newClient(t, serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})))
	cx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Status(cx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	long := "/" + strings.Repeat("d", 120)
	if _, err := SocketPath(long); !errors.Is(err, ErrSocketPathTooLong) || !strings.Contains(err.Error(), "shorter --repo") {
		t.Errorf("err = %v, want ErrSocketPathTooLong telling to use a shorter repo", err)
	}
	if _, err := NewClient(long); !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("NewClient err = %v, want ErrSocketPathTooLong", err)
	}
	p, err := SocketPath("/tmp/r")
	if err != nil || p != "/tmp/r/api.sock" {
		t.Errorf("SocketPath(/tmp/r) = %q, %v", p, err)
	}
}

func TestResolveRepo(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(RepoEnv, "")
	got, err := ResolveRepo("")
	if err != nil || got != filepath.Join(home, ".chordshare") {
		t.Errorf("default = %q, %v; want ~/.chordshare", got, err)
	}
	t.Setenv(RepoEnv, "/from/env")
	if got, _ := ResolveRepo(""); got != "/from/env" {
		t.Errorf("with $PEER_REPO = %q, want /from/env", got)
	}
	if got, _ := ResolveRepo("/from/flag/"); got != "/from/flag" {
		t.Errorf("with --repo = %q, want /from/flag", got)
	}
	wd, _ := os.Getwd()
	if got, _ := ResolveRepo("rel"); got != filepath.Join(wd, "rel") {
		t.Errorf("relative = %q, want it made absolute", got)
	}
}
