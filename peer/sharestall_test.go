package peer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/chord"
	"chordshare/peer/api"
	"chordshare/peer/pb"
	"chordshare/share"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// The daemon's backend passes a block's bytes on to the share's stall
// guard as they go (touchingPutter), as the node in the test below does.
var _ movingPutter = daemonBackend{}

// A share's stall guard counts the bytes written to the replicas, not
// only leaves that reached their write quorum: a 256 KiB leaf paced at
// 3.2 KB/s (--uplink of 32 kbit/s) goes to its 3 replicas one after the
// other, 82 s each, so its quorum of 2 takes 164 s, over the default
// stall timeout, and the share succeeds; unpaced, replicas taking 5 KB/s
// each ack it after 52 s, which a 30 s stall timeout outlasts as long as
// the bytes keep going. Replicas that stop taking bytes end the
// share one stall timeout after their last ones (30 s there: a paced
// put's own bound, 92 s after its turn, would end it before 2 min).
// A paced share queued behind another upload counts that upload's bytes:
// the queue moves, so the share is waiting, not stalled.
// Time is virtual (synctest), the replicas pipes (blockprogress_test.go).
func TestShareStallGuardCountsBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		uplink int64 // the node's --uplink, bytes/s; 0: unpaced
		rate   int   // bytes/s each replica takes; 0: as they come
		stall  time.Duration
		// Bytes of the put past its first write each replica takes (0:
		// all): whole chunks, so that the last write the node sees done
		// is the replicas' last bytes.
		stallAt int
		// Bytes of another paced message holding the uplink's turn when
		// the share starts.
		ahead int
	}{
		{name: "paced/slow", uplink: 4000, stall: api.DefaultStallTimeout},
		{name: "paced/queued", uplink: 4000, stall: 30 * time.Second, ahead: 256 << 10},
		{name: "unpaced/slow", rate: 5000, stall: 30 * time.Second},
		{name: "paced/stalled", uplink: 4000, stall: 30 * time.Second, stallAt: 28 << 10},
		{name: "unpaced/stalled", rate: 5000, stall: 30 * time.Second, stallAt: 2 * movedChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				last, err := slowShare(t, tc.uplink, tc.rate, tc.stall, tc.stallAt, tc.ahead)
				if tc.stallAt == 0 {
					if err != nil {
						t.Fatalf("after %v: %v", time.Since(start), err)
					}
					took := time.Since(start)
					t.Logf("shared in %v", took)
					if took <= tc.stall+10*time.Second {
						t.Fatalf("the share took %v: not slower than the %v stall timeout, so no test of it", took, tc.stall)
					}
					return
				}
				if want := "stalled: no progress for " + tc.stall.String(); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v; want %q", err, want)
				}
				t.Logf("replicas' last bytes %v after the start, given up %v after them", last.Sub(start), time.Since(last))
				// The guard looks every second.
				if at := time.Since(last); at < tc.stall || at > tc.stall+2*time.Second {
					t.Fatalf("given up %v after the replicas' last bytes (%v after the start), want %v", at, last.Sub(start), tc.stall)
				}
			})
		})
	}
}

