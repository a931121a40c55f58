package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"testing/iotest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"google.golang.org/protobuf/proto"

	"chordshare/peer/pb"
)

// blockFrame is a block message as the wire carries it: header, payload.
func blockFrame(hdr proto.Message, payload []byte) []byte {
	b, err := proto.Marshal(hdr)
	if err != nil {
		panic(err)
	}
	out := binary.AppendUvarint(nil, uint64(len(b)))
	return append(append(out, b...), payload...)
}

// A peer that sends malformed, oversized or truncated block requests gets
// its stream reset and nothing stored; the node keeps serving blocks to
// everyone else, on new streams and on reused ones.
func TestBadBlockRequestsResetOnlyTheirStream(t *testing.T) {
	r, stores := storedRing(t, 2)
	victim, bystander := r.nodes[0], r.nodes[1]
	attacker, err := r.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	r.link(attacker)
	if err := attacker.Connect(context.Background(), addrInfo(victim)); err != nil {
		t.Fatal(err)
	}
	data := []byte("a block the bystander reads back")
	c := rawBlock(t, data)
	if err := bystander.storeAt(context.Background(), victim.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	planted := rawBlock(t, []byte("never stored"))
	put := func(size uint32) *pb.BlockRequest {
		return &pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: planted.Bytes(), Size: size}
	}
	huge := binary.AppendUvarint(nil, 1<<30)
	cases := map[string][]byte{
		"garbage header":           append(binary.AppendUvarint(nil, 5), 0xff, 0xff, 0xff, 0xff, 0xff),
		"header over the cap":      append(binary.AppendUvarint(nil, maxBlockHeader+1), make([]byte, maxBlockHeader+1)...),
		"huge header length":       append(huge, make([]byte, 64)...),
		"payload over 2 MiB":       blockFrame(put(maxBlockSize+1), make([]byte, 64)),
		"truncated payload":        blockFrame(put(1000), make([]byte, 999)),
		"truncated header":         blockFrame(put(3), []byte("abc"))[:4],
		"bad CID":                  blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: []byte("no cid")}, nil),
		"unknown request type":     blockFrame(&pb.BlockRequest{Type: 99, Cid: c.Bytes()}, nil),
		"payload on a GET":         blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes(), Size: 4}, []byte("abcd")),
		"bad second request":       append(blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_HAS, Cid: c.Bytes()}, nil), 0x05, 0xff),
		"varint longer than 64bit": bytes.Repeat([]byte{0xff}, 11),
		"hint on a GET":            blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes(), HintFor: []byte(bystander.Host().ID())}, nil),
		"hint for a bad peer ID":   blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: planted.Bytes(), Size: 3, HintFor: []byte("nope")}, []byte("abc")),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			expectReset(t, ctx, attacker, victim.Host().ID(), BlockProtocol, payload)
			got, err := bystander.fetchFrom(ctx, victim.Host().ID(), c)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("victim stopped serving after %s: %v", name, err)
			}
		})
	}
	if stores[victim].Has(planted) {
		t.Error("a malformed put stored a block")
	}
	// A payload cut short is a peer gone rather than a bad message: every
	// case but that one counts.
	if got, want := victim.blocks.badStreams.Load(), int64(len(cases)-1); got != want {
		t.Errorf("victim counted %d bad block streams, want %d", got, want)
	}
}

// A stream carries exchange after exchange; a pooled stream the server has
// closed in the meantime costs a retry, not a failure.
func TestBlockStreamsAreReused(t *testing.T) {
	r, _ := storedRing(t, 2)
	a, b := r.nodes[0], r.nodes[1]
	ctx := context.Background()
	for i := range 20 {
		data := bytes.Repeat([]byte{byte(i)}, 1000+i)
		c := rawBlock(t, data)
		if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
			t.Fatal(err)
		}
		got, err := a.fetchFrom(ctx, b.Host().ID(), c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("block %d: %v", i, err)
		}
	}
	streams := 0
	for _, conn := range a.Host().Network().ConnsToPeer(b.Host().ID()) {
		for _, s := range conn.GetStreams() {
			if s.Protocol() == BlockProtocol {
				streams++
			}
		}
	}
	if streams != 1 {
		t.Fatalf("%d block streams open after 40 sequential exchanges, want 1", streams)
	}
	// The server side goes away (as after serveBlockIdle); the next
	// exchange still succeeds.
	for _, conn := range b.Host().Network().ConnsToPeer(a.Host().ID()) {
		for _, s := range conn.GetStreams() {
			if s.Protocol() == BlockProtocol {
				_ = s.Reset()
			}
		}
	}
	data := []byte("after the reset")
	c := rawBlock(t, data)
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatalf("put on a stream the server reset: %v", err)
	}
}

