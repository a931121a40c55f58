// Package mockring runs a ring of peer.Node on libp2p's mocknet and measures
// it: lookups checked against the true ring, maintenance traffic with the
// timers running, memory per peer, and lookups after a mass crash. The
// mocksim program drives it; its tests run a small ring.
package mockring

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// LinkMode says when two mocknet peers get the link that lets them dial
// each other.
type LinkMode int

const (
	// LinkLazy links a pair the first time one of them dials the other. A
	// ring peer only ever talks to a few hundred others, so this costs
	// O(N·log N) links instead of O(N²), and a link's options can be chosen
	// per pair when it is made.
	LinkLazy LinkMode = iota
	// LinkAllPairs links every pair once, up front: what mocknet.LinkAll
	// does, without LinkAll's second link per pair and link to self.
	LinkAllPairs
)

func (m LinkMode) String() string {
	if m == LinkAllPairs {
		return "pairs"
	}
	return "lazy"
}

// ParseLinkMode reads "lazy" or "pairs".
func ParseLinkMode(s string) (LinkMode, error) {
	switch s {
	case "lazy":
		return LinkLazy, nil
	case "pairs":
		return LinkAllPairs, nil
	}
	return 0, fmt.Errorf("link mode %q: want lazy or pairs", s)
}

// Net is a mocknet whose peers can crash for good: a crashed peer's links are
// cut and never made again, and its host is closed.
type Net struct {
	mn   mocknet.Mocknet
	mode LinkMode

	mu       sync.Mutex
	opts     mocknet.LinkOptions
	links    map[p2ppeer.ID]map[p2ppeer.ID]mocknet.Link // both directions
	dead     map[p2ppeer.ID]bool
	numLinks int
	// linkFor, when set, gives each pair its own link options (Shape).
	linkFor func(a, b p2ppeer.ID) mocknet.LinkOptions
	// wrap, when set, wraps every stream opened or accepted from then on.
	wrap func(network.Stream) network.Stream
	// tracer, when set, times every call from then on. Atomic: every
	// stream opened or served reads it, traced or not.
	tracer atomic.Pointer[CallTracer]
}

// Trace times every stream opened or served from now on with t (nil: stop).
func (n *Net) Trace(t *CallTracer) { n.tracer.Store(t) }

// NewNet makes an empty network whose links carry opts.
func NewNet(mode LinkMode, opts mocknet.LinkOptions) *Net {
	mn := mocknet.New()
	mn.SetLinkDefaults(opts)
	return &Net{mn: mn, mode: mode, opts: opts, links: map[p2ppeer.ID]map[p2ppeer.ID]mocknet.Link{}, dead: map[p2ppeer.ID]bool{}}
}

// Mocknet is the underlying mocknet.
func (n *Net) Mocknet() mocknet.Mocknet { return n.mn }

// Links is the number of links made so far.
func (n *Net) Links() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.numLinks
}

// AddPeers makes count hosts whose keys come from rng, so a seed fixes the
// peer IDs and with them the ring layout (mocknet's GenPeer draws keys from
// crypto/rand). In LinkAllPairs mode every pair is linked before returning.
func (n *Net) AddPeers(count int, rng *rand.Rand) ([]host.Host, error) {
	hosts := make([]host.Host, 0, count)
	for range count {
		sk, id, err := PeerKey(rng)
		if err != nil {
			return nil, err
		}
		// The address mocknet's GenPeer would give: a blackholed IPv6
		// (100::/64) ending in the peer ID's last bytes.
		ip := net.ParseIP("100::")
		copy(ip[len(ip)-8:], id[len(id)-8:])
		addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip6/%s/tcp/4242", ip))
		if err != nil {
			return nil, err
		}
		h, err := n.mn.AddPeer(sk, addr)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, &linkingHost{Host: h, net: n})
	}
	if n.mode == LinkAllPairs {
		ids := n.mn.Peers()
		for i, a := range ids {
			for _, b := range ids[i+1:] {
				if err := n.link(a, b); err != nil {
					return nil, err
				}
			}
		}
	}
	return hosts, nil
}

