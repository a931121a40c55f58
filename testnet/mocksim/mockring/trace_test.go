package mockring

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

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

// A stream opened on the network (peer's openStream) carries the lazy
// multistream handshake: its header goes out in one write with the
// request, beneath the harness's layers (delayedClose, the shaper, the
// tracer), which see the request and the answer only, as on a stream
// host.NewStream negotiated.
func TestHandshakePassesBeneathTheLayers(t *testing.T) {
	var echo []byte
	for _, tok := range []string{msmux.ProtocolID, "/p"} {
		echo = binary.AppendUvarint(echo, uint64(len(tok)+1))
		echo = append(echo, tok+"\n"...)
	}
	raw := &scriptedStream{fakeStream: fakeStream{id: "1"}, in: [][]byte{echo, []byte("answer")}}
	below := &handshakeBelow{Stream: raw}
	layers := &recordingStream{Stream: below}
	top := &handshakeAbove{Stream: layers, below: below}
	if err := top.SetProtocol("/p"); err != nil {
		t.Fatal(err)
	}
	lazy := msmux.NewMSSelect(top, protocol.ID("/p"))
	if _, err := lazy.Write([]byte("req")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := lazy.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if want := string(echo) + "req"; len(raw.out) != 1 || string(raw.out[0]) != want {
		t.Errorf("written beneath: %q, want one write %q", raw.out, want)
	}
	if string(layers.out) != "req" || string(layers.in) != "answer" {
		t.Errorf("the layers saw %q written and %q read, want the request and the answer", layers.out, layers.in)
	}
}

// scriptedStream reads its chunks in turn and keeps what is written.
type scriptedStream struct {
	fakeStream
	in  [][]byte
	out [][]byte
}

func (s *scriptedStream) SetProtocol(protocol.ID) error { return nil }

func (s *scriptedStream) Write(p []byte) (int, error) {
	s.out = append(s.out, append([]byte(nil), p...))
	return len(p), nil
}

func (s *scriptedStream) Read(p []byte) (int, error) {
	for len(s.in) > 0 && len(s.in[0]) == 0 {
		s.in = s.in[1:]
	}
	if len(s.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.in[0])
	s.in[0] = s.in[0][n:]
	return n, nil
}

// recordingStream keeps the bytes written and read through it.
type recordingStream struct {
	network.Stream
	out, in []byte
}

func (s *recordingStream) Write(p []byte) (int, error) {
	s.out = append(s.out, p...)
	return s.Stream.Write(p)
}

func (s *recordingStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.in = append(s.in, p[:n]...)
	return n, err
}
