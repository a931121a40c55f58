package peer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"chordshare/internal/cpustat"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkFirstBlockOnNewConnection times a block GET of 256 KiB from a
// replica on a new connection, from dialing to the block's last byte: its
// stream opened as block streams are (openStream: no wait for identify,
// lazy multistream-select) against host.NewStream (what they used before:
// on a new connection it waits for identify first). Each iteration does
// both, each from a new client host, in an order drawn at random; the
// medians are reported, and their ratio. On loopback TCP (the daemons'
// transport) and on mocknet with a 25 ms one-way delay (a 50 ms round
// trip).
//
//	go test -run '^$' -bench FirstBlockOnNewConnection -benchtime 40x ./peer
func BenchmarkFirstBlockOnNewConnection(b *testing.B) {
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	c := rawBlock(b, data)
	b.Run("tcp", func(b *testing.B) {
		server := benchServer(b, benchTCPHost(b), c, data)
		firstBlockAB(b, c, data, func() host.Host {
			h := benchTCPHost(b)
			h.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.TempAddrTTL)
			return h
		}, server.ID())
	})
	b.Run("mocknet-50ms", func(b *testing.B) {
		mn := mocknet.New()
		b.Cleanup(func() { mn.Close() })
		mn.SetLinkDefaults(mocknet.LinkOptions{Latency: 25 * time.Millisecond})
		sh, err := mn.GenPeer()
		if err != nil {
			b.Fatal(err)
		}
		server := benchServer(b, sh, c, data)
		firstBlockAB(b, c, data, func() host.Host {
			h, err := mn.GenPeer()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := mn.LinkPeers(h.ID(), server.ID()); err != nil {
				b.Fatal(err)
			}
			return h
		}, server.ID())
	})
}

// benchServer is a node on h holding block c.
func benchServer(b *testing.B, h host.Host, c cid.Cid, data []byte) host.Host {
	cfg := DefaultConfig()
	cfg.Store = &mapStore{m: map[cid.Cid][]byte{c: data}}
	n, err := NewNode(h, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return h
}

func benchTCPHost(b *testing.B) host.Host {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewHost(priv, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// firstBlockAB runs the A/B of BenchmarkFirstBlockOnNewConnection: newClient
// makes a host that has no connection to server yet.
func firstBlockAB(b *testing.B, c cid.Cid, data []byte, newClient func() host.Host, server p2ppeer.ID) {
	opens := []struct {
		name string
		open func(ctx context.Context, h host.Host) (network.Stream, error)
	}{
		{"openStream", func(ctx context.Context, h host.Host) (network.Stream, error) {
			return openStream(ctx, h, server, BlockProtocol)
		}},
		{"host.NewStream", func(ctx context.Context, h host.Host) (network.Stream, error) {
			return h.NewStream(ctx, server, BlockProtocol)
		}},
	}
	times := make([][]time.Duration, len(opens))
	rng := rand.New(rand.NewPCG(1, 2))
	load := cpustat.LoadAvg()
	b.ResetTimer()
	for range b.N {
		order := []int{0, 1}
		if rng.IntN(2) == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			h := newClient()
			d, err := timeFirstBlock(h, opens[k].open, c, data)
			_ = h.Close()
			if err != nil {
				b.Fatalf("%s: %v", opens[k].name, err)
			}
			times[k] = append(times[k], d)
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	a, o := med(times[0]), med(times[1])
	b.ReportMetric(float64(a)/1e6, "ms-openStream")
	b.ReportMetric(float64(o)/1e6, "ms-NewStream")
	b.ReportMetric(float64(a)/float64(o), "ratio")
	b.Logf("medians of %d: openStream %v, host.NewStream %v (ratio %.2f); load %s", b.N, a, o, float64(a)/float64(o), load)
}

// timeFirstBlock dials server through open and GETs block c on the stream,
// as blockExchange does: from the dial to the block's last byte.
func timeFirstBlock(h host.Host, open func(context.Context, host.Host) (network.Stream, error), c cid.Cid, data []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := open(ctx, h)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := writeBlockMsg(ctx, nil, s, &pb.BlockRequest{Type: pb.BlockRequest_GET, Cid: c.Bytes()}, nil, nil); err != nil {
		return 0, err
	}
	r := bufio.NewReader(s)
	resp := &pb.BlockResponse{}
	if err := readBlockHeader(r, resp); err != nil {
		return 0, err
	}
	got, err := readPayload(r, resp.GetSize(), nil)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	defer putBuf(got)
	if !bytes.Equal(got, data) {
		return 0, fmt.Errorf("got %d bytes, not the block", len(got))
	}
	return d, nil
}
