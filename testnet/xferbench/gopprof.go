package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"chordshare/peer/api"
)

// goProfiler takes every daemon's Go CPU profile (`peer daemon --pprof`,
// served on the repo's API socket) while a fetch runs: unlike perf, it
// names each daemon's own Go frames, which tells the fetcher's costs from
// a serving replica's.
type goProfiler struct {
	dir  string        // where NAME-peerN.pprof and NAME-peerN.txt go
	span time.Duration // each profile's length: the fetch should fit in it
}

func newGoProfiler(dir string, span time.Duration) (*goProfiler, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &goProfiler{dir: dir, span: span}, nil
}

// start begins a CPU profile of span on each peer; wait returns once all
// are written, with a `go tool pprof -top` summary next to each.
func (g *goProfiler) start(ctx context.Context, name string, peers []*ringPeer) (wait func() error) {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		base := filepath.Join(g.dir, fmt.Sprintf("%s-peer%d", name, i+1))
		wg.Go(func() { errs[i] = g.take(ctx, filepath.Join(p.repo, api.SocketName), base) })
	}
	// The profiles start on the daemons' next scheduling: give them a
	// moment, so that the transfer's first blocks are in them.
	time.Sleep(50 * time.Millisecond)
	return func() error {
		wg.Wait()
		return errors.Join(errs...)
	}
}

func (g *goProfiler) take(ctx context.Context, sock, base string) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("http://peer/debug/pprof/profile?seconds=%d", max(1, int(g.span/time.Second)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("pprof of %s: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("pprof of %s: %s: %s", sock, resp.Status, msg)
	}
	f, err := os.Create(base + ".pprof")
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof of %s: %w", sock, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	top, err := output(command(ctx, os.Environ(), "go", "tool", "pprof", "-top", "-nodecount", "80", base+".pprof"))
	if err != nil {
		return err
	}
	return os.WriteFile(base+".txt", top, 0o644)
}
