package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"
)

type lookupsFlags struct {
	common
	lookups, concurrency, rtts, rounds int
	warmup, phaseWarmup                int
	kad                                bool
	kadRefreshSample                   int
	traceCalls                         bool
}

func lookupsCmd(ctx context.Context, args []string, out io.Writer) error {
	var f lookupsFlags
	fs := flag.NewFlagSet("lookups", flag.ContinueOnError)
	f.register(fs, 1000)
	fs.IntVar(&f.lookups, "lookups", 1000, "lookups per mode and pass")
	fs.IntVar(&f.concurrency, "concurrency", 16, "lookups in flight")
	fs.IntVar(&f.rtts, "rtts", 300, "random pairs whose direct round trip is measured")
	fs.IntVar(&f.rounds, "rounds", 16, "stepped maintenance rounds counted")
	fs.IntVar(&f.phaseWarmup, "phase-warmup", 2*chord.DefaultConfig().Backoff, "stepped rounds before the count, uncounted, so quiet vnodes have backed off")
	fs.IntVar(&f.warmup, "warmup", 2, "stepped maintenance rounds on the shaped network before measuring")
	fs.BoolVar(&f.kad, "kad", true, "also run go-libp2p-kad-dht on the same network")
	fs.IntVar(&f.kadRefreshSample, "kad-refresh-sample", 20, "kad-dht peers whose routing-table refresh is counted")
	fs.BoolVar(&f.traceCalls, "trace-calls", false, "time every ring call of the lookups at both ends and print where its time went")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.parse(); err != nil {
		return err
	}
	if f.concurrency < 1 {
		// parallel.Each with no worker would wait for ctx, starting nothing.
		return fmt.Errorf("-concurrency %d: want at least 1", f.concurrency)
	}
	header(out, fmt.Sprintf("Lookups: %d peers, %s, profile %s", f.peers, f.vnodesDesc(), f.profile), append([]string{"lookups"}, args...))
	if _, err := runLookups(ctx, f, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "Load average at the end: %s.\n", cpustat.LoadAvg())
	return nil
}

// lookupsResult is what the tests check.
type lookupsResult struct {
	RTT   mockring.Dist
	Chord []mockring.LookupReport
	Kad   []kadReport
	Maint maintFigures
	// IterFloor is what no iterative lookup of the batch could beat.
	IterFloor mockring.Dist
	KadMaint  kadMaint
}

type maintFigures struct {
	Calls, PayloadBytes, WireBytes float64 // per peer per second
}

