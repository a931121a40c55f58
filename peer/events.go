package peer

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/chord"
	"chordshare/peer/api"
)

// Event log sizes: how many recent events a new subscriber is replayed, and
// how many a subscriber may fall behind before it is cut off (it then
// reconnects and catches up from the log).
const (
	eventLogLen     = 512
	eventSubscriber = 256
)

// eventBus numbers events, keeps the most recent ones and hands each to
// every subscriber. Publishing never blocks: a subscriber too slow to keep
// up is dropped, its channel closed.
type eventBus struct {
	now func() time.Time

	mu   sync.Mutex
	seq  uint64
	log  []api.NodeEvent // ring buffer: the last len(log) events, oldest at next once full
	next int
	subs map[chan api.NodeEvent]struct{}
}

func newEventBus() *eventBus {
	return &eventBus{now: time.Now, log: make([]api.NodeEvent, 0, eventLogLen), subs: map[chan api.NodeEvent]struct{}{}}
}

// publish records e, stamping its Seq and (if unset) its Time.
func (b *eventBus) publish(e api.NodeEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	if len(b.log) < cap(b.log) {
		b.log = append(b.log, e)
	} else {
		b.log[b.next] = e
		b.next = (b.next + 1) % len(b.log)
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// recent returns the remembered events with Seq above since, oldest first.
func (b *eventBus) recentLocked(since uint64) []api.NodeEvent {
	ordered := append(slices.Clone(b.log[b.next:]), b.log[:b.next]...)
	i, _ := slices.BinarySearchFunc(ordered, since+1, func(e api.NodeEvent, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	return ordered[i:]
}

// recent returns the remembered events with Seq above since.
func (b *eventBus) recent(since uint64) []api.NodeEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recentLocked(since)
}

// subscribe returns the remembered events after since and a channel of the
// events that follow them, with none lost or repeated in between. The
// channel is closed when the subscriber falls behind or unsubscribes.
func (b *eventBus) subscribe(since uint64) ([]api.NodeEvent, chan api.NodeEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan api.NodeEvent, eventSubscriber)
	b.subs[ch] = struct{}{}
	return b.recentLocked(since), ch
}

func (b *eventBus) unsubscribe(ch chan api.NodeEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

// Publish adds an event to the node's log and sends it to every client of
// GET /v1/events. Seq is assigned here; Time is now unless set. Safe to
// call from any goroutine; it never blocks.
func (n *Node) Publish(e api.NodeEvent) { n.events.publish(e) }

// ringView is what watchRing compares between rounds: the first successor
// and the predecessor of each vnode, and every peer in the tables.
type ringView struct {
	succ, pred map[uint32]chord.Ref
	peers      map[string]bool
}

func (n *Node) snapshotRing() ringView {
	v := ringView{succ: map[uint32]chord.Ref{}, pred: map[uint32]chord.Ref{}, peers: map[string]bool{}}
	self := string(n.h.ID())
	add := func(r chord.Ref) {
		if !r.IsZero() && r.Addr != self {
			v.peers[r.Addr] = true
		}
	}
	for _, st := range n.ring.States() {
		if len(st.Successors) > 0 {
			v.succ[st.Self.Vnode] = st.Successors[0]
		}
		v.pred[st.Self.Vnode] = st.Predecessor
		add(st.Predecessor)
		for _, s := range st.Successors {
			add(s)
		}
		for _, f := range st.Fingers {
			add(f.Node)
		}
	}
	return v
}

// watchRing publishes how the ring changed since the last call: a vnode's
// first successor or predecessor, and neighbours that left the tables and
// are no longer connected (they failed or left).
func (n *Node) watchRing() {
	cur := n.snapshotRing()
	n.mu.Lock()
	prev := n.lastRing
	n.lastRing = cur
	n.mu.Unlock()
	if prev.succ == nil {
		return // the first look: nothing to compare with
	}
	name := func(r chord.Ref) string {
		if r.IsZero() {
			return "none"
		}
		return shortPeer(r.Addr) + "/" + strconv.Itoa(int(r.Vnode))
	}
	for _, vn := range slices.Sorted(maps.Keys(cur.succ)) {
		if s, old := cur.succ[vn], prev.succ[vn]; s.ID != old.ID {
			n.Publish(api.NodeEvent{Kind: api.EventSuccessorChanged, Peer: p2ppeer.ID(s.Addr).String(),
				Message: "vnode " + strconv.Itoa(int(vn)) + ": successor " + name(old) + " -> " + name(s)})
		}
	}
	for _, vn := range slices.Sorted(maps.Keys(cur.pred)) {
		if p, old := cur.pred[vn], prev.pred[vn]; p.ID != old.ID {
			n.Publish(api.NodeEvent{Kind: api.EventPredecessorChanged, Peer: p2ppeer.ID(p.Addr).String(),
				Message: "vnode " + strconv.Itoa(int(vn)) + ": predecessor " + name(old) + " -> " + name(p)})
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(prev.peers)) {
		if cur.peers[addr] || n.h.Network().Connectedness(p2ppeer.ID(addr)) == network.Connected {
			continue
		}
		n.Publish(api.NodeEvent{Kind: api.EventPeerFailed, Peer: p2ppeer.ID(addr).String(),
			Message: "neighbour " + shortPeer(addr) + " dropped out of the ring tables and is unreachable"})
	}
}

// shortPeer is a peer ID as a person reads it in a log line: its last
// eight characters, which tell the peers of a ring apart.
func shortPeer(addr string) string {
	s := p2ppeer.ID(addr).String()
	if len(s) > 8 {
		return ".." + s[len(s)-8:]
	}
	return s
}
