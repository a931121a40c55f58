// Package api is the daemon's local API: the JSON types it serves and a
// client for them. The CLI, the TUI and scripts use only this package to talk
// to a running daemon, over a Unix socket in the repo (never a network port).
package api

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
