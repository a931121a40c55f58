package peer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"chordshare/blocks"
	"chordshare/chord"
	"chordshare/peer/api"
	"chordshare/share"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Replicas returns the preference list of block c: the first r distinct
// peers clockwise from its key (Dynamo-style; vnodes of one peer count once).
// When one answer's successors hold fewer distinct peers (a peer's vnodes
// can sit side by side), the walk goes on from the last one, until r peers
// are found or it comes back round.
func (n *Node) Replicas(ctx context.Context, c cid.Cid) ([]p2ppeer.ID, error) {
	out, _, err := n.replicasNear(ctx, c)
	return out, err
}

// replicasNear is Replicas and the lookup's answer it came from
// (preference).
func (n *Node) replicasNear(ctx context.Context, c cid.Cid) ([]p2ppeer.ID, []chord.Ref, error) {
	out, near, err := n.preference(ctx, chord.KeyID(c.Hash()), n.cfg.Replicas)
	if err != nil {
		return nil, nil, fmt.Errorf("replicas of %s: %w", c, err)
	}
	return out, near, nil
}

// Put stores block c on its r replicas and returns once W of them have
// acknowledged a durable write; the others finish in the background, owned
// by the node. It implements share.Putter.
func (n *Node) Put(ctx context.Context, c cid.Cid, data []byte) error {
	return n.PutLent(ctx, c, data, nil)
}

// PutLent is Put, calling done (if set) once every replica write,
// including those that finish in the background, is over with data: the
// caller may then reuse the buffer. It implements share.LendingPutter.
func (n *Node) PutLent(ctx context.Context, c cid.Cid, data []byte, done func()) error {
	return n.putMoving(ctx, c, data, done, nil)
}

// putMoving is PutLent calling moved, if set, whenever a part of the block
// has been written to a replica: a share's progress finer than whole
// blocks, whose write quorum on a slow uplink takes minutes each
// (movingPutter). Its errors leave the block to the caller to name, as
// share's "put CID: " does (with every layer naming it, a failed share's
// one line told the CID three times).
func (n *Node) putMoving(ctx context.Context, c cid.Cid, data []byte, done, moved func()) error {
	if done == nil {
		done = func() {}
	}
	if len(data) > maxBlockSize {
		done()
		return fmt.Errorf("block of %d bytes exceeds %d", len(data), maxBlockSize)
	}
	// No hash here: every replica's store checks the bytes against c
	// before writing, and refuses a mismatch (ErrBadBlock).
	peers, err := n.putReplicas(ctx, c)
	if err != nil {
		done()
		return err
	}
	need := min(n.cfg.WriteQuorum, len(peers))
	if need < n.cfg.WriteQuorum {
		done()
		return fmt.Errorf("the ring has %d peers, fewer than the write quorum %d", len(peers), n.cfg.WriteQuorum)
	}
	if err := n.claimWrites(ctx, len(peers)); err != nil {
		done()
		return fmt.Errorf("waiting for a replica write slot: %w", err)
	}
	acks := make(chan error, len(peers))
	var fallbacks atomic.Int32
	var writing atomic.Int32 // replica writes still using data
	writing.Store(int32(len(peers)))
	for _, p := range peers {
		// Detached from ctx: a replica write the caller no longer waits for
		// still completes, bounded by the node's lifetime and its timeout.
		// A replica that fails is replaced by a hinted handoff (handoff.go).
		n.bg.Go(func() {
			err := n.putReplica(n.life, p, c, data, peers, &fallbacks, moved)
			<-n.blocks.writes
			if writing.Add(-1) == 0 {
				done()
			}
			if err != nil {
				err = &replicaFailure{peer: p, err: err}
			}
			acks <- err
		})
	}
	var errs []error
	ok := 0
	tally := func(err error) {
		if err != nil {
			errs = append(errs, err)
		} else {
			ok++
		}
	}
	for ok < need {
		select {
		case err := <-acks:
			tally(err)
			if len(errs) > len(peers)-need {
				// Quorum is out of reach: the put gives up without
				// waiting for the writes still under way (on a slow link,
				// minutes), counting those already over.
				for more := true; more; {
					select {
					case err := <-acks:
						tally(err)
					default:
						more = false
					}
				}
				return &ReplicaError{Op: "put", CID: c, OK: ok, Tried: len(peers), Need: need,
					Pending: len(peers) - ok - len(errs), Errs: errs}
			}
		case <-ctx.Done():
			return fmt.Errorf("%d of %d replicas acknowledged (%d needed) when the put was stopped: %w", ok, len(peers), need, ctx.Err())
		}
	}
	return nil
}

