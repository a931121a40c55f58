// Package netshape shapes libp2p's mocknet to the testnet's link profiles
// (package testnet/profile, the same draws testnet.sh's shaping proxies
// use): a latency per link from the two peers' access delays, and each
// peer's rate capped across all its streams together (mocknet itself only
// limits each link on its own).
package netshape

import (
	"time"

	"chordshare/testnet/profile"
)

// Access is one peer's access link.
type Access struct {
	// RTT is the peer's round-trip contribution, as testnet/profile defines
	// it: the round trip between peers a and b is (a.RTT + b.RTT) / 2, so a
	// message takes a.RTT/4 + b.RTT/4 each way.
	RTT time.Duration
	// Up and Down are bytes per second; 0 means not limited.
	Up, Down float64
}

// Draw gives n peers the access links testnet/profile draws for the named
// profile and seed: peer i (from 0) gets the testnet's node i+1's link.
func Draw(name string, n int, seed uint64) ([]Access, error) {
	p, err := profile.Lookup(name)
	if err != nil {
		return nil, err
	}
	out := make([]Access, n)
	for i, l := range p.Links(seed, n) {
		out[i] = Access{RTT: l.RTT, Up: l.Rate / 8, Down: l.Rate / 8}
	}
	return out, nil
}

// OneWay is the delay of a message from a to b (or b to a).
func OneWay(a, b Access) time.Duration { return (a.RTT + b.RTT) / 4 }
