package mockring

import (
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Call is one request-response exchange on a stream of its own, timed at
// both ends: where a call's time goes (opening the stream, the request's
// way there, the callee's work, the answer's way back).
type Call struct {
	From, To p2ppeer.ID
	Protocol protocol.ID
	// At the caller: NewStream called and returned, the first write
	// (the request) and the first read that returned bytes (the answer).
	Open, Opened, Sent, Answered time.Time
	// At the callee: its handler called (the request's first bytes are
	// there with it) and its last write (the answer) made. Zero if the
	// callee's end was not seen.
	Served, Replied time.Time
	// Bytes the caller wrote (the request) and the callee wrote (the answer).
	ReqBytes, RespBytes int

	// the callee's view of the peers, to check the ends were matched right
	servedFrom, servedTo p2ppeer.ID
}

// Total is the caller's time from NewStream to the answer.
func (c Call) Total() time.Duration { return c.Answered.Sub(c.Open) }

// Work is the callee's time from its handler's start to its answer.
func (c Call) Work() time.Duration { return c.Replied.Sub(c.Served) }

// CallTracer collects the Calls of a Net whose streams it sees opened and
// served (Net.Trace). Calls that got no answer are dropped.
type CallTracer struct {
	mu      sync.Mutex
	calls   []Call
	pending map[string]*Call // by the callee's stream ID, until both ends are done
}

// NewCallTracer makes an empty tracer.
func NewCallTracer() *CallTracer { return &CallTracer{pending: map[string]*Call{}} }

// Take returns the calls completed since the last Take and forgets them.
func (t *CallTracer) Take() []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.calls
	t.calls = nil
	return out
}

// merge records one end of a call, its stream done; the call is complete
// when both ends are.
func (t *CallTracer) merge(key string, end func(*Call)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.pending[key]
	if c == nil {
		c = &Call{}
		t.pending[key] = c
	}
	end(c)
	if c.Open.IsZero() || c.Served.IsZero() {
		return // the other end is still to come
	}
	delete(t.pending, key)
	if !c.Answered.IsZero() && c.servedFrom == c.From && c.servedTo == c.To {
		t.calls = append(t.calls, *c)
	}
}

// calleeKey is the ID of the callee's end of a stream: mocknet numbers the
// two ends consecutively, the dialer's first (newStreamPair). Another
// stream made at the same instant can take the number in between: merge
// then drops the call, whose ends name different peers.
func calleeKey(callerID string) string {
	n, err := strconv.ParseInt(callerID, 10, 64)
	if err != nil {
		return ""
	}
	return strconv.FormatInt(n+1, 10)
}

// tracedStream times the first write and the first read of a caller's
// stream, or the handler's last write of a callee's.
type tracedStream struct {
	network.Stream
	t      *CallTracer
	caller bool

	mu                 sync.Mutex
	call               Call
	firstWrite, answer bool
	closed             bool
}

func (s *tracedStream) Write(p []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	if s.caller && !s.firstWrite {
		s.call.Sent, s.firstWrite = now, true
	} else if !s.caller {
		s.call.Replied = now
	}
	if s.caller {
		s.call.ReqBytes += len(p)
	} else {
		s.call.RespBytes += len(p)
	}
	s.mu.Unlock()
	return s.Stream.Write(p)
}

func (s *tracedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 && s.caller {
		now := time.Now()
		s.mu.Lock()
		if !s.answer {
			s.call.Answered, s.answer = now, true
		}
		s.mu.Unlock()
	}
	return n, err
}

func (s *tracedStream) finish() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	c := s.call
	s.mu.Unlock()
	if s.caller {
		s.t.merge(calleeKey(s.Stream.ID()), func(d *Call) {
			d.From, d.To, d.Protocol = c.From, c.To, c.Protocol
			d.Open, d.Opened, d.Sent, d.Answered = c.Open, c.Opened, c.Sent, c.Answered
			d.ReqBytes = c.ReqBytes
		})
		return
	}
	conn := s.Stream.Conn()
	s.t.merge(s.Stream.ID(), func(d *Call) {
		d.Served, d.Replied = c.Served, c.Replied
		d.RespBytes = c.RespBytes
		d.servedFrom, d.servedTo = conn.RemotePeer(), conn.LocalPeer()
	})
}

func (s *tracedStream) Close() error {
	err := s.Stream.Close()
	s.finish()
	return err
}

func (s *tracedStream) Reset() error {
	err := s.Stream.Reset()
	s.finish()
	return err
}

func (s *tracedStream) ResetWithError(code network.StreamErrorCode) error {
	err := s.Stream.ResetWithError(code)
	s.finish()
	return err
}
