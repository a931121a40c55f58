package chord

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// clientOn joins a client (no vnodes) to a converged ring of 8 peers.
func clientOn(t *testing.T, seed uint64) (*ring, *Node, *rand.Rand) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	r := newRing(t, TestConfig())
	for range 8 {
		r.join(rng)
	}
	r.converge(100)
	ccfg := TestConfig()
	ccfg.Vnodes = 0
	client, err := r.net.Add("client", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Join(context.Background(), r.nodes[0].Vnodes()[0]); err != nil {
		t.Fatal(err)
	}
	return r, client, rng
}

// A client asks its nearest measured gateway first, and keeps it however
// far the successors each lookup brings back are.
func TestClientAsksNearestGateway(t *testing.T) {
	r, client, rng := clientOn(t, 7)
	// peer-3 is 1 ms away, peer-k (k != 3) 10+k ms.
	for i, n := range r.nodes {
		d := time.Duration(10+i) * time.Millisecond
		if n.Addr() == "peer-3" {
			d = time.Millisecond
		}
		client.rtt.Observe(n.Addr(), d)
	}
	seen := false
	for range 40 {
		if _, err := client.Lookup(context.Background(), randomID(rng), 3); err != nil {
			t.Fatal(err)
		}
		gws := client.gatewayStep().Nodes
		for i := 1; i < len(gws); i++ {
			a, _ := client.rtt.SRTT(gws[i-1].Addr)
			b, _ := client.rtt.SRTT(gws[i].Addr)
			if a > b {
				t.Fatalf("gateways %v: %s (%v) before %s (%v)", gws, gws[i-1].Addr, a, gws[i].Addr, b)
			}
		}
		seen = seen || gws[0].Addr == "peer-3"
		if seen && gws[0].Addr != "peer-3" {
			t.Fatalf("the nearest gateway peer-3 was dropped for %v", gws)
		}
	}
	if !seen {
		t.Fatal("peer-3 never became a gateway in 40 lookups")
	}
}

// A client's maintenance round measures the gateways it has not measured.
func TestClientProbesGateways(t *testing.T) {
	r, client, _ := clientOn(t, 8)
	before := r.net.Calls.Ping.Load()
	client.Stabilize(context.Background())
	gws := client.gatewayStep().Nodes
	if len(gws) == 0 {
		t.Fatal("no gateways after the join")
	}
	for _, g := range gws {
		if _, ok := client.rtt.SRTT(g.Addr); !ok {
			t.Errorf("gateway %s not measured after a maintenance round", g.Addr)
		}
	}
	pinged := r.net.Calls.Ping.Load() - before
	client.Stabilize(context.Background())
	if again := r.net.Calls.Ping.Load() - before - pinged; again != 0 {
		t.Errorf("a second round pinged %d measured gateways again", again)
	}
}
