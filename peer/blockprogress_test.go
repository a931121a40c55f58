package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// These tests run a block stream's two ends over net.Pipe in a synctest
// bubble: time is virtual, so a transfer of many minutes takes none, and
// the bounds under test (context timers) run on the same clock.

// pipeStream is one end of a block stream over a net.Pipe. Like mocknet's
// streams it has no deadlines: only a context can cut it off. A reset with
// a code fails the other end's reads and writes with that code, as yamux
// and QUIC do.
type pipeStream struct {
	network.Stream // nil: only what the block protocol uses is here
	c              net.Conn
	code           atomic.Pointer[network.StreamErrorCode] // this end reset with
	other          *pipeStream
}

func (s *pipeStream) Read(b []byte) (int, error) {
	n, err := s.c.Read(b)
	return n, s.failed(err)
}

func (s *pipeStream) Write(b []byte) (int, error) {
	n, err := s.c.Write(b)
	return n, s.failed(err)
}

// failed is err, or the code the other end reset the stream with.
func (s *pipeStream) failed(err error) error {
	if c := s.other.code.Load(); err != nil && c != nil {
		return &network.StreamError{ErrorCode: *c, Remote: true, TransportError: err}
	}
	return err
}

func (s *pipeStream) Close() error { return s.c.Close() }
func (s *pipeStream) Reset() error { return s.c.Close() }
func (s *pipeStream) ResetWithError(c network.StreamErrorCode) error {
	s.code.Store(&c)
	return s.c.Close()
}
func (s *pipeStream) SetDeadline(time.Time) error     { return errors.New("deadline not supported") }
func (s *pipeStream) SetReadDeadline(time.Time) error { return errors.New("deadline not supported") }
func (s *pipeStream) SetProtocol(protocol.ID) error   { return nil }
func (s *pipeStream) Conn() network.Conn              { return pipeConn{} }

type pipeConn struct{ network.Conn }

func (pipeConn) RemotePeer() p2ppeer.ID { return "pipe peer" }

func streamPipe() (*pipeStream, *pipeStream) {
	a, b := net.Pipe()
	sa, sb := &pipeStream{c: a}, &pipeStream{c: b}
	sa.other, sb.other = sb, sa
	return sa, sb
}

// servedStream is the client end of a pipe whose other end n serves as an
// inbound block stream.
func servedStream(n *Node) *pipeStream {
	client, server := streamPipe()
	go n.serveBlock(server)
	return client
}

// putFrame is the PUT of data as block c, header and payload, as its
// sender writes it.
func putFrame(c cid.Cid, data []byte) []byte {
	return blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: c.Bytes(), Size: uint32(len(data))}, data)
}

// noHost dials nothing: a client that finds no pooled stream fails.
type noHost struct{ host.Host }

func (noHost) ID() p2ppeer.ID           { return "no host" }
func (noHost) Network() network.Network { return pipeNet{} }

// pipeNet is the network of a test host whose streams are pipes: dial
// gives the stream to a peer (nil: dialing fails). Like a real network's,
// the stream has no protocol yet: the opener selects one (openStream), and
// the test's end of the pipe answers as basichost does (negotiated).
type pipeNet struct {
	network.Network // nil: only NewStream is used
	dial            func(p2ppeer.ID) (network.Stream, error)
}

func (n pipeNet) NewStream(_ context.Context, p p2ppeer.ID) (network.Stream, error) {
	if n.dial == nil {
		return nil, errors.New("no dialing in this test")
	}
	return n.dial(p)
}

// negotiated answers the multistream-select of the block stream s, as
// basichost does before it calls the protocol's handler, and says whether
// the opener selected the block protocol; a stream that selected another
// is reset as basichost resets it.
func negotiated(s network.Stream) bool {
	mux := msmux.NewMultistreamMuxer[protocol.ID]()
	mux.AddHandler(BlockProtocol, nil)
	if _, _, err := mux.Negotiate(s); err != nil {
		_ = s.ResetWithError(network.StreamProtocolNegotiationFailed)
		return false
	}
	return true
}

type mapStore struct {
	mu sync.Mutex
	m  map[cid.Cid][]byte
}

func (s *mapStore) Put(c cid.Cid, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[c] = bytes.Clone(data)
	return nil
}

func (s *mapStore) Get(c cid.Cid) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[c]; ok {
		return bytes.Clone(b), nil
	}
	return nil, ErrBlockNotFound
}

func (s *mapStore) Has(c cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[c]
	return ok
}

// pipeNode is a node with what the block protocol needs and no host: its
// streams are pipes the test hands it.
func pipeNode(t *testing.T) (*Node, *mapStore) {
	st := &mapStore{m: map[cid.Cid][]byte{}}
	life, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	return &Node{h: noHost{}, life: life, cfg: Config{Store: st}, blocks: newBlockClient(3, nil)}, st
}

