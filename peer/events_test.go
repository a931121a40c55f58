package peer

import (
	"fmt"
	"slices"
	"testing"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/peer/api"
)

func publishN(b *eventBus, from, to int) {
	for i := from; i <= to; i++ {
		b.publish(api.NodeEvent{Kind: api.EventRepair, Message: fmt.Sprintf("e%d", i)})
	}
}

func TestEventBusReplaysRecentAfterSince(t *testing.T) {
	b := newEventBus()
	publishN(b, 1, eventLogLen+10) // the log wraps
	recent, ch := b.subscribe(0)
	defer b.unsubscribe(ch)
	if len(recent) != eventLogLen || recent[0].Seq != 11 || recent[len(recent)-1].Seq != eventLogLen+10 {
		t.Fatalf("replay of since=0: %d events, seq %d..%d; want %d, 11..%d",
			len(recent), recent[0].Seq, recent[len(recent)-1].Seq, eventLogLen, eventLogLen+10)
	}
	for i := 1; i < len(recent); i++ {
		if recent[i].Seq != recent[i-1].Seq+1 || recent[i].Message != fmt.Sprintf("e%d", recent[i].Seq) {
			t.Fatalf("replay out of order at %d: %+v after %+v", i, recent[i], recent[i-1])
		}
	}
	again, ch2 := b.subscribe(eventLogLen + 5)
	defer b.unsubscribe(ch2)
	if len(again) != 5 || again[0].Seq != eventLogLen+6 {
		t.Fatalf("replay since %d: %+v", eventLogLen+5, again)
	}
	b.publish(api.NodeEvent{Kind: api.EventJoined})
	if e := <-ch; e.Seq != eventLogLen+11 || e.Kind != api.EventJoined || e.Time.IsZero() {
		t.Fatalf("live event: %+v", e)
	}
}

func TestEventBusDropsSlowSubscriber(t *testing.T) {
	b := newEventBus()
	_, slow := b.subscribe(0)
	publishN(b, 1, eventSubscriber+1) // one more than the channel holds
	n := 0
	for range slow {
		n++
	}
	if n != eventSubscriber {
		t.Fatalf("slow subscriber got %d events before its channel closed, want %d", n, eventSubscriber)
	}
	b.unsubscribe(slow) // already dropped: no double close
}

func TestEventsEndpointStreamsReplayThenLive(t *testing.T) {
	bus := newEventBus()
	bus.publish(api.NodeEvent{Kind: api.EventJoined, Message: "joined"})
	bus.publish(api.NodeEvent{Kind: api.EventSuccessorChanged, Message: "succ"})
	c := serveAPIConfig(t, &fakeRing{}, apiConfig{LookupTimeout: time.Second, Events: bus})
	ctx := testCtx(t)

	s, err := c.Events(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Next()
	if err != nil || e.Seq != 2 || e.Kind != api.EventSuccessorChanged {
		t.Fatalf("first event after since=1: %+v, %v", e, err)
	}
	bus.publish(api.NodeEvent{Kind: api.EventRepair, Count: 7, Message: "repair moved 7 blocks"})
	e, err = s.Next()
	if err != nil || e.Seq != 3 || e.Count != 7 || e.Message != "repair moved 7 blocks" {
		t.Fatalf("live event: %+v, %v", e, err)
	}

	if _, err := c.Events(ctx, 0); err != nil {
		t.Fatal(err)
	}
	code, _ := do(t, newAPIHandler(&fakeRing{}, apiConfig{}), "GET", "/v1/events?since=x")
	if code != 400 {
		t.Fatalf("since=x: status %d, want 400", code)
	}
}

// events drains what n published so far.
func eventsOf(n *Node) []api.NodeEvent {
	recent, ch := n.events.subscribe(0)
	n.events.unsubscribe(ch)
	return recent
}

func kinds(es []api.NodeEvent, kind string) []api.NodeEvent {
	var out []api.NodeEvent
	for _, e := range es {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// On a stepped mocknet ring: joining publishes joined, stabilization a
// changed successor and predecessor, a crashed neighbour peer_failed.
func TestWatchRingPublishesChanges(t *testing.T) {
	cfg := testConfig()
	cfg.Chord.Vnodes = 1
	r := newMockRing(t, cfg)
	nodes := r.add(3)
	r.join(nodes[0], nil)
	for _, n := range nodes {
		n.watchRing() // the first look: nothing to compare with
	}
	r.join(nodes[1], nodes[0])
	r.join(nodes[2], nodes[0])
	r.converge(50)
	a := nodes[0]
	a.watchRing()

	es := eventsOf(a)
	if j := kinds(es, api.EventJoined); len(j) != 1 || j[0].Message != "started a new ring" {
		t.Fatalf("joined events of the first node: %+v", j)
	}
	if j := kinds(eventsOf(nodes[1]), api.EventJoined); len(j) != 1 || j[0].Peer != a.Host().ID().String() {
		t.Fatalf("joined events of the second node: %+v", j)
	}
	succ, pred := kinds(es, api.EventSuccessorChanged), kinds(es, api.EventPredecessorChanged)
	st := a.Chord().States()[0]
	if len(succ) != 1 || succ[0].Peer != p2ppeer.ID(st.Successors[0].Addr).String() ||
		len(pred) != 1 || pred[0].Peer != p2ppeer.ID(st.Predecessor.Addr).String() {
		t.Fatalf("after the ring formed: successor events %+v, predecessor events %+v", succ, pred)
	}
	a.watchRing()
	if n := len(eventsOf(a)); n != len(es) {
		t.Fatalf("an unchanged ring published %d more events", n-len(es))
	}

	// The peers list names each neighbour's roles in the tables.
	roles := map[string][]string{}
	for _, p := range a.Peers().Peers {
		roles[p.ID] = p.Roles
	}
	if r := roles[succ[0].Peer]; len(r) == 0 || r[0] != api.RoleSuccessor {
		t.Fatalf("peers: the successor's roles %v (all: %v)", r, roles)
	}
	if r := roles[pred[0].Peer]; !slices.Contains(r, api.RolePredecessor) {
		t.Fatalf("peers: the predecessor's roles %v (all: %v)", r, roles)
	}

	victim := r.nodes[0]
	for _, n := range nodes[1:] {
		if n.Host().ID().String() == succ[0].Peer {
			victim = n
		}
	}
	r.crash(victim)
	r.converge(50)
	a.watchRing()
	failed := kinds(eventsOf(a), api.EventPeerFailed)
	if len(failed) != 1 || failed[0].Peer != victim.Host().ID().String() {
		t.Fatalf("after the successor crashed: peer_failed events %+v", failed)
	}
}
