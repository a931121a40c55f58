package peer

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"chordshare/peer/api"
)

// putBudget is the most bytes of buffers a node holds for the PUT
// payloads it is receiving (putRoom). Without a bound, the streams the
// resource manager allows (ringLimits: 256 per peer, 4,096 in all) could
// each hold a 2 MiB block for up to receiveLimit (a slowloris), 8 GiB.
// 128 MiB is 512 of the 256 KiB leaves share makes, what 24 peers sharing
// at once have in flight to one replica (a node writes at most
// maxReplicaWrites blocks at once, a put's to distinct peers: 21 to one at
// r = 3), or 64 of the largest blocks. The blocks a node fetches need no
// such bound: how many of them it receives at once is its own choice (a
// fetch's window and hedges), not its peers'.
const putBudget = 128 << 20

// A PUT's buffer grows as its bytes arrive, so that it holds room for what
// its sender has sent rather than for what its header declares: it starts
// at putFirst, what a sender writes with the header (headFrame), and grows
// putGrowth-fold each time it is full (readPut), up to the block's size.
// It thus holds at most putGrowth times the bytes that came, or putFirst.
// Growth copies: a 256 KiB leaf goes through 4 and 32 KiB buffers, 36 KiB
// copied, a seventh of a copy of its bytes; doubling would copy 252 KiB,
// about as much as receiving them once more (BenchmarkReadPut).
const (
	putFirst  = headFrame
	putGrowth = 8
)

// putSilence is how long a PUT may go without bytes before a PUT that has
// no room may evict it (makeRoomLocked). receiving cuts a silent PUT off
// only after blockSilence, or the old whole-transfer bound: an honest
// paced sender yields its turn behind a long message for that long. Such a
// sender loses its place only when the room is full, and puts the block
// elsewhere, as a refused one does.
const putSilence = blockStreamBase

// putRoom is a node's room for the PUTs it is receiving: a budget of
// buffer bytes (putBudget), charged as each PUT's bytes arrive, and the
// PUTs that hold it.
//
// What a peer can still do to make a node refuse honest PUTs: hold its
// room, which now takes bytes. A new PUT starts only if its whole block
// fits, and a buffer holds at most putGrowth times what came (or
// putFirst), so holding all 128 MiB takes 16 MiB sent (64 streams, each
// 256 KiB into a 2 MiB block); keeping it takes a byte on each
// stream every putSilence, or a new PUT evicts it, and new PUTs every
// receiveLimit (43 min), which ends the slowest. That is about 16 MiB per
// 43 min, 6.5 KB/s, from peers that need not be the same. Headers alone,
// on the 4,096 streams the resource manager admits, hold 16 MiB, for
// putSilence once room runs short. Before, 64 headers (6 KB) held it all
// for 522 s each: 11 B/s.
//
// Its own counter rather than the stream scopes' ReserveMemory in libp2p's
// resource manager: those scopes share their limits with yamux's receive
// windows and scale with the machine's memory (ringLimits builds on
// AutoScale), so whether a PUT fit would depend on the connections'
// windows and the host, and mocknet's streams have no scope that limits
// anything.
type putRoom struct {
	limit int64

	mu      sync.Mutex
	held    int64
	puts    map[*putReception]struct{} // those still reading their block
	refused int64                      // PUTs refused, at their header or as they grew
	evicted int64                      // PUTs reset for a new one, silent for putSilence
	// events, if set, is told of PUTs refused and evicted: at most one
	// event each putEventGap, with what the ones it skipped turned away
	// (unrefused, unevicted) told putEventGap after the last (flush, set
	// while they wait), so a burst's tail is told even if no PUT is turned
	// away after it; told, when it last was.
	events               *eventBus
	unrefused, unevicted int64
	told                 time.Time
	flush                *time.Timer
}

// putEventGap spaces the events of PUTs turned away, so that a flood of
// them does not push every other event out of the node's log.
const putEventGap = time.Minute

