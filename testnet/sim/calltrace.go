package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"chordshare/peer"
	"chordshare/testnet/mocksim/mockring"
	"chordshare/testnet/sim/netshape"
)

// callBreakdown prints where the ring calls of a batch spent their time,
// against what the links promise: a call's round trip is the two peers'
// link there and back; opening the stream should cost nothing on an open
// connection, and each way should take the link's one-way delay.
func callBreakdown(out io.Writer, label string, calls []mockring.Call, shaper *netshape.Shaper, lookups int) {
	var open, req, resp, excess, rtts, tx []time.Duration
	var sumExcess, sumRTT time.Duration
	var reqBytes, respBytes []int
	n := 0
	for _, c := range calls {
		if string(c.Protocol) != peer.RingProtocol {
			continue
		}
		n++
		from, to := shaper.Access(c.From), shaper.Access(c.To)
		ow := netshape.OneWay(from, to)
		reqTx, respTx := txTime(c.ReqBytes, from.Up, to.Down), txTime(c.RespBytes, to.Up, from.Down)
		open = append(open, c.Opened.Sub(c.Open))
		req = append(req, c.Served.Sub(c.Sent)-ow-reqTx)
		resp = append(resp, c.Answered.Sub(c.Replied)-ow-respTx)
		tx = append(tx, reqTx+respTx)
		e := c.Total() - c.Work() - 2*ow - reqTx - respTx
		excess = append(excess, e)
		rtts = append(rtts, 2*ow)
		sumExcess += e
		sumRTT += 2 * ow
		reqBytes, respBytes = append(reqBytes, c.ReqBytes), append(respBytes, c.RespBytes)
	}
	d := func(xs []time.Duration) string {
		x := mockring.NewDist(xs)
		return fmt.Sprintf("%s / %s / %s / %s", ms(x.P50), ms(x.P90), ms(x.P99), ms(x.Mean))
	}
	fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s | %s | %s | %.1f ms | %.1f ms | %s | %s |\n", label, n, d(rtts), d(tx), d(open), d(req), d(resp), d(excess),
		float64(sumExcess)/1e6/float64(max(lookups, 1)), float64(sumRTT)/1e6/float64(max(lookups, 1)),
		byteDist(reqBytes), byteDist(respBytes))
}

// byteDist is p50 / p90 / p99 / mean of a call's bytes written: the ring
// message with its varint length, and multistream-select's header that
// goes out with the request or its echo ahead of the answer (44 B each way
// for the ring protocol), which the shaper paces too (mockring.Handshaker).
func byteDist(xs []int) string {
	if len(xs) == 0 {
		return "–"
	}
	slices.Sort(xs)
	sum := 0
	for _, x := range xs {
		sum += x
	}
	q := func(p float64) int { return xs[min(len(xs)-1, int(p*float64(len(xs))))] }
	return fmt.Sprintf("%d / %d / %d / %.0f B", q(0.5), q(0.9), q(0.99), float64(sum)/float64(len(xs)))
}

// txTime is how long n bytes of a small write take through the sender's
// uplink and the receiver's downlink (netshape paces a small write by the
// slower of the two).
func txTime(n int, up, down float64) time.Duration {
	r := up
	if r == 0 || down > 0 && down < r {
		r = down
	}
	if r == 0 {
		return 0
	}
	return time.Duration(float64(n) / r * float64(time.Second))
}

// lookupBreakdown rebuilds each lookup's calls (the origin's calls within
// its span; a callee's calls within its handler's span, for forwarded
// lookups) and compares the lookup's time with what its calls' links
// alone promise: the sum over its chain of round trips and transmissions,
// calls one after the other as the lookup made them.
func lookupBreakdown(out io.Writer, label string, calls []mockring.Call, spans []mockring.LookupSpan, shaper *netshape.Shaper, rtt time.Duration) {
	byFrom := map[string][]mockring.Call{}
	for _, c := range calls {
		if string(c.Protocol) == peer.RingProtocol {
			byFrom[string(c.From)] = append(byFrom[string(c.From)], c)
		}
	}
	cost := func(c mockring.Call) time.Duration {
		from, to := shaper.Access(c.From), shaper.Access(c.To)
		return 2*netshape.OneWay(from, to) + txTime(c.ReqBytes, from.Up, to.Down) + txTime(c.RespBytes, to.Up, from.Down)
	}
	// ideal is the chain's time under c: its link, then the calls its
	// callee made while serving it, one after another.
	var ideal func(c mockring.Call, depth int) (time.Duration, time.Duration)
	ideal = func(c mockring.Call, depth int) (time.Duration, time.Duration) {
		sum, links := cost(c), 2*netshape.OneWay(shaper.Access(c.From), shaper.Access(c.To))
		if depth > 20 {
			return sum, links
		}
		for _, d := range byFrom[string(c.To)] {
			if !d.Open.Before(c.Served) && !d.Answered.After(c.Replied) {
				s, l := ideal(d, depth+1)
				sum += s
				links += l
			}
		}
		return sum, links
	}
	var measured, ideals, linksOnly, gap []time.Duration
	for _, sp := range spans {
		var sum, links time.Duration
		for _, c := range byFrom[string(sp.From)] {
			if !c.Open.Before(sp.Start) && !c.Answered.After(sp.End) {
				s, l := ideal(c, 0)
				sum += s
				links += l
			}
		}
		measured = append(measured, sp.End.Sub(sp.Start))
		ideals = append(ideals, sum)
		linksOnly = append(linksOnly, links)
		gap = append(gap, sp.End.Sub(sp.Start)-sum)
	}
	m, i, l, g := mockring.NewDist(measured), mockring.NewDist(ideals), mockring.NewDist(linksOnly), mockring.NewDist(gap)
	x := func(d time.Duration) string { return fmt.Sprintf("%.2f", ratio(d, rtt)) }
	fmt.Fprintf(out, "| %s | %s / %s / %s | %s / %s / %s | %s / %s / %s | %s / %s / %s |\n", label,
		x(m.P50), x(m.P99), x(m.Mean), x(i.P50), x(i.P99), x(i.Mean), x(l.P50), x(l.P99), x(l.Mean), x(g.P50), x(g.P99), x(g.Mean))
}
