package peer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/merkle"
	"chordshare/peer/api"
	"chordshare/peer/pb"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Hinted handoff and graceful leave.
//
// A put whose replica p cannot take the block gives it instead to the next
// peer past the preference list, with a hint naming p (Dynamo's sloppy
// quorum). The hint holder retries p at every repair check and, once p has
// it, drops its own copy unless it is itself on the block's preference
// list. Hints live in memory: a holder that restarts keeps the block, and
// repair (not the hint) then gets it to its proper replicas.
//
// A graceful leave hands every block on to the peers that will replicate
// it without us, stops answering ring calls and tells its neighbours, who
// stabilize at once rather than wait for missed pings.

// hintFallbacks is how many peers past the preference list a put tries
// when replicas fail.
const hintFallbacks = 3

// preferenceList is the first count distinct peers clockwise from key
// (vnodes of one peer count once). When one answer's successors hold
// fewer distinct peers, the walk goes on from the last one, until count
// peers are found or it comes back round.
func (n *Node) preferenceList(ctx context.Context, key chord.ID, count int) ([]p2ppeer.ID, error) {
	list, _, err := n.preference(ctx, key, count)
	return list, err
}

// preference is preferenceList and the first lookup's answer, key's
// successors in ring order (near): every key on (key-1, near[0]] has the
// same list, and ringSpan says which lists near gives further on.
func (n *Node) preference(ctx context.Context, key chord.ID, count int) (list []p2ppeer.ID, near []chord.Ref, err error) {
	seen := map[chord.ID]bool{}
	for first := true; len(list) < count; first = false {
		res, err := n.ring.Lookup(ctx, key, n.cfg.Chord.SuccessorListLen)
		if err != nil {
			return nil, near, err
		}
		if len(res.Successors) == 0 {
			break
		}
		if first {
			near = res.Successors
		}
		progress := false
		for _, s := range res.Successors {
			progress = progress || !seen[s.ID]
			seen[s.ID] = true
		}
		if !progress {
			break // round the whole ring: it has fewer than count peers
		}
		list = firstPeers(list, res.Successors, count, nil)
		key = res.Successors[len(res.Successors)-1].ID.AddPow2(0)
	}
	return list, near, nil
}

// firstPeers appends the distinct peers of succs, in order, to list until
// it holds count; skip, if set, names peers to pass over.
func firstPeers(list []p2ppeer.ID, succs []chord.Ref, count int, skip func(p2ppeer.ID) bool) []p2ppeer.ID {
	for _, s := range succs {
		if len(list) >= count {
			break
		}
		p := p2ppeer.ID(s.Addr)
		if !slices.Contains(list, p) && (skip == nil || !skip(p)) {
			list = append(list, p)
		}
	}
	return list
}

// putReplica stores c on p; if p cannot take it, it hands the block to a
// peer past the preference list list, with a hint for p. fallbacks counts
// the fallback peers this put has used, so two failed replicas use two
// different ones. moved is putAt's.
func (n *Node) putReplica(ctx context.Context, p p2ppeer.ID, c cid.Cid, data []byte, list []p2ppeer.ID, fallbacks *atomic.Int32, moved func()) error {
	err := n.putAt(ctx, p, "", c, data, moved)
	if err == nil || errors.Is(err, ErrBadBlock) || ctx.Err() != nil {
		return err
	}
	more, lerr := n.preferenceList(ctx, chord.KeyID(c.Hash()), len(list)+hintFallbacks)
	if lerr != nil {
		return err
	}
	more = slices.DeleteFunc(more, func(q p2ppeer.ID) bool { return slices.Contains(list, q) })
	i := int(fallbacks.Add(1)) - 1
	if i >= len(more) {
		return err
	}
	if herr := n.putAt(ctx, more[i], p, c, data, moved); herr != nil {
		return fmt.Errorf("%w; hinted handoff: %w", err, herr)
	}
	return nil
}

