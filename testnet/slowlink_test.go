package testnet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"chordshare/peer/api"
)

// TestSlowUplinkRing (opt-in: TESTNET_LONG=1; about 12 minutes) is issue
// 4's slow peer: on `up 5 --profile heterogeneous --seed 3 --capacity 2`
// the slowest node (80 kbit/s each way) shares a file of about a minute of
// its uplink, and the test watches the ring every 2 s from the share's
// start until a minute after it ended (at most 6 minutes): whether the
// slow node's vnodes have a successor on another peer, whether another
// peer's successor lists name it, and the ring calls' latency on both
// sides (the status's ring_calls). Three times, in the same run: with the
// daemons unpaced, with `up --uplink` (each daemon told its drawn rate, so
// it paces its block uploads below it), and with `up --uplink-auto` (each
// daemon estimates its rate; -run TestSlowUplinkRing/auto for that one
// alone). It logs the figures and fails only if the testnet itself does.
func TestSlowUplinkRing(t *testing.T) {
	if os.Getenv("TESTNET_LONG") == "" {
		t.Skip("set TESTNET_LONG=1 for the long testnet runs")
	}
	for _, run := range []struct{ name, flag string }{{"unpaced", ""}, {"uplink", "--uplink"}, {"auto", "--uplink-auto"}} {
		t.Run(run.name, func(t *testing.T) { slowUplinkRun(t, run.flag) })
	}
}

func slowUplinkRun(t *testing.T, uplinkFlag string) {
	n := newNet(t)
	args := []string{"up", "5", "--profile", "heterogeneous", "--seed", "3", "--capacity", "2"}
	if uplinkFlag != "" {
		args = append(args, uplinkFlag)
	}
	n.must(4*time.Minute, args...)
	if _, err := n.script(3*time.Minute, "wait", "--timeout", "150s"); err != nil {
		t.Logf("the ring had not converged before the share: %v", err)
	}
	links := n.links()
	slow := 1
	for i := 2; i <= 5; i++ {
		if links[i][1] < links[slow][1] {
			slow = i
		}
	}
	ids := map[string]int{}
	for _, st := range n.status() {
		ids[st.ID] = st.Node
	}
	size := int(links[slow][1] / 8 * 60)
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{'s', 'l', 'o', 'w', 'l', 'i', 'n', 'k'}).Read(data)
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	before := n.allStatus()
	up0, _ := n.shaperBytes(slow)
	start := time.Now()
	type result struct {
		out string
		err error
		at  time.Duration
	}
	done := make(chan result, 1)
	go func() {
		out, err := n.script(10*time.Minute, "peer", strconv.Itoa(slow), "share", path)
		done <- result{out, err, time.Since(start)}
	}()
	const every = 2 * time.Second
	var share *result
	var samples, ownOut, othersOut, bothOut, longest, streak int
	for {
		if share == nil {
			select {
			case r := <-done:
				share = &r
			default:
			}
		}
		el := time.Since(start)
		if share != nil && el > share.at+time.Minute || el > 6*time.Minute {
			break
		}
		own, others := n.slowInRing(slow, ids)
		samples++
		if !own {
			ownOut++
		}
		if !others {
			othersOut++
		}
		if !own || !others {
			bothOut++
			streak++
			longest = max(longest, streak)
		} else {
			streak = 0
		}
		time.Sleep(every)
	}
	window := time.Since(start)
	after := n.allStatus()
	up1, _ := n.shaperBytes(slow)
	if share == nil {
		r := <-done
		share = &r
	}
	shareText := fmt.Sprintf("took %v", share.at.Round(time.Second))
	if share.err != nil {
		shareText = fmt.Sprintf("failed after %v: %s", share.at.Round(time.Second), lastLine(share.err.Error()))
	}
	t.Logf("node %d (%.0f kbit/s each way, RTT %.0f ms) shared %d bytes: %s", slow, links[slow][1]/1e3, links[slow][0], size, shareText)
	t.Logf("over %v (%d samples every %v): its uplink carried %.1f kbit/s; out of the ring in %d samples (%.0f s; longest run %.0f s): %d with no successor on another peer, %d named in no other peer's successor list",
		window.Round(time.Second), samples, every, float64(up1-up0)*8/window.Seconds()/1e3, bothOut, float64(bothOut)*every.Seconds(), float64(longest)*every.Seconds(), ownOut, othersOut)
	t.Logf("node %d's ring calls: %s", slow, callsDelta(before[slow].RingCalls, after[slow].RingCalls))
	if after[slow].UplinkAuto {
		t.Logf("node %d's uplink estimate at the end: %.1f kbit/s (its link: %.0f kbit/s)", slow, float64(after[slow].Uplink)*8/1e3, links[slow][1]/1e3)
	}
	var o0, o1 api.RingCalls
	for i := range after {
		if i != slow {
			o0, o1 = addCalls(o0, before[i].RingCalls), addCalls(o1, after[i].RingCalls)
		}
	}
	t.Logf("the other nodes' ring calls: %s", callsDelta(o0, o1))
}

