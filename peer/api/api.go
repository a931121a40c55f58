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
	// Repair is this peer's anti-entropy and handoff progress.
	Repair Repair `json:"repair"`
}

// Repair counts the work of keeping every block at r replicas (issue 5):
// rounds of range comparisons with the replicas of this peer's arcs, and
// the blocks those rounds, hinted handoff and graceful leave moved.
type Repair struct {
	Rounds       int64 `json:"rounds"`
	BlocksMoved  int64 `json:"blocks_moved"`
	BytesMoved   int64 `json:"bytes_moved"`
	SummaryBytes int64 `json:"summary_bytes"` // range summaries sent and received
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