// link makes the link between a and b unless there is one or either is dead.
func (n *Net) link(a, b p2ppeer.ID) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a == b || n.dead[a] || n.dead[b] || n.links[a][b] != nil {
		return nil
	}
	l, err := n.mn.LinkPeers(a, b)
	if err != nil {
		return err
	}
	if n.linkFor != nil {
		l.SetOptions(n.linkFor(a, b))
	}
	for _, p := range [][2]p2ppeer.ID{{a, b}, {b, a}} {
		if n.links[p[0]] == nil {
			n.links[p[0]] = map[p2ppeer.ID]mocknet.Link{}
		}
		n.links[p[0]][p[1]] = l
	}
	n.numLinks++
	return nil
}

// SetLinkOptions changes every link, present and future.
func (n *Net) SetLinkOptions(opts mocknet.LinkOptions) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.opts = opts
	n.mn.SetLinkDefaults(opts)
	for a, m := range n.links {
		for b, l := range m {
			if a < b { // each link is in the map twice
				l.SetOptions(opts)
			}
		}
	}
}

// Shape gives every link, present and future, the options linkFor says for
// its pair, and wraps every stream opened or accepted from now on with wrap
// (nil: no wrapping). Streams already open keep their wrapping; ring calls
// open a stream each, so they all see the change at once.
func (n *Net) Shape(linkFor func(a, b p2ppeer.ID) mocknet.LinkOptions, wrap func(network.Stream) network.Stream) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkFor, n.wrap = linkFor, wrap
	for a, m := range n.links {
		for b, l := range m {
			if a < b { // each link is in the map twice
				l.SetOptions(linkFor(a, b))
			}
		}
	}
}

// Crash kills the peer with no goodbye. Closing its host is not enough:
// mocknet would let others dial it again over the remaining links and
// reach a host that serves nothing, instead of failing to connect; and it
// closes the other ends of the host's connections in goroutines of their
// own, so for a moment others could still open streams to the dead host.
// So its links go first and none is made again, and every other end is
// closed before Crash returns.
func (n *Net) Crash(h host.Host) error {
	id := h.ID()
	n.mu.Lock()
	n.dead[id] = true
	var links []mocknet.Link
	var partners []p2ppeer.ID
	for other, l := range n.links[id] {
		links = append(links, l)
		partners = append(partners, other)
		delete(n.links[other], id)
	}
	delete(n.links, id)
	n.mu.Unlock()
	var errs []error
	for _, l := range links {
		errs = append(errs, n.mn.Unlink(l))
	}
	for _, p := range partners {
		errs = append(errs, n.mn.Net(p).ClosePeer(id))
	}
	errs = append(errs, h.Close())
	return errors.Join(errs...)
}

// Alive reports whether the peer has not crashed.
func (n *Net) Alive(id p2ppeer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.dead[id]
}

// Close shuts every host down.
func (n *Net) Close() error { return n.mn.Close() }

// linkingHost is a mocknet host that makes the link to a peer before
// dialing it, and whose streams close as real ones do (delayedClose). Every
// dial of a ring node goes through NewStream or Connect on the host it was
// given, or NewStream on its Network (ring and block streams: peer's
// openStream), and every inbound ring or block stream through a handler
// set on it, so wrapping those is enough.
type linkingHost struct {
	host.Host
	net *Net
}

// Network is the host's network with its NewStream wrapped. The host's
// own uses of its network (identify, basichost's NewStream) are not.
func (h *linkingHost) Network() network.Network {
	return &linkingNetwork{Network: h.Host.Network(), h: h}
}

// linkingNetwork opens streams as linkingHost.NewStream does, a layer
// lower: no protocol is negotiated yet, the opener selects it lazily.
type linkingNetwork struct {
	network.Network
	h *linkingHost
}

func (n *linkingNetwork) NewStream(ctx context.Context, p p2ppeer.ID) (network.Stream, error) {
	if err := n.h.net.link(n.h.ID(), p); err != nil {
		return nil, err
	}
	open := time.Now()
	s, err := n.Network.NewStream(ctx, p)
	if err != nil {
		return nil, err
	}
	below := &handshakeBelow{Stream: s}
	return &handshakeAbove{Stream: n.h.net.opened(below, n.h.ID(), p, open), below: below}, nil
}

