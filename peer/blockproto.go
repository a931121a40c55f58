package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protodelim"

	"chordshare/blocks"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// BlockProtocol is the stream protocol for block get / put / has.
const BlockProtocol = "/chordshare/block/1.0.0"

const (
	// maxBlockSize is the largest block the network carries.
	maxBlockSize = 2 << 20
	// maxBlockMessage leaves room for the CID and framing around a block.
	maxBlockMessage = maxBlockSize + 4<<10
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

// blockExchange sends one block request to p and returns the response.
func (n *Node) blockExchange(ctx context.Context, p p2ppeer.ID, req *pb.BlockRequest, size int) (*pb.BlockResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(size))
	defer cancel()
	resp := &pb.BlockResponse{}
	if err := requestResponse(ctx, n.h, p, BlockProtocol, req, resp, maxBlockMessage); err != nil {
		return nil, err
	}
	switch resp.GetStatus() {
	case pb.BlockResponse_OK:
		return resp, nil
	case pb.BlockResponse_NOT_FOUND:
		return nil, ErrBlockNotFound
	case pb.BlockResponse_FULL:
		return nil, fmt.Errorf("%w: %.200s", ErrStoreFull, resp.GetError())
	case pb.BlockResponse_BAD_BLOCK:
		return nil, ErrBadBlock
	}
	return nil, fmt.Errorf("remote error: %.200s", resp.GetError())
}

// fetchFrom gets block c from p and verifies it.
func (n *Node) fetchFrom(ctx context.Context, p p2ppeer.ID, c cid.Cid) ([]byte, error) {
	resp, err := n.blockExchange(ctx, p, &pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes()}, maxBlockSize)
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", c, p.ShortString(), err)
	}
	if err := verify(c, resp.GetData()); err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", c, p.ShortString(), err)
	}
	return resp.GetData(), nil
}

// storeAt puts block c on p.
func (n *Node) storeAt(ctx context.Context, p p2ppeer.ID, c cid.Cid, data []byte) error {
	if p == n.h.ID() {
		return n.storeLocal(c, data)
	}
	_, err := n.blockExchange(ctx, p, &pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: c.Bytes(), Data: data}, len(data))
	if err != nil {
		return fmt.Errorf("put %s on %s: %w", c, p.ShortString(), err)
	}
	return nil
}

func (n *Node) storeLocal(c cid.Cid, data []byte) error {
	if n.cfg.Store == nil {
		return errors.New("this peer stores no blocks (capacity 0)")
	}
	return n.cfg.Store.Put(c, data)
}

// serveBlock answers one inbound block stream. Like ring streams, a bad
// request resets the stream and nothing else.
func (n *Node) serveBlock(s network.Stream) {
	ctx, cancel := context.WithTimeout(context.Background(), transferTimeout(maxBlockSize))
	defer cancel()
	defer bound(ctx, s)()
	req := &pb.BlockRequest{}
	if err := (protodelim.UnmarshalOptions{MaxSize: maxBlockMessage}).UnmarshalFrom(bufio.NewReader(s), req); err != nil {
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	_, c, err := cid.CidFromBytes(req.GetCid())
	if err != nil || len(req.GetData()) > maxBlockSize {
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	resp := &pb.BlockResponse{}
	switch req.GetType() {
	case pb.BlockRequest_GET:
		if n.cfg.Store == nil {
			resp.Status = pb.BlockResponse_NOT_FOUND
			break
		}
		data, err := n.cfg.Store.Get(c)
		if err != nil {
			resp.Status, resp.Error = blockStatus(err), err.Error()
			break
		}
		resp.Data = data
	case pb.BlockRequest_PUT:
		// The store verifies the bytes against the CID before it writes
		// anything (blocks.ErrMismatch): a peer cannot plant bytes under a
		// CID they do not hash to. Hashing here as well would only double
		// the work on every replica.
		if err := n.storeLocal(c, req.GetData()); err != nil {
			resp.Status, resp.Error = blockStatus(err), err.Error()
		}
	case pb.BlockRequest_HAS:
		resp.Has = n.cfg.Store != nil && n.cfg.Store.Has(c)
	default:
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	if err := writeMsg(s, resp); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
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
