package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/blocks"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// BlockProtocol is the stream protocol for block get / put / has.
//
// 1.1.0 carries many exchanges per stream, with blocks as raw payload
// after a small header; 1.0.0, one protobuf-wrapped exchange per stream,
// was never released and is not served. 1.2.0 (this one) adds hint_for to
// PUT, for hinted handoff; a 1.1.0 peer would ignore it, keep the block and
// never deliver it, so the two are not mixed.
const BlockProtocol = "/chordshare/block/1.2.0"

const (
	// maxBlockSize is the largest block the network carries.
	maxBlockSize = 2 << 20
	// blockStreamBase and slowestLink bound a block transfer: a fixed part
	// for the round trips plus the time the slowest link the network
	// admits (32 kbit/s) needs for the bytes.
	blockStreamBase = 10 * time.Second
	slowestLink     = 4 << 10 // bytes per second
)

// BlockStore is the local store a node serves blocks from: blocks.Store.
type BlockStore interface {
	Put(c cid.Cid, data []byte) error
	Get(c cid.Cid) ([]byte, error)
	Has(c cid.Cid) bool
}

// Errors a block exchange can end with.
var (
	ErrBlockNotFound = errors.New("block not found")
	ErrStoreFull     = errors.New("store full")
	ErrBadBlock      = errors.New("block does not match its CID")
)

// transferTimeout bounds one block stream carrying size bytes.
func transferTimeout(size int) time.Duration {
	return blockStreamBase + time.Duration(size)*time.Second/slowestLink
}

// verify checks that data is the block c names.
func verify(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadBlock, err)
	}
	if !got.Equals(c) {
		return ErrBadBlock
	}
	return nil
}

// blockClient is a node's outbound side of the block protocol: the idle
// streams it reuses and what it has measured of each replica.
type blockClient struct {
	streams *blockStreams
	rates   *replicaRates
	located *located
	// writes holds a token per replica write in flight (replicaWrites);
	// claim, a one-slot semaphore, serializes taking a put's tokens, so
	// that puts each holding some never wait on one another; unlike a
	// mutex, waiting for it ends with the put's context.
	writes chan struct{}
	claim  chan struct{}
	// keeping holds a token per fetched block being stored here as its
	// replica (Node.keepReplica).
	keeping chan struct{}
	// badStreams counts inbound block streams reset for a malformed
	// request; served, the GETs answered with a block.
	badStreams, served atomic.Int64
}

// newBlockClient makes the block client of a node that stores blocks on
// replicas peers.
func newBlockClient(replicas int) *blockClient {
	// At least one put's writes must fit, or a put would wait forever.
	writes := make(chan struct{}, max(maxReplicaWrites, replicas))
	return &blockClient{streams: newBlockStreams(), rates: newReplicaRates(), located: newLocated(), writes: writes, claim: make(chan struct{}, 1), keeping: make(chan struct{}, maxKeepWrites)}
}

func (b *blockClient) close() { b.streams.close() }

