package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

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

	// A block's receiver bounds its sender by progress rather than by a
	// deadline for the whole transfer (receiving): past the old bound for
	// the whole of it (transferTimeout(maxBlockSize)), blockSilence is how
	// long it waits for the next bytes. A paced sender's chunks come every
	// 0.7 s at most down to the estimating uplink's floor, but one whose
	// receiver stopped taking bytes for a second lets the next message go
	// first (uplinkStall) and is silent until that ends: a 256 KiB leaf
	// paced at the slowest link (bulkShare of it) takes 82 s, longer
	// messages or several ahead longer still, which the old bound covers
	// in the first 522 s.
	blockSilence = blockStreamBase + time.Duration(float64(256<<10)/(bulkShare*slowestLink)*float64(time.Second))
	// serveTurnWait bounds a served block's wait for the node's uplink turn
	// (writeResponse): what the whole serve could take before its deadline
	// started at the turn, so a serve that got through then still does.
	serveTurnWait = blockStreamBase + maxBlockSize*time.Second/slowestLink
	// answerWait is how long a GET waits for its answer to start: the
	// server may wait serveTurnWait for its turn first.
	answerWait = serveTurnWait + blockStreamBase
	// receiveLimit caps a block's reception however steadily its bytes
	// come (a slowloris sends one byte per blockSilence): the largest block
	// at slowestSender, after the longest wait for the answer.
	receiveLimit  = answerWait + maxBlockSize*time.Second/slowestSender
	slowestSender = 1 << 10 // bytes per second: below the estimating uplink's floor, paced (autoFloor·bulkShare, 1.6 KB/s)
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

// arrivals is a block reception's progress deadline (receiving): it ends
// the reception's context once no bytes have come for a while. Stream
// deadlines would do that on TCP and QUIC, but mocknet has none ("deadline
// not supported"); like bound, it ends a context, which resets the stream.
type arrivals struct {
	timer *time.Timer
	wait  atomic.Int64 // the timer's present duration, for the error
	// floor is the old whole-transfer bound: a sender silent for longer
	// than blockSilence before it (one that yielded its turn behind a
	// long message) is not cut off, so no transfer that used to arrive
	// fails now.
	floor time.Time
}

// errSilent ends a block reception whose sender stopped sending.
var errSilent = errors.New("the peer stopped sending")

// receiving bounds the reception of a block under ctx by its progress: its
// first bytes must come within first, each next ones within blockSilence
// of the last but never before the old whole-transfer bound, and all of
// them within receiveLimit. A slow sender whose bytes keep coming
// finishes, however long the block takes at its rate; a stalled one is
// cut off at the old bound or blockSilence after its last bytes,
// whichever is later. The reader calls moved as bytes arrive, and cancel
// once done.
func receiving(ctx context.Context, first time.Duration) (context.Context, *arrivals, context.CancelFunc) {
	ctx, cancelLimit := context.WithTimeoutCause(ctx, receiveLimit, fmt.Errorf("block transfer over %v", receiveLimit))
	ctx, cancel := context.WithCancelCause(ctx)
	a := &arrivals{floor: time.Now().Add(transferTimeout(maxBlockSize))}
	a.wait.Store(int64(first))
	a.timer = time.AfterFunc(first, func() {
		cancel(fmt.Errorf("%w for %v", errSilent, time.Duration(a.wait.Load())))
	})
	return ctx, a, func() {
		a.timer.Stop()
		cancel(nil)
		cancelLimit()
	}
}

// moved notes that bytes arrived: the next must come within blockSilence,
// or by the old whole-transfer bound if that is later. A nil arrivals
// does nothing.
func (a *arrivals) moved() {
	if a == nil {
		return
	}
	a.expect(max(blockSilence, time.Until(a.floor)))
}

// expect has the next bytes come within d.
func (a *arrivals) expect(d time.Duration) {
	if a == nil {
		return
	}
	a.wait.Store(int64(d))
	a.timer.Reset(d)
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
	// puts bounds the buffers of the PUTs this node is receiving.
	puts *putRoom
	// badStreams counts inbound block streams reset for a malformed
	// request; served, the GETs answered with a block.
	badStreams, served atomic.Int64
}

