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
	// Bytes written by the application (framing included) and by
	// multistream-select (each stream's header and its echo, of which the
	// harness tells: Handshake); transport overhead not.
	Bytes atomic.Int64
	// Messages: the uvarint-length-delimited frames the application wrote,
	// the framing both chordshare's ring protocol and kad-dht use
	// (multistream-select's tokens, framed alike, not).
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

type shapedStream struct {
	network.Stream
	shaper   *Shaper
	up, down *pacer

	countOpen bool // the protocol was unknown when opened: count at the first bytes (Handshake or a write)
	// handshake is multistream-select's bytes this end sent beneath
	// (Handshake), not yet paced: they go with the next write.
	handshake int

	// frame parsing, for the message count (one writer at a time)
	left    int64 // bytes of the current frame still to come
	varint  []byte
	counter *Counter

	resetOnce sync.Once
	reset     chan struct{}
}

// Handshake counts the n bytes of multistream-select this end sent beneath
// the harness's layers (mockring.Handshaker) and paces them with the next
// write, which they went out ahead of, or in one with. Called before the
// end's first write.
func (s *shapedStream) Handshake(n int) {
	s.countBytes(n)
	s.handshake += n
}

func (s *shapedStream) Write(p []byte) (int, error) {
	s.count(p)
	hs := s.handshake
	s.handshake = 0
	if hs+len(p) <= smallWrite {
		now := time.Now()
		if err := s.sleep(later(s.up.small(now, hs+len(p)), s.down.small(now, hs+len(p)))); err != nil {
			return 0, err
		}
		return s.Stream.Write(p)
	}
	// Bulk goes in chunks, each booked on the sender's uplink and then on
	// the receiver's downlink: streams sharing a link interleave, a slow
	// sender's chunk does not hold a fast one's behind it, and a reset
	// wastes one chunk of either link, not the whole write.
	//
	// A mocknet stream takes one write at a time and holds the next until
	// the previous has arrived (one link latency), so a stream of 16 KiB
	// writes would carry 16–32 KiB per latency, not its rate (600 kB/s of
	// a 10 MB/s link at a 100 ms round trip): no window, as if TCP sent one
	// segment per round trip. The link keeps sending meanwhile, as it does
	// while this goroutine waits for a CPU: each chunk is booked from where
	// the last one ended, however late this goroutine comes to it (up to
	// the links' memory), and the chunks the link would have sent by now
	// go as one write. So a large write carries its rate at any latency
	// and on a loaded machine; its bytes arrive up to that wait late, not
	// a latency per chunk. Each write starts anew from now: mocknet takes
	// no write before the previous has arrived, so a stream of writes of
	// 16 KiB still carries one per one-way delay (booked earlier, they
	// would only arrive later, bunched).
	written := 0
	var at time.Time // when the previous chunk was through
	for len(p) > 0 {
		now := time.Now()
		from := now
		if !at.IsZero() {
			from = later(at, now.Add(-memory))
		}
		n := 0
		for n < len(p) {
			k := min(len(p)-n, bulkChunk)
			at = bookChunk(s.up, s.down, now, from, k+hs) // the handshake with the first chunk
			hs = 0
			from = at
			n += k
			if at.After(now) {
				break
			}
		}
		if err := s.sleep(at); err != nil {
			return written, err
		}
		m, err := s.Stream.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// bookChunk reserves the sender's uplink up and then the receiver's
// downlink down for a chunk of k bytes that can start at from, and
// returns when it is through both.
func bookChunk(up, down *pacer, now, from time.Time, k int) time.Time {
	first, upEnd := up.book(now, from, k)
	if down == nil || down.rate <= 0 {
		return upEnd
	}
	// The bytes reach the receiver as the uplink lets them go, so its
	// downlink can take them from when the first byte arrives and cannot
	// be done before the last one has.
	earliest := later(first, upEnd.Add(-down.duration(k)))
	_, downEnd := down.book(now, earliest, k)
	return later(upEnd, downEnd)
}

// sleep waits until t or the stream's reset.
func (s *shapedStream) sleep(t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-s.reset:
		return network.ErrReset
	}
}

// count adds p to its protocol's bytes and counts the frames it completes.
func (s *shapedStream) count(p []byte) {
	if !s.countBytes(len(p)) {
		return
	}
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

// countBytes adds n to its protocol's bytes; false if the protocol is not
// known yet.
func (s *shapedStream) countBytes(n int) bool {
	if s.counter == nil {
		proto := s.Stream.Protocol()
		if proto == "" {
			return false
		}
		s.counter = s.shaper.Counter(proto)
		if s.countOpen {
			s.counter.Streams.Add(1)
		}
	}
	s.counter.Bytes.Add(int64(n))
	return true
}

func (s *shapedStream) Reset() error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.Reset()
}

func (s *shapedStream) ResetWithError(code network.StreamErrorCode) error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.ResetWithError(code)
}
