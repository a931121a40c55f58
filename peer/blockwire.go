package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// The block protocol's framing (pb/block.proto): a varint-delimited
// protobuf header, then its payload as raw bytes. A block moves from disk
// to the stream and from the stream to disk through pooled buffers, never
// through a marshaller.

// maxBlockHeader caps a block message's header: a type, a CID (under
// 100 bytes for any hash the store accepts), a size and an error string
// the sender cuts to errorTextLen.
const (
	maxBlockHeader = 1 << 10
	errorTextLen   = 200
)

// headFrame is how much of a payload rides in the header's write: small
// payloads whole, and the first bytes of a large one, so that the peer
// sees the answer start flowing (the hedge in Get waits for that) and
// mocknet, which holds back writes under 256 bytes until the next one is
// due, delivers the header on time.
const headFrame = 4 << 10

// movedChunk is how much of a payload an unpaced write hands the stream
// at once when its sender counts the bytes as they go (a share's stall
// guard): one call per yamux frame's payload (64 KiB less its 12-byte
// header), 16 s of the slowest link a put is timed for, and none per
// byte. A part of a full 64 KiB would cost yamux a second frame for its
// last 12 bytes, and batchedTLS a record and a socket write for them.
const movedChunk = 64<<10 - 12

// writeBlockMsg sends hdr and then payload. The payload goes to the stream
// as it is, past its first headFrame bytes: no copy into a message. In a
// paced uplink's turn tn, if set, the message is paced, within ctx. moved,
// if set, is called whenever a part of the message has been written.
func writeBlockMsg(ctx context.Context, tn *turn, s network.Stream, hdr proto.Message, payload []byte, moved func()) error {
	n := proto.Size(hdr)
	if n > maxBlockHeader {
		return fmt.Errorf("block header of %d bytes exceeds %d", n, maxBlockHeader)
	}
	// The frame escapes to the stream: pooled, not on the stack.
	frame := getBuf(binary.MaxVarintLen64 + maxBlockHeader + headFrame)
	defer putBuf(frame)
	b := binary.AppendUvarint(frame[:0], uint64(n))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, hdr)
	if err != nil {
		return err
	}
	head := min(len(payload), headFrame)
	b = append(b, payload[:head]...)
	if tn != nil {
		return tn.send(ctx, s, moved, b, payload[head:])
	}
	// Unwatched, the rest goes in one write, as it always did.
	chunk := len(payload)
	if moved != nil {
		chunk = movedChunk
	}
	for part, rest := b, payload[head:]; len(part) > 0; {
		if _, err := s.Write(part); err != nil {
			return err
		}
		if moved != nil {
			moved()
		}
		part, rest = rest[:min(len(rest), chunk)], rest[min(len(rest), chunk):]
	}
	return nil
}

// readBlockHeader reads one header into hdr. Its length is checked against
// maxBlockHeader before anything is read.
func readBlockHeader(r *bufio.Reader, hdr proto.Message) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return readError(err)
	}
	if n > maxBlockHeader {
		return fmt.Errorf("%w: block header of %d bytes, the limit is %d", errBadMessage, n, maxBlockHeader)
	}
	var buf [maxBlockHeader]byte
	b := buf[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return readError(err)
	}
	if err := proto.Unmarshal(b, hdr); err != nil {
		return fmt.Errorf("%w: %v", errBadMessage, err)
	}
	return nil
}

// readPayload reads the size bytes that follow a header into a pooled
// buffer, which the caller hands back with putBuf when done. size must
// already be checked against maxBlockSize. received, if set, is called
// whenever some of the bytes have arrived, with how many have so far.
func readPayload(r *bufio.Reader, size uint32, received func(got int)) ([]byte, error) {
	b := getBuf(int(size))
	for got := 0; got < len(b); {
		n, err := r.Read(b[got:])
		got += n
		if n > 0 && received != nil {
			received(got)
		}
		if err != nil && got < len(b) {
			putBuf(b)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, readError(err)
		}
	}
	return b, nil
}

// Block buffers come from one pool per power of two from 4 KiB to
// maxBlockSize. Blocks are mostly 256 KiB leaves: without the pools every
// one of them would be allocated, zeroed and collected on every hop.
const (
	minBufShift = 12
	maxBufShift = 21 // maxBlockSize
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n (at most maxBlockSize); its
// contents are undefined.
func getBuf(n int) []byte {
	c := bufClass(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

// putBuf returns a buffer from getBuf to its pool. b must not be used
// after.
func putBuf(b []byte) {
	c := bufClass(cap(b))
	if c >= len(bufPools) || cap(b) != 1<<(c+minBufShift) {
		return // not one of ours
	}
	b = b[:0]
	bufPools[c].Put(&b)
}

// ReleaseBlock hands a block that Node.Get returned back to the node's
// buffer pool, for the next block to reuse. b must not be used after.
func ReleaseBlock(b []byte) { putBuf(b) }

// blockStream is one outbound block stream and its reader, kept between
// exchanges.
type blockStream struct {
	s    network.Stream
	r    *bufio.Reader
	idle time.Time // when it was last put back
}

// Client side of stream reuse: a stream carries one exchange at a time,
// and goes back to its peer's idle list when that exchange ends well.
const (
	// maxIdleBlockStreams per peer covers a fetch window's or a share's
	// requests to one replica without keeping a stream per block.
	maxIdleBlockStreams = 32
	// blockStreamIdle is how long an unused stream is kept. The server
	// closes streams idle for longer (serveBlockIdle), so a stream
	// taken from the pool is rarely one the server is closing.
	blockStreamIdle = 30 * time.Second
	serveBlockIdle  = 2 * blockStreamIdle
)

// blockStreams is the pool of idle outbound block streams, per peer.
type blockStreams struct {
	mu     sync.Mutex
	idle   map[p2ppeer.ID][]*blockStream
	closed bool
}

func newBlockStreams() *blockStreams {
	return &blockStreams{idle: map[p2ppeer.ID][]*blockStream{}}
}

// get returns the most recently used idle stream to p, or nil.
func (b *blockStreams) get(p p2ppeer.ID) *blockStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.idle[p]
	for len(l) > 0 {
		bs := l[len(l)-1]
		l = l[:len(l)-1]
		if time.Since(bs.idle) < blockStreamIdle {
			b.setIdle(p, l)
			return bs
		}
		// The rest are older still: close them all.
		for _, old := range append(l, bs) {
			_ = old.s.Close()
		}
		l = l[:0]
	}
	b.setIdle(p, l)
	return nil
}

func (b *blockStreams) setIdle(p p2ppeer.ID, l []*blockStream) {
	if len(l) == 0 {
		delete(b.idle, p)
		return
	}
	b.idle[p] = l
}

// put keeps bs for the next exchange with p, unless the pool is closed or
// already holds enough streams to p.
func (b *blockStreams) put(p p2ppeer.ID, bs *blockStream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.idle[p]) >= maxIdleBlockStreams {
		_ = bs.s.Close()
		return
	}
	bs.idle = time.Now()
	b.idle[p] = append(b.idle[p], bs)
}

// close closes every idle stream; streams put back after are closed too.
func (b *blockStreams) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for p, l := range b.idle {
		for _, bs := range l {
			_ = bs.s.Close()
		}
		delete(b.idle, p)
	}
}