// A stream opened on the network carries the opener's lazy
// multistream-select handshake (peer's openStream) ahead of its first
// bytes each way: [multistream's ID, the protocol] as the header, the same
// as the echo. The harness's layers (delayedClose, the shaper, the tracer)
// must see the request and the answer only, as they do on a stream that
// host.NewStream negotiated, and the header must still go out in one write
// with the request, as it does beneath them there. So handshakeAbove, over
// the layers, hands the header to handshakeBelow, under them, which puts
// it in front of the next write, and reads the echo from beneath them.
// The layers are told of the header's size instead (Handshaker), as they
// are of the handshakes beneath host.NewStream and the handler's.
type handshakeAbove struct {
	network.Stream // the harness's layers over below
	below          *handshakeBelow

	mu      sync.Mutex
	out, in int // the handshake's bytes still to pass each way
}

// SetProtocol is the opener selecting pid: its handshake comes next.
func (s *handshakeAbove) SetProtocol(pid protocol.ID) error {
	s.mu.Lock()
	s.out = mssHeaderLen(pid)
	s.in = s.out
	s.mu.Unlock()
	if err := s.Stream.SetProtocol(pid); err != nil {
		return err
	}
	handshake(s.Stream, s.out)
	return nil
}

// mssHeaderLen is the bytes of multistream-select's header for pid, and of
// its echo when pid is accepted: multistream's ID, then pid.
func mssHeaderLen(pid protocol.ID) int {
	return mssTokenLen(msmux.ProtocolID) + mssTokenLen(string(pid))
}

// mssTokenLen is the bytes of one multistream-select token on the wire:
// its length as a uvarint, the token, a newline.
func mssTokenLen(tok string) int {
	return len(binary.AppendUvarint(nil, uint64(len(tok)+1))) + len(tok) + 1
}

// Handshaker is a stream layer (Net.Shape's wrap, the tracer) told of the
// multistream-select bytes its end sends beneath the harness's layers: the
// opener's header (basichost's, or the lazy one of a stream opened on the
// network), or the callee's echo (basichost's, before the handler). They
// cross the link like any other bytes, ahead of the end's first write.
type Handshaker interface {
	// Handshake is called once, with the handshake's bytes, before the
	// end's first write.
	Handshake(n int)
}

// handshake tells s of n bytes of handshake if it is a Handshaker.
func handshake(s network.Stream, n int) {
	if h, ok := s.(Handshaker); ok {
		h.Handshake(n)
	}
}

func (s *handshakeAbove) Write(p []byte) (int, error) {
	s.mu.Lock()
	k := min(len(p), s.out)
	s.out -= k
	s.mu.Unlock()
	if k > 0 {
		s.below.hold(p[:k])
		if k == len(p) { // the header alone (a flush): nothing follows it
			return k, s.below.flush()
		}
	}
	n, err := s.Stream.Write(p[k:])
	return k + n, err
}

func (s *handshakeAbove) Read(p []byte) (int, error) {
	s.mu.Lock()
	k := min(len(p), s.in)
	s.mu.Unlock()
	if k == 0 {
		return s.Stream.Read(p)
	}
	n, err := s.below.Stream.Read(p[:k])
	s.mu.Lock()
	s.in -= n
	s.mu.Unlock()
	return n, err
}

// handshakeBelow is the network's stream under the harness's layers; it
// writes the header it holds in front of the next bytes.
type handshakeBelow struct {
	network.Stream

	mu   sync.Mutex
	held []byte
}

func (s *handshakeBelow) hold(p []byte) {
	s.mu.Lock()
	s.held = append(s.held, p...)
	s.mu.Unlock()
}

func (s *handshakeBelow) take() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held
	s.held = nil
	return h
}

func (s *handshakeBelow) Write(p []byte) (int, error) {
	h := s.take()
	if len(h) == 0 {
		return s.Stream.Write(p)
	}
	n, err := s.Stream.Write(append(h, p...))
	return max(n-len(h), 0), err
}

func (s *handshakeBelow) flush() error {
	if h := s.take(); len(h) > 0 {
		_, err := s.Stream.Write(h)
		return err
	}
	return nil
}

func (h *linkingHost) Connect(ctx context.Context, ai p2ppeer.AddrInfo) error {
	if err := h.net.link(h.ID(), ai.ID); err != nil {
		return err
	}
	return h.Host.Connect(ctx, ai)
}

