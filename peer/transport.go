package peer

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
	"chordshare/peer/api"
	"chordshare/peer/pb"
	"google.golang.org/protobuf/proto"
)

// maxServeTime bounds how long the server works on one request; a recursive
// lookup's budget from the asker is capped by it.
const maxServeTime = 60 * time.Second

// ringTransport carries chord's RPCs over libp2p streams: one stream per
// call, one request and one response. It is also the server side, decoding
// requests and handing them to the local chord.Node.
type ringTransport struct {
	h     host.Host
	codec refCodec
	node  *chord.Node // set once, before the stream handler is installed
	up    *uplink     // set once with node; an estimating one learns from the calls

	stats RingStats
}

// RingStats counts ring traffic, for status pages and benchmarks.
type RingStats struct {
	CallsOut, CallsIn       atomic.Int64
	BytesOut, BytesIn       atomic.Int64
	BadStreams, FailedCalls atomic.Int64
	// answered counts the calls out that got an answer by how long they
	// took, at most ringLatencyBounds[i] (the last: longer).
	answered [len(ringLatencyBounds) + 1]atomic.Int64
}

// ringLatencyBounds are the upper bounds of RingStats' latency buckets:
// from a LAN round trip to past the longest ring timeout.
var ringLatencyBounds = [...]time.Duration{
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
}

func (s *RingStats) recordAnswer(d time.Duration) {
	i := 0
	for i < len(ringLatencyBounds) && d > ringLatencyBounds[i] {
		i++
	}
	s.answered[i].Add(1)
}

// Calls is the ring calls out in the status's terms.
func (s *RingStats) Calls() api.RingCalls {
	c := api.RingCalls{Out: s.CallsOut.Load(), Failed: s.FailedCalls.Load()}
	for i := range s.answered {
		b := api.LatencyBucket{Count: s.answered[i].Load()}
		if i < len(ringLatencyBounds) {
			b.LeMs = ringLatencyBounds[i].Milliseconds()
		}
		c.Answered = append(c.Answered, b)
	}
	return c
}

func newRingTransport(h host.Host) *ringTransport {
	return &ringTransport{h: h, codec: refCodec{ps: h.Peerstore()}}
}

// roundTrip sends req to the peer of to and reads its response.
func (t *ringTransport) roundTrip(ctx context.Context, to chord.Ref, req *pb.Request) (*pb.Response, error) {
	t.stats.CallsOut.Add(1)
	start := time.Now()
	// A recursive lookup's time is other peers' hops: only single-hop
	// calls measure the link.
	var pr *probe
	if req.GetType() != pb.Request_FIND_SUCCESSOR {
		pr = t.up.probe()
	}
	resp, err := t.exchange(ctx, to, req)
	if err != nil {
		t.stats.FailedCalls.Add(1)
		return nil, fmt.Errorf("%s to %s: %w", req.GetType(), p2ppeer.ID(to.Addr).ShortString(), err)
	}
	t.up.answered(p2ppeer.ID(to.Addr), pr)
	t.stats.recordAnswer(time.Since(start))
	return resp, errorOf(resp)
}

func (t *ringTransport) exchange(ctx context.Context, to chord.Ref, req *pb.Request) (*pb.Response, error) {
	req.ToVnode = to.Vnode
	resp := &pb.Response{}
	if err := requestResponse(ctx, t.h, p2ppeer.ID(to.Addr), RingProtocol, req, resp, maxRingMessage); err != nil {
		return nil, err
	}
	t.stats.BytesOut.Add(int64(proto.Size(req)))
	t.stats.BytesIn.Add(int64(proto.Size(resp)))
	return resp, nil
}

