// Package profile draws each testnet node's access link (round-trip time and
// rate) from a named profile and a seed, reproducibly: node i's link depends
// only on the profile, the seed and i, so a larger testnet keeps the links
// of a smaller one.
//
// A node's RTT is the round trip between two nodes that both have it: the
// round trip between nodes i and j is (RTT_i + RTT_j) / 2, so one-way delay
// from i to j is RTT_i/4 + RTT_j/4 and every pair's round trip lies in the
// profile's range. A node's rate is its access link's capacity in each
// direction (uplink and downlink alike), shared by all its connections.
package profile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Link is one node's access link.
type Link struct {
	RTT  time.Duration // the node's round-trip contribution (see the package comment)
	Rate float64       // bits per second each way; 0: unlimited
}

// Shaped reports whether the link delays or limits anything.
func (l Link) Shaped() bool { return l.RTT > 0 || l.Rate > 0 }

func (l Link) String() string {
	rate := "unlimited"
	if l.Rate > 0 {
		rate = FormatRate(l.Rate)
	}
	return fmt.Sprintf("rtt %v, %s", l.RTT.Round(100*time.Microsecond), rate)
}

// Profile names a way to draw links.
type Profile struct {
	Name string
	Doc  string
	// RTT range (log-uniform between them); zero: no delay.
	MinRTT, MaxRTT time.Duration
	// Rate range in bit/s (log-uniform between them); zero: unlimited.
	MinRate, MaxRate float64
}

// Profiles, in the order they are listed to users.
var Profiles = []Profile{
	{Name: "lan", Doc: "no shaping: loopback as it is"},
	{Name: "wan", Doc: "RTT 20-200 ms (log-uniform), 100 Mbit/s each way",
		MinRTT: 20 * time.Millisecond, MaxRTT: 200 * time.Millisecond, MinRate: 100e6, MaxRate: 100e6},
	{Name: "heterogeneous", Doc: "RTT 1-1000 ms and 32 kbit/s-100 Mbit/s each way, both log-uniform and independent",
		MinRTT: time.Millisecond, MaxRTT: time.Second, MinRate: 32e3, MaxRate: 100e6},
}

// Lookup finds a profile by name.
func Lookup(name string) (Profile, error) {
	var names []string
	for _, p := range Profiles {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("unknown profile %q (have %s)", name, strings.Join(names, ", "))
}

// Shaped reports whether the profile shapes any link.
func (p Profile) Shaped() bool { return p.MaxRTT > 0 || p.MaxRate > 0 }

// Link draws node i's link (i counts from 1) for the seed.
func (p Profile) Link(seed uint64, i int) Link {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	var l Link
	if p.MaxRTT > 0 {
		l.RTT = time.Duration(logUniform(r, float64(p.MinRTT), float64(p.MaxRTT)))
	}
	if p.MaxRate > 0 {
		l.Rate = logUniform(r, p.MinRate, p.MaxRate)
	}
	return l
}

// Links draws the links of nodes 1..n.
func (p Profile) Links(seed uint64, n int) []Link {
	out := make([]Link, n)
	for i := range out {
		out[i] = p.Link(seed, i+1)
	}
	return out
}

// logUniform draws from [lo, hi] with a uniform logarithm; lo == hi gives lo.
func logUniform(r *rand.Rand, lo, hi float64) float64 {
	if lo >= hi {
		return lo
	}
	return math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo)))
}

// FormatRate prints bits per second with an SI unit: "32.0 kbit/s".
func FormatRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.1f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}
