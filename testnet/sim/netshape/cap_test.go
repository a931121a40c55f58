package netshape_test

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/testnet/sim/netshape"
)

// release is one write the shaper let go to mocknet.
type release struct {
	at       time.Time
	n        int
	from, to p2ppeer.ID
}

type releaseLog struct {
	mu  sync.Mutex
	all []release
}

// recorded logs each write to the mocknet stream beneath the shaper.
type recorded struct {
	network.Stream
	log *releaseLog
}

func (r *recorded) Write(p []byte) (int, error) {
	c := r.Conn()
	r.log.mu.Lock()
	r.log.all = append(r.log.all, release{time.Now(), len(p), c.LocalPeer(), c.RemotePeer()})
	r.log.mu.Unlock()
	return r.Stream.Write(p)
}

// step of a plan: wait, then write size bytes in writes of up to write.
type step struct {
	wait        time.Duration
	size, write int
}

// sendPlan runs plan on one stream from a to b and waits for b's answer.
func sendPlan(ctx context.Context, a, b host.Host, plan []step) error {
	s, err := a.NewStream(ctx, b.ID(), sinkProto)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	buf := make([]byte, 2<<20)
	for _, st := range plan {
		time.Sleep(st.wait)
		for left := st.size; left > 0; {
			k := min(left, st.write)
			if _, err := s.Write(buf[:k]); err != nil {
				return err
			}
			left -= k
		}
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	_, err = io.ReadAll(s)
	return err
}

// TestShapedLinkNeverExceedsRate: several streams sharing one peer's
// uplink, and several sharing another's downlink — bulk in one write and
// in 16 KiB and 3 kB writes, with pauses, some streams starting late —
// never get more out than the link's rate allows: by any time t, at most
// rate × t + a chunk since the traffic began; over any window, at most its
// rate × (window + hold) + a chunk, the hold being how late a stream can
// let go bytes the link carried (a stream whose previous write mocknet
// held for the one-way delay, or whose goroutine waited for a CPU, sends
// the chunks booked meanwhile in one write). Meanwhile a small exchange
// over the busy uplink takes its round trip and its bytes' time, not the
// queue's.
func TestShapedLinkNeverExceedsRate(t *testing.T) {
	// Fast enough that a chunk (8 ms) is shorter than the one-way delay
	// (50 ms) mocknet holds a stream's next write for: the streams catch
	// up, booking the time gone meanwhile.
	const rate = 2e6
	rtt := 100 * time.Millisecond
	fast := netshape.Access{RTT: rtt, Up: 10e6, Down: 10e6}
	links := []netshape.Access{
		{RTT: rtt, Up: rate, Down: 10e6}, // 0: the uplink under test
		fast, fast,
		{RTT: rtt, Up: 10e6, Down: rate}, // 3: the downlink under test
		fast, fast,
	}
	log := &releaseLog{}
	hosts, _ := shapedNetOver(t, links, func(st network.Stream) network.Stream { return &recorded{st, log} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {4, 3}, {5, 3}} {
		for range 2 { // the connection, then identify
			if _, err := send(ctx, hosts[pair[0]], hosts[pair[1]], 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // the links' queues drained

	// About 5 MB a link: 2.5 s of it.
	plans := []struct {
		from, to int
		plan     []step
	}{
		{0, 1, []step{{0, 1500e3, 1500e3}, {150 * time.Millisecond, 400e3, 16 << 10}, {0, 1200e3, 1200e3}}},
		{0, 1, []step{{250 * time.Millisecond, 60e3, 3e3}, {50 * time.Millisecond, 1000e3, 1000e3}}},
		{0, 2, []step{{600 * time.Millisecond, 750e3, 750e3}, {300 * time.Millisecond, 500e3, 500e3}}},
		{4, 3, []step{{0, 1250e3, 1250e3}, {400 * time.Millisecond, 400e3, 16 << 10}, {0, 850e3, 850e3}}},
		{4, 3, []step{{100 * time.Millisecond, 1500e3, 1500e3}}},
		{5, 3, []step{{500 * time.Millisecond, 90e3, 3e3}, {200 * time.Millisecond, 750e3, 750e3}}},
	}
	stall := watchStall()
	log.mu.Lock()
	log.all = log.all[:0]
	log.mu.Unlock()
	start := time.Now()
	errs := make(chan error, len(plans)+1)
	var wg sync.WaitGroup
	for _, p := range plans {
		wg.Go(func() { errs <- sendPlan(ctx, hosts[p.from], hosts[p.to], p.plan) })
	}
	// Small exchanges over the busy uplink, as ring calls go.
	var small []time.Duration
	smallBytes := 0
	wg.Go(func() {
		for range 8 {
			time.Sleep(250 * time.Millisecond)
			d, err := sendWrites(ctx, hosts[0], hosts[2], make([]byte, 500), 500)
			if err != nil {
				errs <- err
				return
			}
			small = append(small, d)
			smallBytes += 500
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	worst := stall()

	hold := netshape.OneWay(links[0], fast) + 4*worst + 20*time.Millisecond
	// Small writes pass bulk, their time booked at the link's first free
	// time, which may come after they went (pacer.small): they may come
	// on top. So may each stream's handshake.
	slack := float64(16<<10 + smallBytes + 2e3)
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, dir := range []struct {
		name string
		on   func(release) bool
	}{
		{"peer 0's uplink", func(r release) bool { return r.from == hosts[0].ID() }},
		{"peer 3's downlink", func(r release) bool { return r.to == hosts[3].ID() }},
	} {
		var rs []release
		total := 0
		for _, r := range log.all {
			if dir.on(r) {
				rs = append(rs, r)
				total += r.n
			}
		}
		slices.SortFunc(rs, func(a, b release) int { return a.at.Compare(b.at) })
		// sum[i] is the bytes of rs[:i].
		sum := make([]int, len(rs)+1)
		for i, r := range rs {
			sum[i+1] = sum[i] + r.n
		}
		var excess float64 // the most over rate × window seen
		for j, r := range rs {
			if over := float64(sum[j+1]) - rate*r.at.Sub(start).Seconds(); over > slack {
				t.Errorf("%s: %d bytes out by +%v, more than %.0f B/s allow (%.0f over)", dir.name, sum[j+1], r.at.Sub(start), rate, over)
			}
			for i := range j {
				over := float64(sum[j+1]-sum[i]) - rate*r.at.Sub(rs[i].at).Seconds()
				excess = max(excess, over)
				if over > rate*hold.Seconds()+slack {
					t.Errorf("%s: %d bytes out from +%v to +%v, more than %.0f B/s and a hold of %v allow", dir.name, sum[j+1]-sum[i], rs[i].at.Sub(start), r.at.Sub(start), rate, hold)
				}
			}
		}
		took := rs[len(rs)-1].at.Sub(start)
		t.Logf("%s: %d bytes in %v, %.2f of the rate; most over rate × window %.0f B (the hold allows %.0f + %.0f); worst stall %v", dir.name, total, took, float64(total)/took.Seconds()/rate, excess, rate*hold.Seconds(), slack, worst)
	}
	// A 500-byte exchange: the round trip and 0.25 ms of the uplink, not
	// less; the median not much more (on a loaded machine the race
	// detector's build can be late for some).
	slices.Sort(small)
	if small[0] < rtt || small[len(small)/2] > rtt+100*time.Millisecond+2*worst {
		t.Errorf("small exchanges over the busy uplink took %v, want %v and its bytes' time", small, rtt)
	}
	t.Logf("small exchanges over the busy uplink: %v", small)
}

// watchStall measures how late a 5 ms ticker runs until the returned
// function is called, which gives the worst lateness seen.
func watchStall() func() time.Duration {
	const tick = 5 * time.Millisecond
	quit, done := make(chan struct{}), make(chan time.Duration)
	go func() {
		var worst time.Duration
		tk := time.NewTicker(tick)
		defer tk.Stop()
		last := time.Now()
		for {
			select {
			case <-quit:
				done <- worst
				return
			case now := <-tk.C:
				worst = max(worst, now.Sub(last)-tick)
				last = now
			}
		}
	}()
	return func() time.Duration { close(quit); return <-done }
}
