package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/merkle"
)

// storeDir is a directory for a test's block store: in /dev/shm where
// there is one, since these tests write thousands of blocks and each put
// fsyncs (the store's durability is blocks' tests' business).
func storeDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "chordshare-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// repairRing is a mocknet ring of nodes with real block stores, stepped
// by the test: chord rounds and repair rounds, no timers.
type repairRing struct {
	*mockRing
	stores map[*Node]*blocks.Store
	dirs   map[*Node]string
	blocks []cid.Cid
	data   map[cid.Cid][]byte
	// lastDir is the store directory of the node made last.
	lastDir string
}

func newRepairRing(t testing.TB, peers int, cfg Config) *repairRing {
	r := &repairRing{mockRing: newMockRing(t, cfg), stores: map[*Node]*blocks.Store{}, dirs: map[*Node]string{}, data: map[cid.Cid][]byte{}}
	r.beforeNode = func(cfg *Config) {
		dir := storeDir(t)
		r.lastDir = dir
		st, err := blocks.Open(dir, blocks.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	for i := range peers {
		n := r.addOne()
		if i == 0 {
			r.join(n, nil)
		} else {
			r.join(n, r.nodes[0])
		}
	}
	r.converge(300)
	return r
}

func (r *repairRing) addOne() *Node {
	n := r.add(1)[0]
	r.stores[n] = n.cfg.Store.(*blocks.Store)
	r.dirs[n] = r.lastDir
	return n
}

func repairTestConfig() Config {
	c := testConfig()
	c.Repair.Interval, c.Repair.Check, c.Repair.Rate = 0, 0, 0 // stepped by the test
	return c
}

// share puts count random blocks of size bytes through random live nodes.
func (r *repairRing) share(count, size int, seed uint64) {
	r.t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	live := r.live()
	type job struct {
		n    *Node
		c    cid.Cid
		data []byte
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				if err := j.n.Put(context.Background(), j.c, j.data); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for range count {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		c := rawBlock(r.t, data)
		r.blocks = append(r.blocks, c)
		r.data[c] = data
		jobs <- job{live[rng.IntN(len(live))], c, data}
	}
	close(jobs)
	wg.Wait()
	for _, n := range live {
		n.bg.Wait()
	}
	if len(errs) > 0 {
		r.t.Fatalf("%d puts failed: %v", len(errs), errs[0])
	}
}

// repairUntilQuiet runs what a due repair tick runs, on every live node at
// once, until a round moves nothing and fails nowhere; it returns the
// rounds and blocks. A tick is a repair round and then the offer of stray
// copies: when r new peers join in a row, a block's whole preference list
// is new, and only the old replicas, now past the list, can push it there.
func (r *repairRing) repairUntilQuiet(maxRounds int) (rounds int, moved int64) {
	r.t.Helper()
	return r.untilQuiet(maxRounds, true)
}

// roundsUntilQuiet is repairUntilQuiet with repair rounds alone.
func (r *repairRing) roundsUntilQuiet(maxRounds int) (rounds int, moved int64) {
	r.t.Helper()
	return r.untilQuiet(maxRounds, false)
}

func (r *repairRing) untilQuiet(maxRounds int, strays bool) (rounds int, moved int64) {
	r.t.Helper()
	for rounds = 1; rounds <= maxRounds; rounds++ {
		var mu sync.Mutex
		var total RoundStats
		var errs []error
		var wg sync.WaitGroup
		for _, n := range r.live() {
			wg.Go(func() {
				rs, err := n.RepairRound(context.Background())
				var offered RoundStats
				var serr error
				if strays {
					offered, serr = n.offerStrays(context.Background(), r.stores[n])
				}
				mu.Lock()
				defer mu.Unlock()
				total.add(rs)
				total.Blocks += offered.Blocks
				errs = append(errs, err, serr)
				errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
			})
		}
		wg.Wait()
		moved += total.Blocks
		if total.Blocks == 0 && total.Missing == 0 && len(errs) == 0 {
			return rounds, moved
		}
	}
	r.t.Fatalf("repair not quiet after %d rounds", maxRounds)
	return
}

// preference is the true preference list of every block, from the live
// nodes' vnodes (the oracle, not lookups).
func (r *repairRing) preference(c cid.Cid) []*Node {
	return r.firstPeers(c, r.cfg.Replicas)
}

// outside is the first node not on list: a writer whose own store is not
// one of the block's replicas.
func (r *repairRing) outside(list []*Node) *Node {
	for _, n := range r.nodes {
		if !slices.Contains(list, n) {
			return n
		}
	}
	r.t.Fatal("every node is on the list")
	return nil
}

// firstPeers is the first count distinct live peers clockwise from c's key.
func (r *repairRing) firstPeers(c cid.Cid, count int) []*Node {
	type pos struct {
		id chord.ID
		n  *Node
	}
	var ring []pos
	for _, n := range r.live() {
		for _, v := range n.Chord().Vnodes() {
			ring = append(ring, pos{v.ID, n})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].id.Cmp(ring[j].id) < 0 })
	key := chord.KeyID(c.Hash())
	i := sort.Search(len(ring), func(i int) bool { return ring[i].id.Cmp(key) >= 0 })
	var out []*Node
	for k := 0; k < len(ring) && len(out) < count; k++ {
		n := ring[(i+k)%len(ring)].n
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// checkReplicated: every block is on every peer of its preference list.
func (r *repairRing) checkReplicated(when string) {
	r.t.Helper()
	missing := 0
	for _, c := range r.blocks {
		for _, n := range r.preference(c) {
			if !r.stores[n].Has(c) {
				missing++
			}
		}
	}
	if missing > 0 {
		r.t.Fatalf("%s: %d block copies missing from their preference lists", when, missing)
	}
}

// checkFetchable: every block can be fetched by a random live node.
func (r *repairRing) checkFetchable(when string, seed uint64) {
	r.t.Helper()
	live := r.live()
	rng := rand.New(rand.NewPCG(seed, 9))
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	work := make(chan cid.Cid)
	for range 8 {
		wg.Go(func() {
			for c := range work {
				mu.Lock()
				n := live[rng.IntN(len(live))]
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				got, err := n.Get(ctx, c)
				cancel()
				if err != nil || !bytes.Equal(got, r.data[c]) {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s on %s: %v", c, n.Host().ID().ShortString(), err))
					mu.Unlock()
				}
			}
		})
	}
	for _, c := range r.blocks {
		work <- c
	}
	close(work)
	wg.Wait()
	if len(failed) > 0 {
		r.t.Fatalf("%s: %d of %d blocks not fetchable, e.g. %s", when, len(failed), len(r.blocks), failed[0])
	}
}

func (r *repairRing) crashSome(count int, rng *rand.Rand) {
	live := r.live()
	for _, i := range rng.Perm(len(live))[:count] {
		r.crash(live[i])
	}
}

func churnSize(t *testing.T) (peers, blocks int) {
	if testing.Short() || raceEnabled {
		return 16, 300
	}
	return 32, 2000
}

// Issue 5's story: 32 peers, 2,000 blocks at r = 3. Two peers crash at
// once, stabilization notices, repair restores r copies; again, until a
// third of the peers are gone. New peers join and take their arcs over;
// some leave gracefully, handing their blocks on. Every block is fetchable
// at every step and on r peers once quiet.
func TestRepairChurnStory(t *testing.T) {
	peers, count := churnSize(t)
	r := newRepairRing(t, peers, repairTestConfig())
	rng := rand.New(rand.NewPCG(5, 5))
	start := time.Now()
	r.share(count, 512, 1)
	t.Logf("%d peers, %d blocks shared in %v", peers, count, time.Since(start).Round(time.Millisecond))
	r.checkReplicated("after share")

	for step := 1; len(r.live()) > peers-peers/3; step++ {
		r.crashSome(2, rng)
		r.converge(200)
		r.checkFetchable(fmt.Sprintf("crash step %d, before repair", step), uint64(step))
		start := time.Now()
		rounds, moved := r.repairUntilQuiet(10)
		t.Logf("crash step %d: %d live, repair quiet after %d rounds, %d blocks moved, %v",
			step, len(r.live()), rounds, moved, time.Since(start).Round(time.Millisecond))
		r.checkReplicated(fmt.Sprintf("crash step %d", step))
	}

	live := r.live()
	for range 4 {
		n := r.addOne()
		r.join(n, live[rng.IntN(len(live))])
	}
	r.converge(200)
	r.checkFetchable("after joins", 100)
	rounds, moved := r.repairUntilQuiet(10)
	t.Logf("4 joined: repair quiet after %d rounds, %d blocks moved", rounds, moved)
	r.checkReplicated("after joins")

	for i, n := range r.live()[:2] {
		rs, err := n.Leave(context.Background())
		if err != nil {
			t.Fatalf("leave: %v", err)
		}
		t.Logf("leave %d: %d blocks handed on, %d summary bytes", i, rs.Blocks, rs.SummaryBytes)
		n.Close()
		r.crash(n)
	}
	r.converge(200)
	// Handed on before going: r copies without any repair round.
	r.checkReplicated("after graceful leaves, before repair")
	r.checkFetchable("after graceful leaves", 200)
	rounds, moved = r.repairUntilQuiet(10)
	t.Logf("2 left: repair quiet after %d rounds, %d blocks moved", rounds, moved)
	r.checkReplicated("after graceful leaves")
	var under int64
	for _, n := range r.live() {
		u, _ := n.RepairStatus()
		under += u
	}
	if under != 0 {
		t.Fatalf("quiet ring reports %d under-replicated copies", under)
	}
}

// Two replicas in sync with 10,000 blocks each: a round moves nothing and
// sends a few hundred bytes of summaries, not 10,000 keys (320 KB).
func TestRepairInSyncExchangesOnlySummaries(t *testing.T) {
	cfg := repairTestConfig()
	cfg.Replicas, cfg.WriteQuorum = 2, 2
	cfg.Chord.Vnodes = 1
	r := newRepairRing(t, 2, cfg)
	a, b := r.nodes[0], r.nodes[1]
	rng := rand.New(rand.NewPCG(9, 9))
	const count = 10000
	var cids []cid.Cid
	for range count {
		data := make([]byte, 64)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		c := rawBlock(t, data)
		cids = append(cids, c)
		for _, n := range []*Node{a, b} {
			if err := r.stores[n].Put(c, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	for _, n := range []*Node{a, b} {
		rs, err := n.RepairRound(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("in sync: %+v", rs)
		// One arc, one other replica: one exchange of one range.
		if rs.Blocks != 0 || rs.Missing != 0 || rs.Exchanges != 1 || rs.SummaryBytes > 200 {
			t.Fatalf("round between replicas in sync: %+v; want no blocks, 1 exchange, <= 200 summary bytes", rs)
		}
	}
	// Ten blocks lost on b: only they move. Each difference costs about
	// two levels of 16 range queries and a listed leaf of ~40 CIDs, some
	// 3 KB at this size, still a tenth of b's key list.
	for _, c := range cids[:10] {
		if err := r.stores[b].Delete(c); err != nil {
			t.Fatal(err)
		}
	}
	var rs RoundStats
	for _, n := range []*Node{a, b} {
		s, err := n.RepairRound(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rs.add(s)
	}
	t.Logf("10 missing: %+v", rs)
	// The bound is the comment's tenth of the key list: the summaries' size
	// depends on where the random peer IDs cut the ring (26-33 KB seen).
	keyList := 0
	for _, c := range cids {
		keyList += c.ByteLen()
	}
	if rs.Blocks != 10 || rs.SummaryBytes > int64(keyList/10) {
		t.Fatalf("10 missing: %+v; want 10 blocks moved for <= %d B of summaries, a tenth of the key list", rs, keyList/10)
	}
	if got := r.stores[b].Stats().Count; got != count {
		t.Fatalf("b holds %d blocks, want %d", got, count)
	}
}

// A peer whose block files were deleted under it gets them back.
func TestRepairRestoresBlocksLostOnDisk(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	r.share(300, 256, 3)
	victim := r.nodes[3]
	before := r.stores[victim].Stats().Count
	if before == 0 {
		t.Fatal("victim holds no blocks")
	}
	shards, _ := filepath.Glob(filepath.Join(r.dirs[victim], "??", "*"))
	for _, f := range shards {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	rounds, moved := r.repairUntilQuiet(10)
	t.Logf("%d files deleted; repair quiet after %d rounds, %d blocks moved", len(shards), rounds, moved)
	if moved != int64(before) {
		t.Errorf("moved %d blocks, want the %d lost", moved, before)
	}
	r.checkReplicated("after disk loss")
	if got := r.stores[victim].Stats().Count; got != before {
		t.Fatalf("victim holds %d blocks, had %d", got, before)
	}
}

// A new peer takes the blocks of its arcs from its neighbours in its own
// first round (join handoff).
func TestRepairJoinHandoff(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	r.share(400, 256, 4)
	n := r.addOne()
	r.join(n, r.nodes[0])
	r.converge(200)
	rs, err := n.RepairRound(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Every block whose first replica is n is now on n.
	want := 0
	for _, c := range r.blocks {
		if r.preference(c)[0] == n {
			want++
			if !r.stores[n].Has(c) {
				t.Fatalf("new peer lacks %s, which it is first replica of", c)
			}
		}
	}
	t.Logf("new peer is first replica of %d blocks; its first round pulled %d", want, rs.Blocks)
	if want == 0 || rs.Blocks < int64(want) {
		t.Fatalf("pulled %d blocks, first replica of %d", rs.Blocks, want)
	}
	r.repairUntilQuiet(10)
	r.checkReplicated("after join")
}

// Repair keeps to its byte rate, and a repairer that dies midway leaves
// nothing undone that the next rounds of the others do not finish.
func TestRepairPacedAndSurvivesRepairerDying(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	r.share(400, 4096, 6)
	rng := rand.New(rand.NewPCG(6, 6))
	// One crash, then the repairer: two of r = 3 gone, so every block
	// keeps a live copy that the others' rounds can spread again.
	r.crashSome(1, rng)
	r.converge(200)

	// The node with the most to repair runs first, slowly: it is first
	// replica of the most blocks missing a copy (peer IDs are random, so
	// which node that is, and how much it has, differs from run to run).
	work := map[*Node]int{}
	for _, c := range r.blocks {
		pref := r.preference(c)
		for _, n := range pref {
			if !r.stores[n].Has(c) {
				work[pref[0]]++
			}
		}
	}
	var victim *Node
	for _, n := range r.live() {
		if victim == nil || work[n] > work[victim] {
			victim = n
		}
	}
	const minMoved = 8
	if work[victim] < minMoved+4 {
		t.Fatalf("most repair work on one node is %d copies; the test needs %d", work[victim], minMoved+4)
	}
	const rate = 32 << 10 // bytes per second
	victim.rep.pace.rate = rate
	done := make(chan RoundStats, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	start := time.Now()
	go func() {
		rs, _ := victim.RepairRound(ctx)
		done <- rs
	}()
	deadline := time.After(30 * time.Second)
	for victim.rep.blocks.Load() < minMoved {
		select {
		case rs := <-done:
			t.Fatalf("round ended before it moved %d blocks (%d to do): %+v", minMoved, work[victim], rs)
		case <-deadline:
			t.Fatal("no progress")
		case <-time.After(10 * time.Millisecond):
		}
	}
	_, rep := victim.RepairStatus()
	// Measured after the bytes: the round goes on while we look, and a
	// stalled test goroutine must not count those bytes against less time.
	elapsed := time.Since(start)
	if !rep.InProgress {
		t.Fatalf("status does not show the round in progress (%d blocks moved of %d to do)", rep.BlocksMoved, work[victim])
	}
	sent := rep.BytesMoved + rep.SummaryBytes
	// Every transfer waits for the ones before it to drain, so only the
	// last block and a summary exchange can be ahead of the rate.
	if limit := float64(rate)*elapsed.Seconds() + 4096 + 1024; float64(sent) > limit {
		t.Fatalf("%d bytes in %v at %d B/s: more than the %0.f allowed", sent, elapsed, rate, limit)
	}
	t.Logf("paced: %d bytes in %v (%.0f B/s, budget %d)", sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), rate)

	r.crash(victim) // dies mid-round
	stop()          // and its process with it: the round ends in the pacer, not after
	rs := <-done
	t.Logf("repairer died after moving %d blocks", rs.Blocks)
	r.converge(200)
	rounds, moved := r.repairUntilQuiet(10)
	t.Logf("the others finished in %d rounds, %d blocks", rounds, moved)
	r.checkReplicated("after the repairer died")
	r.checkFetchable("after the repairer died", 7)
}

// A put whose replica is unreachable lands on the next peer with a hint;
// the block moves to the replica when it is back, and the holder lets go.
func TestHintedHandoff(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	ctx := context.Background()
	data := []byte("hinted handoff")
	c := rawBlock(t, data)
	list := r.preference(c)
	writer := r.outside(list)
	away := list[2]
	_ = r.mn.UnlinkPeers(writer.Host().ID(), away.Host().ID())
	_ = r.mn.DisconnectPeers(writer.Host().ID(), away.Host().ID())
	if err := writer.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	writer.bg.Wait()
	if r.stores[away].Has(c) {
		t.Fatal("the unreachable replica has the block")
	}
	holder := hintHolder(t, r, list, c)
	if _, err := r.mn.LinkPeers(writer.Host().ID(), away.Host().ID()); err != nil {
		t.Fatal(err)
	}
	holder.deliverHints(ctx)
	if !r.stores[away].Has(c) {
		t.Fatal("hint not delivered")
	}
	if _, rep := holder.RepairStatus(); rep.HintsPending != 0 || r.stores[holder].Has(c) {
		t.Fatalf("holder still has the hint (%d) or the block (%v)", rep.HintsPending, r.stores[holder].Has(c))
	}
	r.checkReplicated("after hinted handoff")
}

// A hint travels as a block PUT naming the peer it is for; the holder
// delivers every block hinted for that peer and keeps exactly those it
// replicates itself or that do not belong on the target.
func TestHintOnBlockPut(t *testing.T) {
	r := newRepairRing(t, 6, repairTestConfig())
	ctx := context.Background()
	writer, holder, target := r.nodes[0], r.nodes[1], r.nodes[2]
	rng := rand.New(rand.NewPCG(11, 11))
	var cids []cid.Cid
	for range 40 {
		data := make([]byte, 100)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		c := rawBlock(t, data)
		cids = append(cids, c)
		if err := writer.putAt(ctx, holder.Host().ID(), target.Host().ID(), c, data, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, rep := holder.RepairStatus(); rep.HintsPending != int64(len(cids)) {
		t.Fatalf("holder has %d hints, want %d", rep.HintsPending, len(cids))
	}
	holder.deliverHints(ctx)
	if _, rep := holder.RepairStatus(); rep.HintsPending != 0 {
		t.Fatalf("%d hints left after delivery", rep.HintsPending)
	}
	for _, c := range cids {
		list := r.preference(c)
		keep := slices.Contains(list, holder) || !slices.Contains(list, target)
		if !r.stores[target].Has(c) || r.stores[holder].Has(c) != keep {
			t.Fatalf("block %s: on target %v, on holder %v; want true, %v", c, r.stores[target].Has(c), r.stores[holder].Has(c), keep)
		}
	}
}

// With timers running (Run), a crash is noticed by stabilization and the
// repair loop restores r copies with nobody stepping it.
func TestRepairLoopAfterCrash(t *testing.T) {
	cfg := repairTestConfig()
	cfg.Repair.Check = 100 * time.Millisecond
	cfg.Repair.Interval = 2 * time.Second
	r := newRepairRing(t, 8, cfg)
	r.share(200, 256, 8)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, n := range r.nodes {
		wg.Go(func() { n.Run(ctx) })
	}
	r.crashSome(2, rand.New(rand.NewPCG(8, 8)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := chord.NewOracle(r.chords()).Check(r.chords()); err == nil && r.missing() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not repaired by the loop in 30 s: %d copies missing", r.missing())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *repairRing) missing() int {
	missing := 0
	for _, c := range r.blocks {
		for _, n := range r.preference(c) {
			if !r.stores[n].Has(c) {
				missing++
			}
		}
	}
	return missing
}

// A copy held only by a peer outside the block's preference list (joins
// pushed it off) is offered to the list at the periodic round.
func TestRepairOffersStrayCopies(t *testing.T) {
	cfg := repairTestConfig()
	cfg.Repair.Interval = time.Minute
	r := newRepairRing(t, 8, cfg)
	data := []byte("a stray copy")
	c := rawBlock(t, data)
	r.blocks, r.data[c] = append(r.blocks, c), data
	var holder *Node
	for _, n := range r.nodes {
		if !slices.Contains(r.preference(c), n) {
			holder = n
			break
		}
	}
	if err := r.stores[holder].Put(c, data); err != nil {
		t.Fatal(err)
	}
	// The list's own rounds cannot find it: none of them holds it.
	r.roundsUntilQuiet(3)
	if r.missing() != cfg.Replicas {
		t.Fatalf("%d copies missing before the stray is offered, want %d", r.missing(), cfg.Replicas)
	}
	holder.RepairTick(context.Background(), time.Now())
	r.checkReplicated("after the stray copy was offered")
}

// Right after joins a block's whole preference list can be new peers that
// repair has not filled yet; its copies are on the peers just past the
// list, and Get finds them there.
func TestGetPastPreferenceList(t *testing.T) {
	r := newRepairRing(t, 8, repairTestConfig())
	ctx := context.Background()
	data := []byte("pushed out of its list by three joins")
	c := rawBlock(t, data)
	peers := r.firstPeers(c, 2*r.cfg.Replicas)
	list, past := peers[:r.cfg.Replicas], peers[r.cfg.Replicas:]
	// Only the last peer past the list has it, as with r joins in a row
	// that pushed its old replicas out, two of them since crashed.
	if err := r.stores[past[len(past)-1]].Put(c, data); err != nil {
		t.Fatal(err)
	}
	got, err := list[0].Get(ctx, c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get from a replica that lacks it: %q, %v", got, err)
	}
	missing := rawBlock(t, []byte("on no peer"))
	asked := r.firstPeers(missing, 2*r.cfg.Replicas)
	asked = slices.DeleteFunc(asked, func(n *Node) bool { return n == list[0] })
	_, err = list[0].Get(ctx, missing)
	var re *ReplicaError
	if !errors.As(err, &re) || !re.NotFound() || re.Tried != len(asked) {
		t.Fatalf("get of a block on no peer: %v (want not found from the %d other peers)", err, len(asked))
	}
}

// Puts of hints arriving together never take more than maxHints places,
// even while the store's writes are slow: a place is taken before the
// write, not after.
func TestHoldHintCapUnderConcurrentPuts(t *testing.T) {
	r, _ := storedRing(t, 1)
	n := r.nodes[0]
	const limit, puts = 4, 12
	gate := &gatedStore{BlockStore: n.cfg.Store, release: make(chan struct{}), entered: make(chan struct{}, puts)}
	n.cfg.Store = gate
	n.rep.maxHints = limit
	target := r.nodes[0].Host().ID()
	results := make(chan error, puts)
	for i := range puts {
		data := fmt.Appendf(nil, "hinted block %d", i)
		c := rawBlock(t, data)
		go func() { results <- n.holdHint(target, c, data) }()
	}
	// Every put is either refused or waiting in the store's write; only
	// then may the writes finish.
	refused := 0
	for done := 0; done < puts; done++ {
		select {
		case <-gate.entered:
		case err := <-results:
			if err == nil {
				t.Fatal("a hint was held without a store write")
			}
			refused++
		}
	}
	close(gate.release)
	for range puts - refused {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if _, rep := n.RepairStatus(); rep.HintsPending != limit || refused != puts-limit {
		t.Fatalf("%d hints held, %d puts refused; want %d and %d", rep.HintsPending, refused, limit, puts-limit)
	}
}

// gatedStore holds every Put until release is closed, telling entered.
type gatedStore struct {
	BlockStore
	release chan struct{}
	entered chan struct{}
}

func (g *gatedStore) Put(c cid.Cid, data []byte) error {
	g.entered <- struct{}{}
	<-g.release
	return g.BlockStore.Put(c, data)
}

// A peer answering summaries checks at most its budget of stored keys:
// in debt, it answers BUSY with the wait; the asking side asks again
// after it and, still refused, fails the comparison (the next repair check
// tries again); once the budget has refilled, the comparison runs.
func TestSummaryScanBudget(t *testing.T) {
	r := inSyncRing(t, 2, 300)
	a, p := r.nodes[0], r.nodes[1]
	var elapsed atomic.Int64 // the asked peer's clock
	base := time.Now()
	p.rep.scan = scanBudget{rate: 10_000, burst: 10, now: func() time.Time { return base.Add(time.Duration(elapsed.Load())) }}
	ctx := testCtx(t)
	whole := merkle.Range{}
	if _, err := a.syncArc(ctx, r.stores[a], whole, p.Host().ID(), true); err != nil {
		t.Fatal(err) // within budget; checks every key, 290 past it
	}
	rs, err := a.syncArc(ctx, r.stores[a], whole, p.Host().ID(), true)
	var busy *busyError
	if !errors.As(err, &busy) || busy.retryAfter != 30*time.Millisecond || rs.Exchanges != 1 {
		t.Fatalf("in debt: %v after %d exchanges; want BUSY, ask again in 30ms, 1 exchange", err, rs.Exchanges)
	}
	refused := func(want int64) {
		t.Helper()
		if _, rep := p.RepairStatus(); rep.Refused != want {
			t.Fatalf("%d requests refused, want %d", rep.Refused, want)
		}
	}
	refused(1)
	// A round asks a busy peer once, defers its other arcs to the time it
	// gave, and counts them neither failed nor under-replicated.
	arcs := len(a.arcViews())
	t0 := time.Now()
	a.RepairTick(ctx, t0) // the first tick runs a whole round
	refused(2)
	if under, _ := a.RepairStatus(); under != 0 || len(a.rep.deferred) != arcs || arcs < 2 {
		t.Fatalf("round with the replica busy: %d under-replicated, %d of %d arcs deferred; want 0, all, several", under, len(a.rep.deferred), arcs)
	}
	a.RepairTick(ctx, t0.Add(10*time.Millisecond))
	refused(2) // not asked before the time it gave
	p.rep.scan.mu.Lock()
	p.rep.scan.burst = 1e6 // a second refills enough for every arc
	p.rep.scan.mu.Unlock()
	elapsed.Add(int64(time.Second))
	a.RepairTick(ctx, t0.Add(40*time.Millisecond))
	refused(2)
	if len(a.rep.deferred) != 0 {
		t.Fatalf("refilled: %d comparisons still deferred", len(a.rep.deferred))
	}
	if rs, err := a.syncArc(ctx, r.stores[a], whole, p.Host().ID(), true); err != nil || rs.Missing != 0 {
		t.Fatalf("refilled: %v, %d missing", err, rs.Missing)
	}
}

// hintHolder is the one peer holding a hint, which must be a peer past
// list (c's preference list) that stores c.
func hintHolder(t *testing.T, r *repairRing, list []*Node, c cid.Cid) *Node {
	t.Helper()
	var holder *Node
	for _, n := range r.nodes {
		if _, rep := n.RepairStatus(); rep.HintsPending == 1 {
			holder = n
		}
	}
	if holder == nil || slices.Contains(list, holder) || !r.stores[holder].Has(c) {
		t.Fatal("no peer past the preference list holds the block with a hint")
	}
	return holder
}