// holdHint stores c here for target. The hint's place under maxHints is
// taken before the store's write and given back if it fails, so that puts
// arriving together never hold more than maxHints.
func (n *Node) holdHint(target p2ppeer.ID, c cid.Cid, data []byte) error {
	r := n.rep
	k := blocks.KeyOf(c)
	r.mu.Lock()
	_, held := r.hints[target][k]
	if !held && r.nhints >= r.maxHints {
		r.mu.Unlock()
		return fmt.Errorf("holding %d hints already", r.maxHints)
	}
	if !held {
		r.nhints++ // reserved: the write below may be long
	}
	r.mu.Unlock()
	err := n.storeLocal(c, data)
	r.mu.Lock()
	defer r.mu.Unlock()
	if held {
		return err
	}
	m := r.hints[target]
	if _, ok := m[k]; err != nil || ok {
		r.nhints-- // failed, or a put of the same hint got there first
		return err
	}
	if m == nil {
		m = map[blocks.Key]cid.Cid{}
		r.hints[target] = m
	}
	m[k] = c
	return nil
}

// deliverHints moves hinted blocks to the peers they were meant for, and
// drops this peer's copy of those it is not a replica of. A target that
// fails is left for the next check. Each target's blocks go in ring
// order, so that one lookup serves a run of keys with the same successor.
func (n *Node) deliverHints(ctx context.Context) {
	st, ok := n.rangeStore()
	if !ok {
		return
	}
	n.rep.mu.Lock()
	work := map[p2ppeer.ID][]cid.Cid{}
	for p, m := range n.rep.hints {
		for _, c := range m {
			work[p] = append(work[p], c)
		}
	}
	n.rep.mu.Unlock()
	for p, cs := range work {
		slices.SortFunc(cs, func(a, b cid.Cid) int { return blocks.KeyOf(a).Cmp(blocks.KeyOf(b)) })
		var run merkle.Range // keys with the same preference list
		var list []p2ppeer.ID
		for _, c := range cs {
			if !n.deliverHint(ctx, p, c) {
				break // p still away: try again next check
			}
			k := merkle.Key(chord.KeyID(c.Hash()))
			if list == nil || !run.Contains(k) {
				l, near, err := n.preference(ctx, chord.ID(k), n.cfg.Replicas)
				if err != nil || len(near) == 0 {
					list = nil
					continue // keep the copy: repair sees to it
				}
				run, list = merkle.Range{Lo: prevKey(k), Hi: merkle.Key(near[0].ID)}, l
			}
			if len(list) == n.cfg.Replicas && !slices.Contains(list, n.h.ID()) && slices.Contains(list, p) {
				_ = st.Delete(c) // back where it belongs; we were only holding it
			}
		}
	}
}

// deliverHint puts hinted block c on p and forgets the hint. It reports
// false if p did not take it; a block lost here is forgotten too.
func (n *Node) deliverHint(ctx context.Context, p p2ppeer.ID, c cid.Cid) bool {
	data, _, err := n.readLocal(c)
	if err == nil {
		err = n.rep.pace.wait(ctx, len(data))
		if err == nil {
			err = n.storeAt(ctx, p, c, data)
		}
		if err == nil {
			n.rep.blocks.Add(1)
			n.rep.bytes.Add(int64(len(data)))
			n.Publish(api.NodeEvent{Kind: api.EventHandoff, Peer: p.String(), Count: 1,
				Message: fmt.Sprintf("hinted block %s delivered to %s", c, p.ShortString())})
		}
		putBuf(data)
	}
	if errors.Is(err, blocks.ErrCorrupt) {
		n.blockCorrupt(err, "", "its hint for "+p.ShortString()+" dropped")
	}
	if err != nil && !errors.Is(err, blocks.ErrNotFound) && !errors.Is(err, blocks.ErrCorrupt) {
		return false
	}
	n.dropHint(p, c)
	return true
}

