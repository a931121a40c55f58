package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"chordshare/testnet/profile"
)

// rig is a shaper for nodes 1..n with a plain TCP server behind node
// 2..n's proxies; node 1 is the client.
type rig struct {
	t       *testing.T
	s       *Shaper
	proxies []string // proxies[i]: node i+1's proxy address ("" for node 1)
}

func newRig(t *testing.T, links []profile.Link, serve func(net.Conn)) *rig {
	t.Helper()
	ips := make([]net.IP, len(links))
	for i := range ips {
		ips[i] = nodeIP(i + 1)
	}
	// The client dials from node 1's address: that needs all of 127/8 on lo.
	probe, err := net.Listen("tcp4", nodeIP(1).String()+":0")
	if err != nil {
		t.Skipf("cannot bind %s (not Linux?): %v", nodeIP(1), err)
	}
	probe.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	r := &rig{t: t, s: NewShaper(ips, links), proxies: make([]string, len(links))}
	for i := 2; i <= len(links); i++ {
		srv, err := net.Listen("tcp4", nodeIP(i).String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		px, err := net.Listen("tcp4", proxyIP(i).String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		r.proxies[i-1] = px.Addr().String()
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.s.Serve(ctx, px, i, srv.Addr().String())
		}()
		go func() {
			defer wg.Done()
			context.AfterFunc(ctx, func() { srv.Close() })
			for {
				c, err := srv.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() { defer wg.Done(); defer c.Close(); serve(c) }()
			}
		}()
	}
	return r
}

// dial connects from node 1's address to node i's proxy.
func (r *rig) dial(i int) net.Conn {
	r.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: nodeIP(1)}}
	c, err := d.Dial("tcp4", r.proxies[i-1])
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

func echo(c net.Conn) { io.Copy(c, c) }

// sweep (SHAPER_SWEEP=1) adds the profiles' extremes and checks the
// claims tightly: a measurement to run on an idle machine.
var sweep = os.Getenv("SHAPER_SWEEP") != ""

// sink reads everything and, once the sender closes its side, answers with
// the nanoseconds between the first and the last read and the bytes
// received after the first read: the rate the receiver saw.
func sink(c net.Conn) {
	buf := make([]byte, 64<<10)
	var first, last time.Time
	var after int
	for {
		n, err := c.Read(buf)
		if n > 0 {
			last = time.Now()
			if first.IsZero() {
				first = last
			} else {
				after += n
			}
		}
		if err != nil {
			break
		}
	}
	fmt.Fprintf(c, "%d %d\n", last.Sub(first).Nanoseconds(), after)
}

// measureRTT is the median of k one-byte round trips through the shaper.
func measureRTT(t *testing.T, c net.Conn, k int) time.Duration {
	b := []byte{1}
	var rtts []time.Duration
	for range k {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts[len(rtts)/2]
}

// measureRate sends size bytes on each conn at once and returns the bytes
// per second the receivers saw, all conns together (bytes after each
// receiver's first read over the longest span between first and last).
func measureRate(t *testing.T, conns []net.Conn, size int) float64 {
	var wg sync.WaitGroup
	spans := make([]time.Duration, len(conns))
	bytes := make([]int, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			if _, err := c.Write(buf); err != nil {
				t.Error(err)
				return
			}
			c.(*net.TCPConn).CloseWrite()
			var ns int64
			if _, err := fmt.Fscan(c, &ns, &bytes[i]); err != nil {
				t.Error(err)
				return
			}
			spans[i] = time.Duration(ns)
		}()
	}
	wg.Wait()
	longest, total := spans[0], 0
	for i, s := range spans {
		longest = max(longest, s)
		total += bytes[i]
	}
	return float64(total) / longest.Seconds()
}

