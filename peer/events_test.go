package peer

import (
	"fmt"
	"testing"
	"time"

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
