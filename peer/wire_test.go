package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-yamux/v5"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"chordshare/chord"
	"chordshare/peer/pb"
)

func frame(m proto.Message) []byte {
	var b bytes.Buffer
	if _, err := protodelim.MarshalTo(&b, m); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// A peer that sends malformed, oversized or truncated ring messages gets its
// stream reset; the node keeps answering everyone else.
func TestBadRingMessagesResetOnlyTheirStream(t *testing.T) {
	r := newMockRing(t, testConfig())
	nodes := r.add(2)
	r.joinAll(nodes)
	r.converge(20)
	victim, bystander := nodes[0], nodes[1]
	attacker, err := r.mn.GenPeer() // a bare host, not a ring node
	if err != nil {
		t.Fatal(err)
	}
	r.link(attacker)
	if err := attacker.Connect(context.Background(), addrInfo(victim)); err != nil {
		t.Fatal(err)
	}

	huge := binary.AppendUvarint(nil, 1<<30)
	valid := frame(&pb.Request{Type: pb.Request_PING})
	cases := map[string][]byte{
		"garbage protobuf":        append(binary.AppendUvarint(nil, 5), 0xff, 0xff, 0xff, 0xff, 0xff),
		"oversized length":        append(huge, make([]byte, 64)...),
		"over the size cap":       frame(&pb.Request{Type: pb.Request_NEXT_HOP, Key: make([]byte, maxRingMessage+1)}),
		"truncated":               valid[:len(valid)-1],
		"empty stream":            nil,
		"unknown request type":    frame(&pb.Request{Type: 99}),
		"short key":               frame(&pb.Request{Type: pb.Request_NEXT_HOP, Key: []byte{1, 2, 3}}),
		"vnode out of range":      frame(&pb.Request{Type: pb.Request_PING, ToVnode: chord.MaxVnodes}),
		"from vnode out of range": frame(&pb.Request{Type: pb.Request_NEIGHBORS, FromVnode: chord.MaxVnodes + 1}),
		"owns short key":          frame(&pb.Request{Type: pb.Request_OWNS, Key: []byte{1, 2, 3}}),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			expectReset(t, ctx, attacker, victim.Host().ID(), RingProtocol, payload)
			// The victim still serves the others.
			st := victim.Chord().Vnodes()[0]
			if err := bystander.tr.Ping(ctx, st); err != nil {
				t.Fatalf("victim stopped serving after %s: %v", name, err)
			}
		})
	}
	if got := victim.Stats().BadStreams.Load(); got != int64(len(cases)) {
		t.Errorf("victim counted %d bad streams, want %d", got, len(cases))
	}
}

// expectReset sends payload on a new stream of proto and fails t unless the
// receiver resets the stream rather than answering.
func expectReset(t *testing.T, ctx context.Context, from host.Host, to p2ppeer.ID, proto protocol.ID, payload []byte) {
	t.Helper()
	s, err := from.NewStream(ctx, to, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	if got, err := io.ReadAll(bufio.NewReader(s)); err == nil {
		t.Fatalf("stream not reset; got %d bytes of answer", len(got))
	}
}

// FuzzRingRequest feeds arbitrary bytes to the request decoder and to the
// handler of one peer of a three-peer ring: they may refuse, never panic.
func FuzzRingRequest(f *testing.F) {
	f.Add(frame(&pb.Request{Type: pb.Request_PING}))
	f.Add(frame(&pb.Request{Type: pb.Request_NEXT_HOP, Key: make([]byte, 32), Want: 3}))
	f.Add(frame(&pb.Request{Type: pb.Request_NEXT_HOP, Key: make([]byte, 32), Want: 3, HopCostUs: math.MaxUint32}))
	f.Add(frame(&pb.Request{Type: pb.Request_NEXT_HOP, Key: make([]byte, 32), Want: 3, Brief: true}))
	f.Add(frame(&pb.Request{Type: pb.Request_FIND_SUCCESSOR, Key: make([]byte, 32), Hops: 70, BudgetMs: 5}))
	f.Add(frame(&pb.Request{Type: pb.Request_NEIGHBORS, KnownDigest: 7}))
	f.Add(frame(&pb.Request{Type: pb.Request_NEIGHBORS, FromVnode: 3}))
	f.Add(frame(&pb.Request{Type: pb.Request_OWNS, Key: make([]byte, 32)}))
	f.Add(frame(&pb.Request{Type: pb.Request_CHANGED, ToVnode: 1}))
	// Three joined peers, so a NEXT_HOP or FIND_SUCCESSOR for most keys
	// is routed past the one that answers it, not answered from a ring of one.
	r := newMockRing(f, testConfig())
	nodes := r.add(3)
	r.joinAll(nodes)
	r.converge(50)
	from := nodes[1].Host().ID()
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.Request{}
		if err := readMsg(bufio.NewReader(bytes.NewReader(data)), req, maxRingMessage); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := nodes[0].tr.handle(ctx, from, req)
		if err == nil && resp == nil {
			t.Fatal("no response and no error")
		}
	})
}