// trickle writes b to w, chunk bytes every period, until ctx ends.
func trickle(ctx context.Context, w io.Writer, b []byte, chunk int, period time.Duration) error {
	for len(b) > 0 {
		k := min(chunk, len(b))
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
		if len(b) > 0 {
			select {
			case <-time.After(period):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// slowRate is a sender below the slowest link the fixed bound allowed for
// (slowestLink): a 2 MiB block takes 699 s at it.
const slowRate = 3000

func bigBlock(t *testing.T) ([]byte, cid.Cid) {
	data := bytes.Repeat([]byte("a slow but steady sender "), maxBlockSize/25)
	return data, rawBlock(t, data)
}

// A 2 MiB block put by a sender slower than the network's old bound
// allowed for, whose bytes keep coming, is received and stored: the
// receiver bounds it by progress. The old fixed bound for the whole
// transfer (transferTimeout(maxBlockSize), 522 s) cut it off.
func TestSlowSteadyPutIsReceived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, st := pipeNode(t)
		client := servedStream(n)
		data, c := bigBlock(t)
		start := time.Now()
		frame := putFrame(c, data)
		if err := trickle(context.Background(), client, frame, slowRate, time.Second); err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		resp := &pb.BlockResponse{}
		if err := readBlockHeader(bufio.NewReader(client), resp); err != nil {
			t.Fatal(err)
		}
		if err := responseError(resp); err != nil {
			t.Fatal(err)
		}
		if !st.Has(c) {
			t.Fatal("the block was not stored")
		}
		if took := time.Since(start); took <= transferTimeout(maxBlockSize) {
			t.Fatalf("the put took %v: not slower than the old bound, so no test of it", took)
		}
		client.Close()
	})
}

// A put whose sender stops sending is cut off at the old whole-transfer
// bound (522 s after it began) or blockSilence after its last bytes,
// whichever is later; one that trickles a byte now and then to stay under
// that (a slowloris) is cut off at receiveLimit.
func TestStalledPutIsCutOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		period time.Duration // between one-byte writes after the header; 0: none
		want   func(start, last time.Time) time.Time
	}{
		{"stalled", 0, func(start, last time.Time) time.Time { return cutOff(start, last) }},
		{"slowloris", blockSilence - time.Second, func(start, _ time.Time) time.Time { return start.Add(receiveLimit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, st := pipeNode(t)
				client := servedStream(n)
				data, c := bigBlock(t)
				start := time.Now()
				frame := putFrame(c, data)
				head := len(frame) - len(data) + 64<<10
				if _, err := client.Write(frame[:head]); err != nil {
					t.Fatal(err)
				}
				// The server's reset shows on the client as the end of
				// what it reads (a PUT's server writes nothing before its
				// answer).
				cut := make(chan time.Time)
				go func() {
					_, _ = client.Read(make([]byte, 1))
					cut <- time.Now()
				}()
				last := time.Now()
				var at time.Time
				if tc.period > 0 {
				loop:
					for _, b := range frame[head:] {
						select {
						case at = <-cut:
							break loop
						case <-time.After(tc.period):
						}
						if _, err := client.Write([]byte{b}); err == nil {
							last = time.Now()
						}
					}
				} else {
					at = <-cut
				}
				if want := tc.want(start, last); at.Sub(want).Abs() > time.Second {
					t.Fatalf("cut off %v after the start, %v after the last bytes; want %v after the start", at.Sub(start), at.Sub(last), want.Sub(start))
				}
				if st.Has(c) {
					t.Fatal("an incomplete put stored a block")
				}
				client.Close()
			})
		})
	}
}

// servePipe answers one GET on s with the header of an OK response for
// data, then data at rate bytes per second until stallAt of it has gone
// (then nothing more); it returns once the client has closed or reset.
func servePipe(ctx context.Context, s *pipeStream, data []byte, rate int, stallAt int) {
	r := bufio.NewReader(s)
	if err := readBlockHeader(r, &pb.BlockRequest{}); err != nil {
		return
	}
	if _, err := s.Write(blockFrame(&pb.BlockResponse{Size: uint32(len(data))}, nil)); err != nil {
		return
	}
	if trickle(ctx, s, data[:stallAt], rate, time.Second) == nil {
		_, _ = io.Copy(io.Discard, r)
	}
}

// The same on a fetcher: a 2 MiB block served slower than the old bound
// allowed for arrives whole, and a server that stops sending mid-block is
// cut off at the old bound or blockSilence after its last bytes.
func TestSlowGetIsReceivedAndAStalledOneCutOff(t *testing.T) {
	const server = p2ppeer.ID("server")
	t.Run("steady", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n, _ := pipeNode(t)
			data, c := bigBlock(t)
			client, srv := streamPipe()
			n.blocks.streams.put(server, &blockStream{s: client, r: bufio.NewReader(client)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // a failed fetch leaves the server sending
			go servePipe(ctx, srv, data, slowRate, len(data))
			fetchPastTheOldBound(t, n, server, c, data)
			client.Close()
		})
	})
	t.Run("stalled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n, _ := pipeNode(t)
			data, c := bigBlock(t)
			client, srv := streamPipe()
			n.blocks.streams.put(server, &blockStream{s: client, r: bufio.NewReader(client)})
			const sent = 300 << 10
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go servePipe(ctx, srv, data, slowRate, sent)
			start := time.Now()
			_, err := n.fetchFrom(context.Background(), server, c)
			last := start.Add(sent / slowRate * time.Second) // the last write's time: a second per whole chunk
			if !errors.Is(err, errSilent) {
				t.Fatalf("a stalled get: %v, want %v", err, errSilent)
			}
			if at, want := time.Now(), cutOff(start, last); at.Sub(want).Abs() > time.Second {
				t.Fatalf("cut off %v after the start, want %v", at.Sub(start), want.Sub(start))
			}
		})
	})
}

