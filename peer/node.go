// Package peer is the chordshare node: a libp2p host speaking the ring
// protocol for a chord.Node, the daemon around it and its local API.
package peer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"chordshare/chord"
	"chordshare/peer/api"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Config configures a Node.
type Config struct {
	Chord chord.Config
	// Replicas (r) is how many distinct peers hold each block.
	Replicas int
	// WriteQuorum (W) is how many durable acknowledgements a put waits for;
	// the other r-W replicas are written in the background.
	WriteQuorum int
	// Store is where this peer keeps the blocks it is responsible for; nil
	// for a client that stores nothing.
	Store BlockStore
	// Repair times and paces re-replication (repair.go).
	Repair RepairConfig
	// Uplink is the capacity of this peer's access link towards the
	// network in bytes per second; 0: unknown or fast. When set, block
	// payloads are sent at most at bulkShare of it (uplink.go), so the
	// ring calls sharing the link do not wait behind queued blocks.
	Uplink int64
	// Bandwidth, if set, is the host's byte counter (NewHost's
	// libp2p.BandwidthReporter): the status's and the peers' rates.
	Bandwidth *metrics.BandwidthCounter
	// GetTrace, if set, is told every step of every Get (gettrace.go): a
	// per-block timeline for simulators tuning the fetch schedule. It is
	// called from many goroutines and must not block.
	GetTrace func(GetEvent)
}

// DefaultConfig is what a daemon runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{Chord: chord.DefaultConfig(), Replicas: 3, WriteQuorum: 2, Repair: DefaultRepairConfig()}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Chord.Validate(); err != nil {
		return err
	}
	if err := checkUplink(c.Uplink); err != nil {
		return err
	}
	if c.Replicas < 1 || c.WriteQuorum < 1 || c.WriteQuorum > c.Replicas {
		return fmt.Errorf("replication: want 1 <= W (%d) <= r (%d)", c.WriteQuorum, c.Replicas)
	}
	return nil
}

// protectTag marks ring neighbours in the connection manager.
const protectTag = "chordshare-ring"

// Node is a ring peer on a libp2p host.
type Node struct {
	h       host.Host
	cfg     Config
	tr      *ringTransport
	ring    *chord.Node
	started time.Time

	// life ends at Close; bg holds the work that outlives a request (the
	// replica writes a put did not wait for).
	life context.Context
	stop context.CancelFunc
	bg   sync.WaitGroup

	blocks *blockClient // reused block streams, replica speeds
	up     *uplink      // paces block payloads; nil: unpaced

	// events is the log GET /v1/events serves (events.go).
	events *eventBus

	mu        sync.Mutex
	protected map[p2ppeer.ID]bool
	lastRing  ringView // what watchRing saw last

	rep *repairState
}

// NewNode puts a ring node on h and starts serving the ring protocol. It
// is on no ring until Join.
func NewNode(h host.Host, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := newRingTransport(h)
	ring, err := chord.NewNode(string(h.ID()), tr, nil, cfg.Chord)
	if err != nil {
		return nil, err
	}
	tr.node = ring
	events := newEventBus()
	n := &Node{h: h, cfg: cfg, tr: tr, ring: ring, started: time.Now(), protected: map[p2ppeer.ID]bool{}, events: events, rep: newRepairState(cfg.Repair), blocks: newBlockClient(cfg.Replicas, events), up: uplinkFor(cfg.Uplink)}
	tr.up = n.up
	n.life, n.stop = context.WithCancel(context.Background())
	h.SetStreamHandler(RingProtocol, tr.serve)
	h.SetStreamHandler(BlockProtocol, n.serveBlock)
	h.SetStreamHandler(RepairProtocol, n.serveRepair)
	return n, nil
}

// Host is the node's libp2p host.
func (n *Node) Host() host.Host { return n.h }

// Chord is the node's ring state machine.
func (n *Node) Chord() *chord.Node { return n.ring }

// Stats are the node's ring traffic counters.
func (n *Node) Stats() *RingStats { return &n.tr.stats }

