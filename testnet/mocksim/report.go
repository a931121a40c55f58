package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"chordshare/chord"
	"chordshare/testnet/mocksim/mockring"
)

// report prints the markdown report one section at a time, as each
// experiment ends, so a long run that is stopped keeps what it measured.
type report struct {
	w   io.Writer
	o   options
	cfg chord.Config
	rtt mockring.Dist // the echo round trip that latencies are divided by
}

func (rep *report) p(format string, a ...any) { fmt.Fprintf(rep.w, format+"\n", a...) }

func (rep *report) header(args []string, goVersion string, cpus, procs int, load string) {
	o, cfg := rep.o, rep.cfg
	rep.p("## mocksim: %d peers × %d vnodes, %v links", o.peers, o.capacity, o.latency)
	rep.p("")
	rep.p("`mocksim %s` — %s, %d CPUs (GOMAXPROCS %d), load average %s at the start; successor list %d, stabilize %v, fix-fingers %v, check-predecessor %v, backoff up to %d×, proximity fingers %v; links: %s; seed %d.",
		strings.Join(args, " "), goVersion, cpus, procs, load, cfg.SuccessorListLen,
		cfg.StabilizeInterval, cfg.FixFingerInterval, cfg.CheckPredecessorInterval, cfg.Backoff, cfg.Proximity, o.links, o.seed)
	rep.p("")
}

func (rep *report) build(b mockring.BuildStats) {
	rep.p("Build (no latency, stepped): joins %v, check %d round(s) %v, fix all fingers %v; %d ring RPCs (%.0f per peer); every predecessor, successor list and finger checked against the true ring.",
		b.JoinTime.Round(time.Millisecond), b.Rounds, b.ConvergeTime.Round(time.Millisecond),
		b.FingerTime.Round(time.Millisecond), b.Calls, float64(b.Calls)/float64(rep.o.peers))
	rep.p("")
}

func (rep *report) roundTrip(rtt mockring.Dist) {
	rep.rtt = rtt
	rep.p("Round trip of one request and response, a new stream on an open connection as every ring call makes (echo protocol, %d random pairs): p50 %s, p90 %s, p99 %s; links %v one way. Latencies below are also given as multiples of this p50.",
		rtt.N, ms(rtt.P50), ms(rtt.P90), ms(rtt.P99), rep.o.latency)
	rep.p("")
}

// lookupRow is a batch of lookups and which pass over the queries it was.
type lookupRow struct {
	pass int
	mockring.LookupReport
}

func (rep *report) lookups(rows []lookupRow) {
	rep.p("### Lookups on the converged ring (want 1 successor, %d in flight)", rep.o.parallel)
	rep.p("")
	rep.p("Pass 2 repeats pass 1's lookups (same origins and keys), so every connection it needs is open. Right: the answer's first node is the key's true successor (Oracle.CheckLookup). Timer lateness: how late a 10 ms sleep in the simulator woke up during the batch (p99 / max), a floor under what the latencies can mean.")
	rep.p("")
	rep.p("| mode | pass | lookups | right | errors | hops mean | p50 | p99 | max | latency p50 | p90 | p99 | p50/RTT | p99/RTT | RPCs/lookup | timer lateness p99 / max |")
	rep.p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range rows {
		rep.p("| %s | %d | %d | %s | %d | %.2f | %d | %d | %d | %s | %s | %s | %.1f | %.1f | %.2f | %s / %s |",
			l.Mode, l.pass, l.Lookups, pct(l.Right, l.Lookups), l.Errors, l.MeanHops, l.P50Hops, l.P99Hops, l.MaxHops,
			ms(l.Latency.P50), ms(l.Latency.P90), ms(l.Latency.P99),
			ratio(l.Latency.P50, rep.rtt.P50), ratio(l.Latency.P99, rep.rtt.P50), l.CallsPerLookup(),
			ms(l.Lateness.P99), ms(l.Lateness.Max))
	}
	rep.p("")
}

// memRow is the process's memory at one point of the run.
type memRow struct {
	name   string
	mem    mockring.Mem
	links  string
	conns  string
	versus mockring.Mem // what the figure is measured from
}

func (rep *report) memory(rows []memRow) {
	rep.p("### Memory")
	rep.p("")
	rep.p("| state | HeapInuse/peer | Sys/peer | goroutines/peer | links | conns/peer |")
	rep.p("|---|---|---|---|---|---|")
	for _, r := range rows {
		h, sys, g := r.mem.PerPeer(r.versus, rep.o.peers)
		rep.p("| %s | %s | %s | %.1f | %s | %s |", r.name, kib(h), kib(sys), g, r.links, r.conns)
	}
	rep.p("")
	rep.p("After two garbage collections; per peer = (figure − figure it is measured from) ÷ %d. Links and connections are mocknet's; conns/peer is the connections a peer has open.", rep.o.peers)
	rep.p("")
}