// blockExchange sends one block request, with payload for a PUT, to p and
// returns the response and its payload, a pooled buffer the caller hands
// back with putBuf (nil if the response carries none). It reuses an idle
// stream to p when there is one; an idle stream the peer has meanwhile
// closed costs a retry on the next one, never a failure. watch, if set,
// is marked sent once the request is written and told of the response's
// header (the peer is alive and sending) and of each part of its payload,
// with how many bytes have come; each attempt resets it.
func (n *Node) blockExchange(ctx context.Context, p p2ppeer.ID, req *pb.BlockRequest, payload []byte, size int, watch *request) (*pb.BlockResponse, []byte, error) {
	// On a paced uplink a payload first waits for its turn, outside the
	// transfer's time, and gives it up once written (uplink.go).
	var pace *uplink
	var tn *turn
	if n.up.paces(len(payload)) {
		var err error
		if tn, err = n.up.acquire(ctx); err != nil {
			return nil, nil, fmt.Errorf("waiting for the uplink: %w", err)
		}
		tn.peer = p
		pace = n.up
		defer tn.release()
	}
	ctx, cancel := context.WithTimeout(ctx, pace.transferTimeout(size))
	defer cancel()
	for {
		// A retry starts over: what a failed attempt recorded (sent, its
		// header's time, bytes that came) would make this one's rate look
		// too low, and it dialing not.
		watch.reset()
		bs := n.blocks.streams.get(p)
		reused := bs != nil
		if !reused {
			s, err := n.h.NewStream(ctx, p, BlockProtocol)
			if err != nil {
				return nil, nil, err
			}
			bs = &blockStream{s: s, r: bufio.NewReaderSize(s, 4<<10)}
		}
		resp, data, err := bs.exchange(ctx, tn, req, payload, watch)
		if err == nil {
			n.blocks.streams.put(p, bs)
			if err := responseError(resp); err != nil {
				putBuf(data)
				return nil, nil, err
			}
			return resp, data, nil
		}
		_ = bs.s.Reset()
		if !reused || ctx.Err() != nil || errors.Is(err, errBadMessage) {
			return nil, nil, err
		}
		// The attempt gave up its turn once written; the retry sends the
		// payload again and waits for the turn again first (turn.send).
	}
}

// exchange is one request and its response on bs, bounded by ctx. The
// request is paced in turn tn, if set, which is released once it is
// written.
func (bs *blockStream) exchange(ctx context.Context, tn *turn, req *pb.BlockRequest, payload []byte, watch *request) (*pb.BlockResponse, []byte, error) {
	stop := bound(ctx, bs.s)
	resp, data, err := bs.roundTrip(ctx, tn, req, payload, watch)
	if !stop() {
		// ctx ended and reset the stream: whatever came back is moot.
		putBuf(data)
		return nil, nil, fmt.Errorf("block exchange: %w", context.Cause(ctx))
	}
	return resp, data, err
}

func (bs *blockStream) roundTrip(ctx context.Context, tn *turn, req *pb.BlockRequest, payload []byte, watch *request) (*pb.BlockResponse, []byte, error) {
	err := writeBlockMsg(ctx, tn, bs.s, req, payload)
	tn.release()
	if err != nil {
		return nil, nil, err
	}
	watch.markSent()
	resp := &pb.BlockResponse{}
	if err := readBlockHeader(bs.r, resp); err != nil {
		return nil, nil, err
	}
	if resp.GetSize() > maxBlockSize {
		return nil, nil, fmt.Errorf("%w: a %d-byte block, the limit is %d", errBadMessage, resp.GetSize(), maxBlockSize)
	}
	total := int(resp.GetSize())
	watch.arrived(0, total)
	if total == 0 {
		return resp, nil, nil
	}
	var received func(int)
	if watch != nil {
		received = func(got int) { watch.arrived(got, total) }
	}
	data, err := readPayload(bs.r, resp.GetSize(), received)
	if err != nil {
		return nil, nil, err
	}
	return resp, data, nil
}

// responseError is the error a response's status stands for.
func responseError(resp *pb.BlockResponse) error {
	switch resp.GetStatus() {
	case pb.BlockResponse_OK:
		return nil
	case pb.BlockResponse_NOT_FOUND:
		return ErrBlockNotFound
	case pb.BlockResponse_FULL:
		return fmt.Errorf("%w: %.200s", ErrStoreFull, resp.GetError())
	case pb.BlockResponse_BAD_BLOCK:
		return ErrBadBlock
	}
	return fmt.Errorf("remote error: %.200s", resp.GetError())
}

// fetchFrom gets block c from p and verifies it. The block is in a pooled
// buffer: the caller may hand it back with putBuf once done with it.
func (n *Node) fetchFrom(ctx context.Context, p p2ppeer.ID, c cid.Cid) ([]byte, error) {
	return n.fetchWatched(ctx, p, c, nil)
}

