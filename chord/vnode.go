package chord

import (
	"hash/fnv"
	"slices"
	"sync"
)

// vnode is the routing state of one ring position. Its mutex guards only this
// state and is never held across a network call: the Node reads a snapshot,
// talks to the network, then writes the outcome back.
type vnode struct {
	self Ref

	mu           sync.Mutex
	pred         Ref
	predFailures int   // consecutive missed pings of pred
	predHeard    bool  // pred called us since the last predecessor check
	predSilent   int   // predecessor checks in a row pred was not heard from
	predSuspect  bool  // ping pred at the next check, heard from or not
	succs        []Ref // successor list, closest first, no self, no duplicates
	succMisses   int   // stabilizations in a row succs[0] did not answer in time
	wrapped      bool  // succs went all the way round the ring back to us
	succFrom     ID    // the successor whose neighbours we last copied ...
	succDigest   uint64
	succPred     Ref        // ... and the predecessor it reported
	fingers      [Bits]*Ref // fingers[k]: a node in [self+2^k, self+2^(k+1)), or successor(self+2^k); nil: unknown
	nextFinger   int
	fingerVisits int // fingers checked, to refresh proximity choices now and then

	// Adaptive intervals: rounds each task skips while nothing changes.
	stab, fix backoff
	// changedTo are vnodes to send Changed at our next stabilization
	// round: our predecessor when our list changed, a former predecessor
	// when a node joined between it and us.
	changedTo []Ref
}

// backoff is one task's adaptive interval, counted in its rounds: after a
// run that found nothing changed the task skips twice as many rounds as
// before, up to max-1; a change makes it run every round again.
type backoff struct {
	shift int // the task runs every 2^shift rounds
	wait  int // rounds still to skip
}

func (b *backoff) skip() bool {
	if b.wait > 0 {
		b.wait--
		return true
	}
	return false
}

func (b *backoff) ran(changed bool, max int) {
	switch {
	case changed:
		b.shift = 0
	case 2<<b.shift <= max:
		b.shift++
	}
	b.wait = 1<<b.shift - 1
}

func (b *backoff) reset() { b.shift, b.wait = 0, 0 }

func newVnode(self Ref) *vnode { return &vnode{self: self} }

// successor is the first live successor, or self when the vnode knows no
// other node (alone on its ring).
func (v *vnode) successor() Ref {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) == 0 {
		return v.self
	}
	return v.succs[0]
}

func (v *vnode) predecessor() Ref {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pred
}

// setSuccessors installs s and, after it, the list s reported (its own
// successors), trimmed to max entries and cut where it comes back to us.
// sPred and digest are what s reported of its neighbourhood. It reports
// whether the list changed.
func (v *vnode) setSuccessors(s Ref, tail []Ref, sPred Ref, digest uint64, max int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	list := make([]Ref, 0, max)
	seen := map[ID]bool{}
	wrapped := false
	for _, r := range append([]Ref{s}, tail...) {
		if r.ID == v.self.ID && len(list) < max {
			wrapped = true
		}
		// Reaching ourselves means the list went all the way round a small
		// ring; what follows would only repeat it (and keep repeating a dead
		// node's entry forever, each node copying it from the next).
		if len(list) == max || r.ID == v.self.ID {
			break
		}
		if r.IsZero() || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		list = append(list, r)
	}
	changed := !slices.EqualFunc(list, v.succs, func(a, b Ref) bool { return a.ID == b.ID }) || wrapped != v.wrapped
	v.succs, v.wrapped = list, wrapped
	v.succMisses = 0
	v.succFrom, v.succDigest, v.succPred = s.ID, digest, sPred
	if changed {
		v.listChanged()
	}
	return changed
}

// listChanged queues a Changed message for the predecessor, whose list is
// ours shifted by one. Called with v.mu held.
func (v *vnode) listChanged() {
	v.queueChanged(v.pred)
}

func (v *vnode) queueChanged(r Ref) {
	if r.IsZero() || r.ID == v.self.ID || slices.ContainsFunc(v.changedTo, func(x Ref) bool { return x.ID == r.ID }) {
		return
	}
	v.changedTo = append(v.changedTo, r)
}

// takeChanged returns and clears the queued Changed messages.
func (v *vnode) takeChanged() []Ref {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.changedTo
	v.changedTo = nil
	return out
}

// knownDigest is the digest to send when asking s for its neighbours: the one
// it gave last time, if s is still the successor whose list we hold.
func (v *vnode) knownDigest(s Ref) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.succFrom == s.ID && len(v.succs) > 0 && v.succs[0].ID == s.ID {
		return v.succDigest
	}
	return 0
}

