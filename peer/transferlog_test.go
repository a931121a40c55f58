package peer

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"chordshare/peer/api"
)

func TestTransferLogRatesAndOrder(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := newTransferLog()
	l.now = func() time.Time { return clock }
	var done int64
	a := l.start("share", "a.bin", "", func() (int64, int64) { return done, 1000 })
	b := l.start("fetch", "/tmp/b", "bafyb", func() (int64, int64) { return 5, -1 })

	clock = clock.Add(2 * time.Second)
	done = 400
	got := l.list().Transfers
	if len(got) != 2 || got[0].ID != b || got[1].ID != a {
		t.Fatalf("running transfers newest first: %+v", got)
	}
	if got[1].Rate != 200 || got[1].Done != 400 || got[1].State != api.TransferRunning {
		t.Fatalf("running share after 400 B in 2 s: %+v", got[1])
	}
	// The rate is measured from the last sample at least rateWindow old:
	// the one at 2 s (400 B), not the start.
	clock = clock.Add(6 * time.Second)
	done = 1000
	l.list()
	clock = clock.Add(time.Second)
	if got := l.list().Transfers[1]; got.Rate != 600.0/7 {
		t.Fatalf("rate at 9 s: %v, want 600 B over the 7 s since the sample at 2 s", got.Rate)
	}

	l.finish(a, "bafya", "")
	l.finish(b, "", "no replica answered")
	l.finish(b, "", "again") // already over: ignored
	got = l.list().Transfers
	if len(got) != 2 || got[0].ID != b || got[0].State != api.TransferFailed || got[0].Error != "no replica answered" || got[0].CID != "bafyb" {
		t.Fatalf("failed fetch: %+v", got)
	}
	if s := got[1]; s.State != api.TransferDone || s.CID != "bafya" || s.Done != 1000 || s.Ended == nil || s.Rate != 1000.0/9 {
		t.Fatalf("finished share (1000 B in 9 s): %+v", s)
	}
	// A share of unknown size has one once it is done.
	c := l.start("share", "pipe", "", func() (int64, int64) { return 77, -1 })
	l.finish(c, "bafyc", "")
	if got := l.list().Transfers[0]; got.Total != 77 || got.Done != 77 {
		t.Fatalf("share of unknown size, done: %+v", got)
	}
	for range finishedTransfers + 3 {
		l.finish(l.start("cat", "", "c", func() (int64, int64) { return 0, 0 }), "", "")
	}
	if n := len(l.list().Transfers); n != finishedTransfers {
		t.Fatalf("%d finished transfers kept, want %d", n, finishedTransfers)
	}
}

func TestAPITransfersAndTheirEvents(t *testing.T) {
	bus := newEventBus()
	c := serveAPIConfig(t, &fakeRing{}, apiConfig{LookupTimeout: time.Second, Events: bus})
	ctx := testCtx(t)
	data := randomData(300<<10, 2)
	res, err := c.Share(ctx, bytes.NewReader(data), int64(len(data)), api.TransferOptions{Name: "photo\n.jpg"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out")
	if _, err := c.Fetch(ctx, res.CID, path, api.TransferOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, "bafkqaaa", filepath.Join(t.TempDir(), "nothing"), api.TransferOptions{}); err == nil {
		t.Fatal("fetch of a CID no block store holds succeeded")
	}
	list, err := c.Transfers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	x := list.Transfers
	if len(x) != 3 || x[0].State != api.TransferFailed || x[0].Error == "" ||
		x[1].Kind != "fetch" || x[1].Name != path || x[1].State != api.TransferDone || x[1].Done != int64(len(data)) ||
		x[2].Kind != "share" || x[2].Name != "photo?.jpg" || x[2].CID != res.CID || x[2].Total != int64(len(data)) {
		t.Fatalf("transfers: %+v", x)
	}
	recent, ch := bus.subscribe(0)
	bus.unsubscribe(ch)
	var kinds []string
	for _, e := range recent {
		kinds = append(kinds, e.Kind)
	}
	want := []string{api.EventShareStarted, api.EventShareFinished, api.EventFetchStarted, api.EventFetchFinished, api.EventFetchStarted, api.EventFetchFailed}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
	if recent[1].CID != res.CID || recent[1].Count != int64(len(data)) {
		t.Fatalf("share finished event: %+v", recent[1])
	}
	peers, err := c.Peers(ctx)
	if err != nil || peers.Peers == nil || len(peers.Peers) != 0 {
		t.Fatalf("peers of a backend that is no node: %+v, %v", peers, err)
	}
}