// TestShaperDelay measures the round trip between two shaped nodes against
// the profile's claim (RTT_a + RTT_b) / 2.
func TestShaperDelay(t *testing.T) {
	cases := [][2]time.Duration{{time.Millisecond, time.Millisecond}, {20 * time.Millisecond, 100 * time.Millisecond}}
	if sweep {
		cases = append(cases, [2]time.Duration{200 * time.Millisecond, 200 * time.Millisecond}, [2]time.Duration{time.Millisecond, time.Second})
	}
	for _, c := range cases {
		r := newRig(t, []profile.Link{{RTT: c[0]}, {RTT: c[1]}}, echo)
		conn := r.dial(2)
		claimed := (c[0] + c[1]) / 2
		got := measureRTT(t, conn, 15)
		ratio := float64(got) / float64(claimed)
		t.Logf("RTT %v + %v: claimed %v, measured median %v, ratio %.3f", c[0], c[1], claimed, got.Round(10*time.Microsecond), ratio)
		// Never faster than the claim, whatever the load.
		if got < claimed {
			t.Errorf("RTT %v + %v: measured %v, below the claimed %v", c[0], c[1], got, claimed)
		}
		// Over the claim a round trip costs four loopback hops and two
		// sleeps' overshoot; a sleep under 1 ms takes about 1 ms here (the
		// runtime's timer granularity), so a 1 ms round trip measures about
		// 2-3 ms. A busy machine adds more: the default run only checks
		// that the delay is there at all; SHAPER_SWEEP=1 checks the claim.
		slack := claimed + 50*time.Millisecond
		if sweep {
			slack = claimed/10 + 4*time.Millisecond
		}
		if got > claimed+slack {
			t.Errorf("RTT %v + %v: measured %v, claimed %v", c[0], c[1], got, claimed)
		}
	}
}

// TestShaperRate measures one connection's rate through the slower of the
// sender's uplink and the receiver's downlink, and two connections that
// share the sender's uplink.
func TestShaperRate(t *testing.T) {
	type rateCase struct {
		name        string
		links       []profile.Link
		to          []int // receiving nodes, one connection each from node 1
		size        int
		claimedBits float64
	}
	const ms = time.Millisecond
	cases := []rateCase{
		{"uplink 8 Mbit/s", []profile.Link{{RTT: 10 * ms, Rate: 8e6}, {RTT: 10 * ms}}, []int{2}, 1 << 20, 8e6},
		{"downlink 2 Mbit/s", []profile.Link{{RTT: 10 * ms, Rate: 50e6}, {RTT: 10 * ms, Rate: 2e6}}, []int{2}, 256 << 10, 2e6},
		{"uplink 4 Mbit/s shared by 2", []profile.Link{{RTT: 10 * ms, Rate: 4e6}, {}, {}}, []int{2, 3}, 256 << 10, 4e6},
	}
	if sweep {
		cases = append(cases,
			rateCase{"32 kbit/s", []profile.Link{{RTT: 100 * ms, Rate: 32e3}, {}}, []int{2}, 40 << 10, 32e3},
			rateCase{"100 Mbit/s, RTT 200 ms", []profile.Link{{RTT: 200 * ms, Rate: 100e6}, {RTT: 200 * ms, Rate: 100e6}}, []int{2}, 64 << 20, 100e6},
			// The baseline: what the proxy itself moves with nothing to
			// shape, on this machine now. A claim above it cannot be met.
			rateCase{"unshaped (the proxy's ceiling)", []profile.Link{{}, {}}, []int{2}, 256 << 20, 0},
		)
	}
	for _, c := range cases {
		r := newRig(t, c.links, sink)
		var conns []net.Conn
		for _, i := range c.to {
			conns = append(conns, r.dial(i))
		}
		got := measureRate(t, conns, c.size) * 8
		if c.claimedBits == 0 {
			t.Logf("%s: measured %s", c.name, profile.FormatRate(got))
			continue
		}
		ratio := got / c.claimedBits
		t.Logf("%s: claimed %s, measured %s, ratio %.3f", c.name, profile.FormatRate(c.claimedBits), profile.FormatRate(got), ratio)
		// Not above the claim; below it only as far as a busy machine
		// explains (SHAPER_SWEEP=1: within 10%). The span is timed at the
		// sink from its first read: a sink that reads its first bytes late
		// (the CPU busy elsewhere) shortens it, so a loaded machine can
		// measure a few percent over (1.056 once in CI-like load);
		// SHAPER_SWEEP=1, on a quiet machine, allows 5%.
		low, high := 0.5, 1.15
		if sweep {
			low, high = 0.9, 1.05
		}
		if ratio < low || ratio > high {
			t.Errorf("%s: measured %s, claimed %s", c.name, profile.FormatRate(got), profile.FormatRate(c.claimedBits))
		}
	}
}
