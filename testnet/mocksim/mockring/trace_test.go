package mockring

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Two calls whose streams were made at the same instant, their numbers
// interleaved (caller A 10, caller B 11, callee A 12, callee B 13), are
// both traced, each with its own callee's end, whichever end closes first.
// Matching a caller to the number right after its own dropped both.
func TestCallTracerMatchesInterleavedStreams(t *testing.T) {
	tr := NewCallTracer()
	t0 := time.Now()
	call := func(id, calleeID string, from, to p2ppeer.ID) (caller, callee network.Stream) {
		cs := &tracedStream{Stream: &fakeStream{id: id}, t: tr, caller: true}
		cs.call = Call{From: from, To: to, Open: t0, Opened: t0}
		return cs, tr.serve(&fakeStream{id: calleeID, conn: fakeConn{remote: from, local: to}}, t0)
	}
	aCaller, aCallee := call("10", "12", "a", "b")
	bCaller, bCallee := call("11", "13", "c", "d")
	for _, x := range []struct {
		caller, callee network.Stream
		answer         int
	}{{aCaller, aCallee, 3}, {bCaller, bCallee, 5}} {
		x.caller.Write([]byte("req"))
		x.callee.Write(make([]byte, x.answer))
		x.caller.Read(make([]byte, 8))
	}
	aCallee.Close()
	aCaller.Close()
	bCaller.Close()
	bCallee.Close()
	// A call that got no answer, whose callee was never served, does not
	// take the end of the same peers' next call.
	lost, _ := call("20", "21", "a", "b")
	delete(tr.callees, 21)
	next, nextCallee := call("22", "23", "a", "b")
	next.Write([]byte("req"))
	nextCallee.Write(make([]byte, 3))
	lost.Close()
	next.Read(make([]byte, 8))
	nextCallee.Close()
	next.Close()
	calls := tr.Take()
	if len(calls) != 3 {
		t.Fatalf("%d calls traced, want 3: %+v", len(calls), calls)
	}
	for _, c := range calls {
		if want := map[p2ppeer.ID]int{"a": 3, "c": 5}[c.From]; c.RespBytes != want || c.ReqBytes != 3 {
			t.Errorf("call from %s to %s: %d bytes answered, %d asked; want %d, 3", c.From, c.To, c.RespBytes, c.ReqBytes, want)
		}
	}
	if len(tr.callees) != 0 {
		t.Errorf("%d callee ends left", len(tr.callees))
	}
}

type fakeStream struct {
	network.Stream
	id   string
	conn network.Conn
}

func (s *fakeStream) ID() string                  { return s.id }
func (s *fakeStream) Conn() network.Conn          { return s.conn }
func (s *fakeStream) Write(p []byte) (int, error) { return len(p), nil }
func (s *fakeStream) Read(p []byte) (int, error)  { return copy(p, "answer"), nil }
func (s *fakeStream) Close() error                { return nil }

type fakeConn struct {
	network.Conn
	remote, local p2ppeer.ID
}

func (c fakeConn) RemotePeer() p2ppeer.ID { return c.remote }
func (c fakeConn) LocalPeer() p2ppeer.ID  { return c.local }
