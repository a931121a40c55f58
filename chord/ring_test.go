package chord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// ring is a test harness: nodes on one MemNet, built and checked step by step.
type ring struct {
	t     *testing.T
	net   *MemNet
	cfg   Config
	nodes []*Node
	seq   int
}

func newRing(t *testing.T, cfg Config) *ring {
	return &ring{t: t, net: NewMemNet(), cfg: cfg}
}

func (r *ring) add() *Node {
	r.t.Helper()
	r.seq++
	n, err := r.net.Add(fmt.Sprintf("peer-%d", r.seq), r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// join adds a node through a random live one (or creates the ring).
func (r *ring) join(rng *rand.Rand) *Node {
	r.t.Helper()
	n := r.add()
	live := r.live()
	if len(live) == 0 {
		n.Create()
	} else if err := n.Join(context.Background(), live[rng.IntN(len(live))].Vnodes()[0]); err != nil {
		r.t.Fatal(err)
	}
	r.nodes = append(r.nodes, n)
	return n
}

// restart brings node i back at its address with cfg (it must be down:
// Kill it first) and joins it through node 0.
func (r *ring) restart(i int, cfg Config) *Node {
	r.t.Helper()
	n, err := r.net.Restart(r.nodes[i].Addr(), cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := n.Join(context.Background(), r.nodes[0].Vnodes()[0]); err != nil {
		r.t.Fatal(err)
	}
	r.nodes[i] = n
	return n
}

func (r *ring) live() []*Node {
	return Live(r.nodes, func(n *Node) bool { return r.net.Alive(n.Addr()) })
}

func (r *ring) converge(maxRounds int) int {
	r.t.Helper()
	rounds, err := Converge(context.Background(), r.live(), maxRounds)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, n := range r.live() {
		n.FixAllFingers(context.Background())
	}
	return rounds
}

// lookups checks keys random lookups from every live node, in both modes.
func (r *ring) lookups(rng *rand.Rand, keys int) {
	r.t.Helper()
	live := r.live()
	o := NewOracle(live)
	for _, mode := range []LookupMode{Recursive, Iterative} {
		for _, n := range live {
			for range keys {
				key := randomID(rng)
				res, err := n.LookupMode(context.Background(), key, 1, mode)
				if err != nil {
					r.t.Fatalf("%s lookup from %s: %v", mode, n.Addr(), err)
				}
				if err := o.CheckLookup(key, res); err != nil {
					r.t.Fatalf("%s from %s: %v", mode, n.Addr(), err)
				}
			}
		}
	}
}

func randomID(rng *rand.Rand) ID {
	var id ID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

// The story of issue 2 on the in-memory network: 64 peers join one at a time,
// the ring converges and every lookup is right; a quarter crash at once; it
// converges again; new peers fill the gaps; right again.
func TestRingJoinCrashRejoin(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	r := newRing(t, TestConfig())
	for range 64 {
		r.join(rng)
		Round(context.Background(), r.live())
	}
	t.Logf("64 peers joined one at a time: converged in %d more rounds", r.converge(200))
	r.lookups(rng, 200)

	for _, i := range rng.Perm(64)[:16] {
		r.net.Kill(r.nodes[i].Addr())
	}
	t.Logf("16 of 64 crashed: converged in %d rounds", r.converge(200))
	r.lookups(rng, 200)

	for range 16 {
		r.join(rng)
	}
	t.Logf("16 joined at once: converged in %d rounds", r.converge(200))
	r.lookups(rng, 200)
}

// A peer that crashes and comes back (same address, so the same vnode
// IDs) before the ring has noticed: its join lookups are answered with its
// own old vnodes as their successors. It must still take its place.
func TestRingRestartBeforeTheRingNoticed(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	cfg := TestConfig()
	cfg.Vnodes = 2
	r := newRing(t, cfg)
	for range 8 {
		r.join(rng)
	}
	r.converge(200)
	for _, i := range []int{3, 6} {
		addr := r.nodes[i].Addr()
		r.net.Kill(addr)
		n, err := r.net.Restart(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(context.Background(), r.nodes[0].Vnodes()[0]); err != nil {
			t.Fatal(err)
		}
		// The lookups named the old vnodes as their own successors; a
		// vnode that took that answer would have no successor at all, and
		// on a real network nobody might notify it again.
		for _, st := range n.States() {
			if len(st.Successors) == 0 {
				t.Fatalf("%s vnode %s joined with no successor", addr, st.Self)
			}
		}
		r.nodes[i] = n
	}
	t.Logf("2 of 8 restarted at once: converged in %d rounds", r.converge(200))
	r.lookups(rng, 100)
}

func TestRingAllJoinAtOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	r := newRing(t, TestConfig())
	first := r.join(rng)
	for range 63 {
		n := r.add()
		if err := n.Join(context.Background(), first.Vnodes()[0]); err != nil {
			t.Fatal(err)
		}
		r.nodes = append(r.nodes, n)
	}
	t.Logf("63 joined at once through one peer: converged in %d rounds", r.converge(300))
	r.lookups(rng, 200)
}

func TestSingleNodeRingOwnsEverything(t *testing.T) {
	r := newRing(t, TestConfig())
	n := r.join(rand.New(rand.NewPCG(1, 1)))
	r.converge(5)
	res, err := n.Lookup(context.Background(), KeyID([]byte("x")), 1)
	if err != nil || len(res.Successors) == 0 || res.Successors[0].Addr != n.Addr() {
		t.Fatalf("lookup on a one-peer ring: %v %v", res, err)
	}
}

// Lookups must route around dead fingers and successors without any repair
// having run: the successor list carries them past the hole.
func TestLookupsRouteAroundFailuresBeforeRepair(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	cfg := TestConfig()
	cfg.Vnodes = 1
	r := newRing(t, cfg)
	for range 128 {
		r.join(rng)
	}
	r.converge(400)
	for _, i := range rng.Perm(128)[:25] { // ~20%
		r.net.Kill(r.nodes[i].Addr())
	}
	live := r.live()
	o := NewOracle(live)
	alive := func(x Ref) bool { return r.net.Alive(x.Addr) }
	for _, mode := range []LookupMode{Recursive, Iterative} {
		ok, first, total := 0, 0, 0
		for _, n := range live {
			for range 20 {
				key := randomID(rng)
				res, err := n.LookupMode(context.Background(), key, cfg.SuccessorListLen, mode)
				total++
				if err != nil {
					continue
				}
				if o.CheckFirstLive(key, res, alive) == nil {
					ok++
				}
				if o.CheckLookup(key, res) == nil {
					first++
				}
			}
		}
		// The answering node may not yet know its successor died, so the
		// first entry can be dead; the first live entry must be right.
		if ok != total {
			t.Errorf("%s: %d/%d lookups found the live successor with 20%% of peers dead", mode, ok, total)
		}
		t.Logf("%s, 20%% dead, no repair: first live successor right %d/%d, first entry right %d/%d", mode, ok, total, first, total)
	}
}

// On a ring smaller than a successor list, every answer names the whole
// ring in order from the key's successor, however deep in a list it was
// found: replication needs r distinct peers from any lookup.
func TestSmallRingAnswersWrapAround(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	cfg := TestConfig()
	cfg.Vnodes = 1
	r := newRing(t, cfg)
	for range 3 {
		r.join(rng)
	}
	r.converge(50)
	o := NewOracle(r.nodes)
	for _, n := range r.nodes {
		for range 200 {
			key := randomID(rng)
			res, err := n.Lookup(context.Background(), key, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Successors) != 3 {
				t.Fatalf("lookup %s: %d successors on a 3-node ring, want 3", key, len(res.Successors))
			}
			want := o.Successor(key)
			for _, s := range res.Successors {
				if s.ID != want.ID {
					t.Fatalf("lookup %s: successors %v out of ring order", key, res.Successors)
				}
				want = o.Successor(want.ID.AddPow2(0))
			}
		}
	}
}

// A client (no vnodes) looks up through the ring without being on it: no
// vnode ever names it, its answers are right, and it keeps working when the
// peer it bootstrapped from crashes. A client cannot bootstrap another.
func TestClientLooksUpThroughTheRing(t *testing.T) {
	r, client, rng := clientOn(t, 5)
	boot := r.nodes[0]
	check := func() {
		t.Helper()
		o := NewOracle(r.live())
		for _, mode := range []LookupMode{Recursive, Iterative} {
			for range 50 {
				key := randomID(rng)
				res, err := client.LookupMode(context.Background(), key, 3, mode)
				if err == nil {
					err = o.CheckLookup(key, res)
				}
				if err != nil {
					t.Fatalf("client %s lookup: %v", mode, err)
				}
			}
		}
	}
	check()
	r.converge(100)
	for _, n := range r.live() {
		for _, st := range n.States() {
			refs := append(slices.Clone(st.Successors), st.Predecessor)
			for _, f := range st.Fingers {
				refs = append(refs, f.Node)
			}
			for _, x := range refs {
				if x.Addr == "client" {
					t.Fatalf("vnode %s names the client", st.Self)
				}
			}
		}
	}
	r.net.Kill(boot.Addr())
	r.converge(100)
	check()

	other, err := r.net.Add("client-2", client.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Join(context.Background(), MakeRef("client", 0)); !errors.Is(err, ErrUnknownVnode) {
		t.Errorf("joining through a client: %v, want ErrUnknownVnode", err)
	}
}
