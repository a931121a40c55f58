// Package api is the daemon's local API: the JSON types it serves and a
// client for them. The CLI, the TUI and scripts use only this package to talk
// to a running daemon, over a Unix socket in the repo (never a network port).
package api

import "time"

// SocketName is the API socket's file name inside the repo.
const SocketName = "api.sock"

// Status is GET /v1/status: who this peer is and how it sees the ring.
type Status struct {
	// ID is the libp2p peer ID.
	ID string `json:"id"`
	// Addrs are dialable multiaddrs ending in /p2p/<id>, usable as another
	// peer's --bootstrap.
	Addrs []string `json:"addrs"`
	// Positions are this peer's vnode IDs on the ring (hex, ring order).
	Positions []string `json:"positions"`
	// Capacity is the number of vnodes (0: a client that stores nothing).
	Capacity int `json:"capacity"`
	// RingSizeEstimate is the number of peers the ring seems to have, from
	// how much of the circle the successor lists span.
	RingSizeEstimate int `json:"ring_size_estimate"`
	// ConnectedPeers is the number of open libp2p connections' peers.
	ConnectedPeers int `json:"connected_peers"`
	// LookupMode is "recursive" or "iterative".
	LookupMode string `json:"lookup_mode"`
	// UptimeSeconds since the daemon started.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// BlocksStored and BytesUsed describe the local block store; both are
	// 0 for a client (capacity 0), which stores nothing.
	BlocksStored int   `json:"blocks_stored"`
	BytesUsed    int64 `json:"bytes_used"`
	// StorageMax is the store's limit in bytes (--storage-max); 0: none.
	StorageMax int64 `json:"storage_max"`
	// UnderReplicated is the number of block copies this peer knows to be
	// missing from a replica it syncs with and not yet restored.
	UnderReplicated int64 `json:"under_replicated"`
	// BytesIn and BytesOut count the libp2p stream bytes since the daemon
	// started; RateIn and RateOut are their recent rates in bytes/s.
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	RateIn   float64 `json:"rate_in"`
	RateOut  float64 `json:"rate_out"`
	// Protocols splits BytesIn and BytesOut by libp2p protocol ID (""
	// for a stream's bytes before its protocol is agreed); a protocol idle
	// for 10 minutes is forgotten (its count starts again from 0).
	Protocols map[string]ProtocolBytes `json:"protocols,omitempty"`
	// Repair is this peer's anti-entropy and handoff progress.
	Repair Repair `json:"repair"`
	// RingCalls counts the ring calls this peer made since it started.
	RingCalls RingCalls `json:"ring_calls"`
	// Uplink is the link capacity block uploads are paced to, bytes/s
	// (--uplink), or with UplinkAuto the node's current estimate of it;
	// 0: unpaced.
	Uplink     int64 `json:"uplink"`
	UplinkAuto bool  `json:"uplink_auto,omitempty"`
	// PutRoom is the room this peer has for blocks other peers put on it
	// while it receives them.
	PutRoom PutRoom `json:"put_room"`
}

// PutRoom is a peer's room for the PUTs it is receiving: the buffer bytes
// they hold (as their bytes arrive) against its limit, and the PUTs it
// turned away since it started: refused for want of room (at their header,
// or as their buffer grew), or evicted, their stream reset, for a new PUT
// after they sent nothing for a while. A sender puts a block turned away
// on another peer.
type PutRoom struct {
	BytesHeld  int64 `json:"bytes_held"`
	BytesLimit int64 `json:"bytes_limit"`
	Refused    int64 `json:"refused"`
	Evicted    int64 `json:"evicted"`
}

// RingCalls counts a peer's ring calls out: all, those that failed (no
// answer within their timeout, or a broken stream), and those answered by
// how long they took.
type RingCalls struct {
	Out      int64           `json:"out"`
	Failed   int64           `json:"failed"`
	Answered []LatencyBucket `json:"answered"`
}

// LatencyBucket counts the calls that took at most LeMs milliseconds and
// more than the previous bucket's; LeMs 0 is the last bucket: longer.
type LatencyBucket struct {
	LeMs  int64 `json:"le_ms"`
	Count int64 `json:"count"`
}

// ProtocolBytes counts one protocol's stream bytes since the daemon started.
type ProtocolBytes struct {
	In  int64 `json:"bytes_in"`
	Out int64 `json:"bytes_out"`
}

