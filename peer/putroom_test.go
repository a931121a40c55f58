package peer

import (
	"bufio"
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"chordshare/peer/api"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// sendPut writes a whole PUT of data on s and reads its answer.
func sendPut(t *testing.T, s *pipeStream, data []byte) error {
	t.Helper()
	if _, err := s.Write(putFrame(rawBlock(t, data), data)); err != nil {
		return err
	}
	resp := &pb.BlockResponse{}
	if err := readBlockHeader(bufio.NewReader(s), resp); err != nil {
		return err
	}
	return responseError(resp)
}

// putHead writes a PUT's header for data on s and its first n bytes of
// data, and no more.
func putHead(t *testing.T, s *pipeStream, data []byte, n int) {
	t.Helper()
	f := putFrame(rawBlock(t, data), data)
	if _, err := s.Write(f[:len(f)-len(data)+n]); err != nil {
		t.Fatal(err)
	}
}

// The review's attack: 64 PUT headers declaring 2 MiB each, with no bytes
// behind them, used to take the whole 128 MiB for up to 522 s each, and
// every other PUT was refused. Now each holds its first buffer, and a
// PUT that comes next is received and stored at once.
func TestEmptyPutHeadersHoldLittle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, st := pipeNode(t)
		empty := make([]byte, maxBlockSize)
		const headers = putBudget / maxBlockSize
		var idle []*pipeStream
		for range headers {
			s := servedStream(n)
			putHead(t, s, empty, 0)
			idle = append(idle, s)
		}
		synctest.Wait()
		if held := n.blocks.puts.status().BytesHeld; held != headers*putFirst {
			t.Fatalf("%d empty PUT headers hold %d bytes, want %d", headers, held, headers*putFirst)
		}
		data, c := bigBlock(t)
		start := time.Now()
		if err := sendPut(t, servedStream(n), data); err != nil || !st.Has(c) {
			t.Fatalf("a put after %d empty headers: %v, or not stored", headers, err)
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("the put took %v, not at once", took)
		}
		for _, s := range idle {
			s.Close()
		}
	})
}

// A PUT whose sender stopped sending keeps its room while no other PUT
// needs it, and while its bytes came within putSilence; past that, a PUT
// with no room evicts it (its stream reset with resetPutRefused, so its
// sender puts the block elsewhere) and takes its room.
func TestSilentPutIsEvictedForANewOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, st := pipeNode(t)
		const size = 1 << 20
		n.blocks.puts = newPutRoom(3*size/2, nil)
		block := func(i byte) []byte { return bytesOf(i, size) }
		silent := servedStream(n)
		putHead(t, silent, block(1), 600<<10)
		synctest.Wait()
		// 600 KiB in: the buffer has grown past 256 KiB to the whole block.
		if held := n.blocks.puts.status().BytesHeld; held != size {
			t.Fatalf("a put with 600 KiB in holds %d bytes, want %d", held, size)
		}
		// A byte just within putSilence keeps it, past its header's.
		time.Sleep(putSilence - time.Second)
		if _, err := silent.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(putSilence - time.Second)
		if err := sendPut(t, servedStream(n), block(2)); !putRefused(err) {
			t.Fatalf("a put with no room while the other's bytes came %v ago: %v, want it refused", putSilence-time.Second, err)
		}
		time.Sleep(time.Second)
		if err := sendPut(t, servedStream(n), block(3)); err != nil || !st.Has(rawBlock(t, block(3))) {
			t.Fatalf("a put with no room but for one silent for %v: %v, or not stored", putSilence, err)
		}
		if _, err := silent.Write([]byte{0}); !putRefused(err) {
			t.Fatalf("the silent put's sender: %v, want the reset for a refused put", err)
		}
		synctest.Wait()
		if got := n.blocks.puts.status(); got != (api.PutRoom{BytesLimit: 3 * size / 2, Refused: 1, Evicted: 1}) {
			t.Fatalf("room after: %+v", got)
		}
		if st.Has(rawBlock(t, block(1))) || st.Has(rawBlock(t, block(2))) {
			t.Fatal("a put turned away was stored")
		}
	})
}

