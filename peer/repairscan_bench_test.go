package peer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
)

// BenchmarkRepairScan is what repair costs a peer of a 3-peer ring (8
// vnodes each, r=3) whose replicas are in sync, by the store's size:
// round is RepairRound (its scrub, a summary per arc and replica, and the
// replicas' answers to them, in the same process); due is the due tick's
// work, the round and then the offer of stray copies. Nothing moves.
// arc-share is the part of the blocks on the arcs a is first replica of.
// Count the file checks with strace -f -c -e trace=newfstatat.
func BenchmarkRepairScan(b *testing.B) {
	for _, count := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("blocks=%d", count), func(b *testing.B) {
			r := inSyncRing(b, 3, count)
			ctx := context.Background()
			a := r.nodes[0]
			// The work of the new scheme scales with a's share of the
			// keys (its arcs), which the random ring decides.
			onArcs := 0
			for _, v := range a.arcViews() {
				r.stores[a].Range(blocks.Key(v.arc.Lo), blocks.Key(v.arc.Hi), func(blocks.Key, cid.Cid) bool {
					onArcs++
					return true
				})
			}
			share := float64(onArcs) / float64(count)
			b.Run("round", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.RepairRound(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(share, "arc-share")
			})
			b.Run("due", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.RepairRound(ctx); err != nil {
						b.Fatal(err)
					}
					if _, err := a.offerStrays(ctx, r.stores[a]); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(share, "arc-share")
			})
		})
	}
}

// inSyncRing is a ring of peers whose stores all hold the same count
// blocks of 64 bytes, each of them on every peer.
func inSyncRing(b testing.TB, peers, count int) *repairRing {
	cfg := repairTestConfig()
	cfg.Replicas, cfg.WriteQuorum = peers, 2
	cfg.Repair.ScanRate = 0 // the work itself, not the wait for budget
	cfg.Chord.Vnodes = 8
	r := newRepairRing(b, peers, cfg)
	rng := rand.New(rand.NewPCG(uint64(count), 1))
	blocks := make(chan []byte)
	var wg sync.WaitGroup
	var failed sync.Once
	for range 4 {
		wg.Go(func() {
			for data := range blocks {
				c, err := cid.V1Builder{Codec: cid.Raw, MhType: 0x12}.Sum(data)
				for _, st := range r.stores {
					if err == nil {
						err = st.Put(c, data)
					}
				}
				if err != nil {
					failed.Do(func() { b.Error(err) })
				}
			}
		})
	}
	for range count {
		data := make([]byte, 64)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		blocks <- data
	}
	close(blocks)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return r
}