// Repair counts the work of keeping every block at r replicas (issue 5):
// rounds of range comparisons with the replicas of this peer's arcs, and
// the blocks those rounds, hinted handoff and graceful leave moved.
type Repair struct {
	Rounds       int64 `json:"rounds"`
	BlocksMoved  int64 `json:"blocks_moved"`
	BytesMoved   int64 `json:"bytes_moved"`
	SummaryBytes int64 `json:"summary_bytes"` // range summaries sent and received
	// Refused counts the summary requests this peer answered "busy": it
	// had checked as many stored keys for others' summaries as it allows.
	Refused      int64 `json:"summaries_refused"`
	HintsPending int64 `json:"hints_pending"` // blocks held for a peer that was unreachable
	// LastRound is when the last round ended (zero time: none yet).
	LastRound  time.Time `json:"last_round"`
	InProgress bool      `json:"in_progress"`
}

// Neighbour names one vnode of another (or this) peer.
type Neighbour struct {
	Peer  string `json:"peer"`  // peer ID
	Vnode uint32 `json:"vnode"` // vnode index on that peer
	ID    string `json:"id"`    // ring position, hex
	// RTTMillis is the smoothed round trip to the peer; 0 if not measured.
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// State is "alive" (connected, or this peer) or "suspected" (in the
	// tables but not connected now: the next RPC will tell). A neighbour
	// found dead leaves the tables, with a peer_failed event.
	State string `json:"state,omitempty"`
}

// Finger is one distinct finger table entry: it covers self + 2^K onwards.
type Finger struct {
	K    int       `json:"k"`
	Node Neighbour `json:"node"`
}

// Vnode is the routing state of one of this peer's positions.
type Vnode struct {
	Index       uint32      `json:"index"` // vnode index on this peer
	ID          string      `json:"id"`
	Predecessor *Neighbour  `json:"predecessor"` // null while unknown
	Successors  []Neighbour `json:"successors"`
	Fingers     []Finger    `json:"fingers"`
}

// Ring is GET /v1/ring: predecessor, successors and fingers of every vnode.
type Ring struct {
	ID     string  `json:"id"` // this peer's ID
	Vnodes []Vnode `json:"vnodes"`
}

// Lookup is GET /v1/lookup?key=HEX: the successors of a key.
type Lookup struct {
	Key        string      `json:"key"`
	Successors []Neighbour `json:"successors"`
	Hops       int         `json:"hops"`
	Millis     float64     `json:"ms"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Transfers. Share and fetch answer with NDJSON: one Event per line, a
// progress event every so often, and a last event that carries the result
// or the error. An answer that ends without that last event failed (the
// daemon stopped). Cat answers with the file's bytes instead.
//
//	POST /v1/share?size=N&stall=DUR       body: the file; N (optional) is its size, for progress
//	POST /v1/share?path=ABS&stall=DUR     the daemon reads the file at ABS itself (403: it may not)
//	POST /v1/fetch?cid=CID&path=ABS&stall=DUR
//	GET  /v1/cat?cid=CID&stall=DUR        the bytes; SizeHeader, then StatusTrailer
//
// stall (optional, a Go duration such as 90s) is how long a transfer may go
// without progress before the daemon gives up on it; default
// DefaultStallTimeout.

// DefaultStallTimeout is the stall timeout of a transfer that names none:
// far longer than a 256 KiB block takes on the slowest link a ring admits
// with a few blocks in flight, far shorter than a person waits.
const DefaultStallTimeout = 2 * time.Minute

// Event is one line of a share's or a fetch's answer. The last line has
// exactly one of Share, Fetch and Error set; earlier lines have none.
type Event struct {
	// Done is the bytes stored (share: acknowledged by the write quorum)
	// or written (fetch) so far; Total is the file's size, -1 while
	// unknown.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`

	Share *ShareResult `json:"share,omitempty"`
	Fetch *FetchResult `json:"fetch,omitempty"`
	Error string       `json:"error,omitempty"`
}

// Final reports whether e is the last event of an answer.
func (e Event) Final() bool { return e.Share != nil || e.Fetch != nil || e.Error != "" }

// ShareResult is what a share made.
type ShareResult struct {
	CID  string `json:"cid"`  // the root CID
	Size int64  `json:"size"` // the file's size in bytes
}