// fetchWatched is fetchFrom telling watch how the request goes: sent,
// its answer's header, then each part of the block.
func (n *Node) fetchWatched(ctx context.Context, p p2ppeer.ID, c cid.Cid, watch *request) ([]byte, error) {
	_, data, err := n.blockExchange(ctx, p, &pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes()}, nil, maxBlockSize, watch)
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", c, p.ShortString(), err)
	}
	if err := verify(c, data); err != nil {
		putBuf(data)
		return nil, fmt.Errorf("get %s from %s: %w", c, p.ShortString(), err)
	}
	return data, nil
}

// storeAt puts block c on p.
func (n *Node) storeAt(ctx context.Context, p p2ppeer.ID, c cid.Cid, data []byte) error {
	return n.putAt(ctx, p, "", c, data)
}

// putAt puts block c on p; with hintFor set, p holds it for hintFor
// (hinted handoff, handoff.go).
func (n *Node) putAt(ctx context.Context, p, hintFor p2ppeer.ID, c cid.Cid, data []byte) error {
	if p == n.h.ID() {
		return n.storeOrHold(hintFor, c, data)
	}
	req := &pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: c.Bytes(), Size: uint32(len(data)), HintFor: []byte(hintFor)}
	_, extra, err := n.blockExchange(ctx, p, req, data, len(data), nil)
	putBuf(extra)
	if err != nil && hintFor != "" {
		return fmt.Errorf("hint %s for %s on %s: %w", c, hintFor.ShortString(), p.ShortString(), err)
	}
	if err != nil {
		return fmt.Errorf("put %s on %s: %w", c, p.ShortString(), err)
	}
	return nil
}

// storeOrHold stores a block put here, as a replica or, with hintFor set,
// held for hintFor.
func (n *Node) storeOrHold(hintFor p2ppeer.ID, c cid.Cid, data []byte) error {
	if hintFor != "" {
		return n.holdHint(hintFor, c, data)
	}
	return n.storeLocal(c, data)
}

func (n *Node) storeLocal(c cid.Cid, data []byte) error {
	if n.cfg.Store == nil {
		return errors.New("this peer stores no blocks (capacity 0)")
	}
	return n.cfg.Store.Put(c, data)
}

// serveBlock answers the requests of one inbound block stream, one after
// the other, until the peer closes it, leaves it idle for serveBlockIdle,
// or the node closes. Like ring streams, a bad request resets the stream
// and nothing else.
func (n *Node) serveBlock(s network.Stream) {
	r := bufio.NewReaderSize(s, 4<<10)
	for n.awaitBlockRequest(s, r) && n.serveBlockRequest(s, r) {
	}
}

// awaitBlockRequest waits for the next request to start arriving. It
// reports false when the stream is over (closed, idle too long, reset).
func (n *Node) awaitBlockRequest(s network.Stream, r *bufio.Reader) bool {
	ctx, cancel := context.WithTimeout(n.life, serveBlockIdle)
	defer cancel()
	stop := bound(ctx, s)
	_, err := r.Peek(1)
	if !stop() {
		return false // ctx reset the stream
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			_ = s.Close()
		} else {
			_ = s.Reset()
		}
		return false
	}
	return true
}

