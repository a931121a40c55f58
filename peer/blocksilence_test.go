package peer

import (
	"bufio"
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// lateReader is a pipe end whose reader does not read for a while at
// first: a fetcher's downlink that is full for a moment.
type lateReader struct {
	*pipeStream
	once sync.Once
	late time.Duration
}

func (s *lateReader) Read(b []byte) (int, error) {
	s.once.Do(func() { time.Sleep(s.late) })
	return s.pipeStream.Read(b)
}

// A paced server at the slowest link the network is meant for (32 kbit/s)
// serves two fetchers a 256 KiB leaf each. The first fetcher stops taking
// bytes for 2 s, so its serve gives up the uplink's turn (uplinkStall) and
// the second leaf goes first: 82 s at the paced 3200 B/s, during which the
// first fetcher hears nothing. Both leaves arrive within the old bound
// (522 s), and blockSilence's comment says it allows for exactly this
// ("a 256 KiB leaf at the slowest link"); the first fetch must not be cut
// off as silent.
func TestPacedServeThatYieldedItsTurnIsNotCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const server = p2ppeer.ID("server")
		data := bytes.Repeat([]byte("queued behind a put "), (256<<10)/20)
		srv, st := pipeNode(t)
		srv.up = newUplink(4000)
		c := rawBlock(t, data)
		if err := st.Put(c, data); err != nil {
			t.Fatal(err)
		}
		fetcher := func(late time.Duration) (*Node, func()) {
			n, _ := pipeNode(t)
			a := servedStream(srv)
			var s interface {
				Read([]byte) (int, error)
			} = a
			if late > 0 {
				s = &lateReader{pipeStream: a, late: late}
			}
			n.blocks.streams.put(server, &blockStream{s: a, r: bufio.NewReader(s)})
			return n, func() { a.Close() }
		}
		first, stop1 := fetcher(2 * time.Second)
		defer stop1()
		second, stop2 := fetcher(0)
		defer stop2()
		errs := make(chan error, 2)
		start := time.Now()
		go func() {
			_, err := first.fetchFrom(context.Background(), server, c)
			errs <- err
		}()
		time.Sleep(100 * time.Millisecond) // the first request takes the turn first
		go func() {
			_, err := second.fetchFrom(context.Background(), server, c)
			errs <- err
		}()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("after %v: %v", time.Since(start), err)
			}
		}
		if took := time.Since(start); took > transferTimeout(maxBlockSize) {
			t.Errorf("took %v, over the old bound: no test of a regression", took)
		}
	})
}