func (h *linkingHost) NewStream(ctx context.Context, p p2ppeer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.net.link(h.ID(), p); err != nil {
		return nil, err
	}
	open := time.Now()
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	out := h.net.opened(s, h.ID(), p, open)
	// basichost selected the protocol beneath: lazily, its header going
	// out with the first write, or with a round trip of its own, whose
	// bytes are then counted with the first write as well.
	handshake(out, mssHeaderLen(s.Protocol()))
	return out, nil
}

// opened wraps a caller's new stream s, opened at open: delayedClose, the
// shaper's wrap, and the tracer's end if tracing.
func (n *Net) opened(s network.Stream, from, to p2ppeer.ID, open time.Time) network.Stream {
	out := n.delayClose(s)
	if t := n.tracer.Load(); t != nil {
		ts := &tracedStream{Stream: out, t: t, caller: true}
		ts.call = Call{From: from, To: to, Protocol: s.Protocol(), Open: open, Opened: time.Now()}
		out = ts
	}
	return out
}

func (h *linkingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		served := time.Now()
		out := h.net.delayClose(s)
		if t := h.net.tracer.Load(); t != nil {
			out = t.serve(out, served)
		}
		// basichost echoed the opener's header before calling the
		// handler (multistream-select), beneath the layers.
		handshake(out, mssHeaderLen(s.Protocol()))
		handler(out)
	})
}

// latency is the one-way delay of the link between a and b.
func (n *Net) latency(a, b p2ppeer.ID) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.links[a][b]; l != nil {
		return l.Options().Latency
	}
	return n.opts.Latency
}

func (n *Net) delayClose(s network.Stream) network.Stream {
	c := s.Conn()
	var out network.Stream = &delayedClose{
		Stream:      s,
		latency:     n.latency(c.LocalPeer(), c.RemotePeer()),
		closedWrite: make(chan struct{}),
		reset:       make(chan struct{}),
	}
	n.mu.Lock()
	wrap := n.wrap
	n.mu.Unlock()
	if wrap != nil {
		out = wrap(out)
	}
	return out
}

// delayedClose works around two ways mocknet streams (go-libp2p v0.51.0)
// differ from real ones when a request is written and its write side
// closed before the response is read, as every ring call does:
//
//   - A stream buffers writes below 256 bytes until their arrival time,
//     but CloseWrite delivers the buffer at once. A small ring request
//     would cross a 10 ms link in microseconds. So the close is held back
//     until the last write has arrived. (Only the latency is known here:
//     bytes held back by a link's rate limit can still arrive early.)
//   - Streams are synchronous pipes: CloseWrite returns only once the
//     other side has read everything. The other side first answers the
//     multistream handshake, in two small writes; when they are not
//     delivered together (a busy machine), the second waits for the asker
//     to read the first, while the asker waits in CloseWrite for its
//     request to be read: both stall until the asker's timeout. So
//     CloseWrite closes in the background and returns at once, as it does
//     on yamux, and its error is dropped: a stream that broke fails the
//     read that follows anyway. The background close ends when the other
//     side has read everything or the stream is reset, and callers reset
//     their streams when their context ends.
type delayedClose struct {
	network.Stream
	latency time.Duration

	mu        sync.Mutex
	lastWrite time.Time

	closeWriteOnce sync.Once
	closedWrite    chan struct{} // closed once the background CloseWrite returned
	resetOnce      sync.Once
	reset          chan struct{} // closed by Reset: pending closes stop waiting
}

func (s *delayedClose) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.lastWrite = time.Now()
	s.mu.Unlock()
	return s.Stream.Write(p)
}

// wait sleeps until the last write has arrived, or the stream is reset.
func (s *delayedClose) wait() {
	s.mu.Lock()
	d := time.Until(s.lastWrite.Add(s.latency))
	s.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.reset:
	}
}

func (s *delayedClose) CloseWrite() error {
	s.closeWriteOnce.Do(func() {
		go func() {
			defer close(s.closedWrite)
			s.wait()
			_ = s.Stream.CloseWrite()
		}()
	})
	return nil
}

// Close waits for the write side to close, as a mocknet Close does.
func (s *delayedClose) Close() error {
	_ = s.CloseWrite()
	select {
	case <-s.closedWrite:
	case <-s.reset:
	}
	return s.Stream.Close()
}

func (s *delayedClose) Reset() error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.Reset()
}

func (s *delayedClose) ResetWithError(code network.StreamErrorCode) error {
	s.resetOnce.Do(func() { close(s.reset) })
	return s.Stream.ResetWithError(code)
}