func (t *ringTransport) FindSuccessor(ctx context.Context, to chord.Ref, key chord.ID, hops, want int) (chord.LookupResult, error) {
	req := &pb.Request{Type: pb.Request_FIND_SUCCESSOR, Key: key[:], Hops: uint32(hops), Want: uint32(want)}
	if dl, ok := ctx.Deadline(); ok {
		req.BudgetMs = uint32(max(time.Until(dl).Milliseconds(), 1))
	}
	resp, err := t.roundTrip(ctx, to, req)
	if err != nil {
		return chord.LookupResult{}, err
	}
	succs, err := t.codec.decodeAll(resp.GetNodes())
	if err != nil {
		return chord.LookupResult{}, err
	}
	if len(succs) == 0 {
		return chord.LookupResult{}, fmt.Errorf("%w: lookup answer without successors", errBadMessage)
	}
	return chord.LookupResult{Successors: succs, Hops: int(resp.GetHops())}, nil
}

// hopCostToWire is an iterative asker's round trip per hop in whole
// microseconds, 0 to 2^32-1 (about 71 minutes: far past any timeout).
func hopCostToWire(d time.Duration) uint32 {
	return uint32(min(max(d.Microseconds(), 0), math.MaxUint32))
}

// hopCostFromWire reads the asker's round trip per hop; chord bounds it
// (HandleNextHop), so a huge one costs nothing.
func hopCostFromWire(us uint32) time.Duration { return time.Duration(us) * time.Microsecond }

func (t *ringTransport) NextHop(ctx context.Context, to chord.Ref, key chord.ID, want int, hopCost time.Duration, brief bool) (chord.Step, error) {
	req := &pb.Request{Type: pb.Request_NEXT_HOP, Key: key[:], Want: uint32(want),
		HopCostUs: hopCostToWire(hopCost), Brief: brief}
	resp, err := t.roundTrip(ctx, to, req)
	if err != nil {
		return chord.Step{}, err
	}
	nodes, err := t.codec.decodeAll(resp.GetNodes())
	if err != nil {
		return chord.Step{}, err
	}
	return chord.Step{Done: resp.GetDone(), Nodes: nodes}, nil
}

func (t *ringTransport) Neighbors(ctx context.Context, to, from chord.Ref, known uint64) (chord.Neighbors, error) {
	req := &pb.Request{Type: pb.Request_NEIGHBORS, KnownDigest: known}
	if !from.IsZero() {
		// Only our own vnodes ask: the receiver takes the peer from the
		// secure channel, so the index alone names the vnode.
		if from.Addr != string(t.h.ID()) {
			return chord.Neighbors{}, fmt.Errorf("neighbors on behalf of another peer's vnode")
		}
		req.FromVnode = from.Vnode + 1
	}
	resp, err := t.roundTrip(ctx, to, req)
	if err != nil {
		return chord.Neighbors{}, err
	}
	pred, err := t.codec.decode(resp.GetPredecessor())
	if err != nil {
		return chord.Neighbors{}, err
	}
	succs, err := t.codec.decodeAll(resp.GetNodes())
	if err != nil {
		return chord.Neighbors{}, err
	}
	return chord.Neighbors{Predecessor: pred, Successors: succs, Digest: resp.GetDigest(), Unchanged: resp.GetUnchanged()}, nil
}

func (t *ringTransport) Changed(ctx context.Context, to chord.Ref) error {
	_, err := t.roundTrip(ctx, to, &pb.Request{Type: pb.Request_CHANGED})
	return err
}

func (t *ringTransport) Owns(ctx context.Context, to chord.Ref, key chord.ID) (bool, error) {
	resp, err := t.roundTrip(ctx, to, &pb.Request{Type: pb.Request_OWNS, Key: key[:]})
	if err != nil {
		return false, err
	}
	return resp.GetDone(), nil
}

func (t *ringTransport) Ping(ctx context.Context, to chord.Ref) error {
	_, err := t.roundTrip(ctx, to, &pb.Request{Type: pb.Request_PING})
	return err
}