// allStatus reads every node's status, by node.
func (n *net) allStatus() map[int]api.Status {
	n.t.Helper()
	out := map[int]api.Status{}
	for i := 1; i <= 5; i++ {
		out[i] = n.traffic(i).status
	}
	return out
}

// slowInRing reports whether node slow has a vnode with a successor on
// another peer (own), and whether another node's successor lists name it
// (others). A node that does not answer within 5 s counts as not seeing it.
func (n *net) slowInRing(slow int, ids map[string]int) (own, others bool) {
	for i := 1; i <= 5; i++ {
		r, err := n.ring(i)
		if err != nil {
			continue
		}
		for _, v := range r.Vnodes {
			for _, s := range v.Successors {
				switch {
				case i == slow && ids[s.Peer] != slow:
					own = true
				case i != slow && ids[s.Peer] == slow:
					others = true
				}
			}
		}
	}
	return own, others
}

func (n *net) ring(i int) (api.Ring, error) {
	c, err := api.NewClient(filepath.Join(n.dir, "node"+strconv.Itoa(i), "repo"))
	if err != nil {
		return api.Ring{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ring(ctx)
}

func addCalls(a, b api.RingCalls) api.RingCalls {
	a.Out += b.Out
	a.Failed += b.Failed
	if a.Answered == nil {
		a.Answered = slices.Clone(b.Answered)
		return a
	}
	for i := range b.Answered {
		a.Answered[i].Count += b.Answered[i].Count
	}
	return a
}

// callsDelta describes the ring calls made between two readings: how many,
// how many failed, and the latency of the answered ones by percentile
// (the upper bound of its bucket).
func callsDelta(a, b api.RingCalls) string {
	out, failed := b.Out-a.Out, b.Failed-a.Failed
	var counts []int64
	var total int64
	for i := range b.Answered {
		c := b.Answered[i].Count
		if i < len(a.Answered) {
			c -= a.Answered[i].Count
		}
		counts = append(counts, c)
		total += c
	}
	pct := func(p float64) string {
		if total == 0 {
			return "-"
		}
		want := int64(p*float64(total) + 0.999)
		var sum int64
		for i, c := range counts {
			sum += c
			if sum >= want {
				if le := b.Answered[i].LeMs; le > 0 {
					return fmt.Sprintf("<=%dms", le)
				}
				return fmt.Sprintf(">%dms", b.Answered[i-1].LeMs)
			}
		}
		return "-"
	}
	return fmt.Sprintf("%d calls, %d failed (%.1f%%); answered p50 %s, p90 %s, p99 %s, buckets %v",
		out, failed, 100*float64(failed)/float64(max(out, 1)), pct(0.5), pct(0.9), pct(0.99), counts)
}

// lastLine is the last line of s that is not empty: a script's error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
