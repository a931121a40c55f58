package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"

	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Slow PUTs arriving together hold at most the node's room, and each
// holds room for what came, not for what its header declares: all start,
// since each block fits in the room at its header, and each buffer grows
// as its bytes arrive. Once the room is full, a PUT whose buffer cannot
// grow is refused (its stream reset with resetPutRefused, the rest of its
// bytes not read) and gives its room back, and the others finish.
func TestPutsBeyondTheRoomAreRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, st := pipeNode(t)
		const size, fit, puts = 1 << 20, 4, 12
		n.blocks.puts = newPutRoom(fit*size, nil)
		type put struct {
			data []byte
			done chan error
			at   time.Time // when done
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // a failed test leaves puts sending
		start := time.Now()
		var all []*put
		for i := range puts {
			p := &put{data: bytes.Repeat([]byte{byte(i)}, size), done: make(chan error, 1)}
			all = append(all, p)
			c := rawBlock(t, p.data)
			client := servedStream(n)
			go func() {
				defer client.Close()
				frame := putFrame(c, p.data)
				// The header and the first bytes in one write, as a sender
				// writes the whole block at once: a refusal fails it.
				head := len(frame) - size + 8<<10
				_, err := client.Write(frame[:head])
				if err == nil {
					err = trickle(ctx, client, frame[head:], slowRate, time.Second)
				}
				if err == nil {
					resp := &pb.BlockResponse{}
					if err = readBlockHeader(bufio.NewReader(client), resp); err == nil {
						err = responseError(resp)
					}
				}
				p.at = time.Now()
				p.done <- err
			}()
			synctest.Wait() // the server has read this put's header and first bytes before the next one comes
		}
		// 8 KiB came of each: its first buffer, full, has grown to 32 KiB.
		if held := n.blocks.puts.status().BytesHeld; held != puts*putGrowth*putFirst {
			t.Fatalf("%d puts with 8 KiB of their blocks in hold %d bytes, want %d", puts, held, puts*putGrowth*putFirst)
		}
		var stored, refused []time.Time
		for i, p := range all {
			err := <-p.done
			switch {
			case err == nil && !st.Has(rawBlock(t, p.data)):
				t.Fatalf("put %d, acknowledged, was not stored", i)
			case err == nil:
				stored = append(stored, p.at)
			case !putRefused(err):
				t.Fatalf("put %d: %v, want it stored or the reset for a refused put", i, err)
			case st.Has(rawBlock(t, p.data)):
				t.Fatalf("put %d was refused, yet stored", i)
			default:
				refused = append(refused, p.at)
			}
		}
		// At 256 KiB in, the 12 hold 256 KiB each and grow to 1 MiB in
		// turn: one whose 768 KiB more fits does, one that does not is
		// refused, which frees its 256 KiB; 4 get the room.
		if len(stored) != fit {
			t.Fatalf("%d puts stored, %d refused; want %d stored, the room's worth", len(stored), len(refused), fit)
		}
		if last, first := slices.MaxFunc(refused, time.Time.Compare), slices.MinFunc(stored, time.Time.Compare); !last.Before(first) || first.Sub(start) < 5*time.Minute {
			t.Fatalf("refused up to %v, stored from %v: want the refusals first, and the puts slow (1 MiB at %d B/s)", last.Sub(start), first.Sub(start), slowRate)
		}
		synctest.Wait()
		if st := n.blocks.puts.status(); st.BytesHeld != 0 || st.Refused != puts-fit || st.Evicted != 0 {
			t.Fatalf("after every put ended: %+v, want nothing held, %d refused, none evicted", st, puts-fit)
		}
	})
}

// A sender whose PUT is refused learns it at once, as a put refused
// (errPutRefused), and does not send it again on another stream.
func TestRefusedPutFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const server = p2ppeer.ID("server")
		client, _ := pipeNode(t)
		srv, st := pipeNode(t)
		data, c := bigBlock(t)
		srv.blocks.puts = newPutRoom(int64(len(data))-1, nil)
		a := servedStream(srv)
		defer a.Close()
		client.blocks.streams.put(server, &blockStream{s: a, r: bufio.NewReader(a)})
		start := time.Now()
		err := client.storeAt(context.Background(), server, c, data)
		if !errors.Is(err, errPutRefused) {
			t.Fatalf("a put the server has no room for: %v, want %v", err, errPutRefused)
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("refused after %v, not at once", took)
		}
		if st.Has(c) || srv.blocks.puts.status().BytesHeld != 0 {
			t.Fatal("the refused put left its block or its bytes on the server")
		}
	})
}