// newBlockClient makes the block client of a node that stores blocks on
// replicas peers and tells events of the PUTs it turns away.
func newBlockClient(replicas int, events *eventBus) *blockClient {
	// At least one put's writes must fit, or a put would wait forever.
	writes := make(chan struct{}, max(maxReplicaWrites, replicas))
	return &blockClient{streams: newBlockStreams(), rates: newReplicaRates(), located: newLocated(), writes: writes, claim: make(chan struct{}, 1), keeping: make(chan struct{}, maxKeepWrites), puts: newPutRoom(putBudget, events)}
}

// resetPutRefused resets a PUT's stream when the block does not fit in
// the receiver's putRoom: at its header, without waiting for its bytes,
// as its buffer grows, or when a new PUT evicts it, so that the sender
// stops sending them and puts the block elsewhere (putReplica's hinted
// handoff). A code of the block protocol's own,
// apart from the ring streams' (wire.go).
const resetPutRefused network.StreamErrorCode = 0x100

// errPutRefused is a PUT refused by its receiver for want of room to
// receive it (resetPutRefused).
var errPutRefused = errors.New("refused: the peer is receiving all the puts it has room for")

// putRefused reports whether err is the peer's reset for resetPutRefused.
func putRefused(err error) bool {
	var se *network.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == resetPutRefused
}

func (b *blockClient) close() {
	b.streams.close()
	b.puts.close()
}

// blockExchange sends one block request, with payload for a PUT, to p and
// returns the response and its payload, a pooled buffer the caller hands
// back with putBuf (nil if the response carries none). It reuses an idle
// stream to p when there is one; an idle stream the peer has meanwhile
// closed costs a retry on the next one, never a failure. watch, if set,
// is marked sent once the request is written and told of the response's
// header (the peer is alive and sending) and of each part of its payload,
// with how many bytes have come; each attempt resets it. moved, if set, is
// called whenever a part of payload has been written (writeBlockMsg).
func (n *Node) blockExchange(ctx context.Context, p p2ppeer.ID, req *pb.BlockRequest, payload []byte, size int, watch *request, moved func()) (*pb.BlockResponse, []byte, error) {
	// On a paced uplink a payload first waits for its turn, outside the
	// transfer's time, and gives it up once written (uplink.go).
	var pace *uplink
	var tn *turn
	if n.up.paces(len(payload)) {
		var err error
		if tn, err = n.up.acquire(ctx, moved); err != nil {
			return nil, nil, fmt.Errorf("waiting for the uplink: %w", err)
		}
		tn.peer = p
		pace = n.up
		defer tn.release()
	}
	// A put's (or a has') bound is the sender's; a GET's answer, a block
	// from a sender whose rate this node does not know, is bounded by its
	// progress (receiving).
	var rx *arrivals
	var cancel context.CancelFunc
	if req.GetType() == pb.BlockRequest_GET {
		ctx, rx, cancel = receiving(ctx, answerWait)
	} else {
		ctx, cancel = context.WithTimeout(ctx, pace.transferTimeout(size))
	}
	defer cancel()
	for {
		// A retry starts over: what a failed attempt recorded (sent, its
		// header's time, bytes that came) would make this one's rate look
		// too low, and it dialing not.
		watch.reset()
		rx.expect(answerWait)
		bs := n.blocks.streams.get(p)
		reused := bs != nil
		if !reused {
			// Not host.NewStream: on a new connection it would wait for
			// identify first (openStream).
			s, err := openStream(ctx, n.h, p, BlockProtocol)
			if err != nil {
				return nil, nil, err
			}
			bs = &blockStream{s: s, r: bufio.NewReaderSize(s, 4<<10)}
		}
		resp, data, err := bs.exchange(ctx, tn, rx, req, payload, watch, moved)
		if err == nil {
			n.blocks.streams.put(p, bs)
			if err := responseError(resp); err != nil {
				putBuf(data)
				return nil, nil, err
			}
			return resp, data, nil
		}
		_ = bs.s.Reset()
		if req.GetType() == pb.BlockRequest_PUT && putRefused(err) {
			// A retry would most likely be refused too: the caller puts
			// the block on another peer instead. The reset's own text
			// (its code, the transport's) would only repeat it.
			return nil, nil, errPutRefused
		}
		if !reused || ctx.Err() != nil || errors.Is(err, errBadMessage) {
			return nil, nil, err
		}
		// The attempt gave up its turn once written; the retry sends the
		// payload again and waits for the turn again first (turn.send).
	}
}