// unchanged returns what s reported last time (its predecessor, and the
// successors after it in our list), used when a stabilization answer says
// nothing changed.
func (v *vnode) unchanged(s Ref) (pred Ref, tail []Ref) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) > 0 && v.succs[0].ID == s.ID && v.succFrom == s.ID {
		tail := slices.Clone(v.succs[1:])
		if v.wrapped {
			tail = append(tail, v.self) // keeps the list marked as wrapped
		}
		return v.succPred, tail
	}
	return Ref{}, nil
}

func (v *vnode) neighbors() Neighbors {
	v.mu.Lock()
	defer v.mu.Unlock()
	succs := v.succs
	if len(succs) == 0 {
		succs = []Ref{v.self}
	}
	return Neighbors{Predecessor: v.pred, Successors: slices.Clone(succs), Digest: digestOf(v.pred, succs)}
}

// notified applies the notify rule: n becomes the predecessor if it is closer
// than the current one. A vnode alone on its ring also takes n as successor,
// which joins a two-node ring in one step. A call from the predecessor shows
// it alive; a node that believes it precedes us while our predecessor has
// gone quiet suggests the predecessor died, so it is checked next round.
func (v *vnode) notified(n Ref) {
	if n.ID == v.self.ID {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case n.ID == v.pred.ID:
		v.predHeard = true
	case v.pred.IsZero() || Between(v.pred.ID, n.ID, v.self.ID):
		// The former predecessor's successor is now n: tell it.
		v.queueChanged(v.pred)
		v.pred, v.predFailures, v.predHeard, v.predSilent = n, 0, true, 0
	case !v.predHeard:
		v.predSuspect = true
	}
	if len(v.succs) == 0 {
		v.succs = []Ref{n}
		v.stab.reset()
	}
}

// predecessorToCheck returns the predecessor if it should be pinged now:
// it was not heard from in more than silentLimit checks, it failed the last
// ping, or it is suspected dead.
func (v *vnode) predecessorToCheck(silentLimit int) (Ref, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pred.IsZero() {
		return Ref{}, false
	}
	if v.predHeard && !v.predSuspect {
		v.predHeard, v.predSilent, v.predFailures = false, 0, 0
		return v.pred, false
	}
	v.predHeard = false
	v.predSilent++
	if v.predSuspect || v.predFailures > 0 || v.predSilent > silentLimit {
		v.predSuspect = false
		return v.pred, true
	}
	return v.pred, false
}

// predecessorFailuresToClear is how many pings in a row the predecessor
// may miss before it is taken for dead.
const predecessorFailuresToClear = 2

// predecessorAnswered records whether a ping of predecessor p succeeded.
func (v *vnode) predecessorAnswered(p Ref, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pred.ID != p.ID {
		return // replaced meanwhile
	}
	if ok {
		v.predFailures = 0
		return
	}
	v.predFailures++
	if v.predFailures >= predecessorFailuresToClear {
		v.pred, v.predFailures = Ref{}, 0
	}
}

// suspect reacts to a failed call to the peer at addr: if it runs our
// successor or predecessor, check that neighbour next round rather than
// after a backed-off interval.
func (v *vnode) suspect(addr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) > 0 && v.succs[0].Addr == addr {
		v.stab.reset()
	}
	if v.pred.Addr == addr {
		v.predSuspect = true
	}
}

// stabilizeDue and fixDue report whether this round's stabilization or
// finger check runs, counting down the backed-off rounds; stabilized and
// fixed record a run and whether it changed anything.
func (v *vnode) stabilizeDue() bool               { return v.due(&v.stab) }
func (v *vnode) stabilized(changed bool, max int) { v.ran(&v.stab, changed, max) }
func (v *vnode) fixDue() bool                     { return v.due(&v.fix) }
func (v *vnode) fixed(changed bool, max int)      { v.ran(&v.fix, changed, max) }

func (v *vnode) due(b *backoff) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !b.skip()
}

func (v *vnode) ran(b *backoff, changed bool, max int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b.ran(changed, max)
}

// changedNearby serves a Changed message: stabilize next round.
func (v *vnode) changedNearby() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stab.reset()
}

// owns reports whether key is in (pred, self]; false while the
// predecessor is unknown, as then nobody can tell.
func (v *vnode) owns(key ID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) == 0 {
		return true // alone: every key is ours
	}
	return !v.pred.IsZero() && BetweenRightIncl(v.pred.ID, key, v.self.ID)
}

