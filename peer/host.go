package peer

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Connection manager watermarks. A ring node needs its successors,
// predecessor and fingers (a few dozen peers per vnode at most) and these
// are protected from trimming; the rest are short-lived lookup hops.
const (
	connLow   = 128
	connHigh  = 512
	connGrace = time.Minute
)

// ringLimits raises libp2p's scaled defaults to what a ring node needs: one
// short stream per RPC, to a few hundred peers, bursty while a lookup fans
// out or a 64-node loopback testnet starts at once.
func ringLimits() rcmgr.ConcreteLimitConfig {
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: 4096, ConnsInbound: 2048, ConnsOutbound: 2048,
			Streams: 16384, StreamsInbound: 8192, StreamsOutbound: 8192,
			FD: 4096,
		},
		Transient: rcmgr.ResourceLimits{
			Conns: 1024, ConnsInbound: 512, ConnsOutbound: 512,
			Streams: 2048, StreamsInbound: 1024, StreamsOutbound: 1024,
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns: 16, ConnsInbound: 8, ConnsOutbound: 8,
			Streams: 1024, StreamsInbound: 512, StreamsOutbound: 512,
		},
		ProtocolDefault: rcmgr.ResourceLimits{
			Streams: 8192, StreamsInbound: 4096, StreamsOutbound: 4096,
		},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			Streams: 512, StreamsInbound: 256, StreamsOutbound: 256,
		},
	}
	return partial.Build(rcmgr.DefaultLimits.AutoScale())
}

// NewHost makes the libp2p host of a ring node: TCP and QUIC, TLS or Noise, yamux,
// with the connection and resource managers set for the ring. extra options
// (a libp2p.BandwidthReporter) are applied after these.
func NewHost(priv crypto.PrivKey, listen []ma.Multiaddr, extra ...libp2p.Option) (host.Host, error) {
	cm, err := connmgr.NewConnManager(connLow, connHigh, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(ringLimits()))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrs(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		streamOptions(),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.DisableRelay(),
	}
	h, err := libp2p.New(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return h, nil
}

// streamOptions are the security transports and the muxer a node's host
// offers, in order of preference.
//
// TLS 1.3 first: its AES-GCM costs a third of Noise's ChaCha20-Poly1305
// where the CPU has AES instructions, and the cipher is a large part of a
// block transfer's CPU (issue 3: 1.2-1.75 against 2.6-3.1 ns per byte for
// both ends of a libp2p stream on the development machine). It is libp2p's
// TLS with each yamux frame's records sent in one socket write
// (batchedTLS). Noise stays on offer for peers that lack TLS.
//
// yamux keeps its 64 KiB frames: a receiver sees a frame's bytes only once
// all of it has arrived, and Get's hedging watches for a replica's answer
// to start (the block protocol sends its header with the first 4 KiB
// alone), which larger frames would delay by seconds on a slow link.
func streamOptions() libp2p.Option {
	return libp2p.ChainOptions(
		libp2p.Security(libp2ptls.ID, newBatchedTLS),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	)
}

// Announce makes a host tell others addrs instead of its listen addresses
// (a node behind a proxy or a port forward, e.g. the testnet's link
// shaper); for NewHost's extra options.
func Announce(addrs []ma.Multiaddr) libp2p.Option {
	return libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return addrs })
}
