package peer

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/chord"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// located holds the replica lists Locate looked up ahead of the Gets that
// need them. Each lookup is a ring lookup, several hops on a slow network;
// done inside Get it holds one of the fetch's window slots without moving
// a byte (a third of the window on the heterogeneous profile: lookups of
// 0.3 s on average, over 1 s at p90, beside transfers of 0.6 s).
type located struct {
	mu      sync.Mutex
	entries map[cid.Cid]*replicaList
	// spans are what the lookups of Locate and of puts told of the ring,
	// newest last; a CID a young enough span tells the list of needs no
	// lookup of its own (spanReuse for a Get, putReplicas' age for a put).
	spans []ringSpan
	// lookups counts the ring lookups Locate made.
	lookups atomic.Int64
}

type replicaList struct {
	// claimed: its lookup has begun, by Locate or by the Get that found
	// it still waiting for a turn (under located.mu)
	claimed bool
	ready   chan struct{} // closed once peers and err are set
	peers   []p2ppeer.ID
	err     error
	at      time.Time // when the lookup ended
}

const (
	// locateParallel is how many lookups one Locate runs at once: about
	// what a fetch's window consumes (32 blocks per transfer time) when a
	// lookup takes half as long as a transfer.
	locateParallel = 16
	// maxLocated bounds the lists held; past it, Locate looks up no more
	// until Gets take them.
	maxLocated = 4096
	// locatedTTL is how long a list is trusted: the ring may change.
	locatedTTL = 30 * time.Second
	// maxSpans bounds the spans kept: a ring of a few hundred vnodes is
	// told by far fewer.
	maxSpans = 256
	// spanReuse is how long a span gives lists. A list from a span lives
	// only as long as the span (locatedTTL), and its Get may come seconds
	// after Locate (on a slow network, an internal node's blocks take
	// seconds to fetch): one given by a span about to expire would be
	// looked up again inside the Get, holding a window slot, which is
	// what Locate is for avoiding.
	spanReuse = locatedTTL / 2
)

func newLocated() *located { return &located{entries: map[cid.Cid]*replicaList{}} }

// Locate looks up the replicas of cids in the background, locateParallel
// at a time and in order, so that the Gets for them find their lists ready
// (share.FetchOptions.Locate). It returns at once; the lookups stop when
// ctx ends or the node closes. A CID already being located, or in this
// peer's own store, is skipped.
func (n *Node) Locate(ctx context.Context, cids []cid.Cid) {
	if st := n.cfg.Store; st != nil {
		cids = slices.DeleteFunc(slices.Clone(cids), st.Has)
	}
	l := n.blocks.located
	var todo []cid.Cid
	var lists []*replicaList
	l.mu.Lock()
	for c, e := range l.entries {
		if e.expired() {
			delete(l.entries, c)
		}
	}
	for _, c := range cids {
		if _, ok := l.entries[c]; ok || len(l.entries) >= maxLocated {
			continue
		}
		e := &replicaList{ready: make(chan struct{})}
		l.entries[c] = e
		todo, lists = append(todo, c), append(lists, e)
	}
	l.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	n.bg.Go(func() {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(n.life, cancel)()
		slots := make(chan struct{}, locateParallel)
		var wg sync.WaitGroup
		for i, c := range todo {
			e := lists[i]
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				l.mu.Lock()
				if !e.claimed {
					e.claimed = true
					e.set(nil, ctx.Err(), time.Now())
				}
				l.mu.Unlock()
				continue
			}
			l.mu.Lock()
			mine := !e.claimed
			e.claimed = true
			l.mu.Unlock()
			if !mine {
				<-slots
				continue
			}
			key := chord.KeyID(c.Hash())
			if peers, at, ok := l.spanList(key, n.cfg.Replicas, 0, spanReuse); ok {
				<-slots
				e.set(peers, nil, at)
				continue
			}
			wg.Go(func() {
				defer func() { <-slots }()
				l.lookups.Add(1)
				peers, near, err := n.replicasNear(ctx, c)
				if err == nil {
					l.addSpan(ringSpan{key: key, near: near, at: time.Now()})
				}
				e.set(peers, err, time.Now())
			})
		}
		wg.Wait()
	})
}

