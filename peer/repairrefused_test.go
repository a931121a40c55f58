package peer

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/merkle"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// A repair push that its peer refuses for want of room (errPutRefused)
// ends the push of that arc at once: the rest would most likely be
// refused too, each after the repair pace, and the next round tries them
// again. They count as not moved. The peer is a pipe (blockprogress_test.go),
// whose resets carry their code, as yamux's and QUIC's do.
func TestRepairPushStopsAtARefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, st := pipeNode(t)
		client.rep = newRepairState(RepairConfig{Rate: 64 << 10}) // a block a second
		srv, srvSt := pipeNode(t)
		srv.blocks.puts = newPutRoom(0, nil)
		h := &servingHost{serve: srv.serveBlock}
		client.h = h
		const blocks = 4
		var items []merkle.Item
		for i := range blocks {
			data := bytes.Repeat([]byte{byte(i)}, 64<<10)
			c := rawBlock(t, data)
			if err := st.Put(c, data); err != nil {
				t.Fatal(err)
			}
			items = append(items, merkle.Item{Val: c.Bytes()})
		}
		start := time.Now()
		var rs RoundStats
		errs, err := client.pushArc(context.Background(), "server", items, &rs)
		if err != nil {
			t.Fatal(err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], errPutRefused) {
			t.Fatalf("errors %v; want the one refusal", errs)
		}
		if d := h.dials.Load(); d != 1 {
			t.Fatalf("%d puts sent after a refusal; want none", d-1)
		}
		if rs.Failed != blocks || rs.Blocks != 0 {
			t.Fatalf("%d blocks moved, %d not; want 0 and %d", rs.Blocks, rs.Failed, blocks)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("the push took %v: paced past the refusal", took)
		}
		if len(srvSt.m) != 0 {
			t.Fatal("the refusing peer stored a block")
		}
	})
}

// servingHost dials a new pipe at every stream asked for and serves its
// other end with serve; it counts the dials.
type servingHost struct {
	noHost
	serve func(network.Stream)
	dials atomic.Int32
}

func (h *servingHost) Network() network.Network { return pipeNet{dial: h.dial} }

func (h *servingHost) dial(p2ppeer.ID) (network.Stream, error) {
	h.dials.Add(1)
	client, server := streamPipe()
	go func() {
		if negotiated(server) {
			h.serve(server)
		}
	}()
	return client, nil
}