func newPutRoom(limit int64, events *eventBus) *putRoom {
	return &putRoom{limit: limit, puts: map[*putReception]struct{}{}, events: events}
}

// putReception is one PUT being received and the room it holds.
type putReception struct {
	room *putRoom
	held int64 // room.mu
	// last is when its bytes last came, in Unix nanoseconds: set by its
	// reader as they come, without the room's lock.
	last atomic.Int64
	// evict resets its stream, for a PUT that needs its room; evicted is
	// set once it has been (room.mu).
	evict   func()
	evicted bool
}

// errNoRoom ends a PUT whose buffer could not grow (the room is held by
// PUTs whose bytes keep coming), or that a new PUT evicted.
var errNoRoom = errors.New("no room to receive the block")

// admit starts receiving a PUT of size bytes if its whole buffer (its
// size, rounded up to the pool's power of two) fits in the room now,
// evicting silent PUTs if it must, and takes room for its first buffer;
// nil if it does not fit, the PUT refused. A PUT that starts with the room
// to itself thus always has room to finish. evict resets the
// PUT's stream, should a later one evict it.
func (r *putRoom) admit(size int, evict func()) *putReception {
	r.mu.Lock()
	now := time.Now()
	first, whole := bufCap(min(size, putFirst)), bufCap(size)
	evicted := r.makeRoomLocked(whole, now, nil)
	var rec *putReception
	if r.held+whole <= r.limit {
		rec = &putReception{room: r, evict: evict}
		rec.last.Store(now.UnixNano())
		r.held += first
		rec.held = first
		r.puts[rec] = struct{}{}
	}
	r.turnedAwayUnlock(now, rec == nil, evicted)
	return rec
}

// turnedAwayUnlock counts a PUT refused, if refused, and the ones evicted,
// unlocks the room, resets the evicted ones' streams and tells the node's
// events, if it is time.
func (r *putRoom) turnedAwayUnlock(now time.Time, refused bool, evicted []*putReception) {
	if refused {
		r.refused++
		r.unrefused++
	}
	r.evicted += int64(len(evicted))
	r.unevicted += int64(len(evicted))
	e := r.eventLocked(now)
	r.mu.Unlock()
	for _, p := range evicted {
		p.evict()
	}
	if e != nil {
		r.events.publish(*e)
	}
}

// eventLocked returns the event that tells the PUTs turned away since the
// last one, if there are some and it is time; if it is not yet, it has
// flushEvents tell them when it is.
func (r *putRoom) eventLocked(now time.Time) *api.NodeEvent {
	if r.events == nil || r.unrefused+r.unevicted == 0 {
		return nil
	}
	if wait := r.told.Add(putEventGap).Sub(now); !r.told.IsZero() && wait > 0 {
		if r.flush == nil {
			r.flush = time.AfterFunc(wait, r.flushEvents)
		}
		return nil
	}
	e := &api.NodeEvent{Kind: api.EventPutsRefused, Count: r.unrefused + r.unevicted,
		Message: fmt.Sprintf("puts turned away: %d refused for want of room, %d evicted after %v without bytes; their senders put the blocks elsewhere; %s of %s held for puts being received",
			r.unrefused, r.unevicted, putSilence, FormatSize(r.held), FormatSize(r.limit))}
	r.unrefused, r.unevicted, r.told = 0, 0, now
	return e
}

// flushEvents tells the PUTs turned away since the last event, which
// waited for putEventGap to pass.
func (r *putRoom) flushEvents() {
	r.mu.Lock()
	r.flush = nil
	e := r.eventLocked(time.Now())
	r.mu.Unlock()
	if e != nil {
		r.events.publish(*e)
	}
}

// close stops a pending flushEvents: the node is closing.
func (r *putRoom) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flush != nil {
		r.flush.Stop()
		r.flush = nil
	}
}