// putReplicas is Replicas for a put: from a span at most half a
// stabilize round old when one tells c's list, else from a lookup whose
// answer becomes a span. A share's puts spread over the whole ring, so
// one lookup's successors tell the lists of many of the blocks that follow
// (a 256 MiB share made a lookup per block, 1,044 of them, most answered
// from this node's own successor lists, the rest a ring RPC or more: the
// daemons' ring calls during a share fell from ~190 to ~60, stabilization
// included). A lookup's own list already lags a join by a
// stabilize round or more (the joiner reaches its predecessors' successor
// lists only through their stabilize), so a span half a round old adds at
// most half a round to that. A list Locate may take from a span
// (spanReuse, 15 s) would be far older: a put from it would leave its
// block off a peer that joined since. Nor does a put trust a span deeper
// than a lookup's answerer trusts its own list (chord's ownsSuccessor:
// half a list must follow the key's successor): a join reaches a list one
// entry deeper per stabilize round, so a list's far end lags by many
// rounds where a lookup would have asked a node nearer the key.
func (n *Node) putReplicas(ctx context.Context, c cid.Cid) ([]p2ppeer.ID, error) {
	key := chord.KeyID(c.Hash())
	l := n.blocks.located
	if peers, _, ok := l.spanList(key, n.cfg.Replicas, n.cfg.Chord.SuccessorListLen/2, n.cfg.Chord.StabilizeInterval/2); ok {
		return peers, nil
	}
	peers, near, err := n.preference(ctx, key, n.cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("finding its replicas: %w", err)
	}
	l.addSpan(ringSpan{key: key, near: near, at: time.Now()})
	return peers, nil
}

// maxReplicaWrites bounds the replica writes a node has in flight, the
// background ones that puts no longer wait for included. Each holds its
// block's bytes: without a bound, a share that reads its file faster than
// the slowest replica stores it piles up blocks in memory (the daemon
// reading the file itself, a 256 MiB share's peak RSS rose by ~10 MB).
// 64 is 21 blocks at r = 3, more than share's 16 puts in flight.
const maxReplicaWrites = 64

// maxKeepWrites bounds the fetched blocks a node stores as their replica
// at once (keepReplica): 8 blocks' bytes held, a few disk writes in flight.
const maxKeepWrites = 8

// claimWrites takes k of the node's replica write tokens, waiting while
// too many writes are in flight; the writes hand them back as they end.
func (n *Node) claimWrites(ctx context.Context, k int) error {
	select {
	case n.blocks.claim <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err() // another put holds the turn, waiting for tokens
	}
	defer func() { <-n.blocks.claim }()
	for i := range k {
		select {
		case n.blocks.writes <- struct{}{}:
		case <-ctx.Done():
			for range i {
				<-n.blocks.writes
			}
			return ctx.Err()
		}
	}
	return nil
}

// Get fetches block c: from the local store if it holds it, else from its
// replicas. Each request goes to the replica expected to answer first given
// what is in flight to each and how fast each has been (replicaRates), so
// the many Gets of a fetch spread over the replicas and favour the faster
// ones; a hedged request goes to the next replica when the first is slow to
// answer. Bytes that do not match c are never returned; that replica is
// skipped. It implements share.Getter; the caller owns the bytes and may
// hand them to ReleaseBlock once done.
func (n *Node) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	return n.getMoving(ctx, c, nil)
}