// FuzzBlockHeader feeds arbitrary bytes to the block header decoder: it
// may refuse, never panic, and never accepts a header over the cap.
func FuzzBlockHeader(f *testing.F) {
	f.Add(blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: make([]byte, 36)}, nil))
	f.Add(blockFrame(&pb.BlockRequest{Type: pb.BlockRequest_PUT, Cid: make([]byte, 36), Size: 5}, []byte("hello")))
	f.Add(blockFrame(&pb.BlockResponse{Status: pb.BlockResponse_FULL, Error: "full"}, nil))
	f.Add(binary.AppendUvarint(nil, maxBlockHeader+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		req := &pb.BlockRequest{}
		if err := readBlockHeader(r, req); err != nil {
			return
		}
		if proto.Size(req) > maxBlockHeader {
			t.Fatalf("accepted a header of %d bytes", proto.Size(req))
		}
		if req.GetSize() <= maxBlockSize {
			if b, err := readPayload(r, req.GetSize(), nil); err == nil {
				if len(b) != int(req.GetSize()) {
					t.Fatalf("payload of %d bytes, header says %d", len(b), req.GetSize())
				}
				putBuf(b)
			}
		}
	})
}

// The pool hands out buffers of the asked length, in power-of-two
// classes up to the largest block, and takes back only its own.
func TestBufPool(t *testing.T) {
	if maxBlockSize != 1<<maxBufShift {
		t.Fatalf("maxBufShift %d does not match maxBlockSize %d", maxBufShift, maxBlockSize)
	}
	for _, n := range []int{0, 1, 4096, 4097, 256 << 10, 256<<10 + 1, maxBlockSize} {
		b := getBuf(n)
		if len(b) != n || cap(b) < n || cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("getBuf(%d): len %d cap %d", n, len(b), cap(b))
		}
		putBuf(b)
	}
	putBuf(make([]byte, 5000)) // not a class size: dropped, no panic
	putBuf(nil)
}

// readPayload reports each arrival of payload bytes and how many have come
// (what tells a slow link from a stalled replica, and how far along a
// transfer is) and refuses a payload cut short.
func TestReadPayloadReportsArrivals(t *testing.T) {
	payload := bytes.Repeat([]byte("block"), 1000)
	arrivals, last := 0, 0
	r := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(payload)), 16)
	got, err := readPayload(r, uint32(len(payload)), func(n int) {
		if n <= last {
			t.Errorf("progress went from %d to %d bytes", last, n)
		}
		arrivals, last = arrivals+1, n
	})
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if arrivals < 2 || last != len(payload) {
		t.Errorf("%d arrivals reported for a payload read in pieces, the last at %d of %d bytes", arrivals, last, len(payload))
	}
	short := bufio.NewReader(bytes.NewReader(payload[:100]))
	if _, err := readPayload(short, uint32(len(payload)), nil); err == nil {
		t.Error("a truncated payload was read without error")
	}
}

// writeStream records each write a block message makes.
type writeStream struct {
	network.Stream // nil: only Write is used
	buf            bytes.Buffer
	writes         []int
}

func (s *writeStream) Write(b []byte) (int, error) {
	s.writes = append(s.writes, len(b))
	return s.buf.Write(b)
}

// A block message whose sender counts its bytes as they go (a share's
// put, moved set) carries the same bytes as one that does not, and its
// parts each fill one yamux frame: a part a few bytes over a frame would
// cost a frame of its own, a TLS record and a socket write for those
// bytes (batchedTLS), at every part.
func TestWatchedBlockMsgKeepsFramesWhole(t *testing.T) {
	frame := int(yamux.DefaultTransport.Config().MaxMessageSize) - 12 // yamux's header
	payload := bytes.Repeat([]byte("watched "), (256<<10)/8)
	req := &pb.BlockRequest{Type: pb.BlockRequest_PUT, Size: uint32(len(payload))}
	var plain, watched writeStream
	if err := writeBlockMsg(context.Background(), nil, &plain, req, payload, nil); err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := writeBlockMsg(context.Background(), nil, &watched, req, payload, func() { calls++ }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain.buf.Bytes(), blockFrame(req, payload)) || !bytes.Equal(watched.buf.Bytes(), plain.buf.Bytes()) {
		t.Fatal("the watched message's bytes differ from the unwatched one's")
	}
	if len(plain.writes) != 2 {
		t.Fatalf("unwatched writes %v; want the head and the rest", plain.writes)
	}
	rest := len(payload) - headFrame
	if want := 1 + (rest+frame-1)/frame; len(watched.writes) != want || calls != want {
		t.Fatalf("watched writes %v, %d calls; want %d writes of at most %d bytes", watched.writes, calls, want, frame)
	}
	for _, w := range watched.writes[1:] {
		if w > frame {
			t.Fatalf("watched writes %v: one is over a yamux frame of %d bytes", watched.writes, frame)
		}
	}
}
