package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/peer"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// getTrace records the Get steps of one fetcher (peer.Config.GetTrace)
// while it is on.
type getTrace struct {
	mu     sync.Mutex
	on     bool
	events []peer.GetEvent
}

func (t *getTrace) record(e peer.GetEvent) {
	t.mu.Lock()
	if t.on {
		t.events = append(t.events, e)
	}
	t.mu.Unlock()
}

func (t *getTrace) start() {
	t.mu.Lock()
	t.on, t.events = true, nil
	t.mu.Unlock()
}

func (t *getTrace) stop() []peer.GetEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
	return t.events
}

// writeTrace writes one fetch's events as tab-separated lines: ms since
// start, block, kind (leaf or node), step, replica, its uplink, requests
// out, hedge, bytes, error.
func writeTrace(w io.Writer, label string, start time.Time, events []peer.GetEvent, upOf map[p2ppeer.ID]float64) {
	fmt.Fprintf(w, "# %s\n# ms\tblock\tkind\tstep\treplica\tuplink_MBps\tout\thedge\tbytes\terr\n", label)
	for _, e := range events {
		kind := "leaf"
		if e.CID.Type() != cid.Raw {
			kind = "node"
		}
		var rep, up string
		if e.Peer != "" {
			rep, up = e.Peer.ShortString(), fmt.Sprintf("%.2f", upOf[e.Peer]/1e6)
		}
		var errs string
		if e.Err != nil {
			errs = e.Err.Error()
		}
		k := e.CID.String()
		fmt.Fprintf(w, "%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t%v\t%d\t%s\n", float64(e.At.Sub(start))/1e6, k[len(k)-8:], kind, e.Step, rep, up, e.Peers, e.Hedge, e.Bytes, errs)
	}
}

// traceSummary is where a fetch's time went, from its Get steps.
type traceSummary struct {
	FirstLeafAsked, FirstLeafIn time.Duration // since the fetch began
	LastLeafAsked, End          time.Duration
	SteadyRate                  float64 // leaves per second from the 10th to the 90th percentile of arrivals
	Requests, Hedges, Dropped   int
	Lookup                      time.Duration // mean time from a Get's call to its replica list
	Replicas                    int           // distinct replicas that delivered a block
	// Stalled is the longest a 5 ms ticker in the simulator's process was
	// late during the fetch: a stall of the whole process (the CPU taken
	// by others, a GC), which no schedule can help.
	Stalled time.Duration
}

// watchLateness measures how late a 5 ms ticker runs until stop is called,
// which returns the worst lateness seen.
func watchLateness() (stop func() time.Duration) {
	const tick = 5 * time.Millisecond
	done := make(chan time.Duration)
	quit := make(chan struct{})
	go func() {
		var worst time.Duration
		last := time.Now()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-quit:
				done <- worst
				return
			case now := <-t.C:
				now = time.Now()
				worst = max(worst, now.Sub(last)-tick)
				last = now
			}
		}
	}()
	return func() time.Duration { close(quit); return <-done }
}

func summarize(start time.Time, events []peer.GetEvent) traceSummary {
	var s traceSummary
	began := map[cid.Cid]time.Time{}
	var lookups []time.Duration
	var arrivals []time.Duration
	served := map[p2ppeer.ID]bool{}
	for _, e := range events {
		at := e.At.Sub(start)
		leaf := e.CID.Type() == cid.Raw
		switch e.Step {
		case peer.GetBegan:
			began[e.CID] = e.At
		case peer.GetLocated:
			lookups = append(lookups, e.At.Sub(began[e.CID]))
		case peer.GetAsked:
			s.Requests++
			if e.Hedge {
				s.Hedges++
			}
			if leaf && (s.FirstLeafAsked == 0 || at < s.FirstLeafAsked) {
				s.FirstLeafAsked = at
			}
			if leaf {
				s.LastLeafAsked = max(s.LastLeafAsked, at)
			}
		case peer.GetReceived:
			served[e.Peer] = true
			if leaf {
				arrivals = append(arrivals, at)
			}
		case peer.GetDropped:
			s.Dropped++
		case peer.GetEnded:
			s.End = max(s.End, at)
		}
	}
	s.Replicas = len(served)
	if len(lookups) > 0 {
		var sum time.Duration
		for _, d := range lookups {
			sum += d
		}
		s.Lookup = sum / time.Duration(len(lookups))
	}
	if len(arrivals) > 0 {
		slices.Sort(arrivals)
		s.FirstLeafIn = arrivals[0]
		lo, hi := len(arrivals)/10, len(arrivals)*9/10
		if hi > lo && arrivals[hi] > arrivals[lo] {
			s.SteadyRate = float64(hi-lo) / (arrivals[hi] - arrivals[lo]).Seconds()
		}
	}
	return s
}
