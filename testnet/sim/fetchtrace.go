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
	// Idle is the time, from the first response to the end, with no
	// block being received at all; HolderBound is the link time lost while
	// the holders sending were too slow to fill the fetcher's downlink
	// (the time x the fraction of the downlink their uplinks left unused).
	// The rest of the time over the floor (the file over the downlink) is
	// lost while the link should have been full: the simulator (its
	// process stalled, bytes arriving late).
	Idle, HolderBound time.Duration
	// FirstResponse is when the first response header arrived: until then
	// the link carried nothing of the file.
	FirstResponse time.Duration
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
			case <-t.C:
				now := time.Now()
				worst = max(worst, now.Sub(last)-tick)
				last = now
			}
		}
	}()
	return func() time.Duration { close(quit); return <-done }
}

func summarize(start time.Time, events []peer.GetEvent, upOf map[p2ppeer.ID]float64, down float64) traceSummary {
	var s traceSummary
	s.Idle, s.HolderBound = linkUse(events, upOf, down)
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
		case peer.GetAnswering:
			if s.FirstResponse == 0 || at < s.FirstResponse {
				s.FirstResponse = at
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

// linkUse sweeps the responses being received (header to end) in time
// order and returns the time none was, and the link time lost while the
// holders sending had less uplink in all than the fetcher's downlink down
// (0: no limit).
func linkUse(events []peer.GetEvent, upOf map[p2ppeer.ID]float64, down float64) (idle, holderBound time.Duration) {
	type request struct {
		c cid.Cid
		p p2ppeer.ID
	}
	type edge struct {
		at   time.Time
		p    p2ppeer.ID
		open int // +1 a response begins, -1 it ends
	}
	var edges []edge
	open := map[request]bool{}
	for _, e := range events {
		r := request{e.CID, e.Peer}
		switch e.Step {
		case peer.GetAnswering:
			open[r] = true
			edges = append(edges, edge{e.At, e.Peer, 1})
		case peer.GetReceived, peer.GetDropped:
			if open[r] {
				delete(open, r)
				edges = append(edges, edge{e.At, e.Peer, -1})
			}
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return a.at.Compare(b.at) })
	sending := map[p2ppeer.ID]int{}
	for i, e := range edges {
		sending[e.p] += e.open
		if sending[e.p] == 0 {
			delete(sending, e.p)
		}
		if i+1 == len(edges) {
			break
		}
		dt := edges[i+1].at.Sub(e.at)
		if len(sending) == 0 {
			idle += dt
			continue
		}
		var up float64
		for p := range sending {
			up += upOf[p]
		}
		if down > 0 && up < down {
			holderBound += time.Duration(float64(dt) * (down - up) / down)
		}
	}
	return idle, holderBound
}
