package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"chordshare/chord"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// RingProtocol is the stream protocol of the ring RPCs. 1.1.0: notify rides
// on NEIGHBORS, and CHANGED and OWNS are new; 1.0.0 peers cannot join.
const RingProtocol = "/chordshare/ring/1.1.0"

const (
	// maxRingMessage caps one ring message. The largest legitimate one is a
	// successor list of 16 refs with a few addresses each, about 3 KiB.
	maxRingMessage = 16 << 10
	// maxAddrsPerRef and maxAddrLen bound the dialing hints in a ref.
	maxAddrsPerRef = 8
	maxAddrLen     = 256
	// maxRefsPerMessage bounds any list of refs.
	maxRefsPerMessage = 64
	// addrHintTTL is how long addresses learned from a ref are kept.
	addrHintTTL = 10 * time.Minute
	// closeHandshakeWait bounds how long closing a stream waits for the
	// other side's multistream handshake (basichost's negotiation timeout).
	closeHandshakeWait = 10 * time.Second
)

// Stream reset codes for ring streams.
const (
	resetBadMessage network.StreamErrorCode = 1
	resetTimeout    network.StreamErrorCode = 2
)

var errBadMessage = errors.New("malformed ring message")

// writeMsg and readMsg frame a protobuf message with a varint length.
func writeMsg(s network.Stream, m proto.Message) error {
	w := bufio.NewWriter(s)
	if _, err := protodelim.MarshalTo(w, m); err != nil {
		return err
	}
	return w.Flush()
}

// readMsg reads one length-delimited message of at most maxSize bytes.
func readMsg(r *bufio.Reader, m proto.Message, maxSize int64) error {
	if err := (protodelim.UnmarshalOptions{MaxSize: maxSize}).UnmarshalFrom(r, m); err != nil {
		return readError(err)
	}
	return nil
}

// requestResponse is one RPC on a stream of its own: open it, send req,
// close our side, read one response of at most maxSize bytes. The stream is
// bounded by ctx and reset on any failure.
func requestResponse(ctx context.Context, h host.Host, p p2ppeer.ID, pid protocol.ID, req, resp proto.Message, maxSize int64) error {
	s, err := openStream(ctx, h, p, pid)
	if err != nil {
		return err
	}
	defer s.Close()
	defer bound(ctx, s)()
	if err := writeMsg(s, req); err != nil {
		s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return err
	}
	if err := readMsg(bufio.NewReader(s), resp, maxSize); err != nil {
		s.Reset()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

// openStream opens a stream to p for pid without waiting for identify.
// host.NewStream (basichost) does what this does, but on a new connection
// first waits for identify to finish, so as to learn which protocols p
// speaks: on TCP a round trip after the connection's handshakes, paid by
// the first call to every peer. A ring call or a block exchange needs none
// of what identify learns: the protocol is selected lazily instead, as
// basichost does for one the peerstore already knows (multistream-select's
// header goes out with the first write), and a peer that does not speak
// pid answers "na", or resets the stream (basichost, once it has read past
// our header), which the first read, or a write after the reset (a PUT's
// payload), returns as errProtocolRefused. Identify still runs, in the
// background (the network's notifiee starts it).
func openStream(ctx context.Context, h host.Host, p p2ppeer.ID, pid protocol.ID) (network.Stream, error) {
	s, err := h.Network().NewStream(ctx, p) // dials if there is no connection
	if err != nil {
		return nil, fmt.Errorf("opening a stream: %w", err)
	}
	if err := s.SetProtocol(pid); err != nil {
		_ = s.ResetWithError(network.StreamResourceLimitExceeded)
		return nil, fmt.Errorf("opening a stream: %w", err)
	}
	return &lazyStream{Stream: s, rw: msmux.NewMSSelect(s, pid), pid: pid}, nil
}

// errProtocolRefused is a peer that does not speak a stream's protocol.
var errProtocolRefused = errors.New("protocol refused")

// lazyStream is a stream whose protocol is selected on first use: the
// wrapper basichost returns for a protocol known to be supported.
type lazyStream struct {
	network.Stream
	rw  msmux.LazyConn
	pid protocol.ID
}

func (s *lazyStream) Read(b []byte) (int, error) {
	n, err := s.rw.Read(b)
	return n, s.refused(err)
}

func (s *lazyStream) Write(b []byte) (int, error) {
	n, err := s.rw.Write(b)
	return n, s.refused(err)
}

// refused names the protocol in an error that says the peer does not
// speak it: its "na", or basichost's reset when negotiating failed (the
// "na" it wrote before is lost with the reset on yamux). The transport's
// own text is left out: it would say the same thing twice over, with codes.
func (s *lazyStream) refused(err error) error {
	var se *network.StreamError
	if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) ||
		errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed {
		return fmt.Errorf("%w: %s", errProtocolRefused, s.pid)
	}
	return err
}

// CloseWrite sends the handshake first if nothing was written, and ignores
// its error: a broken stream fails the read that follows.
func (s *lazyStream) CloseWrite() error {
	_ = s.rw.Flush()
	return s.Stream.CloseWrite()
}

// Close reads the other side's handshake before closing (a QUIC peer could
// otherwise drop a stream closed before it answered); the deadline keeps a
// silent peer from holding Close, as in basichost.
func (s *lazyStream) Close() error {
	_ = s.Stream.SetReadDeadline(time.Now().Add(closeHandshakeWait))
	return s.rw.Close()
}

// readError tells a peer that went away (the stream reset or closed early:
// the peer's fault or the network's, not the bytes') from a message that
// arrived and was bad.
func readError(err error) error {
	// A peer that does not speak the protocol said so (lazyStream): the
	// error names it.
	if errors.Is(err, errProtocolRefused) {
		return err
	}
	var se *network.StreamError
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, network.ErrReset) || errors.As(err, &se) {
		return fmt.Errorf("stream ended early: %w", err)
	}
	// A stream's deadline (yamux's "i/o deadline reached") is a slow peer
	// or link, not a malformed message: the error says which.
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return fmt.Errorf("%w: %v", errBadMessage, err)
}

