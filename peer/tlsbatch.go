package peer

import (
	"context"
	"net"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// batchedTLS is libp2p's TLS 1.3 security transport with one change below
// it: a large write leaves in one write to the socket instead of one per
// TLS record. crypto/tls seals a write in records of at most 16 KiB and
// hands each to the socket on its own, so a 64 KiB yamux frame cost four
// write(2) calls, four loopback TCP segments and up to four wakeups of the
// reader. The bytes on the wire are the same TLS records: peers see no
// difference, and the protocol ID stays libp2ptls.ID.
type batchedTLS struct{ inner *libp2ptls.Transport }

var _ sec.SecureTransport = batchedTLS{}

// newBatchedTLS has libp2ptls.New's signature, for libp2p.Security.
func newBatchedTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (sec.SecureTransport, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return batchedTLS{t}, nil
}

func (t batchedTLS) ID() protocol.ID { return t.inner.ID() }

func (t batchedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p p2ppeer.ID) (sec.SecureConn, error) {
	raw := &corkConn{Conn: insecure}
	sc, err := t.inner.SecureInbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

func (t batchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p p2ppeer.ID) (sec.SecureConn, error) {
	raw := &corkConn{Conn: insecure}
	sc, err := t.inner.SecureOutbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

// tlsRecordPayload is the most plaintext crypto/tls puts in one record: a
// write of at most this much is one record, and one socket write anyway.
const tlsRecordPayload = 16 << 10

// batchedConn is a TLS connection whose large writes are collected below
// the TLS layer (corkConn) and sent with one socket write.
type batchedConn struct {
	sec.SecureConn
	raw *corkConn
	wmu sync.Mutex // one corked write at a time
}

func (c *batchedConn) Write(b []byte) (int, error) {
	if len(b) <= tlsRecordPayload {
		return c.SecureConn.Write(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.raw.cork(len(b))
	n, err := c.SecureConn.Write(b)
	if ferr := c.raw.uncork(); ferr != nil {
		// What TLS sealed never left: none of b was written.
		return 0, ferr
	}
	return n, err
}

// corkConn is the socket under a batchedConn. While corked it keeps what
// TLS writes; uncork sends it in one write. The buffer is pooled: it holds
// one write's records only while that write runs.
type corkConn struct {
	net.Conn
	mu     sync.Mutex // guards corked and buf; held across socket writes, which keeps them in order
	corked bool
	buf    *[]byte
}

// recordOverhead bounds what TLS 1.3 adds to a record's payload: a 5-byte
// header, the content type byte and a 16-byte AEAD tag.
const recordOverhead = 5 + 1 + 16

var corkBufs sync.Pool

func (c *corkConn) cork(plaintext int) {
	want := plaintext + (plaintext/tlsRecordPayload+1)*recordOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = true
	if p, ok := corkBufs.Get().(*[]byte); ok && cap(*p) >= want {
		c.buf = p
	} else {
		// A yamux frame (64 KiB of payload at most) fits: the usual case.
		b := make([]byte, 0, max(want, 64<<10+5*recordOverhead))
		c.buf = &b
	}
	*c.buf = (*c.buf)[:0]
}

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		*c.buf = append(*c.buf, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// uncork sends what was written while corked, in one write.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	p := c.buf
	c.buf = nil
	_, err := c.Conn.Write(*p)
	*p = (*p)[:0]
	corkBufs.Put(p)
	return err
}
