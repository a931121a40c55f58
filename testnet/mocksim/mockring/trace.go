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
	// there with it) and its last write (the answer) made.
	Served, Replied time.Time
	// Bytes the caller wrote (the request) and the callee wrote (the
	// answer), each with its end's multistream-select handshake.
	ReqBytes, RespBytes int
}

// Total is the caller's time from NewStream to the answer.
func (c Call) Total() time.Duration { return c.Answered.Sub(c.Open) }

// Work is the callee's time from its handler's start to its answer.
func (c Call) Work() time.Duration { return c.Replied.Sub(c.Served) }

// CallTracer collects the Calls of a Net whose streams it sees opened and
// served (Net.Trace). Calls that got no answer are dropped.
type CallTracer struct {
	mu    sync.Mutex
	calls []Call
	// callees are the callee ends served, by their stream's number, until
	// their caller's end has claimed them and both are done.
	callees map[int64]*calleeEnd
}

// calleeEnd is the callee's end of a call: its peers from the time it was
// served, its times once done, and the caller's end once that claimed it.
type calleeEnd struct {
	from, to     p2ppeer.ID
	done, caller *Call
}

// maxInterleave is how far past a caller's stream number its callee's is
// looked for. mocknet numbers a stream's two ends one after the other,
// the dialer's first (newStreamPair), from one counter: streams other
// goroutines make at the same instant can take the numbers in between
// (a 300-peer sim lookups run left 65 ends unmatched beside 10,773
// calls traced when only the next number was tried).
const maxInterleave = 8

// NewCallTracer makes an empty tracer.
func NewCallTracer() *CallTracer { return &CallTracer{callees: map[int64]*calleeEnd{}} }

// Take returns the calls completed since the last Take and forgets them.
func (t *CallTracer) Take() []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.calls
	t.calls = nil
	return out
}

// serve registers the callee's end of s, served at served, and wraps it.
// It is registered now, not once done: a caller that got its answer then
// finds it however the two ends' closes are ordered.
func (t *CallTracer) serve(s network.Stream, served time.Time) network.Stream {
	ts := &tracedStream{Stream: s, t: t}
	ts.call.Served = served
	if n, err := strconv.ParseInt(s.ID(), 10, 64); err == nil {
		conn := s.Conn()
		t.mu.Lock()
		t.callees[n] = &calleeEnd{from: conn.RemotePeer(), to: conn.LocalPeer()}
		t.mu.Unlock()
	}
	return ts
}

// calleeDone records the callee's end of stream id, done.
func (t *CallTracer) calleeDone(id string, c Call) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.callees[n]
	if e == nil {
		return
	}
	e.done = &c
	if e.caller != nil {
		t.complete(n, e)
	}
}

// callerDone claims the callee's end of the caller's stream id: the first
// served from c.From to c.To in the numbers after id's, unclaimed. A call
// without an answer is dropped here: its callee may never have been
// served, and it would claim a later call's.
func (t *CallTracer) callerDone(id string, c Call) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || c.Answered.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := int64(1); k <= maxInterleave; k++ {
		e := t.callees[n+k]
		if e == nil || e.caller != nil || e.from != c.From || e.to != c.To {
			continue
		}
		e.caller = &c
		if e.done != nil {
			t.complete(n+k, e)
		}
		return
	}
}

// complete records the call of callee end e (number n), both ends done.
// t.mu held.
func (t *CallTracer) complete(n int64, e *calleeEnd) {
	delete(t.callees, n)
	c := *e.caller
	c.Served, c.Replied, c.RespBytes = e.done.Served, e.done.Replied, e.done.RespBytes
	t.calls = append(t.calls, c)
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

// SetProtocol is a stream opened on the network getting its protocol.
func (s *tracedStream) SetProtocol(pid protocol.ID) error {
	s.mu.Lock()
	s.call.Protocol = pid
	s.mu.Unlock()
	return s.Stream.SetProtocol(pid)
}

// Handshake counts the handshake's bytes as the request's (the caller's
// header) or the answer's (the callee's echo), and passes them on to the
// layers beneath.
func (s *tracedStream) Handshake(n int) {
	s.mu.Lock()
	if s.caller {
		s.call.ReqBytes += n
	} else {
		s.call.RespBytes += n
	}
	s.mu.Unlock()
	handshake(s.Stream, n)
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
		s.t.callerDone(s.Stream.ID(), c)
	} else {
		s.t.calleeDone(s.Stream.ID(), c)
	}
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
