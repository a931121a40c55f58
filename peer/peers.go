package peer

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"chordshare/peer/api"
)

// bandwidthIdle is how long a peer's byte counts are kept after its last
// byte, so the counter does not grow with every peer ever met.
const bandwidthIdle = 10 * time.Minute

// trimBandwidth forgets the byte counts of peers idle for bandwidthIdle.
func (n *Node) trimBandwidth() {
	if n.cfg.Bandwidth != nil {
		n.cfg.Bandwidth.TrimIdle(time.Now().Add(-bandwidthIdle))
	}
}

// rtt is the ring's smoothed round trip to p, else libp2p's estimate.
func (n *Node) rtt(p p2ppeer.ID) (time.Duration, bool) {
	if d, ok := n.ring.RTT(string(p)); ok {
		return d, true
	}
	if d := n.h.Peerstore().LatencyEWMA(p); d > 0 {
		return d, true
	}
	return 0, false
}

// neighbourState is api.Neighbour.State of the peer at addr.
func (n *Node) neighbourState(addr string) string {
	p := p2ppeer.ID(addr)
	if p == n.h.ID() || n.h.Network().Connectedness(p) == network.Connected {
		return "alive"
	}
	return "suspected"
}

// Peers lists the connected peers with their round trips, bytes and roles
// in the ring tables, for GET /v1/peers.
func (n *Node) Peers() api.Peers {
	roles := map[string][]string{}
	addRole := func(addr, role string) {
		if !slices.Contains(roles[addr], role) {
			roles[addr] = append(roles[addr], role)
		}
	}
	for _, st := range n.ring.States() {
		for _, s := range st.Successors {
			addRole(s.Addr, api.RoleSuccessor)
		}
		if !st.Predecessor.IsZero() {
			addRole(st.Predecessor.Addr, api.RolePredecessor)
		}
		for _, f := range st.Fingers {
			addRole(f.Node.Addr, api.RoleFinger)
		}
	}
	var bw map[p2ppeer.ID]metrics.Stats
	if n.cfg.Bandwidth != nil {
		bw = n.cfg.Bandwidth.GetBandwidthByPeer()
	}
	out := api.Peers{Peers: []api.Peer{}}
	for _, p := range n.h.Network().Peers() {
		ap := api.Peer{ID: p.String(), Roles: roles[string(p)]}
		if conns := n.h.Network().ConnsToPeer(p); len(conns) > 0 {
			ap.Addr = conns[0].RemoteMultiaddr().String()
		}
		if d, ok := n.rtt(p); ok {
			ap.RTTMillis = float64(d.Microseconds()) / 1000
		}
		if s, ok := bw[p]; ok {
			ap.BytesIn, ap.BytesOut, ap.RateIn, ap.RateOut = s.TotalIn, s.TotalOut, s.RateIn, s.RateOut
		}
		slices.SortFunc(ap.Roles, func(a, b string) int { return roleRank(a) - roleRank(b) })
		out.Peers = append(out.Peers, ap)
	}
	slices.SortFunc(out.Peers, func(a, b api.Peer) int {
		if len(a.Roles) != len(b.Roles) {
			return len(b.Roles) - len(a.Roles)
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

func roleRank(r string) int {
	switch r {
	case api.RoleSuccessor:
		return 0
	case api.RolePredecessor:
		return 1
	}
	return 2
}

// peersOf is GET /v1/peers of an API backend: a node's connected peers, or
// none for a backend that is no node.
func peersOf(b apiBackend) api.Peers {
	if pl, ok := b.(interface{ Peers() api.Peers }); ok {
		return pl.Peers()
	}
	return api.Peers{Peers: []api.Peer{}}
}