// makeRoomLocked evicts PUTs silent for putSilence, the longest silent
// first, until n more bytes fit, and returns them, for their streams to
// be reset; never except, and none if evicting them all would not make
// room: a PUT refused anyway leaves them be. Their room is taken back at
// once, before their readers notice the reset and drop their buffers: for
// that moment the buffers can exceed the limit by theirs.
func (r *putRoom) makeRoomLocked(n int64, now time.Time, except *putReception) (evicted []*putReception) {
	if r.held+n <= r.limit {
		return nil
	}
	type silent struct {
		p    *putReception
		last int64
	}
	var silents []silent
	var theirs int64
	for p := range r.puts {
		if last := p.last.Load(); p != except && now.Sub(time.Unix(0, last)) >= putSilence {
			silents = append(silents, silent{p, last})
			theirs += p.held
		}
	}
	if r.held-theirs+n > r.limit {
		return nil
	}
	slices.SortFunc(silents, func(a, b silent) int { return cmp.Compare(a.last, b.last) })
	for _, v := range silents {
		if r.held+n <= r.limit {
			break
		}
		v.p.evicted = true
		v.p.dropLocked()
		evicted = append(evicted, v.p)
	}
	return evicted
}

// grow takes n more bytes of room for rec, evicting silent PUTs if it
// must, and reports whether it got them. A PUT that did not is refused,
// and holds no room from then on.
func (rec *putReception) grow(n int64) bool {
	r := rec.room
	r.mu.Lock()
	if rec.evicted {
		r.mu.Unlock()
		return false
	}
	now := time.Now()
	evicted := r.makeRoomLocked(n, now, rec)
	ok := r.held+n <= r.limit
	if ok {
		r.held += n
		rec.held += n
	} else {
		// Its room is given back now, not when its handler gets to
		// release it: the PUTs growing at the same moment may need it.
		rec.dropLocked()
	}
	r.turnedAwayUnlock(now, !ok, evicted)
	return ok
}

// received ends the reading: the PUT can no longer be evicted, and keeps
// its room until release. It reports false if it was evicted meanwhile.
func (rec *putReception) received() bool {
	r := rec.room
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.puts, rec)
	return !rec.evicted
}

// release gives back the room rec holds; it may be called more than once.
func (rec *putReception) release() {
	rec.room.mu.Lock()
	defer rec.room.mu.Unlock()
	rec.dropLocked()
}

// dropLocked takes rec off the PUTs being read and gives back its room.
func (rec *putReception) dropLocked() {
	r := rec.room
	delete(r.puts, rec)
	r.held -= rec.held
	rec.held = 0
}

// status is what the room holds and has turned away, for `peer status`.
func (r *putRoom) status() api.PutRoom {
	r.mu.Lock()
	defer r.mu.Unlock()
	return api.PutRoom{BytesHeld: r.held, BytesLimit: r.limit, Refused: r.refused, Evicted: r.evicted}
}

// bufCap is the capacity of getBuf(n): what the room is charged for it.
func bufCap(n int) int64 { return 1 << (bufClass(n) + minBufShift) }

// readPut reads the size bytes of rec's block that follow its header into
// a pooled buffer that grows as they come, taking room for each growth
// (putGrowth). moved is called whenever some bytes have arrived. It fails
// with errNoRoom when the buffer cannot grow.
func readPut(r *bufio.Reader, size int, rec *putReception, moved func()) ([]byte, error) {
	b := getBuf(min(size, putFirst))
	for got := 0; got < size; {
		if got == len(b) {
			next := min(size, putGrowth*len(b))
			if !rec.grow(bufCap(next) - int64(cap(b))) {
				putBuf(b)
				return nil, errNoRoom
			}
			nb := getBuf(next)
			copy(nb, b)
			putBuf(b)
			b = nb
		}
		n, err := r.Read(b[got:])
		got += n
		if n > 0 {
			rec.last.Store(time.Now().UnixNano())
			moved()
		}
		if err != nil && got < size {
			putBuf(b)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, readError(err)
		}
	}
	return b, nil
}
