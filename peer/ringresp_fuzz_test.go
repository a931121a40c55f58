package peer

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
	"chordshare/peer/pb"
)

// FuzzRingResponse answers every ring call of one node with arbitrary bytes:
// each call must fail or return refs that name a valid peer and vnode, never
// panic. The requests' own decoding is FuzzRingRequest's.
func FuzzRingResponse(f *testing.F) {
	r := newMockRing(f, testConfig())
	asker := r.add(1)[0]
	liar, err := r.mn.GenPeer()
	if err != nil {
		f.Fatal(err)
	}
	r.link(liar)
	// The well-formed seeds name the liar itself, so that they decode and
	// the fuzzer mutates from answers that pass.
	ref := &pb.NodeRef{Peer: []byte(liar.ID()), Vnode: 2}
	f.Add(frame(&pb.Response{Nodes: []*pb.NodeRef{ref}, Done: true}))
	f.Add(frame(&pb.Response{Predecessor: ref, Nodes: []*pb.NodeRef{ref, ref}}))
	f.Add(frame(&pb.Response{Nodes: []*pb.NodeRef{ref, nil}}))
	f.Add(frame(&pb.Response{Status: pb.Response_UNKNOWN_VNODE}))
	f.Add(frame(&pb.Response{Nodes: []*pb.NodeRef{{Peer: []byte("x"), Addrs: [][]byte{{4, 127, 0}}}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	answer := make(chan []byte, 1)
	liar.SetStreamHandler(RingProtocol, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write(<-answer)
	})
	to := chord.MakeRef(string(liar.ID()), 0)
	tr := asker.tr
	calls := []func(context.Context) ([]chord.Ref, error){
		func(ctx context.Context) ([]chord.Ref, error) {
			res, err := tr.FindSuccessor(ctx, to, chord.ID{}, 0, 3)
			return res.Successors, err
		},
		func(ctx context.Context) ([]chord.Ref, error) {
			step, err := tr.NextHop(ctx, to, chord.ID{}, 3, time.Millisecond, true)
			return step.Nodes, err
		},
		func(ctx context.Context) ([]chord.Ref, error) {
			nb, err := tr.Neighbors(ctx, to, chord.Ref{}, 0)
			return append(nb.Successors, nb.Predecessor), err
		},
		func(ctx context.Context) ([]chord.Ref, error) {
			_, err := tr.Owns(ctx, to, chord.ID{})
			return nil, err
		},
		func(ctx context.Context) ([]chord.Ref, error) { return nil, tr.Ping(ctx, to) },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, call := range calls {
			answer <- data
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			refs, err := call(ctx)
			cancel()
			if err != nil {
				// The handler may not have taken this call's answer.
				select {
				case <-answer:
				default:
				}
				continue
			}
			for _, ref := range refs {
				if ref.IsZero() {
					continue
				}
				if _, err := p2ppeer.IDFromBytes([]byte(ref.Addr)); err != nil {
					t.Fatalf("accepted a ref with a bad peer ID: %v", err)
				}
				if ref.Vnode >= chord.MaxVnodes {
					t.Fatalf("accepted vnode %d", ref.Vnode)
				}
			}
		}
	})
}