func (rep *report) maintenance(m mockring.MaintenanceReport, ph mockring.Phases, loadBefore, loadAfter string, near, fingers mockring.Dist) {
	calls, bytes := ph.PerPeerSecond(rep.cfg)
	rep.p("### Maintenance traffic per peer")
	rep.p("")
	rep.p("| how | calls/peer/s | bytes/peer/s | notes |")
	rep.p("|---|---|---|---|")
	rep.p("| timers (peer.Node.Run), %v window after %v warm-up, GOGC %d | %.2f | %.0f | %d failed calls; CPU used %.0f%% of %d cores, load average %s before and %s after; timer lateness p50 %s, p99 %s, p99.9 %s, max %s; ring right at the end of the window: %s; after the timers stopped: %s |",
		m.Window, m.Warmup, rep.o.timersGOGC, m.CallsPerPeerSecond(), m.BytesPerPeerSecond(), m.Traffic.FailedCalls,
		100*m.CPU.Seconds()/m.Window.Seconds()/float64(m.Procs), m.Procs, loadBefore, loadAfter,
		ms(m.Lateness.P50), ms(m.Lateness.P99), ms(m.Lateness.P999), ms(m.Lateness.Max),
		okOr(m.RightRunning), okOr(m.RightStopped))
	rep.p("| stepped rounds ÷ intervals (%d rounds, no latency) | %.2f | %.0f | per round and peer: stabilize %.1f calls, check-predecessor %.1f, fix-fingers %.1f |",
		ph.Rounds, calls, bytes, perRound(ph.Stabilize, ph), perRound(ph.CheckPred, ph), perRound(ph.FixFinger, ph))
	rep.p("")
	rep.p("Calls are ring RPCs a peer starts; bytes are the ring protobuf payloads it sends (its requests and the responses it serves), without varint framing, multistream headers and transport overhead.")
	rep.p("")
	rep.p("Chord's smoothed round-trip estimates after the window: of predecessor and successor-list peers (%d): p50 %s, p90 %s, p99 %s; of peers that are only fingers (%d): p50 %s, p90 %s, p99 %s.",
		near.N, ms(near.P50), ms(near.P90), ms(near.P99), fingers.N, ms(fingers.P50), ms(fingers.P90), ms(fingers.P99))
	rep.p("")
}

func (rep *report) failure(killed, preRounds int, rows []mockring.LookupReport, afterRounds int) {
	rep.p("### After %d of %d peers (%.0f%%) crashed at once, before any repair", killed, rep.o.peers, 100*rep.o.failShare)
	rep.p("")
	rep.p("The ring was checked right (%d stepped round(s)) just before the crash. Batches run in the order shown; a lookup that finds a finger dead drops it, so later batches meet fewer dead fingers. Right: the first node returned is the key's true live successor (Oracle.CheckLookup); first live right: the first live node returned is (Oracle.CheckFirstLive).", preRounds)
	rep.p("")
	rep.p("| mode | want | lookups | right | first live right | errors | hops mean | p99 | latency p50 | p99 | RPCs/lookup | failed RPCs/lookup | timer lateness p99 / max |")
	rep.p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range rows {
		rep.p("| %s | %d | %d | %s | %s | %d | %.2f | %d | %s | %s | %.2f | %.2f | %s / %s |",
			l.Mode, l.Want, l.Lookups, pct(l.Right, l.Lookups), pct(l.FirstLive, l.Lookups), l.Errors,
			l.MeanHops, l.P99Hops, ms(l.Latency.P50), ms(l.Latency.P99), l.CallsPerLookup(),
			float64(l.FailedCalls)/float64(max(l.Lookups, 1)), ms(l.Lateness.P99), ms(l.Lateness.Max))
	}
	rep.p("")
	for _, l := range rows {
		if l.FirstError != nil {
			rep.p("First error (%s, want %d): %v", l.Mode, l.Want, l.FirstError)
			rep.p("")
		}
	}
	rep.p("Reconvergence: after these lookups, %d stepped round(s) until every live predecessor and successor list was right again (chord.Oracle.Check); a round is one period of each timer, so about %v at the configured intervals.",
		afterRounds, time.Duration(afterRounds)*rep.cfg.StabilizeInterval)
	rep.p("")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func pct(k, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(k)/float64(n))
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

func okOr(err error) string {
	if err == nil {
		return "yes"
	}
	return "NO: " + err.Error()
}

func perRound(t mockring.Traffic, ph mockring.Phases) float64 {
	return float64(t.CallsOut) / float64(ph.Peers*ph.Rounds)
}
