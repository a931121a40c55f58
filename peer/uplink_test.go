package peer

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"chordshare/peer/pb"
)

// virtualClock is an uplink's clock in tests: sleeping moves it on at once.
type virtualClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
	// onSleep, if set, is called (unlocked) before each sleep.
	onSleep func()
}

func (c *virtualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *virtualClock) sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		c.onSleep()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

func (c *virtualClock) pace(u *uplink) {
	u.now, u.sleep = c.now, c.sleep
}

// timedWriter records when each write came and how long it was.
type timedWriter struct {
	clock  *virtualClock
	writes []timedWrite
	buf    bytes.Buffer
}

type timedWrite struct {
	at time.Time
	n  int
}

func (w *timedWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, timedWrite{w.clock.now(), len(b)})
	return w.buf.Write(b)
}

// Whatever the message, an uplink sends in chunks and never more than its
// rate allows since the first byte, give or take one burst and one chunk.
func TestUplinkKeepsToItsRate(t *testing.T) {
	for _, capacity := range []int64{4 << 10, 10_000, 1 << 20} {
		u := newUplink(capacity)
		clock := &virtualClock{t: time.Unix(1000, 0)}
		clock.pace(u)
		w := &timedWriter{clock: clock}
		head := bytes.Repeat([]byte{1}, 5000)
		payload := bytes.Repeat([]byte{2}, 300<<10)
		ctx := context.Background()
		if err := u.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if err := u.send(ctx, w, head, payload); err != nil {
			t.Fatal(err)
		}
		u.release()
		if got, want := w.buf.Len(), len(head)+len(payload); got != want {
			t.Fatalf("capacity %d: %d bytes written, want %d", capacity, got, want)
		}
		start := w.writes[0].at
		allowed := func(at time.Time) float64 {
			return u.rate*(at.Sub(start)+uplinkBurst).Seconds() + float64(u.chunk)
		}
		sent := 0
		for _, wr := range w.writes {
			if wr.n > u.chunk {
				t.Fatalf("capacity %d: a write of %d bytes, the chunk is %d", capacity, wr.n, u.chunk)
			}
			sent += wr.n
			if float64(sent) > allowed(wr.at)+1 {
				t.Fatalf("capacity %d: %d bytes sent %v after the first, the rate allows %.0f", capacity, sent, wr.at.Sub(start), allowed(wr.at))
			}
		}
		// And it does not dawdle: the last write is due when the rate has
		// carried the rest.
		if last := w.writes[len(w.writes)-1]; float64(sent-last.n)+1 < u.rate*last.at.Sub(start).Seconds() {
			t.Fatalf("capacity %d: %d bytes before %v, the rate carries %.0f", capacity, sent-last.n, last.at.Sub(start), u.rate*last.at.Sub(start).Seconds())
		}
	}
}

// A message whose context ends stops where it is: the rest of it is never
// written, so a transfer given up on stops taking the link.
func TestUplinkStopsSendingWhenCancelled(t *testing.T) {
	u := newUplink(10_000)
	clock := &virtualClock{t: time.Unix(1000, 0)}
	clock.pace(u)
	w := &timedWriter{clock: clock}
	ctx, cancel := context.WithCancel(context.Background())
	clock.onSleep = func() {
		if len(w.writes) == 3 {
			cancel()
		}
	}
	payload := make([]byte, 256<<10)
	if err := u.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	err := u.send(ctx, w, payload)
	u.release()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("send: %v, want cancelled", err)
	}
	if got := w.buf.Len(); got != 3*u.chunk {
		t.Fatalf("%d bytes written after a cancel at the third chunk, want %d", got, 3*u.chunk)
	}
}

// One message at a time: a second sender waits for the first to finish,
// and gives up waiting when its context ends.
func TestUplinkTurns(t *testing.T) {
	u := newUplink(10_000)
	if err := u.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire while another sends: %v, want cancelled", err)
	}
	u.release()
	if err := u.acquire(context.Background()); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	u.release()
}

// A node with an uplink paces the blocks it puts and the blocks it serves:
// the bytes go through its pacer, which makes them take about as long as
// the link's share needs. Unpaced (before --uplink), neither waited at all.
func TestNodeWithUplinkPacesBlocks(t *testing.T) {
	r, stores := storedRing(t, 2)
	a, b := r.nodes[0], r.nodes[1]
	const capacity = 10_000
	a.cfg.Uplink, b.cfg.Uplink = capacity, capacity
	a.up, b.up = newUplink(capacity), newUplink(capacity)
	clockA, clockB := &virtualClock{t: time.Unix(1000, 0)}, &virtualClock{t: time.Unix(1000, 0)}
	clockA.pace(a.up)
	clockB.pace(b.up)

	data := bytes.Repeat([]byte("slow link "), 25<<10) // 250 KiB
	c := rawBlock(t, data)
	ctx := context.Background()
	if err := a.storeAt(ctx, b.Host().ID(), c, data); err != nil {
		t.Fatal(err)
	}
	if !stores[b].Has(c) {
		t.Fatal("the put did not land")
	}
	// The rate's time for the bytes but the last chunk, less what an idle
	// link sends at once.
	least := func(u *uplink) time.Duration {
		return time.Duration((float64(len(data)-u.chunk)/u.rate - uplinkBurst.Seconds()) * float64(time.Second))
	}
	if got, want := clockA.slept, least(a.up); got < want {
		t.Fatalf("the put of %d bytes was paced for %v, want at least %v", len(data), got, want)
	}
	got, err := a.fetchFrom(ctx, b.Host().ID(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("fetched other bytes")
	}
	if got, want := clockB.slept, least(b.up); got < want {
		t.Fatalf("serving %d bytes was paced for %v, want at least %v", len(data), got, want)
	}
	// Messages without a block (a HAS, a put's answer) are not paced: the
	// clocks stayed where the blocks left them.
	sleptA := clockA.slept
	if _, _, err := a.blockExchange(ctx, b.Host().ID(), &pb.BlockRequest{Type: pb.BlockRequest_HAS, Cid: c.Bytes()}, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if clockA.slept != sleptA {
		t.Fatalf("a HAS request waited %v for the uplink", clockA.slept-sleptA)
	}
}
