// Package netshape describes the testnet's link profiles and shapes
// libp2p's mocknet to them: a latency per link from the two peers' access
// delays, and each peer's bandwidth capped across all its streams together
// (mocknet itself only limits each link on its own).
package netshape

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Access is one peer's access link: what it adds to every round trip and
// how fast it sends and receives, summed over all its connections.
type Access struct {
	// RTT is the round trip this peer's access link adds: a message between
	// peers a and b is delayed (a.RTT + b.RTT) / 2 each way, so their round
	// trip is a.RTT + b.RTT.
	RTT time.Duration
	// Up and Down are bytes per second; 0 means not limited.
	Up, Down float64
}

// Profile names the profiles the testnet and the simulator share.
var Profiles = []string{"lan", "wan", "heterogeneous"}

// Draw gives n peers their access links under the named profile,
// reproducibly from seed (peer i always gets the same link for one seed):
//
//   - lan: no delay, no rate limit.
//   - wan: RTT log-uniform over 20–200 ms, no rate limit.
//   - heterogeneous: RTT log-uniform over 1–1000 ms and a symmetric rate
//     log-uniform over 32 kbit/s–100 Mbit/s, drawn independently.
func Draw(profile string, n int, seed uint64) ([]Access, error) {
	rng := rand.New(rand.NewPCG(seed, 0x70726f66))
	out := make([]Access, n)
	switch profile {
	case "lan":
	case "wan":
		for i := range out {
			out[i].RTT = logUniformDuration(rng, 20*time.Millisecond, 200*time.Millisecond)
		}
	case "heterogeneous":
		for i := range out {
			out[i].RTT = logUniformDuration(rng, time.Millisecond, time.Second)
			rate := logUniform(rng, MinRate, MaxRate)
			out[i].Up, out[i].Down = rate, rate
		}
	default:
		return nil, fmt.Errorf("profile %q: want one of %v", profile, Profiles)
	}
	return out, nil
}

// The heterogeneous profile's rate range, in bytes per second.
const (
	MinRate = 32e3 / 8  // 32 kbit/s
	MaxRate = 100e6 / 8 // 100 Mbit/s
)

func logUniform(rng *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
}

func logUniformDuration(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return time.Duration(logUniform(rng, float64(lo), float64(hi)))
}

// OneWay is the delay of a message from a to b (or b to a).
func OneWay(a, b Access) time.Duration { return (a.RTT + b.RTT) / 2 }
