package chord

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// stepOwnOnly is step with v's own candidates only, as before session 5:
// the baseline of BenchmarkStepVnodes.
func (n *Node) stepOwnOnly(v *vnode, key ID, want int) Step {
	for {
		if succs, ok := v.ownsSuccessor(key, want); ok {
			return Step{Done: true, Nodes: succs}
		}
		if next := n.startFor(key); next != nil && next != v && Between(v.self.ID, next.self.ID, key) {
			v = next
			continue
		}
		break
	}
	if !n.cfg.Proximity {
		if cands, _ := v.candidates(key, candidatesPerHop); len(cands) > 0 {
			return Step{Nodes: cands}
		}
	} else if cands, _ := v.candidates(key, routeCandidates); len(cands) > 0 {
		return Step{Nodes: n.rankByCost(v, key, cands, false, 0)}
	}
	return Step{Nodes: []Ref{v.successor()}}
}

// BenchmarkStepVnodes: one routing step (as HandleNextHop runs it) on a
// converged ring, all vnodes' state (now) against v's only (before).
func BenchmarkStepVnodes(b *testing.B) {
	for _, vn := range []int{1, 8, 32, 64} {
		peers := 4096 / vn
		if peers > 256 {
			peers = 256
		}
		s, err := NewSim(context.Background(), SimConfig(vn), peers, 1)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"all", "own"} {
			b.Run(fmt.Sprintf("vnodes=%d/%s", vn, mode), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				n := s.Nodes[0]
				keys := make([]ID, 1024)
				for i := range keys {
					keys[i] = randomID(rng)
				}
				i := 0
				for b.Loop() {
					key := keys[i%len(keys)]
					i++
					v := n.startFor(key)
					if mode == "all" {
						n.step(v, key, 3, false, 0)
					} else {
						n.stepOwnOnly(v, key, 3)
					}
				}
			})
		}
	}
}

// candidatesFullScan is Node.candidates with each sibling's whole
// candidate list filtered to the arc, the reference for candidatesAfter.
func (n *Node) candidatesFullScan(v *vnode, key ID, max int) []Ref {
	cands, predKnown := v.candidates(key, max)
	vs := n.vns()
	if len(vs) == 1 || predKnown {
		return cands
	}
	for _, w := range vs {
		if w == v {
			continue
		}
		all, _ := w.candidates(key, max)
		for _, c := range all {
			if Between(v.self.ID, c.ID, key) {
				cands = append(cands, c)
			}
		}
	}
	sortByCloseness(cands, key)
	cands = dedupe(cands)
	return cands[:min(len(cands), max)]
}

// The bounded sibling scan gives what the full one did, on converged
// rings with measured (proximity) fingers.
func TestCandidatesAfterMatchesFullScan(t *testing.T) {
	for _, vn := range []int{8, 32} {
		cfg := DefaultConfig()
		cfg.Vnodes = vn
		s, err := NewLatencySim(context.Background(), cfg, 32, 3, AccessDelays(time.Millisecond, 300*time.Millisecond, 3))
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			Round(context.Background(), s.Live())
		}
		rng := rand.New(rand.NewPCG(1, 2))
		diff := 0
		for range 3000 {
			n := s.Nodes[rng.IntN(len(s.Nodes))]
			key := randomID(rng)
			v := n.startFor(key)
			for _, max := range []int{candidatesPerHop, routeCandidates} {
				a, b := n.candidatesFullScan(v, key, max), n.candidates(v, key, max)
				if !slices.Equal(a, b) {
					diff++
				}
			}
		}
		if diff > 0 {
			t.Errorf("%d vnodes: %d of 6000 candidate lists differ", vn, diff)
		}
	}
}
