package peer

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// A host whose TLS batches its records (batchedTLS) talks to stock libp2p
// TLS and to its own kind, both ways, over streams carrying writes of every
// size around the record and frame boundaries, several at once.
func TestBatchedTLSInterop(t *testing.T) {
	mk := func(sec libp2p.Option) host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.Transport(tcp.NewTCPTransport), sec,
			libp2p.ResourceManager(&network.NullResourceManager{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	stock := libp2p.ChainOptions(libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	for _, pair := range []struct {
		name     string
		from, to libp2p.Option
	}{
		{"batched to stock", streamOptions(), stock},
		{"stock to batched", stock, streamOptions()},
		{"batched to batched", streamOptions(), streamOptions()},
	} {
		t.Run(pair.name, func(t *testing.T) {
			src, dst := mk(pair.from), mk(pair.to)
			// The server echoes what it reads, in pieces of its own sizes.
			dst.SetStreamHandler("/echo", func(s network.Stream) {
				defer s.Close()
				buf := make([]byte, 100<<10+7)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						_ = s.CloseWrite()
						return
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := src.Connect(ctx, p2ppeer.AddrInfo{ID: dst.ID(), Addrs: dst.Addrs()}); err != nil {
				t.Fatal(err)
			}
			if sec := src.Network().ConnsToPeer(dst.ID())[0].ConnState().Security; sec != libp2ptls.ID {
				t.Fatalf("security %q, want %q", sec, libp2ptls.ID)
			}
			sizes := []int{1, tlsRecordPayload - 1, tlsRecordPayload, tlsRecordPayload + 1, 64<<10 - 12, 64 << 10, 64<<10 + 1, 256 << 10, 1<<20 + 3}
			errs := make(chan error, 4)
			for k := range 4 {
				go func() { errs <- echo(ctx, src, dst.ID(), sizes, uint64(k)) }()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// echo sends writes of the given sizes on a new stream and checks that the
// same bytes come back.
func echo(ctx context.Context, src host.Host, to p2ppeer.ID, sizes []int, seed uint64) error {
	s, err := src.NewStream(ctx, to, "/echo")
	if err != nil {
		return err
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	var sent bytes.Buffer
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		sent.Write(b)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		got <- b
	}()
	for off := 0; off < sent.Len(); {
		n := sizes[0]
		sizes = sizes[1:]
		if _, err := s.Write(sent.Bytes()[off : off+n]); err != nil {
			return err
		}
		off += n
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, sent.Bytes()) {
			return io.ErrUnexpectedEOF
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
