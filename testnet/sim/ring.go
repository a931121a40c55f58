package main

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// simRing is a mockring ring whose peers have the access links of a profile.
type simRing struct {
	*mockring.Ring
	shaper *netshape.Shaper
	access []netshape.Access // of Nodes[i], the peers built
}

// buildRing builds a converged ring of c.peers on an unshaped network (fast:
// no delays while it is stepped together), with traffic counted from then
// on. cfgFor gives peer i its config from its access link. shape() then
// gives every peer its link.
func buildRing(ctx context.Context, c common, base peer.Config, cfgFor func(i int, a netshape.Access) peer.Config) (*simRing, mockring.BuildStats, error) {
	access, err := netshape.Draw(c.profile, c.peers, c.seed)
	if err != nil {
		return nil, mockring.BuildStats{}, err
	}
	opts := mockring.Options{Peers: c.peers, Config: base, Links: mockring.LinkLazy, Seed: c.seed}
	if cfgFor != nil {
		opts.ConfigFor = func(i int, _ p2ppeer.ID) peer.Config { return cfgFor(i, access[i]) }
	}
	r, err := mockring.NewRing(opts)
	if err != nil {
		return nil, mockring.BuildStats{}, err
	}
	st, err := r.Build(ctx, 60)
	if err != nil {
		r.Close()
		return nil, st, fmt.Errorf("build: %w", err)
	}
	s := &simRing{Ring: r, shaper: netshape.NewShaper(), access: access}
	s.Net.Shape(func(a, b p2ppeer.ID) mocknet.LinkOptions { return mocknet.LinkOptions{} }, s.shaper.Wrap)
	return s, st, nil
}

// shape gives every built peer its access link. Round-trip estimates made
// on the undelayed network are dropped: they would give every call to a
// slow peer a timeout of MinRTO, and proximity a meaningless choice.
func (s *simRing) shape() {
	for i, n := range s.Nodes[:len(s.access)] {
		s.shaper.Set(n.Host().ID(), s.access[i])
		n.Chord().ForgetRTTs()
	}
	s.Net.Shape(s.shaper.LinkOptions, s.shaper.Wrap)
}

// warmUp runs stepped maintenance rounds on the shaped network, then fixes
// every finger once: the estimators learn the links, and with proximity the
// fingers are chosen by the round trips measured.
// A call that outlasts its stale timeout can make stabilization drop a
// live successor, so the rounds go on until the ring checks right again
// (at most maxRounds more); the error says if it did not.
func (s *simRing) warmUp(ctx context.Context, rounds, maxRounds int) (time.Duration, int, error) {
	start := time.Now()
	s.SetWorkers(64)
	s.PhaseCalls(ctx, 0, rounds)
	s.Parallel(ctx, (*chord.Node).FixAllFingers)
	n, err := s.Converge(ctx, maxRounds)
	return time.Since(start), n, err
}

// counts is a snapshot of one protocol's traffic.
type counts struct{ bytes, messages, streams int64 }

func (s *simRing) counts(proto string) counts {
	c := s.shaper.Counter(protocolID(proto))
	return counts{c.Bytes.Load(), c.Messages.Load(), c.Streams.Load()}
}

func (a counts) minus(b counts) counts {
	return counts{a.bytes - b.bytes, a.messages - b.messages, a.streams - b.streams}
}

// scaled returns cfg with its maintenance intervals divided by scale, so
// a scenario runs scale times faster than it would. Timeouts are not
// scaled: the network's delays are not.
func scaled(cfg peer.Config, scale float64) peer.Config {
	div := func(d time.Duration) time.Duration { return time.Duration(float64(d) / scale) }
	cfg.Chord.StabilizeInterval = div(cfg.Chord.StabilizeInterval)
	cfg.Chord.FixFingerInterval = div(cfg.Chord.FixFingerInterval)
	cfg.Chord.CheckPredecessorInterval = div(cfg.Chord.CheckPredecessorInterval)
	return cfg
}

func protocolID(s string) protocol.ID { return protocol.ID(s) }