// A paced node serving a GET while an upload holds its uplink's turn
// (a put ahead of it in the queue) starts the serve's deadline when it
// gets the turn: a block that waited, then took its time at the paced rate,
// arrives, where the old deadline, from the request, counted the wait. A
// turn that does not come within serveTurnWait is answered "busy", and the
// fetcher can ask another replica.
func TestServedGetDeadlineStartsAtTheTurn(t *testing.T) {
	const server = p2ppeer.ID("server")
	data := bytes.Repeat([]byte("queued behind a put "), (256<<10)/20)
	serving := func(t *testing.T) (client, srv *Node, c cid.Cid, stop func()) {
		client, _ = pipeNode(t)
		srv, st := pipeNode(t)
		srv.up = newUplink(4000) // paced at 3200 B/s: 82 s for the block
		c = rawBlock(t, data)
		if err := st.Put(c, data); err != nil {
			t.Fatal(err)
		}
		a := servedStream(srv)
		client.blocks.streams.put(server, &blockStream{s: a, r: bufio.NewReader(a)})
		return client, srv, c, func() { a.Close() }
	}
	t.Run("turn comes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, srv, c, stop := serving(t)
			defer stop()
			held, err := srv.up.acquire(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			const queued = 480 * time.Second
			time.AfterFunc(queued, held.release)
			fetchPastTheOldBound(t, client, server, c, data)
		})
	})
	t.Run("turn does not come", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, srv, c, stop := serving(t)
			defer stop()
			held, err := srv.up.acquire(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer held.release()
			start := time.Now()
			_, err = client.fetchFrom(context.Background(), server, c)
			if err == nil || !strings.Contains(err.Error(), "uplink busy") {
				t.Fatalf("a get whose server never gets its turn: %v, want its busy answer", err)
			}
			if took := time.Since(start); (took - serveTurnWait).Abs() > time.Second {
				t.Fatalf("answered busy after %v, want %v", took, serveTurnWait)
			}
		})
	})
}

// cutOff is when a reception that began at start and last received bytes
// at last is cut off: not before the old whole-transfer bound.
func cutOff(start, last time.Time) time.Time {
	return later(start.Add(transferTimeout(maxBlockSize)), last.Add(blockSilence))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fetchPastTheOldBound has n fetch c from server and checks that data
// arrived, later than the old whole-transfer bound allowed (or the test
// would not test that bound's going).
func fetchPastTheOldBound(t *testing.T, n *Node, server p2ppeer.ID, c cid.Cid, data []byte) {
	t.Helper()
	start := time.Now()
	got, err := n.fetchFrom(context.Background(), server, c)
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("other bytes")
	}
	if took := time.Since(start); took <= transferTimeout(maxBlockSize) {
		t.Fatalf("the get took %v: not over the old bound, so no test of it", took)
	}
}

// A GET's answer header is progress: a server whose header comes late
// (it waited for its uplink's turn) and whose block follows after a pause
// shorter than blockSilence is not cut off, though the block's first bytes
// come past answerWait from the request. Were the header not counted, the
// fetcher would still hold it to answerWait, and cut it off at 532 s.
func TestGetHeaderIsProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const server = p2ppeer.ID("server")
		const header, pause = 500 * time.Second, blockSilence - 10*time.Second
		n, _ := pipeNode(t)
		data := bytes.Repeat([]byte("after a late header "), (64<<10)/20)
		c := rawBlock(t, data)
		client, srv := streamPipe()
		defer client.Close()
		n.blocks.streams.put(server, &blockStream{s: client, r: bufio.NewReader(client)})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		after := func(d time.Duration) bool {
			select {
			case <-time.After(d):
				return true
			case <-ctx.Done():
				return false
			}
		}
		go func() {
			r := bufio.NewReader(srv)
			if readBlockHeader(r, &pb.BlockRequest{}) != nil || !after(header) {
				return
			}
			if _, err := srv.Write(blockFrame(&pb.BlockResponse{Size: uint32(len(data))}, nil)); err != nil || !after(pause) {
				return
			}
			if trickle(ctx, srv, data, slowRate, time.Second) == nil {
				_, _ = io.Copy(io.Discard, r)
			}
		}()
		start := time.Now()
		got, err := n.fetchFrom(context.Background(), server, c)
		if err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("other bytes")
		}
		if header+pause <= answerWait {
			t.Fatalf("the block's first bytes come %v after the request, within answerWait (%v): no test of the header", header+pause, answerWait)
		}
	})
}
