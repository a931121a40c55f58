package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"

	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// A ring call on a new connection does not wait for identify, and one to a
// peer that does not speak the ring protocol fails at once, saying so. Real
// hosts on loopback TCP, whose identify never answers: a call that waited
// for it (host.NewStream) would only end at its timeout.
func TestRingCallDoesNotWaitForIdentify(t *testing.T) {
	hold := make(chan struct{})
	caller, ring, other := loopbackHost(t), loopbackHost(t), loopbackHost(t)
	t.Cleanup(func() { close(hold) }) // before the hosts close
	for _, h := range []host.Host{ring, other} {
		h.SetStreamHandler(identify.ID, func(s network.Stream) {
			<-hold
			s.Reset()
		})
		caller.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.TempAddrTTL)
	}
	ring.SetStreamHandler(RingProtocol, func(s network.Stream) {
		defer s.Close()
		req := &pb.Request{}
		if err := readMsg(bufio.NewReader(s), req, maxRingMessage); err != nil {
			s.Reset()
			return
		}
		_ = writeMsg(s, &pb.Response{Hops: req.GetHops() + 1})
	})

	const timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp := &pb.Response{}
	if err := requestResponse(ctx, caller, ring.ID(), RingProtocol, &pb.Request{Type: pb.Request_NEXT_HOP, Hops: 4}, resp, maxRingMessage); err != nil {
		t.Fatalf("ring call on a new connection, identify held: %v", err)
	}
	if resp.GetHops() != 5 {
		t.Errorf("answer %v, want hops 5", resp)
	}

	start := time.Now()
	err := requestResponse(ctx, caller, other.ID(), RingProtocol, &pb.Request{Type: pb.Request_NEXT_HOP}, &pb.Response{}, maxRingMessage)
	if !errors.Is(err, errProtocolRefused) || !strings.Contains(err.Error(), RingProtocol) {
		t.Fatalf("ring call to a peer without the protocol: %v, want protocol %s not supported", err, RingProtocol)
	}
	t.Logf("refused: %v", err)
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("the refusal took %v", d)
	}
}

// A block exchange opens its stream as a ring call does: a GET on a new
// connection does not wait for identify, and a peer that does not speak
// the block protocol refuses a GET and a PUT at once, saying so. Real
// nodes on loopback TCP whose identify never answers: a GET that waited
// for it (host.NewStream) would take until the client's identify gives up
// (5 s), and a refusal would end at the GET's timeout.
func TestBlockExchangeDoesNotWaitForIdentify(t *testing.T) {
	hold := make(chan struct{})
	client, server, other := tcpNode(t), tcpNode(t), loopbackHost(t)
	t.Cleanup(func() { close(hold) }) // before the hosts close
	for _, h := range []host.Host{server.h, other} {
		h.SetStreamHandler(identify.ID, func(s network.Stream) {
			<-hold
			s.Reset()
		})
		client.h.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.TempAddrTTL)
	}
	data := []byte("a block fetched on a new connection")
	c := rawBlock(t, data)
	if err := server.cfg.Store.Put(c, data); err != nil {
		t.Fatal(err)
	}

	// quick is far above a loopback dial on a loaded machine, far below
	// identify's wait.
	const timeout, quick = 10 * time.Second, 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	got, err := client.fetchFrom(ctx, server.h.ID(), c)
	if err != nil {
		t.Fatalf("block GET on a new connection, identify held: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %q, want %q", got, data)
	}
	if d := time.Since(start); d > quick {
		t.Errorf("the GET on a new connection took %v: it waited for identify", d)
	}
	// Its handshake done with the exchange, the stream is kept for the
	// next one.
	if n := idleStreams(client.blocks.streams, server.h.ID()); n != 1 {
		t.Errorf("%d idle streams to the server after the GET, want 1", n)
	}

	start = time.Now()
	for op, call := range map[string]func() error{
		"GET": func() error { _, err := client.fetchFrom(ctx, other.ID(), c); return err },
		"PUT": func() error { return client.storeAt(ctx, other.ID(), c, data) },
	} {
		err := call()
		if !errors.Is(err, errProtocolRefused) || !strings.Contains(err.Error(), BlockProtocol) {
			t.Fatalf("block %s to a peer without the protocol: %v, want protocol %s refused", op, err, BlockProtocol)
		}
		t.Logf("%s refused: %v", op, err)
		// A refused stream is reset, never kept: the next exchange
		// would fail on it again.
		if n := idleStreams(client.blocks.streams, other.ID()); n != 0 {
			t.Errorf("%d idle streams to the refusing peer after the %s, want none", n, op)
		}
	}
	if d := time.Since(start); d > quick {
		t.Errorf("the refusals took %v", d)
	}
}

// Replicas that do not speak the block protocol are passed over as any
// failed replica is: a put goes to a peer past the preference list with a
// hint (hinted handoff), and a get to the replica that answers.
func TestBlockPeerRefusingTheProtocolIsPassedOver(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	ctx := context.Background()
	data := []byte("put and got past replicas that refuse the block protocol")
	c := rawBlock(t, data)
	list := r.preference(c)
	writer := r.outside(list)
	list[0].h.RemoveStreamHandler(BlockProtocol)
	if err := writer.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	writer.bg.Wait()
	if r.stores[list[0]].Has(c) {
		t.Fatal("the refusing replica stored the block")
	}
	hintHolder(t, r, list, c)

	// The other two replicas hold it; one of them refuses too.
	list[1].h.RemoveStreamHandler(BlockProtocol)
	got, err := writer.Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get with two of three replicas refusing: %q, %v", got, err)
	}
}

// idleStreams is how many idle block streams to p the pool b holds.
func idleStreams(b *blockStreams, p p2ppeer.ID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.idle[p])
}