// A ref's position is derived from its peer ID, never taken from the wire.
func TestDecodedRefPositionIsDerived(t *testing.T) {
	r := newMockRing(t, testConfig())
	n := r.add(1)[0]
	codec := refCodec{ps: n.Host().Peerstore()}
	want := chord.MakeRef(string(n.Host().ID()), 5)
	got, err := codec.decode(codec.encode(want))
	if err != nil || got != want {
		t.Fatalf("round trip: %v %v, want %v", got, err, want)
	}
}

// Refs in answers are bounded: too many addresses or a bad peer ID refuse
// the whole answer.
func TestDecodeRefRejectsBadRefs(t *testing.T) {
	r := newMockRing(t, testConfig())
	n := r.add(1)[0]
	codec := refCodec{ps: n.Host().Peerstore()}
	for name, w := range map[string]*pb.NodeRef{
		"bad peer id":    {Peer: []byte("not a peer id")},
		"too many addrs": {Peer: []byte(n.Host().ID()), Addrs: make([][]byte, maxAddrsPerRef+1)},
		"vnode range":    {Peer: []byte(n.Host().ID()), Vnode: chord.MaxVnodes},
	} {
		if _, err := codec.decode(w); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// An iterative asker's hop cost survives the wire in whole microseconds,
// clamped to the field's range at both ends.
func TestHopCostWire(t *testing.T) {
	for _, c := range []struct{ in, out time.Duration }{
		{0, 0},
		{1500 * time.Microsecond, 1500 * time.Microsecond},
		{1500*time.Microsecond + 999, 1500 * time.Microsecond},
		{-time.Second, 0},
		{time.Duration(math.MaxInt64), time.Duration(math.MaxUint32) * time.Microsecond},
	} {
		if got := hopCostFromWire(hopCostToWire(c.in)); got != c.out {
			t.Errorf("hop cost %v came through as %v, want %v", c.in, got, c.out)
		}
	}
}

// A read that hit its deadline is reported as a timeout, not as a
// malformed message (a put on a congested link said "malformed ring
// message: i/o deadline reached").
func TestReadErrorTimeoutIsNotMalformed(t *testing.T) {
	for _, err := range []error{os.ErrDeadlineExceeded, yamux.ErrTimeout} {
		got := readError(err)
		if errors.Is(got, errBadMessage) || !strings.HasPrefix(got.Error(), "timed out") {
			t.Errorf("readError(%v) = %v, want a timeout", err, got)
		}
	}
	if got := readError(errors.New("garbage")); !errors.Is(got, errBadMessage) {
		t.Errorf("readError(garbage) = %v, want a malformed message", got)
	}
}

// Each answered ring call lands in the first bucket whose bound it does
// not exceed; past the last bound, in the open bucket (le_ms 0).
func TestRingCallLatencyBuckets(t *testing.T) {
	var s RingStats
	s.CallsOut.Add(5)
	s.FailedCalls.Add(1)
	for _, d := range []time.Duration{0, 10 * time.Millisecond, 10*time.Millisecond + 1, 8 * time.Second, 8*time.Second + 1} {
		s.recordAnswer(d)
	}
	c := s.Calls()
	if c.Out != 5 || c.Failed != 1 {
		t.Errorf("out %d, failed %d; want 5, 1", c.Out, c.Failed)
	}
	if len(c.Answered) != len(ringLatencyBounds)+1 {
		t.Fatalf("%d buckets, want %d", len(c.Answered), len(ringLatencyBounds)+1)
	}
	want := map[int]int64{0: 2, 1: 1, len(ringLatencyBounds) - 1: 1, len(ringLatencyBounds): 1}
	for i, b := range c.Answered {
		if b.Count != want[i] {
			t.Errorf("bucket %d (le %d ms): %d calls, want %d", i, b.LeMs, b.Count, want[i])
		}
		wantLe := int64(0) // the open bucket
		if i < len(ringLatencyBounds) {
			wantLe = ringLatencyBounds[i].Milliseconds()
		}
		if b.LeMs != wantLe {
			t.Errorf("bucket %d: le %d ms, want %d", i, b.LeMs, wantLe)
		}
	}
}

// A brief NEXT_HOP crosses the wire as such: where the full answer names
// several next hops, the brief one names only the first of them.
func TestBriefNextHopOnTheWire(t *testing.T) {
	cfg := testConfig()
	// Lists shorter than the ring, so most answers are not final.
	cfg.Chord.SuccessorListLen = 2
	r := newMockRing(t, cfg)
	nodes := r.add(6)
	r.joinAll(nodes)
	r.converge(100)
	asker, to := nodes[1], nodes[0].Chord().Vnodes()[0]
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		var key chord.ID
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		full, err := asker.tr.NextHop(ctx, to, key, 1, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if full.Done || len(full.Nodes) < 2 {
			continue
		}
		brief, err := asker.tr.NextHop(ctx, to, key, 1, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if brief.Done || len(brief.Nodes) != 1 || brief.Nodes[0] != full.Nodes[0] {
			t.Fatalf("brief answer %+v, want the first of the full answer's %v", brief, full.Nodes)
		}
		return
	}
	t.Fatal("no key whose full answer names two next hops: the ring no longer tests brief answers")
}