// serveBlockRequest reads one request and answers it, within the time the
// largest block needs at the slowest link the network admits.
func (n *Node) serveBlockRequest(s network.Stream, r *bufio.Reader) bool {
	ctx, cancel := context.WithTimeout(n.life, transferTimeout(maxBlockSize))
	defer cancel()
	stop := bound(ctx, s)
	defer stop()
	req := &pb.BlockRequest{}
	err := readBlockHeader(r, req)
	var c cid.Cid
	if err == nil {
		_, c, err = cid.CidFromBytes(req.GetCid())
	}
	if err == nil && (req.GetSize() > maxBlockSize || req.GetSize() > 0 && req.GetType() != pb.BlockRequest_PUT) {
		err = fmt.Errorf("%w: %d bytes of payload", errBadMessage, req.GetSize())
	}
	var hintFor p2ppeer.ID
	if err == nil && len(req.GetHintFor()) > 0 {
		hintFor, err = p2ppeer.IDFromBytes(req.GetHintFor())
		if err == nil && req.GetType() != pb.BlockRequest_PUT {
			err = fmt.Errorf("%w: a hint outside a PUT", errBadMessage)
		}
	}
	if err != nil {
		n.blocks.badStreams.Add(1)
		_ = s.ResetWithError(resetBadMessage)
		return false
	}
	resp := &pb.BlockResponse{}
	var payload []byte
	pooled := false
	switch req.GetType() {
	case pb.BlockRequest_GET:
		payload, pooled, err = n.readLocal(c)
		if err != nil {
			resp.Status, resp.Error = blockStatus(err), errorText(err)
			break
		}
		resp.Size = uint32(len(payload))
		n.blocks.served.Add(1)
	case pb.BlockRequest_PUT:
		data, err := readPayload(r, req.GetSize(), nil)
		if err != nil {
			_ = s.Reset()
			return false
		}
		// The store verifies the bytes against the CID before it writes
		// anything (blocks.ErrMismatch): a peer cannot plant bytes under a
		// CID they do not hash to. Hashing here as well would only double
		// the work on every replica.
		if err := n.storeOrHold(hintFor, c, data); err != nil {
			resp.Status, resp.Error = blockStatus(err), errorText(err)
		}
		putBuf(data)
	case pb.BlockRequest_HAS:
		resp.Has = n.cfg.Store != nil && n.cfg.Store.Has(c)
	default:
		n.blocks.badStreams.Add(1)
		_ = s.ResetWithError(resetBadMessage)
		return false
	}
	err = n.writeResponse(ctx, s, resp, payload)
	if pooled {
		putBuf(payload)
	}
	if err != nil {
		_ = s.Reset()
		return false
	}
	return true
}

// writeResponse sends a block response, paced in its turn on a paced
// uplink if it carries a block.
func (n *Node) writeResponse(ctx context.Context, s network.Stream, resp *pb.BlockResponse, payload []byte) error {
	if !n.up.paces(len(payload)) {
		return writeBlockMsg(ctx, nil, s, resp, payload)
	}
	tn, err := n.up.acquire(ctx)
	if err != nil {
		return err
	}
	defer tn.release()
	tn.peer = s.Conn().RemotePeer()
	return writeBlockMsg(ctx, tn, s, resp, payload)
}

// readLocal reads block c from the store, into a pooled buffer when the
// store can do that (pooled).
func (n *Node) readLocal(c cid.Cid) (data []byte, pooled bool, err error) {
	switch st := n.cfg.Store.(type) {
	case nil:
		return nil, false, ErrBlockNotFound
	case bufferedStore:
		data, err = st.GetWith(c, getBuf)
		return data, true, err
	default:
		data, err = st.Get(c)
		return data, false, err
	}
}

// bufferedStore is a store that reads a block into a buffer of the
// caller's (blocks.Store).
type bufferedStore interface {
	GetWith(c cid.Cid, alloc func(n int) []byte) ([]byte, error)
}

// errorText is an error as a response carries it: cut, so that the header
// stays under maxBlockHeader.
func errorText(err error) string {
	s := err.Error()
	if len(s) > errorTextLen {
		s = s[:errorTextLen]
	}
	return strings.ToValidUTF8(s, "?")
}

func blockStatus(err error) pb.BlockResponse_Status {
	switch {
	case errors.Is(err, blocks.ErrNotFound), errors.Is(err, blocks.ErrCorrupt):
		return pb.BlockResponse_NOT_FOUND
	case errors.Is(err, blocks.ErrFull):
		return pb.BlockResponse_FULL
	case errors.Is(err, blocks.ErrMismatch), errors.Is(err, blocks.ErrBadCID), errors.Is(err, blocks.ErrTooLarge):
		return pb.BlockResponse_BAD_BLOCK
	}
	return pb.BlockResponse_ERROR
}
