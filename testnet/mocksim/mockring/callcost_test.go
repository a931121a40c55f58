package mockring

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/chord"
	"chordshare/peer"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// On mocknet a ring call costs exactly its link's round trip once its
// stream is open, and a lookup exactly the time of its calls in turn (the
// chain of forwards, or the asker's calls): neither the harness
// (delayedClose, linking) nor the peer's streams add a round trip or a
// delay of their own. Opening the stream costs nothing, on a connection in
// use and on a new one alike: a ring call does not wait for identify (peer's
// openStream; host.NewStream would wait one one-way delay here, a round trip
// after the connection's own handshakes on a real network). synctest's
// clock makes the times exact, so the test compares them with ==. The links' one-way delays
// differ per pair (1 to 29 ms), so a call matched to the wrong link would
// not add up either.
func TestRingCallCostsOneRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		cfg := chord.DefaultConfig()
		cfg.Vnodes = 1
		cfg.SuccessorListLen = 2 // most lookups need another peer
		pc := peer.DefaultConfig()
		pc.Chord = cfg
		r, err := NewRing(Options{Peers: 16, Config: pc, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Build(ctx, 10); err != nil {
			t.Fatal(err)
		}
		oneWay := func(a, b p2ppeer.ID) time.Duration {
			s := 0
			for _, id := range []p2ppeer.ID{a, b} {
				s += int(id[len(id)-1])
			}
			return time.Duration(1+s%29) * time.Millisecond
		}
		r.Net.Shape(func(a, b p2ppeer.ID) mocknet.LinkOptions { return mocknet.LinkOptions{Latency: oneWay(a, b)} }, nil)
		tr := NewCallTracer()
		r.Net.Trace(tr)
		qs := r.Queries(40)
		mn := r.Net.Mocknet()
		fresh := 0 // calls on a connection the lookups made
		for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
			// Every lookup's first call to a peer is on a new connection.
			for _, a := range mn.Peers() {
				for _, c := range mn.Net(a).Conns() {
					if err := c.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
			synctest.Wait()
			connected := map[[2]p2ppeer.ID]bool{}
			for _, a := range mn.Peers() {
				for _, b := range mn.Peers() {
					connected[[2]p2ppeer.ID{a, b}] = mn.Net(a).Connectedness(b) == network.Connected
				}
			}
			l := r.Lookups(ctx, qs, mode, 1, 1)
			if l.Errors != 0 || l.Right != l.Lookups {
				t.Fatalf("%s: %d errors (%v), %d of %d right", mode, l.Errors, l.FirstError, l.Right, l.Lookups)
			}
			synctest.Wait() // the callees' ends are in
			calls := tr.Take()
			multi := 0
			for _, sp := range l.Spans {
				var sum time.Duration
				n := 0
				for _, c := range calls {
					if c.From == sp.From && !c.Open.Before(sp.Start) && !c.Answered.After(sp.End) {
						sum += chain(c, calls, oneWay, 16)
						n++
					}
				}
				if n > 0 {
					multi++
				}
				if got := sp.End.Sub(sp.Start); got != sum {
					t.Errorf("%s lookup from %s took %v, its calls' round trips %v", mode, sp.From.ShortString(), got, sum)
				}
			}
			opened := map[[2]p2ppeer.ID]bool{}
			for _, c := range calls {
				open := c.Opened.Sub(c.Open)
				if rtt := 2 * oneWay(c.From, c.To); c.Total()-c.Work()-open != rtt {
					t.Errorf("%s call %s→%s: %v less the callee's %v of work and NewStream's %v: want %v", mode, c.From.ShortString(), c.To.ShortString(), c.Total(), c.Work(), open, rtt)
				}
				pair := [2]p2ppeer.ID{c.From, c.To}
				if !connected[pair] && !opened[pair] {
					fresh++
				}
				if open != 0 {
					t.Errorf("%s call %s→%s: opening its stream took %v, want 0 (new connection: %v)", mode, c.From.ShortString(), c.To.ShortString(), open, !connected[pair] && !opened[pair])
				}
				opened[pair] = true
			}
			if multi < len(qs)/2 {
				t.Errorf("%s: only %d of %d lookups called another peer", mode, multi, len(qs))
			}
		}
		if fresh < 40 {
			t.Errorf("only %d calls on a new connection: the test would not see a wait there", fresh)
		}
		t.Logf("%d calls on a new connection", fresh)
	})
}

// chain is the time of c (opening its stream and its round trip) and, in
// turn, of the calls its callee made while serving it.
// depth bounds the search: calls that took no time would nest in each other.
func chain(c Call, calls []Call, oneWay func(a, b p2ppeer.ID) time.Duration, depth int) time.Duration {
	sum := c.Opened.Sub(c.Open) + 2*oneWay(c.From, c.To)
	if depth == 0 {
		return sum
	}
	for _, d := range calls {
		if d.From == c.To && !d.Open.Before(c.Served) && !d.Answered.After(c.Replied) {
			sum += chain(d, calls, oneWay, depth-1)
		}
	}
	return sum
}