// Over the daemons' own transport (TCP, TLS, yamux: NewHost), the refusal
// reaches the sender as what it is.
func TestRefusedPutOverTCP(t *testing.T) {
	server, client := tcpNode(t), tcpNode(t)
	server.blocks.puts = newPutRoom(0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.h.Connect(ctx, p2ppeer.AddrInfo{ID: server.h.ID(), Addrs: server.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	data, c := bigBlock(t)
	// The line the README gives: the reset's code and transport's text
	// would only repeat it, in every replica's part of a failed put's.
	err := client.storeAt(ctx, server.h.ID(), c, data)
	if want := fmt.Sprintf("put %s on %s: %v", c, server.h.ID().ShortString(), errPutRefused); !errors.Is(err, errPutRefused) || err.Error() != want {
		t.Fatalf("a put the server has no room for: %v, want %s", err, want)
	}
	// A put that fits still goes through, on a new stream.
	server.blocks.puts = newPutRoom(maxBlockSize, nil)
	if err := client.storeAt(ctx, server.h.ID(), c, data); err != nil {
		t.Fatalf("a put that fits: %v", err)
	}
}

// loopbackHost is a host on the daemons' own transport (NewHost), with a
// new identity, listening on loopback; it closes when the test ends.
func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(priv, []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// tcpNode is a node on a loopbackHost, storing blocks in memory.
func tcpNode(t *testing.T) *Node {
	h := loopbackHost(t)
	cfg := DefaultConfig()
	cfg.Store = &mapStore{m: map[cid.Cid][]byte{}}
	n, err := NewNode(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() }) // before its host closes
	return n
}

// A replica that refuses a put is replaced as any failed replica is: the
// put succeeds, and a peer past the block's preference list holds it with
// a hint for that replica (hinted handoff).
func TestRefusedPutGoesToAnotherPeer(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	data := []byte("refused by a replica with no room")
	c := rawBlock(t, data)
	list := r.preference(c)
	writer := r.outside(list)
	full := list[0]
	full.blocks.puts = newPutRoom(0, nil)
	if err := writer.Put(context.Background(), c, data); err != nil {
		t.Fatal(err)
	}
	writer.bg.Wait()
	if r.stores[full].Has(c) {
		t.Fatal("the replica with no room stored the block")
	}
	hintHolder(t, r, list, c)
}

// Every way a PUT taken into the budget can end gives its bytes back: put
// after put on one stream, a sender that stops halfway and closes, and one
// that goes silent until the receiver cuts it off (receiving). A leak here would
// shrink the budget for good, until the node refused every put.
func TestPutBudgetIsGivenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, st := pipeNode(t)
		const size = 64 << 10
		block := func(i byte) []byte { return bytes.Repeat([]byte{i}, size) }
		// Two puts on one stream.
		reused := servedStream(n)
		r := bufio.NewReader(reused)
		for i := range byte(2) {
			b := block(i)
			if _, err := reused.Write(putFrame(rawBlock(t, b), b)); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
			resp := &pb.BlockResponse{}
			if err := readBlockHeader(r, resp); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
			if err := responseError(resp); err != nil || !st.Has(rawBlock(t, b)) {
				t.Fatalf("put %d: %v, or not stored", i, err)
			}
		}
		reused.Close()
		// Cut short and silent: each has its header and half its block in.
		half := func(b []byte) *pipeStream {
			s := servedStream(n)
			f := putFrame(rawBlock(t, b), b)
			if _, err := s.Write(f[:len(f)-size/2]); err != nil {
				t.Fatal(err)
			}
			return s
		}
		cut, silent := half(block(4)), half(block(5))
		synctest.Wait()
		if held := n.blocks.puts.status().BytesHeld; held != 2*size {
			t.Fatalf("two puts half received hold %d bytes, want %d", held, 2*size)
		}
		cut.Close()
		synctest.Wait()
		if held := n.blocks.puts.status().BytesHeld; held != size {
			t.Fatalf("after a put cut short, %d bytes held, want the silent one's %d", held, size)
		}
		time.Sleep(max(blockSilence, transferTimeout(maxBlockSize)) + time.Second) // receiving's bound
		synctest.Wait()
		if held := n.blocks.puts.status().BytesHeld; held != 0 {
			t.Fatalf("%d bytes still held after every put ended", held)
		}
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Fatal("the silent put's stream is still open")
		}
	})
}
