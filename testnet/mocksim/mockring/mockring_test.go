package mockring

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/chord"
	"chordshare/peer"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

func testRing(t *testing.T, peers int, cfg chord.Config) *Ring {
	t.Helper()
	pc := peer.DefaultConfig()
	pc.Chord = cfg
	r, err := NewRing(Options{Peers: peers, Config: pc, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, err := r.Build(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	return r
}

// The whole story on a small ring: built right, every lookup right in
// both modes, links shaped, then a quarter of the peers crash and a lookup
// asking for a successor list still finds the key's live successor first.
func TestRingLookupsAndCrash(t *testing.T) {
	ctx := context.Background()
	cfg := chord.DefaultConfig()
	cfg.Vnodes = 2
	r := testRing(t, 16, cfg)

	r.SetLatency(5 * time.Millisecond)
	rtt, err := r.EchoRTT(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if rtt.P50 < 10*time.Millisecond {
		t.Errorf("round trip p50 %v over 5 ms links: want at least 10 ms", rtt.P50)
	}
	qs := r.Queries(200)
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		l := r.Lookups(ctx, qs, mode, 1, 8)
		t.Log(l)
		if l.Errors != 0 || l.Right != l.Lookups {
			t.Fatalf("%s: %d errors (first: %v), %d of %d right", mode, l.Errors, l.FirstError, l.Right, l.Lookups)
		}
		if l.MaxHops > 0 && l.Latency.Max < rtt.P50/2 {
			t.Errorf("%s: a lookup of %d hops took %v, less than half a round trip %v", mode, l.MaxHops, l.Latency.Max, rtt.P50)
		}
	}

	killed, err := r.Crash(0.25)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 4 || len(r.Live()) != 12 {
		t.Fatalf("crashed %d, %d live: want 4 and 12", len(killed), len(r.Live()))
	}
	for _, n := range killed {
		if err := r.Live()[0].Host().Connect(ctx, p2ppeer.AddrInfo{ID: n.Host().ID()}); err == nil {
			t.Fatal("a crashed peer can still be dialled")
		}
	}
	qs = r.Queries(200)
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		l := r.Lookups(ctx, qs, mode, cfg.SuccessorListLen, 8)
		t.Log(l)
		if l.Errors != 0 || l.FirstLive != l.Lookups {
			t.Errorf("%s after the crash: %d errors (first: %v), first live right in %d of %d",
				mode, l.Errors, l.FirstError, l.FirstLive, l.Lookups)
		}
	}
	if rounds, err := r.Converge(ctx, 50); err != nil {
		t.Fatalf("no repair after %d rounds: %v", rounds, err)
	}
}

// Timers running on a converged ring send traffic, and stepping the same
// maintenance counts it by phase.
func TestMaintenanceTraffic(t *testing.T) {
	ctx := context.Background()
	cfg := chord.TestConfig()
	cfg.Vnodes = 2
	r := testRing(t, 8, cfg)
	r.SetLatency(time.Millisecond)
	m, err := r.Maintenance(ctx, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if m.CallsPerPeerSecond() <= 0 || m.BytesPerPeerSecond() <= 0 {
		t.Errorf("timers sent %+v", m.Traffic)
	}
	// Predecessors are heard from through their stabilization, so the
	// predecessor checks of a quiet ring send nothing. Quiet vnodes back off
	// to stabilizing once every Backoff rounds: count that many rounds, after
	// enough stepped ones that no silence counted while the timers ran (their
	// intervals differ from the stepped rounds') is left over.
	ph := r.PhaseCalls(ctx, 2*cfg.Backoff, cfg.Backoff)
	if ph.Stabilize.CallsOut == 0 || ph.CheckPred.CallsOut != 0 {
		t.Errorf("stepped rounds sent %+v", ph)
	}
	if calls, _ := ph.PerPeerSecond(cfg); calls <= 0 {
		t.Errorf("stepped rounds give %v calls per peer per second", calls)
	}
}

// Bare mocknet flushes a small message at once when its stream is closed
// right after writing it; the hosts of a Net hold the close back, so the
// message takes the link's latency.
func TestSmallMessageTakesLatency(t *testing.T) {
	const latency = 20 * time.Millisecond
	n := NewNet(LinkLazy, mocknet.LinkOptions{Latency: latency})
	t.Cleanup(func() { n.Close() })
	hosts, err := n.AddPeers(2, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan time.Time, 1)
	hosts[1].SetStreamHandler("/test", func(s network.Stream) {
		defer s.Close()
		if _, err := io.ReadAll(s); err == nil {
			arrived <- time.Now()
		}
	})
	ctx := context.Background()
	// The first stream opens the connection (identify) and is not timed.
	for i := range 2 {
		s, err := hosts[0].NewStream(ctx, hosts[1].ID(), "/test")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		took := (<-arrived).Sub(start)
		if i == 1 && took < latency {
			t.Errorf("2 bytes crossed a %v link in %v", latency, took)
		}
	}
	if n.Links() != 1 {
		t.Errorf("%d links made for one pair", n.Links())
	}
}

// An asker that closes its write side before reading must not wait for the
// other side to read its request: that side may have to write first (a
// multistream handshake answer does). On bare mocknet the two wait for
// each other until the asker gives up.
func TestCloseWriteDoesNotWaitForTheReader(t *testing.T) {
	const latency = 10 * time.Millisecond
	n := NewNet(LinkLazy, mocknet.LinkOptions{Latency: latency})
	t.Cleanup(func() { n.Close() })
	hosts, err := n.AddPeers(2, rand.New(rand.NewPCG(2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	// Writes twice, far enough apart not to be delivered together, before
	// it reads the request.
	serve := func(s network.Stream) {
		defer s.Close()
		for _, b := range []string{"a", "b"} {
			if _, err := s.Write([]byte(b)); err != nil {
				return
			}
			time.Sleep(3 * latency)
		}
		if _, err := io.ReadAll(s); err == nil {
			_, _ = s.Write([]byte("!"))
		}
	}
	ask := func(ctx context.Context, s network.Stream) (string, error) {
		defer context.AfterFunc(ctx, func() { s.Reset() })()
		if _, err := s.Write([]byte("request")); err != nil {
			return "", err
		}
		if err := s.CloseWrite(); err != nil {
			return "", err
		}
		b, err := io.ReadAll(s)
		return string(b), err
	}
	// The Net hosts go first: their dial makes the link the bare ones use.
	for _, tc := range []struct {
		name           string
		server, client host.Host
		proto          protocol.ID
		timeout        time.Duration // how long the asker waits
	}{
		{"Net host", hosts[1], hosts[0], "/wrapped", 10 * time.Second},
		{"bare mocknet", n.Mocknet().Host(hosts[1].ID()), n.Mocknet().Host(hosts[0].ID()), "/bare", 300 * time.Millisecond},
	} {
		server, client := tc.server, tc.client
		server.SetStreamHandler(tc.proto, serve)
		ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
		s, err := client.NewStream(ctx, hosts[1].ID(), tc.proto)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		start := time.Now()
		got, err := ask(ctx, s)
		cancel()
		t.Logf("%s: %q, %v after %v", tc.name, got, err, time.Since(start))
		if tc.name == "Net host" && (err != nil || got != "ab!") {
			t.Errorf("%s: got %q, %v; want \"ab!\"", tc.name, got, err)
		}
	}
}

// The cost of linking every pair of 1,000 mocknet hosts up front, as
// mocknet.LinkAll does (a link per ordered pair and one to self), against
// one link per pair (LinkAllPairs) and none (LinkLazy links on first dial):
//
//	go test -run - -bench Links -benchtime 1x ./testnet/mocksim/mockring
func BenchmarkLinks1000(b *testing.B) {
	const peers = 1000
	for _, mode := range []string{"LinkAll", "pairs", "lazy"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				base := ReadMem()
				start := time.Now()
				var n *Net
				var err error
				switch mode {
				case "LinkAll":
					n = NewNet(LinkLazy, mocknet.LinkOptions{})
					if _, err = n.AddPeers(peers, rand.New(rand.NewPCG(1, 1))); err == nil {
						err = n.Mocknet().LinkAll()
					}
				case "pairs":
					n = NewNet(LinkAllPairs, mocknet.LinkOptions{})
					_, err = n.AddPeers(peers, rand.New(rand.NewPCG(1, 1)))
				case "lazy":
					n = NewNet(LinkLazy, mocknet.LinkOptions{})
					_, err = n.AddPeers(peers, rand.New(rand.NewPCG(1, 1)))
				}
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				m := ReadMem()
				b.ReportMetric(took.Seconds(), "s-to-link")
				// Sys is left out: it never shrinks, so after the first
				// sub-benchmark it says little.
				b.ReportMetric((float64(m.HeapInuse)-float64(base.HeapInuse))/(1<<20), "MiB-heap")
				n.Close()
			}
		})
	}
}

// A ring's peer IDs are those PeerKey draws from PeerRand for its seed, in
// join order: sim balance describes rings by drawing them so.
func TestPeerIDsFollowTheSeed(t *testing.T) {
	r, err := NewRing(Options{Peers: 4, Config: peer.DefaultConfig(), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := PeerRand(7)
	for i, h := range r.hosts {
		if _, id, err := PeerKey(rng); err != nil || id != h.ID() {
			t.Fatalf("peer %d is %s; PeerKey drew %s, %v", i, h.ID(), id, err)
		}
	}
}