func (n *Node) dropHint(p p2ppeer.ID, c cid.Cid) {
	n.rep.mu.Lock()
	defer n.rep.mu.Unlock()
	if m := n.rep.hints[p]; m != nil {
		if _, ok := m[blocks.KeyOf(c)]; ok {
			delete(m, blocks.KeyOf(c))
			n.rep.nhints--
		}
		if len(m) == 0 {
			delete(n.rep.hints, p)
		}
	}
}

func (r *repairState) isLeaving(p p2ppeer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.leaving[p]
	if ok && time.Since(t) > r.cfg.LeaveMemory {
		delete(r.leaving, p)
		return false
	}
	return ok
}

// peerLeaving is a neighbour's leave notice: keep it out of replica sets,
// stabilize now (its ring calls fail, so it drops out of our successor
// lists and predecessors) and compare arcs at once.
func (n *Node) peerLeaving(p p2ppeer.ID) {
	n.rep.mu.Lock()
	n.rep.leaving[p] = time.Now()
	n.rep.mu.Unlock()
	n.bg.Go(func() {
		ctx, cancel := context.WithTimeout(n.life, n.cfg.Chord.LookupTimeout)
		defer cancel()
		n.dropLostNeighbours(ctx, true, true)
		select {
		case n.rep.kick <- struct{}{}:
		default:
		}
	})
}

// Leave hands this peer's blocks on to the peers that replicate them once
// it is gone, stops serving ring calls and tells its neighbours. It is the
// first half of a graceful stop; Close is the second. Blocks it could not
// hand on are left to the other replicas' repair, and reported.
func (n *Node) Leave(ctx context.Context) (RoundStats, error) {
	n.rep.left.Store(true)
	var rs RoundStats
	var err error
	if st, ok := n.rangeStore(); ok {
		rs, err = n.handOff(ctx, st)
	}
	n.h.RemoveStreamHandler(RingProtocol)
	n.tellNeighbours(ctx)
	n.Publish(api.NodeEvent{Kind: api.EventHandoff, Count: rs.Blocks,
		Message: fmt.Sprintf("leaving: handed %d blocks (%s) on", rs.Blocks, FormatSize(rs.Bytes))})
	return rs, err
}

// handOff pushes every block this peer holds to the peers that will be its
// preference list without us. Keys are taken in ring order, one lookup per
// run of keys with the same successor; each target is compared by range
// summary first, so a target that already has them costs one hash.
func (n *Node) handOff(ctx context.Context, st rangeStore) (RoundStats, error) {
	return n.pushRuns(ctx, st, true)
}

// offerStrays pushes the blocks this peer holds but is not a replica of
// (left on it by joins, or a hint never delivered) to their preference
// list, compared by summary first: a copy outside the list is one that
// repair, which compares an arc only within its list, would never find
// (DHash's local maintenance). The copy is kept.
func (n *Node) offerStrays(ctx context.Context, st rangeStore) (RoundStats, error) {
	return n.pushRuns(ctx, st, false)
}

// pushRuns walks the stored keys in ring order, one lookup per run of keys
// with the same successor, and pushes each run to the first r peers
// clockwise that answer, this peer excluded. With leaving false, runs whose
// preference list holds this peer are skipped: repair rounds cover them,
// and the walk steps over their keys without listing them.
func (n *Node) pushRuns(ctx context.Context, st rangeStore, leaving bool) (RoundStats, error) {
	var total RoundStats
	var errs []error
	start, ok := firstKey(st, merkle.Range{})
	if !ok {
		return total, nil
	}
	// The walk covers (origin, origin], the whole circle from start on.
	origin := prevKey(start)
	for k := start; ; {
		res, err := n.ring.Lookup(ctx, chord.ID(k), n.cfg.Chord.SuccessorListLen)
		run := merkle.Range{Lo: prevKey(k), Hi: k}
		if err != nil || len(res.Successors) == 0 {
			errs = append(errs, fmt.Errorf("lookup %s: %v", chord.ID(k).String(), err))
		} else {
			run.Hi = merkle.Key(res.Successors[0].ID)
			if leaving || !n.inPreference(res.Successors) {
				total.add(n.pushRun(ctx, st, run, res.Successors, &errs))
			}
		}
		if ctx.Err() != nil || run.Contains(origin) {
			break
		}
		if k, ok = firstKey(st, merkle.Range{Lo: run.Hi, Hi: origin}); !ok {
			break
		}
	}
	if len(errs) > 0 {
		return total, fmt.Errorf("push to replicas: %w", errors.Join(errs...))
	}
	return total, ctx.Err()
}

