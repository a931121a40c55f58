package chord

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

var fuzzRing struct {
	once sync.Once
	sim  *Sim
	err  error
}

// FuzzHandleNextHop: any hop cost a peer sends (the wire gives 0..2^32-1
// µs; here any int64) and any key, asked of any vnode of a peer with 8
// vnodes and measured round trips (so rankByCost runs): no panic, every
// next hop on the arc (v, key) for the peer's vnode v closest before the
// key, and a cost beyond LookupTimeout ranks as LookupTimeout does.
func FuzzHandleNextHop(f *testing.F) {
	f.Add(int64(0), []byte{1}, uint8(0), uint8(0))
	f.Add(int64(-1), []byte{0xff}, uint8(3), uint8(5))
	f.Add(int64(1<<63-1), []byte{0x80, 1}, uint8(7), uint8(2))
	f.Add(int64(4294967295000), []byte{0x10}, uint8(1), uint8(9))
	f.Fuzz(func(t *testing.T, hopCost int64, keyBytes []byte, peer, vn uint8) {
		fuzzRing.once.Do(func() {
			cfg := DefaultConfig()
			cfg.Vnodes = 8
			fuzzRing.sim, fuzzRing.err = NewLatencySim(context.Background(), cfg, 24, 7,
				AccessDelays(time.Millisecond, 300*time.Millisecond, 7))
			if fuzzRing.err == nil {
				for range 4 {
					Round(context.Background(), fuzzRing.sim.Live())
				}
			}
		})
		if fuzzRing.err != nil {
			t.Fatal(fuzzRing.err)
		}
		peers := fuzzRing.sim.Live()
		n := peers[int(peer)%len(peers)]
		vs := n.vns()
		to := vs[int(vn)%len(vs)]
		var key ID
		copy(key[:], keyBytes)
		st, err := n.HandleNextHop(context.Background(), to.self.ID, key, 3, time.Duration(hopCost), false)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Done {
			v := n.startFor(key)
			for _, c := range st.Nodes {
				if !Between(v.self.ID, c.ID, key) {
					t.Fatalf("next hop %s not on (%s, %s)", c, v.self, key)
				}
			}
		}
		if time.Duration(hopCost) > n.cfg.LookupTimeout {
			cl, _ := n.HandleNextHop(context.Background(), to.self.ID, key, 3, n.cfg.LookupTimeout, false)
			if !slices.Equal(cl.Nodes, st.Nodes) {
				t.Fatalf("hop cost %v ranks %v, LookupTimeout %v", time.Duration(hopCost), st.Nodes, cl.Nodes)
			}
		}
	})
}