// getMoving is Get calling moved, if set, whenever bytes of the block
// arrive from a replica: a transfer's progress finer than whole blocks,
// which on a slow link take minutes each (progressGetter).
func (n *Node) getMoving(ctx context.Context, c cid.Cid, moved func()) (_ []byte, err error) {
	local, _, lerr := n.readLocal(c)
	if lerr == nil {
		return local, nil
	}
	if errors.Is(lerr, blocks.ErrCorrupt) {
		n.blockCorrupt(lerr, "", "fetching it from another replica")
	}
	if n.cfg.GetTrace != nil {
		n.trace(GetEvent{CID: c, Step: GetBegan})
		defer func() { n.trace(GetEvent{CID: c, Step: GetEnded, Err: err}) }()
	}
	peers, located, err := n.replicasOf(ctx, c)
	if err != nil {
		return nil, err
	}
	n.trace(GetEvent{CID: c, Step: GetLocated, Peers: len(peers)})
	replica := slices.Contains(peers, n.h.ID())
	peers = slices.DeleteFunc(peers, func(p p2ppeer.ID) bool { return p == n.h.ID() })
	if len(peers) == 0 {
		return nil, fmt.Errorf("%w (no other replica)", ErrBlockNotFound)
	}

	asked := slices.Clone(peers)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	results := make(chan result, len(peers))
	// An internal node: small (about 9 KiB for 174 links) and on the
	// fetch's critical path, every leaf below it waits for it. Every
	// replica is asked at once, and the first answer taken: a few KiB
	// more, and the fastest round trip instead of a guess at it.
	raced := c.Type() == cid.DagProtobuf
	var errs []error
	// last is the latest request; seen, its progress at the previous
	// look (the rate since then).
	var last *request
	var seen transferProgress
	// launchTo asks peers[i]; launch, the one expected to answer first.
	launchTo := func(i int) {
		p := peers[i]
		peers = slices.Delete(peers, i, i+1)
		q := &request{peer: p, began: time.Now(), turned: make(chan struct{}, 1), moved: moved} // before start: requests to p started earlier are before it
		q.sending = func() { n.trace(GetEvent{CID: c, Step: GetSent, Peer: p}) }
		q.answering = func() { n.trace(GetEvent{CID: c, Step: GetAnswering, Peer: p}) }
		last, seen = q, transferProgress{}
		done := n.blocks.rates.start(p)
		out := len(asked) - len(peers) - len(errs) // requests out for c, this one included
		n.trace(GetEvent{CID: c, Step: GetAsked, Peer: p, Peers: out, Hedge: out > 1})
		go func() {
			data, err := n.fetchWatched(ctx, p, c, q)
			if err == nil {
				n.trace(GetEvent{CID: c, Step: GetReceived, Peer: p, Bytes: len(data)})
			} else {
				n.trace(GetEvent{CID: c, Step: GetDropped, Peer: p, Err: err})
			}
			done(time.Since(q.began), outcomeOf(data, err, ctx.Err() != nil, raced))
			results <- result{data, err}
		}()
	}
	launch := func() { launchTo(n.fastestReplica(peers)) }
	tried := len(peers)
	launch()
	if raced {
		for len(peers) > 0 {
			launch()
		}
	}
	// The latest request is looked at when its decision is due, not on
	// a fixed beat: one that is not answering once a hedge delay has
	// passed since it was asked or last given more time, or as it starts
	// answering (turned; also when a retry makes it stop); one that is
	// answering, mid-fetch, once it
	// has been silent for silentWaits delays, or as the fetch's endgame
	// begins; in the endgame, as often as keepReceiving says (the rate
	// rule weighs its progress against the other replicas').
	var delay time.Duration
	var due time.Time
	var graced bool
	var dialWaits int
	hedge := time.NewTimer(time.Hour)
	defer hedge.Stop()
	turned, endgame := last.turned, share.EndgameBegun(ctx)
	wait := func(d time.Duration) {
		due = time.Now().Add(d)
		hedge.Reset(d)
	}
	watchLatest := func() {
		delay, graced, dialWaits, turned = n.hedgeDelay(last.peer), false, 0, last.turned
		wait(delay)
	}
	// look judges the latest request: left alone (and when to look
	// again), or another replica asked.
	look := func() {
		if len(peers) == 0 {
			return
		}
		now := time.Now()
		if tp, ok := last.progress(now); ok {
			// A replica that is sending the block is working; a
			// second one would mostly share the same downlink and
			// double the bytes (on a slow link, every block). Ask
			// another only when it would deliver the whole block
			// well before this one ends at its rate so far (a slow
			// holder while a fast one idles: the fetch's tail), or
			// when none of the answer has come for a long while.
			again, to, ok := n.blocks.rates.keepReceiving(peers, tp, seen, delay, share.Endgame(ctx))
			seen = tp
			if ok {
				hedge.Reset(again)
				return
			}
			if to >= 0 {
				launchTo(to)
				watchLatest()
				return
			}
		} else if now.Before(due) {
			hedge.Reset(due.Sub(now))
			return
		} else if last.dialing() && dialWaits < maxDialWaits {
			// Its connection is being set up: on a slow link the
			// handshake alone takes seconds, and another replica
			// asked now would most likely need one too. A dial
			// that hangs is bounded by maxDialWaits more delays.
			dialWaits++
			wait(delay)
			return
		} else if n.blocks.rates.startedBefore(last.peer, last.began) {
			// Its answer waits behind its answers to our earlier
			// requests, on the same connection: on a slow link a
			// whole block each. Not a stall while those are out;
			// once they are over it gets the usual two delays. A
			// replica that never answers is bounded by them: each
			// ends, answered, hedged past once silent, or timed out.
			graced = false
			wait(delay)
			return
		} else if !graced {
			// No answer yet is not yet a stall: on a busy machine
			// the first bytes of a live replica's answer are often
			// read later than a few round trips (both ends wait for
			// a CPU). One more delay before asking another; a
			// stalled replica costs twice the delay, still a
			// fraction of a second.
			graced = true
			wait(delay)
			return
		}
		launch()
		watchLatest()
	}
	watchLatest()
	for len(errs) < tried {
		select {
		case r := <-results:
			if r.err == nil {
				if replica {
					n.keepReplica(ctx, c, r.data)
				}
				return r.data, nil
			}
			errs = append(errs, r.err)
			if len(peers) > 0 {
				launch()
				watchLatest()
			}
		case <-hedge.C:
			look()
		case <-turned:
			look()
		case <-endgame:
			endgame = nil
			look()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	listErr := &ReplicaError{Op: "get", CID: c, Tried: tried, Need: 1, Errs: errs}
	if !listErr.NotFound() && !located {
		return nil, listErr
	}
	data, err := n.getPastList(ctx, c, asked, listErr, moved)
	if err == nil && replica {
		n.keepReplica(ctx, c, data)
	}
	return data, err
}

// blockCorrupt tells the node's events that a block of its store was
// found corrupt on disk (err, blocks.ErrCorrupt, which names the block
// and whether the store removed it) and next, what becomes of the request
// that found it; peer is the one that asked, if another. Once per copy
// found, without a limit: the store removes the copy, so that a read
// after it finds the block missing, not corrupt again, and each event is
// a block lost here.
func (n *Node) blockCorrupt(err error, peer p2ppeer.ID, next string) {
	e := api.NodeEvent{Kind: api.EventBlockCorrupt, Message: err.Error() + "; " + next}
	if peer != "" {
		e.Peer = peer.String()
	}
	n.Publish(e)
}

// keepReplica stores block c, just fetched (and verified), when this peer
// is one of its replicas: otherwise repair, or the sharer's write still
// under way, moves the same block over this peer's link again (on a slow
// link that doubled a fetch's bytes). It goes through the store's own put
// (its hash check and its byte limit) in the background, up to
// maxKeepWrites at once; past that the Get waits for one to end, at the
// disk's pace. A copy that cannot be stored (a full store, a disk error)
// costs the fetch nothing: repair sees to it as before.
func (n *Node) keepReplica(ctx context.Context, c cid.Cid, data []byte) {
	st := n.cfg.Store
	if st == nil || st.Has(c) {
		return
	}
	select {
	case n.blocks.keeping <- struct{}{}:
	case <-ctx.Done():
		return
	case <-n.life.Done():
		return
	}
	// The caller owns data and may release it once Get returns.
	kept := getBuf(len(data))
	copy(kept, data)
	n.bg.Go(func() {
		defer func() { <-n.blocks.keeping }()
		_ = st.Put(c, kept)
		putBuf(kept)
	})
}

// outcomeOf is how a request for a block ended: with data, or err;
// cancelled, after its Get no longer wanted it, raced if every replica
// was asked at once.
func outcomeOf(data []byte, err error, cancelled, raced bool) fetchOutcome {
	switch {
	case err == nil && len(data) < minRateSample:
		return fetchSmall
	case err == nil:
		return fetchOK
	case cancelled && raced:
		return fetchRaced
	case cancelled:
		return fetchOutrun
	case errors.Is(err, ErrBlockNotFound):
		return fetchLacked
	}
	return fetchFailed
}

// getPastList asks the peers just past c's preference list, one at a time,
// once every replica said it lacks c. Right after peers join, until repair
// moves the block to them, its copies are on the old replicas that the new
// peers pushed out of the list (with r new peers in a row, on none of the
// list); a hinted copy sits past the list too. r peers past it cover up to
// r joins in a row. A block that is nowhere costs those r requests more.
// It is also where a Get goes once every peer of a list Locate gave failed
// however: that list may be from before its peers left (a span outlives
// the fetch that made it), and the fresh one holds those that took their
// blocks over. moved is getMoving's.
func (n *Node) getPastList(ctx context.Context, c cid.Cid, asked []p2ppeer.ID, listErr *ReplicaError, moved func()) ([]byte, error) {
	more, err := n.preferenceList(ctx, chord.KeyID(c.Hash()), 2*n.cfg.Replicas)
	if err != nil {
		return nil, listErr
	}
	errs, tried := listErr.Errs, listErr.Tried
	for _, p := range more {
		if p == n.h.ID() || slices.Contains(asked, p) {
			continue
		}
		data, err := n.fetchWatched(ctx, p, c, &request{peer: p, began: time.Now(), moved: moved})
		if err == nil {
			return data, nil
		}
		errs = append(errs, err)
		tried++
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &ReplicaError{Op: "get", CID: c, Tried: tried, Need: 1, Errs: errs}
}

// fastestReplica is the index of the peer whose next block should arrive
// first (replicaRates.pick).
func (n *Node) fastestReplica(peers []p2ppeer.ID) int {
	return n.blocks.rates.pick(peers, n.ringRTT)
}

// ringRTT is the ring's smoothed round trip to p, if it has one.
func (n *Node) ringRTT(p p2ppeer.ID) (time.Duration, bool) { return n.ring.RTT(string(p)) }

// hedgeDelay is how long to wait for p, just asked, before asking another
// replica too: a few round trips plus the time a block takes at a modest
// rate, so a healthy peer is rarely doubled up on and a stalled one costs
// little; or, once p's speed is measured, twice the wait it predicts for
// this request, so that a slow link's blocks are not all sent twice.
func (n *Node) hedgeDelay(p p2ppeer.ID) time.Duration {
	d := 500 * time.Millisecond
	if rtt, ok := n.ringRTT(p); ok {
		d = 3*rtt + blockAtModestRate
	}
	if want, ok := n.blocks.rates.expected(p); ok {
		d = max(d, 2*want)
	}
	return d
}

// maxDialWaits bounds the hedge delays a request waits for its connection
// before another replica is asked: a handshake over a slow link takes a
// few, and a dial to a peer that is gone behind a network that drops
// packets hangs until the dial timeout, so each wait delays the fetch's
// way around a departed replica (4 delays, not 2, with two waits).
const maxDialWaits = 2

// ReplicaError says how a put or get fared with a block's replicas. It
// matches the replicas' errors with errors.Is (ErrStoreFull,
// ErrBlockNotFound, ...), so callers can tell "nobody has it" from "the
// disks are full". Its text leaves CID to the caller to name.
type ReplicaError struct {
	Op    string // "put" or "get"
	CID   cid.Cid
	OK    int // acknowledgements (put)
	Tried int
	Need  int
	// Pending is the writes still under way when the put gave up, its
	// quorum out of reach (put).
	Pending int
	Errs    []error
}

func (e *ReplicaError) Error() string {
	if e.Op == "get" {
		if e.NotFound() {
			// The usual answer for a CID nobody shared: the replicas'
			// identical "not found"s would only bury it.
			return fmt.Sprintf("not found: none of the %d peers asked has it", e.Tried)
		}
		return fmt.Sprintf("none of %d replicas served it: %s", e.Tried, oneLine(e.Errs))
	}
	if e.Pending > 0 {
		return fmt.Sprintf("%d of %d replicas acknowledged (%d needed, out of reach: %d failed, %d still writing): %s",
			e.OK, e.Tried, e.Need, len(e.Errs), e.Pending, reasons(e.Errs))
	}
	return fmt.Sprintf("%d of %d replicas acknowledged (%d needed): %s", e.OK, e.Tried, e.Need, reasons(e.Errs))
}

// replicaFailure is a replica's write that failed: the peer, and why.
type replicaFailure struct {
	peer p2ppeer.ID
	err  error
}

func (f *replicaFailure) Error() string {
	return "peer " + shortPeer(string(f.peer)) + ": " + cause(f.err)
}

func (f *replicaFailure) Unwrap() error { return f.err }

// reasons is errs on one line, the replicas that failed for the same
// reason named together ("peers A, B: block store full").
func reasons(errs []error) string {
	var order []string
	peers := map[string][]string{}
	for _, err := range errs {
		why, who := err.Error(), ""
		if f, ok := err.(*replicaFailure); ok {
			why, who = cause(f.err), shortPeer(string(f.peer))
		}
		if _, seen := peers[why]; !seen {
			order = append(order, why)
			peers[why] = nil
		}
		if who != "" && !slices.Contains(peers[why], who) {
			peers[why] = append(peers[why], who)
		}
	}
	parts := make([]string, 0, len(order))
	for _, why := range order {
		switch who := peers[why]; len(who) {
		case 0:
			parts = append(parts, why)
		case 1:
			parts = append(parts, "peer "+who[0]+": "+why)
		default:
			parts = append(parts, "peers "+strings.Join(who, ", ")+": "+why)
		}
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes the replicas' errors to errors.Is and errors.As.
func (e *ReplicaError) Unwrap() []error { return e.Errs }

// NotFound reports whether no replica had the block (as opposed to replicas
// being unreachable): the answer to "is this CID on the ring?".
func (e *ReplicaError) NotFound() bool {
	for _, err := range e.Errs {
		if !errors.Is(err, ErrBlockNotFound) {
			return false
		}
	}
	return len(e.Errs) > 0
}
