package netshape

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Shaper holds every peer's access link and shapes mocknet to them: use
// LinkOptions for each link's latency and Wrap on every stream for the
// rates. It also counts what each protocol writes, for traffic reports.
type Shaper struct {
	mu     sync.Mutex
	peers  map[p2ppeer.ID]*accessLink
	counts map[protocol.ID]*Counter
}

// accessLink paces one peer's bytes in each direction through one queue,
// whatever the stream: a peer's rate is shared by all its connections.
type accessLink struct {
	access   Access
	up, down pacer
}

// Counter is what one protocol's streams wrote, all peers together.
type Counter struct {
	// Bytes written by the application (framing included, multistream
	// negotiation and transport overhead not).
	Bytes atomic.Int64
	// Messages: the uvarint-length-delimited frames written, the framing
	// both chordshare's ring protocol and kad-dht use.
	Messages atomic.Int64
	// Streams opened by the dialling side.
	Streams atomic.Int64
}

// NewShaper makes a shaper with no peers; unknown peers are not shaped.
func NewShaper() *Shaper {
	return &Shaper{peers: map[p2ppeer.ID]*accessLink{}, counts: map[protocol.ID]*Counter{}}
}

// Set gives peer id its access link.
func (s *Shaper) Set(id p2ppeer.ID, a Access) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers[id] = &accessLink{access: a, up: pacer{rate: a.Up}, down: pacer{rate: a.Down}}
}

// Access is the access link of id (zero if unknown).
func (s *Shaper) Access(id p2ppeer.ID) Access {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.peers[id]; l != nil {
		return l.access
	}
	return Access{}
}

// LinkOptions are the mocknet options of the link between a and b: its
// one-way latency. Rates are not set on the link (they are per peer, see
// Wrap).
func (s *Shaper) LinkOptions(a, b p2ppeer.ID) mocknet.LinkOptions {
	return mocknet.LinkOptions{Latency: OneWay(s.Access(a), s.Access(b))}
}

// Counter is the traffic counter of protocol p.
func (s *Shaper) Counter(p protocol.ID) *Counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[p]
	if c == nil {
		c = &Counter{}
		s.counts[p] = c
	}
	return c
}

// Wrap returns st with its writes paced by the sending peer's uplink and
// the receiving peer's downlink, and counted under its protocol.
func (s *Shaper) Wrap(st network.Stream) network.Stream {
	c := st.Conn()
	s.mu.Lock()
	local, remote := s.peers[c.LocalPeer()], s.peers[c.RemotePeer()]
	s.mu.Unlock()
	w := &shapedStream{Stream: st, shaper: s, reset: make(chan struct{})}
	if local != nil {
		w.up = &local.up
	}
	if remote != nil {
		w.down = &remote.down
	}
	if st.Stat().Direction == network.DirOutbound {
		if p := st.Protocol(); p != "" {
			s.Counter(p).Streams.Add(1)
		} else {
			w.countOpen = true
		}
	}
	return w
}

// pacer is a queue of bytes at a fixed rate: each write is sent once the
// ones before it are, taking len/rate (a link's serialization delay). A
// small write (at most smallWrite bytes: a ring call, a request) does not
// wait behind the bulk queued before it, as a short flow's packets
// interleave with a long flow's on a real link; it still takes its own
// serialization time and delays the bulk by as much. Without that, one
// 256 KiB block queued on a 32 kbit/s uplink would hold every ring call of
// that peer for a minute.
type pacer struct {
	rate float64 // bytes per second; 0: not limited

	mu   sync.Mutex
	next time.Time // when the bytes queued so far are through
}

// through queues n bytes that can start no earlier than from and returns
// when they are through.
func (p *pacer) through(from time.Time, n int) time.Time {
	if p == nil || p.rate <= 0 {
		return from
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d := time.Duration(float64(n) / p.rate * float64(time.Second))
	if n <= smallWrite {
		if p.next.After(from) {
			p.next = p.next.Add(d)
		}
		return from.Add(d)
	}
	start := from
	if p.next.After(start) {
		start = p.next
	}
	p.next = start.Add(d)
	return p.next
}

// smallWrite is the largest write that does not queue behind bulk data.
const smallWrite = 2048

type shapedStream struct {
	network.Stream
	shaper   *Shaper
	up, down *pacer

	countOpen bool // the protocol was unknown when opened: count at the first write

	// frame parsing, for the message count (one writer at a time)
	left    int64 // bytes of the current frame still to come
	varint  []byte
	counter *Counter

	resetOnce sync.Once
	reset     chan struct{}
}

func (s *shapedStream) Write(p []byte) (int, error) {
	s.count(p)
	now := time.Now()
	end := s.up.through(now, len(p))
	if s.down != nil && s.down.rate > 0 {
		// The bytes reach the receiver's queue as the sender's link lets
		// them go: start no earlier than that, so the slower side rules.
		start := end.Add(-time.Duration(float64(len(p)) / s.down.rate * float64(time.Second)))
		if start.Before(now) {
			start = now
		}
		if e := s.down.through(start, len(p)); e.After(end) {
			end = e
		}
	}
	if d := time.Until(end); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.reset:
			t.Stop()
			return 0, network.ErrReset
		}
	}
	return s.Stream.Write(p)
}

// count adds p to its protocol's bytes and counts the frames it completes.
func (s *shapedStream) count(p []byte) {
	if s.counter == nil {
		proto := s.Stream.Protocol()
		if proto == "" {
			return
		}
		s.counter = s.shaper.Counter(proto)
		if s.countOpen {
			s.counter.Streams.Add(1)
		}
	}
	s.counter.Bytes.Add(int64(len(p)))
	for len(p) > 0 {
		if s.left > 0 {
			k := min(int64(len(p)), s.left)
			s.left -= k
			p = p[k:]
			continue
		}
		s.varint = append(s.varint, p[0])
		p = p[1:]
		if s.varint[len(s.varint)-1]&0x80 != 0 && len(s.varint) < binary.MaxVarintLen64 {
			continue
		}
		n, _ := binary.Uvarint(s.varint)
		s.varint = s.varint[:0]
		s.left = int64(n)
		s.counter.Messages.Add(1)
	}
}

func (s *shapedStream) Reset() error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.Reset()
}

func (s *shapedStream) ResetWithError(code network.StreamErrorCode) error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.ResetWithError(code)
}
