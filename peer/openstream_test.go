package peer

import (
	"bufio"
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
