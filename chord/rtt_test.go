package chord

import (
	"testing"
	"time"
)

// timedOut in a case's events stands for a call that got no answer in time.
const timedOut time.Duration = -1

func TestRTTEstimator(t *testing.T) {
	const ms = time.Millisecond
	cfg := Config{InitialRTO: 2 * time.Second, MinRTO: 200 * ms, MaxRTO: 8 * time.Second}
	cases := []struct {
		name         string
		cfg          Config
		events       []time.Duration // samples, or timedOut
		srtt, rttvar time.Duration   // expected estimator state (zero: never measured)
		rto          time.Duration
	}{
		{name: "never measured: the initial timeout",
			rto: 2 * time.Second},
		{name: "first sample: srtt = R, rttvar = R/2, rto = R + 4·R/2",
			events: []time.Duration{100 * ms},
			srtt:   100 * ms, rttvar: 50 * ms, rto: 300 * ms},
		{name: "second sample: rttvar moves 1/4 towards |srtt-R| first, then srtt 1/8 towards R",
			events: []time.Duration{100 * ms, 200 * ms},
			srtt:   112500 * time.Microsecond, rttvar: 62500 * time.Microsecond, rto: 362500 * time.Microsecond},
		{name: "steady samples shrink the variation",
			events: []time.Duration{100 * ms, 100 * ms},
			srtt:   100 * ms, rttvar: 37500 * time.Microsecond, rto: 250 * ms},
		{name: "a timeout doubles the timeout",
			events: []time.Duration{100 * ms, timedOut},
			srtt:   100 * ms, rttvar: 50 * ms, rto: 600 * ms},
		{name: "each further timeout doubles it again",
			events: []time.Duration{100 * ms, timedOut, timedOut, timedOut},
			srtt:   100 * ms, rttvar: 50 * ms, rto: 2400 * ms},
		{name: "an unmeasured peer backs off from the initial timeout",
			events: []time.Duration{timedOut},
			rto:    4 * time.Second},
		{name: "backoff stops at the maximum",
			events: []time.Duration{timedOut, timedOut, timedOut},
			rto:    8 * time.Second},
		{name: "at most 8 doublings are remembered",
			cfg:    Config{InitialRTO: time.Second, MinRTO: ms, MaxRTO: time.Hour},
			events: []time.Duration{100 * ms, timedOut, timedOut, timedOut, timedOut, timedOut, timedOut, timedOut, timedOut, timedOut, timedOut},
			srtt:   100 * ms, rttvar: 50 * ms, rto: 256 * 300 * ms},
		{name: "an answer ends the backoff",
			events: []time.Duration{100 * ms, timedOut, timedOut, 100 * ms},
			srtt:   100 * ms, rttvar: 37500 * time.Microsecond, rto: 250 * ms},
		{name: "a fast peer's timeout is raised to the minimum",
			events: []time.Duration{10 * ms},
			srtt:   10 * ms, rttvar: 5 * ms, rto: 200 * ms},
		{name: "a fast peer backs off from the minimum, not from its own tiny estimate",
			events: []time.Duration{ms, timedOut, timedOut},
			srtt:   ms, rttvar: ms / 2, rto: 800 * ms},
		{name: "a slow peer's timeout is cut to the maximum",
			events: []time.Duration{5 * time.Second},
			srtt:   5 * time.Second, rttvar: 2500 * ms, rto: 8 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := cfg
			if c.cfg.MaxRTO != 0 {
				cc = c.cfg
			}
			tab := newRTTTable(&cc)
			for _, ev := range c.events {
				if ev == timedOut {
					tab.TimedOut("p")
				} else {
					tab.Observe("p", ev)
				}
			}
			if got := tab.Timeout("p"); got != c.rto {
				t.Errorf("timeout %v, want %v", got, c.rto)
			}
			srtt, ok := tab.SRTT("p")
			if ok != (c.srtt != 0) || srtt != c.srtt {
				t.Errorf("SRTT = %v, %v; want %v", srtt, ok, c.srtt)
			}
			if e := tab.get("p"); e.rttvar != c.rttvar {
				t.Errorf("rttvar %v, want %v", e.rttvar, c.rttvar)
			}
		})
	}
}

// Forget drops what was learnt: a peer that left and comes back is treated
// as never measured.
func TestRTTForget(t *testing.T) {
	cfg := TestConfig()
	tab := newRTTTable(&cfg)
	tab.Observe("p", 5*time.Second)
	tab.TimedOut("p")
	tab.Forget("p")
	if _, ok := tab.SRTT("p"); ok {
		t.Error("SRTT still known after Forget")
	}
	if got := tab.Timeout("p"); got != cfg.InitialRTO {
		t.Errorf("timeout after Forget %v, want the initial %v", got, cfg.InitialRTO)
	}
}