func runLookups(ctx context.Context, f lookupsFlags, out io.Writer) (lookupsResult, error) {
	var res lookupsResult
	base := f.chordConfig(peer.DefaultConfig())
	base.Chord.Vnodes = f.vnodes
	start := time.Now()
	s, st, err := buildRing(ctx, f.common, base, func(_ int, a netshape.Access) peer.Config {
		cfg := base
		cfg.Chord.Vnodes = f.vnodesOf(a)
		return cfg
	})
	if err != nil {
		return res, err
	}
	defer s.Close()
	fmt.Fprintf(out, "Built (no delays, stepped) in %v: %d ring RPCs, %d rounds after the joins; every predecessor, successor list and finger checked against the true ring. Config: successor list %d, stabilize %v, fix-fingers %v, check-predecessor %v, backoff %d, proximity %v.\n\n",
		time.Since(start).Round(time.Millisecond), st.Calls, st.Rounds, base.Chord.SuccessorListLen, base.Chord.StabilizeInterval, base.Chord.FixFingerInterval, base.Chord.CheckPredecessorInterval, base.Chord.Backoff, base.Chord.Proximity)

	// Maintenance, stepped on the unshaped network: per round and phase,
	// divided by the timer intervals (mockring.Phases), so the figure
	// does not depend on whether the simulator keeps up with 1,000 peers'
	// timers on two cores.
	// The wire is counted over the counted rounds only, as the payload
	// is: the warm-up rounds, before quiet vnodes back off, carry more.
	s.PhaseCalls(ctx, f.phaseWarmup, 0)
	wire0 := s.counts(peer.RingProtocol)
	ph := s.PhaseCalls(ctx, 0, f.rounds)
	wire := s.counts(peer.RingProtocol).minus(wire0)
	calls, payload := ph.PerPeerSecond(base.Chord)
	totalPayload := ph.Stabilize.BytesOut + ph.CheckPred.BytesOut + ph.FixFinger.BytesOut
	res.Maint = maintFigures{Calls: calls, PayloadBytes: payload}
	if totalPayload > 0 {
		res.Maint.WireBytes = payload * float64(wire.bytes) / float64(totalPayload)
	}
	fmt.Fprintf(out, "### Maintenance traffic per peer (chordshare)\n\n%d stepped rounds on all %d peers after %d uncounted ones, each phase's traffic divided by its timer interval. Payload: the ring's protobuf messages (RingStats); wire: what the ring streams carry (the same with their length prefixes, and each stream's multistream-select header and echo, 44 B each way). Both directions of every call are counted once, at the peer that sends them, so per peer it is what it sends.\n\n",
		f.rounds, f.peers, f.phaseWarmup)
	fmt.Fprintf(out, "| calls/peer/s | payload B/peer/s | wire B/peer/s | per round and peer: stabilize / check-pred / fix-fingers calls |\n|---|---|---|---|\n")
	k := float64(ph.Peers * ph.Rounds)
	fmt.Fprintf(out, "| %.2f | %.0f | %.0f | %.2f / %.2f / %.2f |\n\n", calls, payload, res.Maint.WireBytes,
		float64(ph.Stabilize.CallsOut)/k, float64(ph.CheckPred.CallsOut)/k, float64(ph.FixFinger.CallsOut)/k)
	if _, err := s.Converge(ctx, 20); err != nil {
		fmt.Fprintf(out, "Ring after the stepped rounds: NOT right: %v\n\n", err)
	}

	s.shape()
	warm, rounds, err := s.warmUp(ctx, f.warmup, 30)
	fmt.Fprintf(out, "Links shaped; then %d stepped maintenance rounds on the shaped network so that round-trip estimates (timeouts, fingers) have seen the links, and rounds until the ring checked right again: %d (%v in all).\n\n", f.warmup, rounds, warm.Round(time.Millisecond))
	if err != nil {
		return res, fmt.Errorf("after shaping: %w", err)
	}
	rtt, err := s.EchoRTT(ctx, f.rtts)
	if err != nil {
		return res, fmt.Errorf("round trips: %w", err)
	}
	res.RTT = rtt
	fmt.Fprintf(out, "### Direct round trip between two random peers\n\nOne small request and its response on a new stream over an open connection (the shape of a ring call), %d random pairs: p50 %s, p90 %s, p99 %s. Latencies below are also given as multiples of this p50 (**RTT**).\n\n",
		rtt.N, ms(rtt.P50), ms(rtt.P90), ms(rtt.P99))

	if fl, err := lookupFloor(f.common, 100000, base.Chord.SuccessorListLen); err == nil {
		fmt.Fprintf(out, "%s As multiples of RTT: p50 %.2f, p99 %.2f.\n\n", floorText(fl), ratio(fl.P50, rtt.P50), ratio(fl.P99, rtt.P50))
	}
	qs := s.Queries(f.lookups)
	// Every peer is live here, so the queries' indices are s.Nodes'.
	chords := make([]*chord.Node, len(s.Nodes))
	for i, n := range s.Nodes {
		chords[i] = n.Chord()
	}
	itf := iterativeFloor(chords, s.access, qs)
	res.IterFloor = itf
	fmt.Fprintf(out, "Iterative floor: an iterative asker calls every hop itself, over its own link; the cheapest chain of hops on this ring's routing state (each hop known to the one before, the last one able to answer, each hop's whole state assumed handed over), for these %d lookups: p50 %s, p90 %s, p99 %s. As multiples of RTT: p50 %.2f, p99 %.2f.\n\n",
		itf.N, ms(itf.P50), ms(itf.P90), ms(itf.P99), ratio(itf.P50, rtt.P50), ratio(itf.P99, rtt.P50))
	fmt.Fprintf(out, "### chordshare lookups (want 1 successor, %d in flight)\n\nPass 2 repeats pass 1's lookups (same origins and keys), so the connections it needs are open. Right: the answer's first node is the key's true successor (Oracle.CheckLookup). Messages: ring frames written (requests and responses) per lookup.\n\n", f.concurrency)
	fmt.Fprintf(out, "| mode | pass | lookups | right | errors | hops mean / p99 | latency p50 | p90 | p99 | p50/RTT | p99/RTT | messages/lookup | timer lateness p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var tracer *mockring.CallTracer
	var traced, tracedLookups []string
	if f.traceCalls {
		tracer = mockring.NewCallTracer()
		s.Net.Trace(tracer)
		defer s.Net.Trace(nil)
	}
	for _, mode := range []chord.LookupMode{chord.Recursive, chord.Iterative} {
		for pass := 1; pass <= 2; pass++ {
			c0 := s.counts(peer.RingProtocol)
			l := s.Lookups(ctx, qs, mode, 1, f.concurrency)
			c := s.counts(peer.RingProtocol).minus(c0)
			if tracer != nil {
				var b, lb strings.Builder
				calls := tracer.Take()
				callBreakdown(&b, fmt.Sprintf("%s %d", mode, pass), calls, s.shaper, l.Lookups)
				lookupBreakdown(&lb, fmt.Sprintf("%s %d", mode, pass), calls, l.Spans, s.shaper, rtt.P50)
				traced = append(traced, b.String())
				tracedLookups = append(tracedLookups, lb.String())
			}
			res.Chord = append(res.Chord, l)
			fmt.Fprintf(out, "| %s | %d | %d | %.2f%% | %d | %.2f / %d | %s | %s | %s | %.2f | %.2f | %.1f | %s |\n",
				mode, pass, l.Lookups, pct(l.Right, l.Lookups), l.Errors, l.MeanHops, l.P99Hops,
				ms(l.Latency.P50), ms(l.Latency.P90), ms(l.Latency.P99),
				ratio(l.Latency.P50, rtt.P50), ratio(l.Latency.P99, rtt.P50),
				float64(c.messages)/float64(max(l.Lookups, 1)), ms(l.Lateness.P99))
			if l.FirstError != nil {
				defer fmt.Fprintf(out, "First chordshare lookup error (%s, pass %d): %v\n\n", mode, pass, l.FirstError)
			}
		}
	}
	fmt.Fprintln(out)
	// kad-dht's lookups below are not traced: its streams stay as they are,
	// and its calls would pile up in the tracer unread.
	s.Net.Trace(nil)
	if tracer != nil {
		fmt.Fprintf(out, "### Where the ring calls' time went\n\nEach call timed at both ends (p50 / p90 / p99 / mean): its link's round trip; the request's and answer's transmission at the slower rate of each way; NewStream; the request's way (first write to the callee's handler) and the answer's way (the callee's last write to the caller's first read), each less the link's one-way delay and its transmission; the excess (the caller's time less the callee's work less the round trip and the transmission). Per lookup: the excess and the round trips of all calls summed, over the lookups. Request and answer: the bytes each end wrote on the call's stream, its multistream-select header or echo included (p50 / p90 / p99 / mean); in an iterative batch nearly every call is a NEXT_HOP.\n\n")
		fmt.Fprintf(out, "| batch | calls | link RTT | transmission | NewStream | request − one way | answer − one way | excess | excess per lookup | RTTs per lookup | request bytes | answer bytes |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, l := range traced {
			fmt.Fprint(out, l)
		}
		fmt.Fprintf(out, "\nPer lookup, as multiples of RTT (p50 / p99 / mean): the lookup's time; what its calls' links promise (each call's round trip and transmission, the calls of a chain one after another); the links' round trips alone (what the virtual-clock MemNet charges); the lookup's time less the promise.\n\n")
		fmt.Fprintf(out, "| batch | measured | links and transmission | links' round trips | measured − promised |\n|---|---|---|---|---|\n")
		for _, l := range tracedLookups {
			fmt.Fprint(out, l)
		}
		fmt.Fprintln(out)
	}
	if !f.kad {
		return res, nil
	}
	s.Close()
	kres, km, err := runKad(ctx, f, qs, rtt, out)
	res.Kad, res.KadMaint = kres, km
	return res, err
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func ratio(d, base time.Duration) float64 {
	if base == 0 {
		return 0
	}
	return float64(d) / float64(base)
}