// Join enters the ring through the first bootstrap peer that answers, or
// starts a new ring if none is given.
func (n *Node) Join(ctx context.Context, bootstrap []p2ppeer.AddrInfo) error {
	if len(bootstrap) == 0 {
		if n.cfg.Chord.Vnodes == 0 {
			return errors.New("a client-only node (capacity 0) needs a bootstrap peer")
		}
		n.ring.Create()
		n.Publish(api.NodeEvent{Kind: api.EventJoined, Message: "started a new ring"})
		return nil
	}
	var errs []error
	for _, b := range bootstrap {
		if b.ID == n.h.ID() {
			continue
		}
		n.h.Peerstore().AddAddrs(b.ID, b.Addrs, peerstore.PermanentAddrTTL)
		if err := n.h.Connect(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("connect %s: %w", b.ID.ShortString(), err))
			continue
		}
		err := n.ring.Join(ctx, chord.MakeRef(string(b.ID), 0))
		if err == nil {
			n.protectNeighbours()
			n.Publish(api.NodeEvent{Kind: api.EventJoined, Peer: b.ID.String(), Message: "joined the ring through " + shortPeer(string(b.ID))})
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return errors.New("join: no bootstrap peer other than ourselves")
	}
	return fmt.Errorf("join: %s", oneLine(errs))
}

// Run maintains the ring until ctx ends.
func (n *Node) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { n.ring.Run(ctx) })
	wg.Go(func() { n.runRepair(ctx) })
	if n.up != nil && n.up.auto != nil {
		wg.Go(func() { n.probeUplink(ctx) })
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.cfg.Chord.StabilizeInterval):
				n.protectNeighbours()
				n.watchRing()
				n.trimBandwidth()
			}
		}
	})
	wg.Wait()
}

// Close stops serving and waits for background replica writes to end.
// The host is the caller's to close.
func (n *Node) Close() error {
	n.h.RemoveStreamHandler(RingProtocol)
	n.h.RemoveStreamHandler(BlockProtocol)
	n.h.RemoveStreamHandler(RepairProtocol)
	done := make(chan struct{})
	go func() { n.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		n.stop()
		<-done
	}
	n.stop()
	n.blocks.close()
	return nil
}

// closeGrace is how long Close lets unfinished replica writes complete.
const closeGrace = 10 * time.Second

