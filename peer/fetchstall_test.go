package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/chord"
	"chordshare/peer/api"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// The daemon's backend passes a block's bytes on to the stall guard
// (progressGetter), as the node in the test below does.
var _ movingGetter = daemonBackend{}

// A fetch's stall guard counts the bytes of a block as progress, not only
// whole blocks: a 2 MiB block served at 3 KB/s takes 699 s, over five
// times the default stall timeout, and arrives, by `peer fetch` and by
// cat alike; a server that stops sending mid-block is given up on once
// its bytes have stopped for the stall timeout. Time is virtual
// (synctest), the replica a pipe (blockprogress_test.go).
func TestFetchStallGuardCountsBytes(t *testing.T) {
	const stall = api.DefaultStallTimeout
	const sentBeforeStall = 300 << 10
	for _, endpoint := range []string{"fetch", "cat"} {
		t.Run(endpoint+"/slow", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				data, _ := bigBlock(t)
				start := time.Now()
				code, out, msg := slowTransfer(t, endpoint, stall, data, len(data))
				if msg != "" || code != http.StatusOK || !bytes.Equal(out, data) {
					t.Fatalf("after %v: status %d, %d bytes, error %q; want the block", time.Since(start), code, len(out), msg)
				}
				if took := time.Since(start); took <= 2*stall {
					t.Fatalf("the %s took %v: not much slower than the %v stall timeout, so no test of it", endpoint, took, stall)
				}
			})
		})
		t.Run(endpoint+"/stalled", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				data, _ := bigBlock(t)
				start := time.Now()
				code, _, msg := slowTransfer(t, endpoint, stall, data, sentBeforeStall)
				if want := "stalled: no progress for " + stall.String(); !bytes.Contains([]byte(msg), []byte(want)) {
					t.Fatalf("status %d, error %q; want %q", code, msg, want)
				}
				// The last write is a second per whole chunk after the
				// start; the guard looks every second.
				last := start.Add(sentBeforeStall / slowRate * time.Second)
				if at, want := time.Now(), last.Add(stall); at.Before(want) || at.After(want.Add(2*time.Second)) {
					t.Fatalf("given up %v after the last bytes, want %v", at.Sub(last), stall)
				}
			})
		})
	}
}

// slowTransfer serves data as a one-block file from a replica that sends
// stallAt bytes of it at slowRate and then nothing, and has a node's API
// fetch it through endpoint (fetch, into a file, or cat) with the given
// stall timeout. It returns the answer's status, the bytes fetched and
// the transfer's error, if any.
func slowTransfer(t *testing.T, endpoint string, stall time.Duration, data []byte, stallAt int) (code int, out []byte, msg string) {
	t.Helper()
	const server = p2ppeer.ID("server")
	n, _ := pipeNode(t)
	ring, err := chord.NewNode("pipe", nil, nil, chord.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	n.ring = ring
	c := rawBlock(t, data)
	// The replica list is ready, as Locate leaves it: no ring lookup.
	ready := make(chan struct{})
	close(ready)
	n.blocks.located.entries[c] = &replicaList{claimed: true, ready: ready, peers: []p2ppeer.ID{server}, at: time.Now()}
	client, srv := streamPipe()
	defer client.Close()
	n.blocks.streams.put(server, &blockStream{s: client, r: bufio.NewReader(client)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a failed fetch leaves the server sending
	go servePipe(ctx, srv, data, slowRate, stallAt)

	h := newAPIHandler(n, apiConfig{LookupTimeout: time.Second})
	q := url.Values{"cid": {c.String()}, "stall": {stall.String()}}
	method, path := http.MethodGet, ""
	if endpoint == "fetch" {
		method, path = http.MethodPost, filepath.Join(t.TempDir(), "out")
		q.Set("path", path)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/v1/"+endpoint+"?"+q.Encode(), nil))
	if endpoint == "cat" {
		if rec.Code != http.StatusOK {
			var e api.Error
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			return rec.Code, nil, e.Error
		}
		if tr := rec.Result().Trailer.Get(api.StatusTrailer); tr != api.StatusOK {
			return rec.Code, nil, tr
		}
		return rec.Code, rec.Body.Bytes(), ""
	}
	var final api.Event
	for sc := bufio.NewScanner(rec.Body); sc.Scan(); {
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		final = e
	}
	if final.Error != "" {
		return rec.Code, nil, final.Error
	}
	if final.Fetch == nil {
		t.Fatalf("no final event: %+v", final)
	}
	if out, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return rec.Code, out, ""
}

// A share's guard counts every block stored: 40 leaves whose puts take
// 0.9 of the stall timeout each, 16 at a time, make a share near three
// times as long as the timeout that never stalls. Virtual time (synctest);
// the puts end between the watcher's looks (every second), which would
// otherwise see the share's next read busy then.
func TestShareStallGuardCountsBlocksStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = time.Minute
		ctx, g, stop := watchStalls(context.Background(), stall)
		defer stop()
		data := make([]byte, 40<<18)
		start := time.Now()
		put := slowPutter(func(ctx context.Context) error {
			select {
			case <-time.After(stall*9/10 + time.Second/2):
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		var stored atomic.Int64
		_, size, err := importStream(ctx, put, bytes.NewReader(data), g, &stored)
		if err = stallCause(ctx, err); err != nil || size != int64(len(data)) || stored.Load() != int64(len(data)) {
			t.Fatalf("after %v: %d bytes read, %d stored, error %v; want all %d", time.Since(start), size, stored.Load(), err, len(data))
		}
		if took := time.Since(start); took <= 2*stall {
			t.Fatalf("the share took %v: not much slower than the %v stall timeout, so no test of it", took, stall)
		}
	})
}

type slowPutter func(ctx context.Context) error

func (p slowPutter) Put(ctx context.Context, _ cid.Cid, _ []byte) error { return p(ctx) }