// exchange is one request and its response on bs, bounded by ctx. The
// request is paced in turn tn, if set, which is released once it is
// written; rx, if set, is told of the response's bytes as they come, and
// moved, if set, of the payload's as they go.
func (bs *blockStream) exchange(ctx context.Context, tn *turn, rx *arrivals, req *pb.BlockRequest, payload []byte, watch *request, moved func()) (*pb.BlockResponse, []byte, error) {
	stop := bound(ctx, bs.s)
	resp, data, err := bs.roundTrip(ctx, tn, rx, req, payload, watch, moved)
	if !stop() {
		// ctx ended and reset the stream: whatever came back is moot.
		putBuf(data)
		return nil, nil, fmt.Errorf("block exchange: %w", context.Cause(ctx))
	}
	return resp, data, err
}

func (bs *blockStream) roundTrip(ctx context.Context, tn *turn, rx *arrivals, req *pb.BlockRequest, payload []byte, watch *request, moved func()) (*pb.BlockResponse, []byte, error) {
	err := writeBlockMsg(ctx, tn, bs.s, req, payload, moved)
	tn.release()
	if err != nil {
		return nil, nil, err
	}
	watch.markSent()
	resp := &pb.BlockResponse{}
	if err := readBlockHeader(bs.r, resp); err != nil {
		return nil, nil, err
	}
	rx.moved()
	if resp.GetSize() > maxBlockSize {
		return nil, nil, fmt.Errorf("%w: a %d-byte block, the limit is %d", errBadMessage, resp.GetSize(), maxBlockSize)
	}
	total := int(resp.GetSize())
	watch.arrived(0, total)
	if total == 0 {
		return resp, nil, nil
	}
	received := func(got int) {
		rx.moved()
		watch.arrived(got, total)
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
	_, data, err := n.blockExchange(ctx, p, &pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes()}, nil, maxBlockSize, watch, nil)
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
	return n.putAt(ctx, p, "", c, data, nil)
}

// putAt puts block c on p; with hintFor set, p holds it for hintFor
// (hinted handoff, handoff.go). moved, if set, is called as parts of data
// are written to p (blockExchange).
func (n *Node) putAt(ctx context.Context, p, hintFor p2ppeer.ID, c cid.Cid, data []byte, moved func()) error {
	if p == n.h.ID() {
		return n.storeOrHold(hintFor, c, data)
	}
	req := &pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: c.Bytes(), Size: uint32(len(data)), HintFor: []byte(hintFor)}
	_, extra, err := n.blockExchange(ctx, p, req, data, len(data), nil, moved)
	putBuf(extra)
	if err != nil {
		return &peerError{c: c, peer: p, hintFor: hintFor, err: err}
	}
	return nil
}

// peerError is a put to another peer that failed: "put CID on PEER: why"
// (or "hint CID for TARGET on PEER: why"), for repair's and handoff's
// logs; a put's own line takes just the why (cause).
type peerError struct {
	c             cid.Cid
	peer, hintFor p2ppeer.ID
	err           error
}

func (e *peerError) Error() string {
	if e.hintFor != "" {
		return fmt.Sprintf("hint %s for %s on %s: %v", e.c, e.hintFor.ShortString(), e.peer.ShortString(), e.err)
	}
	return fmt.Sprintf("put %s on %s: %v", e.c, e.peer.ShortString(), e.err)
}

func (e *peerError) Unwrap() error { return e.err }