// setFingers records f as finger k, and as every later finger whose start
// falls in (self, f] (f is the successor of those starts too), and moves on
// to the finger after them. It reports whether finger k changed.
func (v *vnode) setFingers(k int, f Ref) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.fingers[k]
	changed := (old == nil) != (f.ID == v.self.ID) || (old != nil && old.ID != f.ID)
	var ref *Ref
	if f.ID != v.self.ID {
		ref = &f
	}
	j := k
	for ; j < Bits; j++ {
		if j > k && !BetweenRightIncl(v.self.ID, v.self.ID.AddPow2(j), f.ID) {
			break
		}
		v.fingers[j] = ref
	}
	if j >= Bits {
		j = 0
	}
	v.nextFinger = j
	return changed
}

// finger returns finger k, if known, and whether a proximity choice is due
// for a refresh (every proximityRefresh-th check of a finger).
func (v *vnode) finger(k int) (f Ref, ok, refresh bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fingerVisits++
	refresh = v.fingerVisits%proximityRefresh == 0
	if p := v.fingers[k]; p != nil {
		return *p, true, refresh
	}
	return Ref{}, false, refresh
}

func (v *vnode) skipFinger(k int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextFinger = (k + 1) % Bits
}

func (v *vnode) fingerToFix() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.nextFinger
}

// forget removes every reference to nodes matching dead from the routing state.
func (v *vnode) forget(dead func(Ref) bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.pred.IsZero() && dead(v.pred) {
		v.pred = Ref{}
	}
	if n := len(v.succs); n > 0 {
		v.succs = slices.DeleteFunc(v.succs, dead)
		v.wrapped = v.wrapped && len(v.succs) == n
		if len(v.succs) != n {
			v.succMisses = 0
			// The successor's answer "unchanged" would keep the hole.
			v.succDigest = 0
			v.listChanged()
			v.stab.reset()
		}
	}
	for k, f := range v.fingers {
		if f != nil && dead(*f) {
			v.fingers[k] = nil
		}
	}
}

// dropFingers clears every finger on the peer at addr.
func (v *vnode) dropFingers(addr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, f := range v.fingers {
		if f != nil && f.Addr == addr {
			v.fingers[k] = nil
		}
	}
}

// successorFailuresToDrop is how many stabilizations in a row the
// successor may leave without an answer in time before it is dropped.
const successorFailuresToDrop = 2

// successorMissed records that successor s did not answer a stabilization
// in time, and reports whether it has now missed too many in a row.
func (v *vnode) successorMissed(s Ref) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) == 0 || v.succs[0].ID != s.ID {
		return false // replaced meanwhile
	}
	v.succMisses++
	if v.succMisses < successorFailuresToDrop {
		return false
	}
	v.succMisses = 0
	return true
}

// hasRemoteSuccessor reports whether the successor list names a vnode of
// another peer.
func (v *vnode) hasRemoteSuccessor() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.ContainsFunc(v.succs, func(r Ref) bool { return r.Addr != v.self.Addr })
}

// dropSuccessor removes s from the successor list.
func (v *vnode) dropSuccessor(s Ref) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.succs = slices.DeleteFunc(v.succs, func(r Ref) bool { return r.ID == s.ID })
	v.succMisses = 0
	v.succDigest = 0  // the next answer must be whole, not "unchanged"
	v.wrapped = false // a list with a hole no longer names the whole ring
	v.listChanged()
}

// candidates returns up to max known nodes on the arc (self, key), closest to
// the key first: the next hops a lookup can take from here. Fingers read
// from the top down and successors read from the last one back are each
// already in that order, so one merge gives it without sorting. predKnown
// reports that the key's predecessor is in the successor list, in which
// case every entry before the key is offered, whatever max.
func (v *vnode) candidates(key ID, max int) (out []Ref, predKnown bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := len(v.succs) // v.succs[:s] are the successors before key
	for s > 0 && !Between(v.self.ID, v.succs[s-1].ID, key) {
		s--
	}
	predKnown = s < len(v.succs)
	if predKnown {
		// The key's predecessor is in the list: offer every entry before
		// the key, or a run of dead ones just before it (no one noticed
		// yet) would hide the live predecessor behind them.
		max = len(v.succs)
	}
	k := Bits - 1
	nextFinger := func() *Ref {
		for ; k >= 0; k-- {
			if f := v.fingers[k]; f != nil && Between(v.self.ID, f.ID, key) {
				return f
			}
		}
		return nil
	}
	f := nextFinger()
	for len(out) < max && (f != nil || s > 0) {
		var next Ref
		if f != nil && (s == 0 || Between(v.succs[s-1].ID, f.ID, key)) {
			next = *f
			for k >= 0 && v.fingers[k] == f {
				k--
			}
			f = nextFinger()
		} else {
			next = v.succs[s-1]
			s--
		}
		if n := len(out); n == 0 || out[n-1].ID != next.ID {
			out = append(out, next)
		}
	}
	return out, predKnown
}