func bytesOf(b byte, n int) []byte { return []byte(strings.Repeat(string(rune(b)), n)) }

// PUTs turned away are counted in the room's status and told as
// puts_refused events, at most one a putEventGap, the next one, a
// putEventGap after, counting what the skipped ones would have.
func TestPutsTurnedAwayAreTold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := newEventBus()
		r := newPutRoom(16<<10, bus)
		defer r.close()
		evicted := 0
		a := r.admit(16<<10, func() { evicted++ })
		if a == nil || !a.grow(12<<10) {
			t.Fatal("a put that fits was turned away")
		}
		if r.admit(1, nil) != nil {
			t.Fatal("a put beyond the room was admitted")
		}
		time.Sleep(putSilence)
		b := r.admit(8<<10, func() {})
		if b == nil || evicted != 1 {
			t.Fatalf("a put that fits once a silent one is evicted: admitted %v, %d evicted", b != nil, evicted)
		}
		time.Sleep(putEventGap - putSilence - time.Second)
		b.last.Store(time.Now().UnixNano()) // its bytes keep coming
		if r.admit(16<<10, nil) != nil {
			t.Fatal("a put beyond the room was admitted")
		}
		if got := r.status(); got != (api.PutRoom{BytesHeld: 4 << 10, BytesLimit: 16 << 10, Refused: 2, Evicted: 1}) {
			t.Fatalf("status: %+v", got)
		}
		time.Sleep(time.Second) // putEventGap after the first event
		synctest.Wait()         // for its flush
		events, _ := bus.subscribe(0)
		var told []string
		for _, e := range events {
			if e.Kind != api.EventPutsRefused {
				t.Fatalf("event %+v", e)
			}
			told = append(told, e.Message)
		}
		want := []string{
			"puts turned away: 1 refused for want of room, 0 evicted after 10s without bytes; their senders put the blocks elsewhere; 16.0 KiB of 16.0 KiB held for puts being received",
			"puts turned away: 1 refused for want of room, 1 evicted after 10s without bytes; their senders put the blocks elsewhere; 4.00 KiB of 16.0 KiB held for puts being received",
		}
		if strings.Join(told, "\n") != strings.Join(want, "\n") {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(told, "\n"), strings.Join(want, "\n"))
		}
		if events[0].Count != 1 || events[1].Count != 2 {
			t.Fatalf("counts %d, %d; want 1, 2", events[0].Count, events[1].Count)
		}
		// A block's buffer is a power of two: 256 KiB for 200 KiB, which
		// must fit, or the PUT would start and be refused as it grew.
		if newPutRoom(200<<10, nil).admit(200<<10, nil) != nil {
			t.Fatal("a 200 KiB put was admitted in 200 KiB of room")
		}
	})
}

// The PUTs of a burst turned away after its first event are told
// putEventGap after it, though no PUT is turned away after the burst.
func TestBurstOfPutsTurnedAwayIsToldWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := newEventBus()
		r := newPutRoom(0, bus)
		defer r.close()
		for range 5 {
			if r.admit(1, nil) != nil {
				t.Fatal("a put beyond the room was admitted")
			}
			time.Sleep(time.Second)
		}
		time.Sleep(putEventGap)
		events, _ := bus.subscribe(0)
		var counts []int64
		for _, e := range events {
			counts = append(counts, e.Count)
		}
		if !slices.Equal(counts, []int64{1, 4}) {
			t.Fatalf("events counting %v puts, want [1 4]", counts)
		}
		if got := events[1].Time.Sub(events[0].Time); got != putEventGap {
			t.Fatalf("the burst's tail told %v after its first, want %v", got, putEventGap)
		}
	})
}