// oneLine joins errors for a message a user reads on one line.
func oneLine(errs []error) string {
	parts := make([]string, len(errs))
	for i, err := range errs {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

// protectNeighbours keeps connections to the current ring neighbours from
// being trimmed by the connection manager, and releases former ones.
func (n *Node) protectNeighbours() {
	want := map[p2ppeer.ID]bool{}
	for _, st := range n.ring.States() {
		add := func(r chord.Ref) {
			if !r.IsZero() && r.Addr != string(n.h.ID()) {
				want[p2ppeer.ID(r.Addr)] = true
			}
		}
		add(st.Predecessor)
		for _, s := range st.Successors {
			add(s)
		}
		for _, f := range st.Fingers {
			add(f.Node)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cm := n.h.ConnManager()
	for p := range want {
		if !n.protected[p] {
			cm.Protect(p, protectTag)
		}
	}
	for p := range n.protected {
		if !want[p] {
			cm.Unprotect(p, protectTag)
		}
	}
	n.protected = want
}

// Lookup finds the successors of key.
func (n *Node) Lookup(ctx context.Context, key chord.ID) (api.Lookup, error) {
	start := time.Now()
	res, err := n.ring.Lookup(ctx, key, n.cfg.Chord.SuccessorListLen)
	if err != nil {
		return api.Lookup{}, err
	}
	return api.Lookup{
		Key:        key.Hex(),
		Successors: n.neighbours(res.Successors),
		Hops:       res.Hops,
		Millis:     float64(time.Since(start).Microseconds()) / 1000,
	}, nil
}

// Addrs are the host's addresses with /p2p/<id>, usable as --bootstrap.
func (n *Node) Addrs() []string {
	p2p, err := ma.NewMultiaddr("/p2p/" + n.h.ID().String())
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range n.h.Addrs() {
		out = append(out, a.Encapsulate(p2p).String())
	}
	return out
}

// Status summarizes the node for `peer status`.
func (n *Node) Status() api.Status {
	st := api.Status{
		ID:               n.h.ID().String(),
		Addrs:            n.Addrs(),
		Capacity:         n.cfg.Chord.Vnodes,
		RingSizeEstimate: n.ringSizeEstimate(),
		ConnectedPeers:   len(n.h.Network().Peers()),
		LookupMode:       n.cfg.Chord.Lookup.String(),
		UptimeSeconds:    time.Since(n.started).Seconds(),
		RingCalls:        n.tr.stats.Calls(),
		Uplink:           n.up.capacity(),
		UplinkAuto:       n.up != nil && n.up.auto != nil,
		PutRoom:          n.blocks.puts.status(),
	}
	if n.cfg.Bandwidth != nil {
		t := n.cfg.Bandwidth.GetBandwidthTotals()
		st.BytesIn, st.BytesOut, st.RateIn, st.RateOut = t.TotalIn, t.TotalOut, t.RateIn, t.RateOut
		st.Protocols = map[string]api.ProtocolBytes{}
		for p, s := range n.cfg.Bandwidth.GetBandwidthByProtocol() {
			st.Protocols[string(p)] = api.ProtocolBytes{In: s.TotalIn, Out: s.TotalOut}
		}
	}
	for _, v := range n.ring.Vnodes() {
		st.Positions = append(st.Positions, v.ID.Hex())
	}
	n.repairStatus(&st)
	return st
}

// ringSizeEstimate: a vnode's successor list spans a fraction f of the
// circle and holds p distinct peers, so the ring has about p/f peers.
// The estimates of all vnodes are averaged.
func (n *Node) ringSizeEstimate() int {
	var sum float64
	var count int
	for _, st := range n.ring.States() {
		if len(st.Successors) == 0 {
			continue
		}
		peers := map[string]bool{}
		for _, s := range st.Successors {
			peers[s.Addr] = true
		}
		count++
		if len(st.Successors) < n.cfg.Chord.SuccessorListLen {
			// The list wrapped around the ring: it has seen every peer.
			peers[string(n.h.ID())] = true
			sum += float64(len(peers))
			continue
		}
		last := st.Successors[len(st.Successors)-1]
		if f := chord.Distance(st.Self.ID, last.ID).Fraction(); f > 0 {
			sum += float64(len(peers)) / f
		}
	}
	if count == 0 {
		return 1
	}
	return int(sum/float64(count) + 0.5)
}

// Ring is the routing state of every vnode, for `peer ring`.
func (n *Node) Ring() api.Ring {
	out := api.Ring{ID: n.h.ID().String()}
	for _, st := range n.ring.States() {
		v := api.Vnode{Index: st.Self.Vnode, ID: st.Self.ID.Hex(), Successors: n.neighbours(st.Successors)}
		if !st.Predecessor.IsZero() {
			p := n.neighbour(st.Predecessor)
			v.Predecessor = &p
		}
		for _, f := range st.Fingers {
			v.Fingers = append(v.Fingers, api.Finger{K: f.K, Node: n.neighbour(f.Node)})
		}
		out.Vnodes = append(out.Vnodes, v)
	}
	return out
}

func (n *Node) neighbour(r chord.Ref) api.Neighbour {
	nb := api.Neighbour{Peer: p2ppeer.ID(r.Addr).String(), Vnode: r.Vnode, ID: r.ID.Hex(), State: n.neighbourState(r.Addr)}
	if rtt, ok := n.ring.RTT(r.Addr); ok {
		nb.RTTMillis = float64(rtt.Microseconds()) / 1000
	}
	return nb
}

func (n *Node) neighbours(refs []chord.Ref) []api.Neighbour {
	out := make([]api.Neighbour, 0, len(refs))
	for _, r := range refs {
		out = append(out, n.neighbour(r))
	}
	return out
}