// candidatesAfter appends to out up to max of v's known nodes on the arc
// (from, key), from being on (v, key): what a sibling vnode adds to from's
// own candidates. Fingers are ordered by distance, so only the indices
// between from's and the key's high bits can hold one on the arc, and the
// successor list is read back from its end until it reaches from: a few
// entries each, not Bits, and no allocation but out's.
func (v *vnode) candidatesAfter(from, key ID, max int, out []Ref) []Ref {
	v.mu.Lock()
	defer v.mu.Unlock()
	added := 0
	var last *Ref
	for k := highBit(Distance(v.self.ID, key)); k >= 0 && added < max; k-- {
		f := v.fingers[k]
		if f == nil || f == last {
			continue
		}
		last = f
		switch {
		case Between(from, f.ID, key):
			out = append(out, *f)
			added++
		case !Between(v.self.ID, f.ID, key):
			continue // past the key
		default:
			k = -1 // at or behind from: so are all lower fingers
		}
	}
	added = 0
	for i := len(v.succs) - 1; i >= 0 && added < max; i-- {
		s := v.succs[i]
		if Between(from, s.ID, key) {
			out = append(out, s)
			added++
		} else if Between(v.self.ID, s.ID, key) {
			break // behind from; so is every earlier entry
		}
	}
	return out
}

// ownsSuccessor reports whether the vnode can name key's successor itself:
// key falls between it and one of its successors. Using the whole list, not
// only the first entry, saves the last hops of most lookups and answers
// correctly when the key's predecessor has died and no one has noticed yet.
// An answer from deep in the list must still hold want successors, or half
// a list if want is more: fewer, and a few dead entries could leave the
// asker with no live one; more, and only the key's immediate predecessor
// could answer, a dead end if it has failed. A list that went all the way
// round a small ring continues with ourselves and the entries before the
// key, so any answer from it can be complete.
func (v *vnode) ownsSuccessor(key ID, want int) ([]Ref, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.succs) == 0 {
		// Alone: every key is ours.
		return []Ref{v.self}, true
	}
	want = max(want, 1)
	wrapped := v.wrapped
	need := min(want, max(len(v.succs)/2, 1))
	prev := v.self.ID
	for i, s := range v.succs {
		if !BetweenRightIncl(prev, key, s.ID) {
			prev = s.ID
			continue
		}
		if i > 0 && !wrapped && len(v.succs)-i < need {
			return nil, false
		}
		out := slices.Clone(v.succs[i:min(i+want, len(v.succs))])
		if wrapped && len(out) < want {
			out = append(out, v.self)
			out = append(out, v.succs[:min(i, want-len(out))]...)
		}
		return out, true
	}
	return nil, false
}

// State is a copy of a vnode's routing state, for status pages and tests.
type State struct {
	Self        Ref
	Predecessor Ref
	Successors  []Ref
	// Wrapped: the successor list goes all the way round a small ring.
	Wrapped bool
	// Fingers lists each distinct finger once, with the lowest finger index
	// (k: the entry covers self + 2^k) it serves.
	Fingers []Finger
}

// Finger is one distinct entry of a finger table.
type Finger struct {
	K    int
	Node Ref
}

func (v *vnode) state() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := State{Self: v.self, Predecessor: v.pred, Successors: slices.Clone(v.succs), Wrapped: v.wrapped}
	var last *Ref
	for k, f := range v.fingers {
		if f != nil && f != last {
			st.Fingers = append(st.Fingers, Finger{K: k, Node: *f})
		}
		last = f
	}
	return st
}

// digestOf summarizes a neighbourhood: the predecessor and successor list.
func digestOf(pred Ref, refs []Ref) uint64 {
	h := fnv.New64a()
	h.Write(pred.ID[:])
	for _, r := range refs {
		h.Write(r.ID[:])
	}
	d := h.Sum64()
	if d == 0 {
		d = 1 // 0 means "no digest known"
	}
	return d
}