// FetchResult is what a fetch wrote.
type FetchResult struct {
	CID  string `json:"cid"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Cat's answer: SizeHeader holds the file's size before the bytes; the
// StatusTrailer after them is StatusOK, or the error that cut the answer
// short. An answer without the trailer was cut short too.
const (
	SizeHeader    = "X-Chordshare-Size"
	StatusTrailer = "X-Chordshare-Status"
	StatusOK      = "ok"
)

// NodeEvent is one line of GET /v1/events: something that happened to the
// peer, for a person to read (the TUI's log) or a script to react to.
//
//	GET /v1/events?since=SEQ
//
// The answer is NDJSON that does not end: first the recent events the
// daemon still remembers with a Seq above since (all of them for since=0),
// then each new event as it happens. A client that falls too far behind is
// cut off; it reconnects with since set to the last Seq it saw and misses
// nothing the daemon still remembers.
type NodeEvent struct {
	// Seq numbers the daemon's events from 1, without gaps.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Kind is one of the Event* constants; new kinds may appear.
	Kind string `json:"kind"`
	// Message says what happened in words, on one line.
	Message string `json:"message"`
	// Peer is the other peer concerned (a new successor, a failed
	// neighbour), if any.
	Peer string `json:"peer,omitempty"`
	// CID is the root of the file concerned (transfers), if any.
	CID string `json:"cid,omitempty"`
	// Count is a number the event is about (blocks moved by a repair,
	// bytes shared), if any.
	Count int64 `json:"count,omitempty"`
}

// Kinds of NodeEvent.
const (
	EventJoined             = "joined"
	EventSuccessorChanged   = "successor_changed"
	EventPredecessorChanged = "predecessor_changed"
	EventPeerFailed         = "peer_failed"
	EventShareStarted       = "share_started"
	EventShareFinished      = "share_finished"
	EventShareFailed        = "share_failed"
	EventFetchStarted       = "fetch_started"
	EventFetchFinished      = "fetch_finished"
	EventFetchFailed        = "fetch_failed"
	EventRepair             = "repair"           // a repair round moved blocks (Count)
	EventHandoff            = "handoff"          // blocks handed on at a leave or delivered from hints (Count)
	EventUnderReplicated    = "under_replicated" // a round left copies missing (Count)
	EventPutsRefused        = "puts_refused"     // PUTs turned away for want of room (Count; at most one a minute, Count since the last; a burst's tail a minute after its first)
	EventBlockCorrupt       = "block_corrupt"    // a block of this node's store found corrupt on disk, removed (Message: the CID and what became of the request)
)

// Transfers is GET /v1/transfers: the shares and fetches being served, then
// the most recent finished ones, newest first within each group.
type Transfers struct {
	Transfers []Transfer `json:"transfers"`
}

// Transfer states.
const (
	TransferRunning = "running"
	TransferDone    = "done"
	TransferFailed  = "failed"
)

// Transfer is one share, fetch or cat the daemon serves or served.
type Transfer struct {
	ID   uint64 `json:"id"`
	Kind string `json:"kind"` // "share", "fetch" or "cat"
	// Name is what the client called the file (a share's file name), or
	// the destination path of a fetch.
	Name string `json:"name,omitempty"`
	// CID is the root: known from the start for a fetch, at the end for a
	// share.
	CID   string `json:"cid,omitempty"`
	State string `json:"state"` // a Transfer* constant
	// Done and Total are bytes, as in Event; Total is -1 while unknown.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Rate is bytes/s: over the last few seconds while running, the
	// average once over.
	Rate    float64    `json:"rate"`
	Started time.Time  `json:"started"`
	Ended   *time.Time `json:"ended,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// Peers is GET /v1/peers: the peers this one has a connection to.
type Peers struct {
	Peers []Peer `json:"peers"`
}

// Peer roles.
const (
	RoleSuccessor   = "successor"
	RolePredecessor = "predecessor"
	RoleFinger      = "finger"
)

// Peer is one connected peer.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // the remote address of one connection
	// RTTMillis is the ring's smoothed round trip, else libp2p's latency
	// estimate; 0 if neither has measured it.
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// BytesIn and BytesOut count the stream bytes exchanged with the peer;
	// RateIn and RateOut are their recent rates in bytes/s.
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	RateIn   float64 `json:"rate_in"`
	RateOut  float64 `json:"rate_out"`
	// Roles are the ways this peer's ring tables use the peer (Role*
	// constants); none for a peer met only in lookups or transfers.
	Roles []string `json:"roles,omitempty"`
}