// pushRun pushes the keys on run to the first r other peers of succs that
// answer: a successor that has crashed or left unnoticed is passed over
// for the next one. It adds to errs unless r peers took the run.
func (n *Node) pushRun(ctx context.Context, st rangeStore, run merkle.Range, succs []chord.Ref, errs *[]error) RoundStats {
	var total RoundStats
	var tried []p2ppeer.ID
	var failed []error
	done := 0
	for _, s := range succs {
		p := p2ppeer.ID(s.Addr)
		if done == n.cfg.Replicas || ctx.Err() != nil {
			break
		}
		if p == n.h.ID() || slices.Contains(tried, p) || n.rep.isLeaving(p) {
			continue
		}
		tried = append(tried, p)
		rs, err := n.syncArc(ctx, st, run, p, false)
		total.add(rs)
		if err != nil {
			failed = append(failed, fmt.Errorf("to %s: %w", p.ShortString(), err))
			continue
		}
		done++
	}
	if done < n.cfg.Replicas {
		*errs = append(*errs, failed...)
	}
	return total
}

// firstKey is the first stored key on r, in ring order.
func firstKey(st rangeStore, r merkle.Range) (k merkle.Key, ok bool) {
	st.Range(blocks.Key(r.Lo), blocks.Key(r.Hi), func(key blocks.Key, _ cid.Cid) bool {
		k, ok = merkle.Key(key), true
		return false
	})
	return k, ok
}

// inPreference reports whether this peer is among the first r distinct
// peers of succs (a lookup's answer). A short answer (a small ring) counts
// as holding it when it names this peer at all.
func (n *Node) inPreference(succs []chord.Ref) bool {
	list := firstPeers(nil, succs, n.cfg.Replicas, nil)
	return len(list) < n.cfg.Replicas || slices.Contains(list, n.h.ID())
}

// prevKey is k-1 on the ring.
func prevKey(k merkle.Key) merkle.Key {
	for i := len(k) - 1; i >= 0; i-- {
		k[i]--
		if k[i] != 0xff {
			break
		}
	}
	return k
}

// tellNeighbours sends a leave notice to every vnode's predecessor and
// successors (each peer once, in parallel, best effort).
func (n *Node) tellNeighbours(ctx context.Context) {
	self := string(n.h.ID())
	peers := map[p2ppeer.ID]bool{}
	for _, st := range n.ring.States() {
		if !st.Predecessor.IsZero() && st.Predecessor.Addr != self {
			peers[p2ppeer.ID(st.Predecessor.Addr)] = true
		}
		for _, s := range st.Successors[:min(len(st.Successors), n.cfg.Replicas)] {
			if s.Addr != self {
				peers[p2ppeer.ID(s.Addr)] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, leaveNoticeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for p := range peers {
		wg.Go(func() {
			_, _ = n.repairExchange(ctx, p, &pb.RepairRequest{Type: pb.RepairRequest_LEAVING}, leaveNoticeTimeout)
		})
	}
	wg.Wait()
}

// leaveNoticeTimeout bounds the leave notices: a neighbour that does not
// answer learns of the leave through stabilization.
const leaveNoticeTimeout = 3 * time.Second
