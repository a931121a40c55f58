package peer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

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
					e.set(nil, ctx.Err())
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
			wg.Go(func() {
				defer func() { <-slots }()
				e.set(n.Replicas(ctx, c))
			})
		}
		wg.Wait()
	})
}

func (e *replicaList) set(peers []p2ppeer.ID, err error) {
	e.peers, e.err, e.at = peers, err, time.Now()
	close(e.ready)
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
// still waits for its turn; each list serves one Get).
func (n *Node) replicasOf(ctx context.Context, c cid.Cid) ([]p2ppeer.ID, error) {
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
				return e.peers, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return n.Replicas(ctx, c)
}
