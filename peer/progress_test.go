package peer

import (
	"testing"
	"time"
)

// A request records that it was sent and how much of its answer came:
// nothing before the header, then bytes of total as they arrive; a retry
// (reset) starts over, its callbacks still called once. Each start and end
// of answering turns it (its Get looks then), bytes alone do not. Puts and repair
// pass no request: a nil one records nothing.
func TestRequestProgress(t *testing.T) {
	var none *request
	none.reset()
	none.markSent()
	none.arrived(10, 20)

	q := &request{began: time.Now(), turned: make(chan struct{}, 1)}
	turned := func() bool {
		select {
		case <-q.turned:
			return true
		default:
			return false
		}
	}
	sent, answered := 0, 0
	q.sending = func() { sent++ }
	q.answering = func() { answered++ }
	if !q.dialing() {
		t.Fatal("a request not yet written is not dialing")
	}
	if _, ok := q.progress(time.Now()); ok {
		t.Fatal("progress before any answer")
	}
	q.markSent()
	q.markSent()
	if q.dialing() {
		t.Fatal("a written request still dialing")
	}
	if turned() {
		t.Fatal("turned before any answer")
	}
	q.arrived(0, 1000)
	if !turned() {
		t.Fatal("not turned at the header")
	}
	q.arrived(400, 1000)
	q.arrived(700, 1000)
	later := time.Now().Add(time.Second)
	tp, ok := q.progress(later)
	if !ok || tp.got != 700 || tp.total != 1000 || tp.receiving < time.Second || tp.silent < time.Second || tp.silent > tp.receiving {
		t.Fatalf("progress %+v, %v; want 700 of 1000 bytes, header and last bytes at least 1 s before", tp, ok)
	}
	if turned() {
		t.Fatal("turned by bytes of an answer already coming")
	}
	q.reset()
	if !turned() {
		t.Fatal("not turned by a retry after an answer had begun")
	}
	if !q.dialing() {
		t.Fatal("a retry not yet written is not dialing")
	}
	if _, ok := q.progress(later); ok {
		t.Fatal("a retry's progress before its header")
	}
	q.markSent()
	q.arrived(100, 1000)
	if !turned() {
		t.Fatal("not turned at the retry's header")
	}
	if tp, ok := q.progress(later); !ok || tp.got != 100 || tp.receiving > later.Sub(q.began) {
		t.Fatalf("a retry's progress %+v, %v; want its own 100 bytes", tp, ok)
	}
	if sent != 1 || answered != 1 {
		t.Fatalf("sending called %d times, answering %d, want once each", sent, answered)
	}
}

// A transfer's rate is over its whole time, or since the previous look
// if faster; none without payload.
func TestTransferRate(t *testing.T) {
	prev := transferProgress{got: 100 << 10, total: 256 << 10, receiving: time.Second}
	if r := prev.rate(transferProgress{}); r != 100<<10 {
		t.Fatalf("rate %v, want 100 KiB/s over the whole transfer", r)
	}
	now := transferProgress{got: 200 << 10, total: 256 << 10, receiving: 1500 * time.Millisecond}
	if r := now.rate(prev); r != 200<<10 {
		t.Fatalf("rate %v, want 200 KiB/s since the previous look", r)
	}
	if r := (transferProgress{total: 256 << 10, receiving: time.Second}).rate(transferProgress{}); r != 0 {
		t.Fatalf("rate %v from a header alone", r)
	}
}