// cause is why a put to one replica failed, in a few words, for a line
// that already names the block and the peer: the failure a sentinel
// stands for rather than each layer's account of it (a full store's
// answer repeats the CID), a dial's reason rather than the transport's
// report of every address tried, and a hinted handoff's failure after
// the replica's own.
func cause(err error) string {
	// putReplica's "%w; hinted handoff: %w".
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		var hint *peerError
		if errs := m.Unwrap(); len(errs) == 2 && errors.As(errs[1], &hint) && hint.hintFor != "" {
			return fmt.Sprintf("%s (hinted handoff to %s: %s)", cause(errs[0]), shortPeer(string(hint.peer)), cause(hint.err))
		}
	}
	var pe *peerError
	if errors.As(err, &pe) {
		err = pe.err
	}
	var dial *swarm.DialError
	switch {
	case errors.Is(err, ErrStoreFull), errors.Is(err, blocks.ErrFull):
		return blocks.ErrFull.Error()
	case errors.Is(err, ErrBadBlock), errors.Is(err, blocks.ErrMismatch):
		return ErrBadBlock.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &dial):
		return dialCause(dial)
	}
	return err.Error()
}

// dialCause is why a dial failed: the system's reason ("connection
// refused") if it gave one, else the first address's error.
func dialCause(e *swarm.DialError) string {
	var errno syscall.Errno
	if errors.As(e, &errno) {
		return errno.Error()
	}
	if len(e.DialErrors) > 0 {
		return "dial: " + e.DialErrors[0].Cause.Error()
	}
	if e.Cause != nil {
		return "dial: " + e.Cause.Error()
	}
	return "dial failed"
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

// serveBlockRequest reads one request and answers it.
func (n *Node) serveBlockRequest(s network.Stream, r *bufio.Reader) bool {
	req, c, hintFor, data, rec, ok := n.receiveRequest(s, r)
	if !ok {
		return false
	}
	resp := &pb.BlockResponse{}
	var payload []byte
	pooled := false
	switch req.GetType() {
	case pb.BlockRequest_GET:
		var err error
		payload, pooled, err = n.readLocal(c)
		if err != nil {
			if errors.Is(err, blocks.ErrCorrupt) {
				asker := s.Conn().RemotePeer()
				n.blockCorrupt(err, asker, "answered not found to "+shortPeer(string(asker)))
			}
			resp.Status, resp.Error = blockStatus(err), errorText(err)
			break
		}
		resp.Size = uint32(len(payload))
		n.blocks.served.Add(1)
	case pb.BlockRequest_PUT:
		// The store verifies the bytes against the CID before it writes
		// anything (blocks.ErrMismatch): a peer cannot plant bytes under a
		// CID they do not hash to. Hashing here as well would only double
		// the work on every replica.
		if err := n.storeOrHold(hintFor, c, data); err != nil {
			resp.Status, resp.Error = blockStatus(err), errorText(err)
		}
		putBuf(data)
		rec.release()
	case pb.BlockRequest_HAS:
		resp.Has = n.cfg.Store != nil && n.cfg.Store.Has(c)
	}
	err := n.writeResponse(s, resp, payload)
	if pooled {
		putBuf(payload)
	}
	if err != nil {
		_ = s.Reset()
		return false
	}
	return true
}

// receiveRequest reads one request and, for a PUT, its block (data, a
// pooled buffer, and rec, the room it holds in the node's putRoom, which
// the caller releases with the buffer), bounded by their progress
// (receiving): the request has begun to arrive (awaitBlockRequest), and
// the rest must keep coming. A request malformed or cut short resets the
// stream with resetBadMessage and counts as a bad stream; a PUT that has
// no room, with resetPutRefused: as soon as its header is read if its
// block does not fit, as its buffer grows, or when a new PUT evicts it; a
// block cut short, or a sender that stops sending, has it reset.
func (n *Node) receiveRequest(s network.Stream, r *bufio.Reader) (req *pb.BlockRequest, c cid.Cid, hintFor p2ppeer.ID, data []byte, rec *putReception, ok bool) {
	ctx, rx, cancel := receiving(n.life, blockSilence)
	stop := bound(ctx, s)
	req, c, hintFor, err := readBlockRequest(r)
	bad := err != nil
	if err == nil && req.GetType() == pb.BlockRequest_PUT {
		evict := func() { _ = s.ResetWithError(resetPutRefused) }
		if rec = n.blocks.puts.admit(int(req.GetSize()), evict); rec == nil {
			err = errNoRoom
		} else {
			rx.moved()
			data, err = readPut(r, int(req.GetSize()), rec, rx.moved)
			if err == nil && !rec.received() {
				putBuf(data)
				data, err = nil, errNoRoom
			}
		}
	}
	// Stopped before cancel, which would otherwise reset the stream.
	timedOut := !stop()
	cancel()
	if !timedOut && err == nil {
		return req, c, hintFor, data, rec, true
	}
	putBuf(data)
	if rec != nil {
		rec.release()
	}
	switch {
	case timedOut:
		// ctx ended and reset the stream
	case bad:
		n.blocks.badStreams.Add(1)
		_ = s.ResetWithError(resetBadMessage)
	case errors.Is(err, errNoRoom):
		_ = s.ResetWithError(resetPutRefused)
	default:
		_ = s.Reset()
	}
	return nil, cid.Undef, "", nil, nil, false
}

// readBlockRequest reads a request's header and checks it: a CID, a type,
// a payload only on a PUT and within maxBlockSize, a hint only on a PUT.
func readBlockRequest(r *bufio.Reader) (req *pb.BlockRequest, c cid.Cid, hintFor p2ppeer.ID, err error) {
	req = &pb.BlockRequest{}
	if err := readBlockHeader(r, req); err != nil {
		return nil, cid.Undef, "", err
	}
	if _, c, err = cid.CidFromBytes(req.GetCid()); err != nil {
		return nil, cid.Undef, "", err
	}
	switch req.GetType() {
	case pb.BlockRequest_GET, pb.BlockRequest_PUT, pb.BlockRequest_HAS:
	default:
		return nil, cid.Undef, "", fmt.Errorf("%w: request type %d", errBadMessage, req.GetType())
	}
	if req.GetSize() > maxBlockSize || req.GetSize() > 0 && req.GetType() != pb.BlockRequest_PUT {
		return nil, cid.Undef, "", fmt.Errorf("%w: %d bytes of payload", errBadMessage, req.GetSize())
	}
	if len(req.GetHintFor()) > 0 {
		if hintFor, err = p2ppeer.IDFromBytes(req.GetHintFor()); err != nil {
			return nil, cid.Undef, "", err
		}
		if req.GetType() != pb.BlockRequest_PUT {
			return nil, cid.Undef, "", fmt.Errorf("%w: a hint outside a PUT", errBadMessage)
		}
	}
	return req, c, hintFor, nil
}

// writeResponse sends a block response. One that carries a block goes, on
// a paced uplink, in its turn, which it waits for at most serveTurnWait
// (else it answers that the uplink is busy, and the fetcher asks another
// replica); its deadline starts once it has the turn, as a put's does
// (blockExchange), so a wait behind queued uploads does not eat into it.
// It goes to a fetcher whose downlink this node does not know, maybe shared
// by the fetch's other requests: it gets the network's bound for the
// largest block, or the paced uplink's time for this one if longer.
func (n *Node) writeResponse(s network.Stream, resp *pb.BlockResponse, payload []byte) error {
	var tn *turn
	if n.up.paces(len(payload)) {
		wait, cancel := context.WithTimeout(n.life, serveTurnWait)
		var err error
		tn, err = n.up.acquire(wait, nil)
		cancel()
		switch {
		case n.life.Err() != nil:
			return err
		case err != nil:
			resp, payload = &pb.BlockResponse{Status: pb.BlockResponse_ERROR, Error: fmt.Sprintf("uplink busy: no turn within %v", serveTurnWait)}, nil
		default:
			defer tn.release()
			tn.peer = s.Conn().RemotePeer()
		}
	}
	ctx, cancel := context.WithTimeout(n.life, max(transferTimeout(maxBlockSize), n.up.transferTimeout(len(payload))))
	defer cancel()
	stop := bound(ctx, s)
	defer stop()
	return writeBlockMsg(ctx, tn, s, resp, payload, nil)
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