// slowShare shares one 256 KiB leaf through importStream, under a stall
// guard of stall, from a node with an uplink of uplink bytes/s (0: none)
// to three replicas over pipes, each of which takes rate bytes of the put
// a second (0: as they come), up to stallAt of them past the header's
// write (0: all, and then acknowledges it). A paced message of ahead
// bytes (0: none) holds the uplink's turn as the share starts. It returns
// when a replica last took bytes and the share's error.
func slowShare(t *testing.T, uplink int64, rate int, stall time.Duration, stallAt, ahead int) (time.Time, error) {
	t.Helper()
	n, _ := pipeNode(t)
	ring, err := chord.NewNode("pipe", nil, nil, chord.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	n.ring = ring
	n.up = newUplink(uplink)
	n.cfg.Replicas, n.cfg.WriteQuorum = 3, 2
	n.cfg.Chord.StabilizeInterval = time.Hour // the span below stays fresh

	data := bytes.Repeat([]byte("a slow uplink "), (256<<10)/14+1)[:256<<10]
	var blocks collectPutter
	if _, err := share.Import(context.Background(), bytes.NewReader(data), &blocks, share.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(blocks.cids) != 1 {
		t.Fatalf("%d blocks; want one leaf", len(blocks.cids))
	}
	c := blocks.cids[0]
	// The preference list is known, as a recent lookup leaves it.
	key := chord.KeyID(c.Hash())
	var near []chord.Ref
	for i := range 3 {
		near = append(near, chord.Ref{ID: key, Addr: fmt.Sprintf("replica %d", i)})
	}
	n.blocks.located.addSpan(ringSpan{key: key, near: near, at: time.Now()})
	req := &pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: c.Bytes(), Size: uint32(len(data))}
	frame := len(blockFrame(req, data))
	if stallAt > 0 {
		stallAt += len(blockFrame(req, data[:headFrame]))
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stalled replicas wait for it
	var last atomic.Int64
	h := &pipeHost{streams: map[p2ppeer.ID]*pipeStream{}}
	n.h = h
	for _, r := range near {
		client, srv := streamPipe()
		defer client.Close()
		h.streams[p2ppeer.ID(r.Addr)] = client
		wg.Go(func() {
			defer srv.Close()
			took := func() { last.Store(time.Now().UnixNano()) }
			if negotiated(srv) && slowReplica(ctx, srv, frame, rate, stallAt, took) == nil {
				_, _ = srv.Write(blockFrame(&pb.BlockResponse{Status: pb.BlockResponse_OK}, nil))
				_, _ = io.Copy(io.Discard, srv) // until the client closes
			}
		})
	}

	if ahead > 0 {
		tn, err := n.up.acquire(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer tn.release()
			if err := tn.send(ctx, io.Discard, nil, make([]byte, ahead)); err != nil {
				t.Errorf("the message ahead: %v", err)
			}
		})
	}
	sctx, guard, stop := watchStalls(context.Background(), stall)
	defer stop()
	var stored atomic.Int64
	_, _, err = importStream(sctx, n, bytes.NewReader(data), guard, &stored)
	return time.Unix(0, last.Load()), stallCause(sctx, err)
}

// slowReplica reads a put of frame bytes from s, rate bytes a second (0:
// as they come), calling took after each read; it stops after stallAt of
// them (0: never) and then waits for ctx, which it returns with.
func slowReplica(ctx context.Context, s *pipeStream, frame, rate, stallAt int, took func()) error {
	want := frame
	if stallAt > 0 {
		want = stallAt
	}
	buf := make([]byte, want)
	for got := 0; got < want; {
		k := want - got
		if rate > 0 {
			k = min(k, rate)
		}
		if _, err := io.ReadFull(s, buf[got:got+k]); err != nil {
			return err
		}
		took()
		if got += k; rate > 0 && got < want {
			time.Sleep(time.Second)
		}
	}
	if stallAt > 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// pipeHost dials a peer once, to the pipe given for it.
type pipeHost struct {
	noHost
	mu      sync.Mutex
	streams map[p2ppeer.ID]*pipeStream
}

func (h *pipeHost) Network() network.Network { return pipeNet{dial: h.dial} }

func (h *pipeHost) dial(p p2ppeer.ID) (network.Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.streams[p]
	if !ok {
		return nil, fmt.Errorf("no pipe to %s", p)
	}
	delete(h.streams, p)
	return s, nil
}

// collectPutter keeps the CIDs put on it.
type collectPutter struct {
	mu   sync.Mutex
	cids []cid.Cid
}

func (p *collectPutter) Put(_ context.Context, c cid.Cid, _ []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cids = append(p.cids, c)
	return nil
}
