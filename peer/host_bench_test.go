package peer

import (
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"chordshare/internal/cpustat"
)

// BenchmarkStreamSecurity sends 256 KiB writes over one libp2p stream
// between two hosts on loopback TCP, and reports the process's CPU time per
// byte (both ends): with stock yamux, secured by Noise (ChaCha20-Poly1305)
// or TLS 1.3 (AES-GCM), which is why NewHost offers TLS first; then TLS
// with its records batched into one socket write per yamux frame
// (batchedTLS, what NewHost uses: streamOptions), and, for comparison, stock
// TLS under yamux frames of 260 KiB instead of 64 (not used: see
// streamOptions).
//
//	go test -run '^$' -bench StreamSecurity -benchtime 512x ./peer
func BenchmarkStreamSecurity(b *testing.B) {
	bigFrames := *yamux.DefaultTransport.Config()
	bigFrames.MaxMessageSize = 260 << 10
	for _, sec := range []struct {
		name string
		opt  libp2p.Option
	}{
		{"noise", libp2p.ChainOptions(libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))},
		{"tls", libp2p.ChainOptions(libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))},
		{"tls-bigframes", libp2p.ChainOptions(libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.Muxer(yamux.ID, (*yamux.Transport)(&bigFrames)))},
		{"tls-batched", streamOptions()},
	} {
		b.Run(sec.name, func(b *testing.B) {
			mk := func() host.Host {
				h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
					libp2p.Transport(tcp.NewTCPTransport), sec.opt,
					libp2p.ResourceManager(&network.NullResourceManager{}))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { h.Close() })
				return h
			}
			src, dst := mk(), mk()
			received := make(chan error, 1)
			dst.SetStreamHandler("/bench", func(s network.Stream) {
				_, err := io.Copy(io.Discard, s)
				s.Close()
				received <- err
			})
			ctx := context.Background()
			if err := src.Connect(ctx, p2ppeer.AddrInfo{ID: dst.ID(), Addrs: dst.Addrs()}); err != nil {
				b.Fatal(err)
			}
			s, err := src.NewStream(ctx, dst.ID(), "/bench")
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(buf)))
			cpu0 := cpustat.ProcessTime()
			b.ResetTimer()
			for range b.N {
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			if err := <-received; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpustat.ProcessTime()-cpu0)/float64(b.N*len(buf)), "cpu-ns/B")
			s.Close()
		})
	}
}