func (e *replicaList) set(peers []p2ppeer.ID, err error, at time.Time) {
	e.peers, e.err, e.at = peers, err, at
	close(e.ready)
}

// ringSpan is what one lookup told of the ring past its key: the key's
// successors in ring order (near). Every key on (near[j-1], near[j]]
// (near[-1] being key) has near[j:] as its first successors, so its
// preference list is the first peers of near[j:] when those hold enough:
// one lookup answers for the blocks of several vnodes' arcs. A fetch's
// Locate then looks up a block only where no earlier lookup's list
// reaches: the 1,044 blocks of a 256 MiB file on a ring of 64 vnodes
// took a lookup of a few ring RPCs each, and now take about 40 lookups.
type ringSpan struct {
	key  chord.ID
	near []chord.Ref
	at   time.Time // when the lookup ended
}

// list is k's preference list of count peers by s, and whether s tells it:
// k is on s's arcs, enough distinct peers follow, and at least minTail
// entries of near from k's successor on.
func (s ringSpan) list(k chord.ID, count, minTail int) ([]p2ppeer.ID, bool) {
	lo := s.key
	for j, r := range s.near {
		// The arcs run clockwise from key and never pass it again; a
		// successor list that does (a ring of fewer vnodes than it
		// holds) ends there.
		if j > 0 && !chord.Between(lo, r.ID, s.key) {
			return nil, false
		}
		// (key, near[0]] is only key when key is near[0] itself, not the
		// whole circle BetweenRightIncl makes of it.
		if (j == 0 && k == s.key) || (r.ID != lo && chord.BetweenRightIncl(lo, k, r.ID)) {
			if len(s.near)-j < minTail {
				return nil, false
			}
			l := firstPeers(nil, s.near[j:], count, nil)
			return l, len(l) == count
		}
		lo = r.ID
	}
	return nil, false
}

// addSpan keeps sp, dropping expired spans and, past maxSpans, the
// oldest.
func (l *located) addSpan(sp ringSpan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spans = slices.DeleteFunc(l.spans, func(s ringSpan) bool { return time.Since(s.at) > locatedTTL })
	if len(l.spans) >= maxSpans {
		l.spans = slices.Delete(l.spans, 0, len(l.spans)-maxSpans+1)
	}
	l.spans = append(l.spans, sp)
}

// spanList is k's preference list of count peers from the newest span
// that tells it (ringSpan.list) and is at most maxAge old, with when that
// span's lookup ended.
func (l *located) spanList(k chord.ID, count, minTail int, maxAge time.Duration) ([]p2ppeer.ID, time.Time, bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.spans) - 1; i >= 0; i-- {
		sp := l.spans[i]
		if now.Sub(sp.at) > maxAge {
			break // the older ones too
		}
		if peers, ok := sp.list(k, count, minTail); ok {
			return peers, sp.at, true
		}
	}
	return nil, time.Time{}, false
}

// expired says whether e's lookup ended more than locatedTTL ago.
func (e *replicaList) expired() bool {
	select {
	case <-e.ready:
		return time.Since(e.at) > locatedTTL
	default:
		return false
	}
}

// replicasOf is Replicas, from the list Locate looked up if there is one
// (waiting for it if its lookup is under way, looking it up at once if it
// still waits for its turn; each list serves one Get). located says the
// list came from Locate: up to locatedTTL old, from a span perhaps made
// by another fetch, so the ring may have changed since.
func (n *Node) replicasOf(ctx context.Context, c cid.Cid) (_ []p2ppeer.ID, located bool, _ error) {
	l := n.blocks.located
	l.mu.Lock()
	e := l.entries[c]
	delete(l.entries, c)
	if e != nil && !e.claimed {
		e.claimed = true
		e = nil
	}
	l.mu.Unlock()
	if e != nil {
		select {
		case <-e.ready:
			if e.err == nil && !e.expired() {
				return e.peers, true, nil
			}
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	peers, err := n.Replicas(ctx, c)
	return peers, false, err
}
