//go:build restartsweep

package chord

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestRestartSweep replays TestRestartKeepsChosenPositions over many
// seeds (SEEDS, default 100; SEED0 the first), then the same ring with
// peer 7 restarted on one vnode instead of three (a lower capacity), or
// on its first positions instead of its chosen ones: its old vnodes
// linger in its neighbours' lists and come back to it.
// Opt-in (-tags restartsweep). On 4bcd588, whose restarts did not keep
// their positions, seed 95 sent a peer's recursive lookups through its
// own stale vnode into unbounded recursion (TestForwardSkipsOwnStaleVnode
// shows that path without a sweep).
func TestRestartSweep(t *testing.T) {
	seeds, first := envInt(t, "SEEDS", 100), envInt(t, "SEED0", 0)
	for seed := first; seed < first+seeds; seed++ {
		for _, re := range restarts {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, re.name), func(t *testing.T) {
				r, rng := placedRing(t, uint64(seed))
				cfg := r.cfg
				n := r.nodes[7]
				before := n.Vnodes()
				r.net.Kill(n.Addr())
				after := cfg
				re.change(&after)
				again := r.restart(7, after)
				if got := again.Vnodes(); re.name == "same" && !slices.Equal(got, before) {
					t.Errorf("restarted with vnodes %v, had %v", got, before)
				}
				r.converge(100)
				r.lookups(rng, 20)
			})
		}
	}
}

// restarts are the ways peer 7 comes back: with the same config (it
// must find the same positions), or with a config under which some of
// its old vnodes are gone.
var restarts = []struct {
	name   string
	change func(*Config)
}{
	{"same", func(*Config) {}},
	{"fewer-vnodes", func(c *Config) { c.Vnodes = 1 }},
	{"first-positions", func(c *Config) { c.VnodeChoices = 1 }},
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}