// Over the daemons' own transport (TCP, TLS, yamux: NewHost), a PUT
// refused as its buffer grows, past its header, reaches its sender as a
// refused put, as one refused at its header does (TestRefusedPutOverTCP).
func TestPutRefusedAsItGrowsOverTCP(t *testing.T) {
	server, client := tcpNode(t), tcpNode(t)
	const size = 256 << 10
	server.blocks.puts = newPutRoom(300<<10, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.h.Connect(ctx, p2ppeer.AddrInfo{ID: server.h.ID(), Addrs: server.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	held := func(want int64) {
		t.Helper()
		for server.blocks.puts.status().BytesHeld != want {
			if ctx.Err() != nil {
				t.Fatalf("the server holds %d bytes, want %d", server.blocks.puts.status().BytesHeld, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	open := func(data []byte, n int) (network.Stream, []byte) {
		s, err := client.h.NewStream(ctx, server.h.ID(), BlockProtocol)
		if err != nil {
			t.Fatal(err)
		}
		f := putFrame(rawBlock(t, data), data)
		if _, err := s.Write(f[:len(f)-len(data)+n]); err != nil {
			t.Fatal(err)
		}
		return s, f[len(f)-len(data)+n:]
	}
	// Both fit at their headers, then one grows to the whole block.
	late, rest := open(bytesOf(1, size), 0)
	held(putFirst)
	open(bytesOf(2, size), 40<<10)
	held(putFirst + size)
	_, err := late.Write(rest)
	if err == nil {
		err = readBlockHeader(bufio.NewReader(late), &pb.BlockResponse{})
	}
	if !putRefused(err) {
		t.Fatalf("a put with no room to grow: %v, want the reset for a refused put", err)
	}
	if st := server.blocks.puts.status(); st.Refused != 1 {
		t.Fatalf("room after: %+v, want 1 refused", st)
	}
}

// A PUT refused as it grows gives its room back at once, before its
// handler releases it, for the PUTs growing beside it; and a PUT evicted
// after its last bytes came, before it ended its reading, is not received.
func TestPutRoomGivenBackAtRefusalAndEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 1 << 10
		r := newPutRoom(40*k, nil)
		a, b := r.admit(32*k, func() {}), r.admit(32*k, func() {})
		if a == nil || b == nil || !a.grow(28*k) {
			t.Fatal("puts that fit were turned away")
		}
		if b.grow(28 * k) {
			t.Fatal("a put grew beyond the room")
		}
		if held := r.status().BytesHeld; held != 32*k {
			t.Fatalf("%d bytes held after a refusal, before its release; want %d", held, 32*k)
		}
		c := r.admit(8*k, func() {})
		if c == nil {
			t.Fatal("a put that fits in the refused one's room was turned away")
		}
		b.release()
		time.Sleep(putSilence)
		evicted := false
		a.evict = func() { evicted = true }
		c.last.Store(time.Now().UnixNano())
		if d := r.admit(32*k, func() {}); d == nil || !evicted {
			t.Fatalf("a put that fits once a silent one is evicted: admitted %v, evicted %v", d != nil, evicted)
		}
		if a.received() {
			t.Fatal("an evicted put was received")
		}
		if !c.received() {
			t.Fatal("a put not evicted was not received")
		}
	})
}

// A PUT that would not fit even with every silent PUT evicted evicts
// none: they lose their place only to a PUT that gets it.
func TestSilentPutsStayForAPutThatWouldNotFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const k = 1 << 10
		r := newPutRoom(16*k, nil)
		evicted := 0
		silent := r.admit(4*k, func() { evicted++ })
		active := r.admit(8*k, func() { evicted++ })
		if silent == nil || active == nil || !active.grow(4*k) {
			t.Fatal("puts that fit were turned away")
		}
		time.Sleep(putSilence)
		active.last.Store(time.Now().UnixNano())
		if r.admit(16*k, func() {}) != nil {
			t.Fatal("a put beyond the room was admitted")
		}
		if evicted != 0 {
			t.Fatalf("%d evicted for a put refused anyway", evicted)
		}
		if got := r.status(); got != (api.PutRoom{BytesHeld: 12 * k, BytesLimit: 16 * k, Refused: 1}) {
			t.Fatalf("status: %+v", got)
		}
		if r.admit(8*k, func() {}) == nil || evicted != 1 {
			t.Fatalf("a put that fits once the silent one is evicted: %d evicted", evicted)
		}
	})
}