// bound ties a stream to ctx: the stream is reset when ctx ends. Deadlines
// are set too where the transport supports them (mocknet does not).
func bound(ctx context.Context, s network.Stream) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = s.ResetWithError(resetTimeout) })
}

// refCodec turns chord refs into wire refs and back, carrying dialing hints
// through the peerstore.
type refCodec struct {
	ps peerstore.Peerstore
}

func (c refCodec) encode(r chord.Ref) *pb.NodeRef {
	if r.IsZero() {
		return nil
	}
	out := &pb.NodeRef{Peer: []byte(r.Addr), Vnode: r.Vnode}
	for i, a := range c.ps.Addrs(p2ppeer.ID(r.Addr)) {
		if i == maxAddrsPerRef {
			break
		}
		out.Addrs = append(out.Addrs, a.Bytes())
	}
	return out
}

func (c refCodec) encodeAll(refs []chord.Ref) []*pb.NodeRef {
	out := make([]*pb.NodeRef, 0, len(refs))
	for _, r := range refs {
		out = append(out, c.encode(r))
	}
	return out
}

// decode validates a wire ref and rebuilds the chord ref from it; the
// position is derived from the peer ID, never taken from the sender.
func (c refCodec) decode(w *pb.NodeRef) (chord.Ref, error) {
	if w == nil {
		return chord.Ref{}, nil
	}
	id, err := p2ppeer.IDFromBytes(w.GetPeer())
	if err != nil {
		return chord.Ref{}, fmt.Errorf("%w: bad peer id: %v", errBadMessage, err)
	}
	if w.GetVnode() >= chord.MaxVnodes {
		return chord.Ref{}, fmt.Errorf("%w: vnode %d out of range", errBadMessage, w.GetVnode())
	}
	if len(w.GetAddrs()) > maxAddrsPerRef {
		return chord.Ref{}, fmt.Errorf("%w: %d addresses in one ref", errBadMessage, len(w.GetAddrs()))
	}
	var addrs []ma.Multiaddr
	for _, b := range w.GetAddrs() {
		if len(b) > maxAddrLen {
			return chord.Ref{}, fmt.Errorf("%w: address too long", errBadMessage)
		}
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return chord.Ref{}, fmt.Errorf("%w: bad address: %v", errBadMessage, err)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) > 0 {
		c.ps.AddAddrs(id, addrs, addrHintTTL)
	}
	return chord.MakeRef(string(id), w.GetVnode()), nil
}

func (c refCodec) decodeAll(ws []*pb.NodeRef) ([]chord.Ref, error) {
	if len(ws) > maxRefsPerMessage {
		return nil, fmt.Errorf("%w: %d refs", errBadMessage, len(ws))
	}
	out := make([]chord.Ref, 0, len(ws))
	for _, w := range ws {
		r, err := c.decode(w)
		if err != nil {
			return nil, err
		}
		if r.IsZero() {
			return nil, fmt.Errorf("%w: empty ref in list", errBadMessage)
		}
		out = append(out, r)
	}
	return out, nil
}

func decodeKey(b []byte) (chord.ID, error) {
	var id chord.ID
	if len(b) != len(id) {
		return id, fmt.Errorf("%w: key of %d bytes", errBadMessage, len(b))
	}
	copy(id[:], b)
	return id, nil
}

// Errors the wire carries as a status, so both ends agree on what happened.
func statusOf(err error) pb.Response_Status {
	switch {
	case err == nil:
		return pb.Response_OK
	case errors.Is(err, chord.ErrUnknownVnode):
		return pb.Response_UNKNOWN_VNODE
	case errors.Is(err, chord.ErrTooManyHops):
		return pb.Response_TOO_MANY_HOPS
	case errors.Is(err, chord.ErrNoRoute):
		return pb.Response_NO_ROUTE
	}
	return pb.Response_ERROR
}

func errorOf(resp *pb.Response) error {
	switch resp.GetStatus() {
	case pb.Response_OK:
		return nil
	case pb.Response_UNKNOWN_VNODE:
		return chord.ErrUnknownVnode
	case pb.Response_TOO_MANY_HOPS:
		return chord.ErrTooManyHops
	case pb.Response_NO_ROUTE:
		return fmt.Errorf("remote: %w", chord.ErrNoRoute)
	}
	return fmt.Errorf("remote error: %.200s", resp.GetError())
}