// serve handles one inbound ring stream. A malformed, oversized or truncated
// request resets the stream with resetBadMessage; nothing else is affected.
func (t *ringTransport) serve(s network.Stream) {
	t.stats.CallsIn.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), maxServeTime)
	defer cancel()
	defer bound(ctx, s)()

	req := &pb.Request{}
	// A request must arrive promptly: a peer that opens a stream and stalls
	// holds it for at most this long.
	readCtx, readDone := context.WithTimeout(ctx, 10*time.Second)
	stopRead := bound(readCtx, s)
	err := readMsg(bufio.NewReader(s), req, maxRingMessage)
	stopRead()
	readDone()
	if err != nil {
		t.stats.BadStreams.Add(1)
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	resp, err := t.handle(ctx, s.Conn().RemotePeer(), req)
	if err != nil {
		t.stats.BadStreams.Add(1)
		_ = s.ResetWithError(resetBadMessage)
		return
	}
	if err := writeMsg(s, resp); err != nil {
		s.Reset()
		return
	}
	t.stats.BytesIn.Add(int64(proto.Size(req)))
	t.stats.BytesOut.Add(int64(proto.Size(resp)))
	_ = s.Close()
}

// handle answers one request. An error means the request itself was bad;
// failures of the operation travel in the response's status.
func (t *ringTransport) handle(ctx context.Context, from p2ppeer.ID, req *pb.Request) (*pb.Response, error) {
	if req.GetToVnode() >= chord.MaxVnodes {
		return nil, fmt.Errorf("%w: vnode %d", errBadMessage, req.GetToVnode())
	}
	to := chord.VnodeID([]byte(t.h.ID()), req.GetToVnode())
	resp := &pb.Response{}
	var opErr error
	switch req.GetType() {
	case pb.Request_FIND_SUCCESSOR:
		key, err := decodeKey(req.GetKey())
		if err != nil {
			return nil, err
		}
		if req.GetBudgetMs() > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(req.GetBudgetMs())*time.Millisecond)
			defer cancel()
		}
		var res chord.LookupResult
		res, opErr = t.node.HandleFindSuccessor(ctx, to, key, int(req.GetHops()), wantOf(req))
		resp.Nodes, resp.Hops = t.codec.encodeAll(res.Successors), uint32(res.Hops)
	case pb.Request_NEXT_HOP:
		key, err := decodeKey(req.GetKey())
		if err != nil {
			return nil, err
		}
		var st chord.Step
		st, opErr = t.node.HandleNextHop(ctx, to, key, wantOf(req), hopCostFromWire(req.GetHopCostUs()), req.GetBrief())
		resp.Done, resp.Nodes = st.Done, t.codec.encodeAll(st.Nodes)
	case pb.Request_NEIGHBORS:
		var self chord.Ref
		if fv := req.GetFromVnode(); fv > 0 {
			if fv > chord.MaxVnodes {
				return nil, fmt.Errorf("%w: from vnode %d", errBadMessage, fv-1)
			}
			// The asker is a vnode of the peer the secure channel proved.
			self = chord.MakeRef(string(from), fv-1)
		}
		var nb chord.Neighbors
		nb, opErr = t.node.HandleNeighbors(ctx, to, self, req.GetKnownDigest())
		resp.Predecessor = t.codec.encode(nb.Predecessor)
		resp.Nodes, resp.Digest, resp.Unchanged = t.codec.encodeAll(nb.Successors), nb.Digest, nb.Unchanged
	case pb.Request_CHANGED:
		opErr = t.node.HandleChanged(ctx, to)
	case pb.Request_OWNS:
		key, err := decodeKey(req.GetKey())
		if err != nil {
			return nil, err
		}
		resp.Done, opErr = t.node.HandleOwns(ctx, to, key)
	case pb.Request_PING:
		opErr = t.node.HandlePing(ctx, to)
	default:
		return nil, fmt.Errorf("%w: request type %d", errBadMessage, req.GetType())
	}
	if opErr != nil {
		resp = &pb.Response{Status: statusOf(opErr), Error: opErr.Error()}
	}
	return resp, nil
}

// wantOf bounds how many successors a request may ask for.
func wantOf(req *pb.Request) int {
	return int(min(max(req.GetWant(), 1), maxRefsPerMessage/2))
}
