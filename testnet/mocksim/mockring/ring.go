package mockring

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"chordshare/chord"
	"chordshare/peer"

	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
)

// Options describe a ring to build.
type Options struct {
	Peers  int
	Config peer.Config
	Links  LinkMode
	// Seed fixes the peer IDs, the join order's bootstrap choices and every
	// random choice of the measurements.
	Seed uint64
	// Workers is how many nodes a parallel maintenance step works on at
	// once. Default: 2 per CPU, since without latency the steps are CPU
	// bound, and more of them only make calls slower and risk timeouts.
	Workers int
	// ConfigFor, when set, gives peer i (in join order) its own config in
	// place of Config: its capacity (vnodes, 0 for a client) or its store.
	ConfigFor func(i int, id p2ppeer.ID) peer.Config
}

// configOf is the config of peer i.
func (o Options) configOf(i int, id p2ppeer.ID) peer.Config {
	if o.ConfigFor != nil {
		return o.ConfigFor(i, id)
	}
	return o.Config
}

// Ring is a ring of peer.Node on one mocknet.
type Ring struct {
	Net *Net
	// Nodes are every peer in join order, crashed ones included.
	Nodes []*peer.Node

	opts  Options
	rng   *rand.Rand
	hosts []host.Host

	mu   sync.Mutex
	dead map[*peer.Node]bool
}

// NewRing makes the mocknet hosts, not yet running ring nodes: the memory
// of the bare hosts can be measured before Build adds the nodes. Links
// start with no latency, which builds the ring fast; SetLatency shapes
// them after.
func NewRing(opts Options) (*Ring, error) {
	if opts.Peers < 1 {
		return nil, errors.New("a ring needs at least one peer")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.ConfigFor == nil && opts.Config.Chord.Vnodes < 1 {
		return nil, errors.New("every simulated peer needs at least one vnode")
	}
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	r := &Ring{
		Net:  NewNet(opts.Links, mocknet.LinkOptions{}),
		opts: opts,
		rng:  PeerRand(opts.Seed),
		dead: map[*peer.Node]bool{},
	}
	hosts, err := r.Net.AddPeers(opts.Peers, r.rng)
	if err != nil {
		r.Net.Close()
		return nil, err
	}
	for _, h := range hosts {
		registerEcho(h)
	}
	r.hosts = hosts
	return r, nil
}

// PeerRand is where a ring built with this seed draws its peers' keys from
// (they come first), so that sim's kad-dht peers and its balance, drawing
// from it too, have the ring's peer IDs.
func PeerRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d6f636b)) }

// PeerKey draws a peer's Ed25519 key from rng, and its ID, as AddPeers does
// for each host.
func PeerKey(rng *rand.Rand) (crypto.PrivKey, p2ppeer.ID, error) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return nil, "", err
	}
	id, err := p2ppeer.IDFromPrivateKey(sk)
	if err != nil {
		return nil, "", err
	}
	return sk, id, nil
}

// Close shuts the whole network down.
func (r *Ring) Close() error { return r.Net.Close() }

// SetLatency gives every link, present and future, this one-way delay.
func (r *Ring) SetLatency(d time.Duration) {
	r.Net.SetLinkOptions(mocknet.LinkOptions{Latency: d})
}

// Live returns the peers that have not crashed, in join order.
func (r *Ring) Live() []*peer.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*peer.Node, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		if !r.dead[n] {
			out = append(out, n)
		}
	}
	return out
}

// Chords returns the ring state machines of the live peers.
func (r *Ring) Chords() []*chord.Node {
	live := r.Live()
	out := make([]*chord.Node, len(live))
	for i, n := range live {
		out[i] = n.Chord()
	}
	return out
}

// Oracle is the true ring of the live peers.
func (r *Ring) Oracle() *chord.Oracle { return chord.NewOracle(r.Chords()) }

// alive reports whether a ref's peer is up, for Oracle.CheckFirstLive.
func (r *Ring) alive(ref chord.Ref) bool { return r.Net.Alive(p2ppeer.ID(ref.Addr)) }

// BuildStats describe how the ring was built.
type BuildStats struct {
	JoinTime, ConvergeTime, FingerTime time.Duration
	Rounds                             int
	Calls                              int64 // ring RPCs sent by all peers
}

// Build puts a ring node on every host and joins them one after the other,
// each through a random peer already on the ring, and leaves a ring whose
// every predecessor, successor list and finger is right. Nothing waits on
// a timer.
//
// Joining all peers first and then running maintenance rounds is not a way
// to build a large ring: each later joiner looks itself up on a ring that
// does not know the earlier ones yet, and stabilization then corrects about
// one vnode per gap and round, so the rounds needed grow with the ring
// (REPORT.md has the figures). Instead, after each
// join the vnodes whose successor lists the newcomer belongs in stabilize,
// sweeping counter-clockwise from the newcomer so that each copies a list
// already right, and the newcomer fixes its fingers so later joiners that
// boot through it route in O(log N) hops. Older peers' fingers go stale but
// stay valid; a last pass fixes every finger. maxRounds bounds the rounds
// of the final check (one is normally enough).
func (r *Ring) Build(ctx context.Context, maxRounds int) (BuildStats, error) {
	var st BuildStats
	if len(r.Nodes) > 0 {
		return st, errors.New("ring already built")
	}
	for i, h := range r.hosts {
		n, err := peer.NewNode(h, r.opts.configOf(i, h.ID()))
		if err != nil {
			return st, err
		}
		r.Nodes = append(r.Nodes, n)
	}
	// The first peer with a vnode starts the ring; the others join in
	// order, each through a random peer already on it that has a vnode (a
	// client, capacity 0, is on no position to start a lookup from).
	first := slices.IndexFunc(r.Nodes, func(n *peer.Node) bool { return len(n.Chord().Vnodes()) > 0 })
	if first < 0 {
		return st, errors.New("no peer has a vnode: a ring needs at least one")
	}
	order := append([]*peer.Node{r.Nodes[first]}, r.Nodes[:first]...)
	order = append(order, r.Nodes[first+1:]...)
	start := time.Now()
	var ring []owned // every joined vnode, by ID
	var storing []*peer.Node
	for i, n := range order {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var boot []p2ppeer.AddrInfo
		if i > 0 {
			b := storing[r.rng.IntN(len(storing))].Host()
			boot = append(boot, p2ppeer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
		}
		if err := n.Join(ctx, boot); err != nil {
			return st, fmt.Errorf("peer %d: %w", i, err)
		}
		if len(n.Chord().Vnodes()) > 0 {
			storing = append(storing, n)
		}
		for _, v := range n.Chord().Vnodes() {
			j, _ := slices.BinarySearchFunc(ring, v.ID, func(x owned, id chord.ID) int { return x.id.Cmp(id) })
			ring = slices.Insert(ring, j, owned{v.ID, n.Chord()})
		}
		if len(n.Chord().Vnodes()) > 0 {
			r.refresh(ctx, ring, n.Chord())
		}
		n.Chord().FixAllFingers(ctx)
	}
	st.JoinTime = time.Since(start)

	start = time.Now()
	rounds, err := r.Converge(ctx, maxRounds)
	st.Rounds, st.ConvergeTime = rounds, time.Since(start)
	if err != nil {
		return st, err
	}
	// A finger whose lookup fails keeps its old entry, stale since later
	// joins: on a loaded machine a call can outlast its timeout (MinRTO),
	// so passes repeat until every finger is right.
	start = time.Now()
	for pass := 1; ; pass++ {
		r.parallel(ctx, (*chord.Node).FixAllFingers)
		err := CheckFingers(r.Chords())
		if err == nil {
			break
		}
		if pass == maxFingerPasses {
			return st, fmt.Errorf("after %d passes: %w", pass, err)
		}
	}
	st.FingerTime = time.Since(start)
	st.Calls = Totals(r.Live()).CallsOut
	return st, nil
}

// AddNode puts a new peer with a new identity on the network and joins it
// to the ring through a random live peer that has a vnode, as a peer
// arriving with timers running does: nothing else is stepped for it.
// before, if set, is called with the new host before it sends anything.
func (r *Ring) AddNode(ctx context.Context, cfg peer.Config, before func(host.Host)) (*peer.Node, error) {
	r.mu.Lock()
	hosts, err := r.Net.AddPeers(1, r.rng)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	registerEcho(hosts[0])
	if before != nil {
		before(hosts[0])
	}
	n, err := peer.NewNode(hosts[0], cfg)
	if err != nil {
		return nil, err
	}
	var storing []*peer.Node
	for _, m := range r.Live() {
		if len(m.Chord().Vnodes()) > 0 {
			storing = append(storing, m)
		}
	}
	if len(storing) == 0 {
		return nil, errors.New("no live peer with a vnode to join through")
	}
	r.mu.Lock()
	b := storing[r.rng.IntN(len(storing))].Host()
	r.mu.Unlock()
	if err := n.Join(ctx, []p2ppeer.AddrInfo{{ID: b.ID(), Addrs: b.Addrs()}}); err != nil {
		_ = r.Net.Crash(hosts[0])
		return nil, err
	}
	r.mu.Lock()
	r.Nodes = append(r.Nodes, n)
	r.hosts = append(r.hosts, hosts[0])
	r.mu.Unlock()
	return n, nil
}

// CrashNode kills one peer with no goodbye.
func (r *Ring) CrashNode(n *peer.Node) error {
	r.mu.Lock()
	r.dead[n] = true
	r.mu.Unlock()
	return r.Net.Crash(n.Host())
}

// Dead reports whether the peer has crashed.
func (r *Ring) Dead(n *peer.Node) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dead[n]
}

// SetWorkers changes how many nodes a parallel step works on at once: on a
// network with delays the steps wait more than they compute, and more
// workers keep them short.
func (r *Ring) SetWorkers(n int) { r.opts.Workers = max(n, 1) }

// maxFingerPasses bounds Build's passes of fixing every finger.
const maxFingerPasses = 5

// owned is a vnode on the ring and the node that runs it.
type owned struct {
	id   chord.ID
	node *chord.Node
}

// refresh stabilizes every vnode whose successor list the newcomer n's
// vnodes belong in: each new vnode and its SuccessorListLen predecessors.
// These form arcs of the circle; each arc is swept counter-clockwise from
// its last new vnode, whose successor's list is untouched and right, so
// every vnode copies a list already fixed. (chord.Sim does the same on
// MemNet.) Only whole nodes can be stepped, so each step stabilizes every
// vnode of the node running the one in turn; the others are right already
// and cost a digest check and a notify each. A node stabilizes its vnodes
// clockwise, so where the sweep meets two of one node's vnodes in a row it
// must still step that node twice.
func (r *Ring) refresh(ctx context.Context, ring []owned, n *chord.Node) {
	size := len(ring)
	reach := min(r.opts.Config.Chord.SuccessorListLen, size-1)
	wrap := func(i int) int { return ((i % size) + size) % size }
	isNew := map[int]bool{}
	var news []int
	for _, v := range n.Vnodes() {
		i, _ := slices.BinarySearchFunc(ring, v.ID, func(x owned, id chord.ID) int { return x.id.Cmp(id) })
		isNew[i] = true
		news = append(news, i)
	}
	slices.Sort(news)
	var sweep []*chord.Node
	for m, end := range news {
		gap := wrap(news[(m+1)%len(news)] - end)
		if gap == 0 {
			gap = size // the only new vnode: the next new one is itself
		}
		if gap <= reach+1 {
			continue // the arc goes on to the next new vnode: not its end
		}
		// dist: how far back the nearest new vnode at or after i is.
		for i, dist := end, 0; ; i, dist = i-1, dist+1 {
			if isNew[wrap(i)] {
				dist = 0
			}
			if dist > reach {
				break
			}
			sweep = append(sweep, ring[wrap(i)].node)
		}
	}
	if len(sweep) == 0 || 2*len(sweep) > size {
		// The arcs close the circle, or nearly (a small ring): there is no
		// arc end whose successor is right to start from, or the one there
		// is gets stepped out of turn as a sweep wraps round to it.
		// Sweeping round the circle pushes wrong entries to the ends of the
		// lists and out; but a node stepped for one vnode also
		// restabilizes its others out of turn, which can pull wrong entries
		// back in. So sweep until every list is right, a few times at most;
		// Build's final rounds catch the rest.
		sweep = sweep[:0]
		for i := range size {
			sweep = append(sweep, ring[wrap(news[0]-i)].node)
		}
		for range 4 {
			for _, node := range sweep {
				node.Stabilize(ctx)
			}
			if rightAround(ring, reach) {
				return
			}
		}
		return
	}
	for _, node := range sweep {
		node.Stabilize(ctx)
	}
}

// rightAround reports whether every vnode on ring has the predecessor and
// the reach successors that ring says it should.
func rightAround(ring []owned, reach int) bool {
	at := make(map[chord.ID]int, len(ring))
	for i, x := range ring {
		at[x.id] = i
	}
	for _, x := range ring {
		for _, st := range x.node.States() {
			i := at[st.Self.ID]
			if st.Predecessor.ID != ring[(i-1+len(ring))%len(ring)].id || len(st.Successors) != reach {
				return false
			}
			for k, s := range st.Successors {
				if s.ID != ring[(i+1+k)%len(ring)].id {
					return false
				}
			}
		}
	}
	return true
}

// Converge runs maintenance rounds until the ring is right, at most
// maxRounds, and returns how many it took. A round is chord.Round with each
// step run on many nodes at once, as nodes do on their own timers; every
// node's methods are safe to call concurrently.
func (r *Ring) Converge(ctx context.Context, maxRounds int) (int, error) {
	nodes := r.Chords()
	o := chord.NewOracle(nodes)
	var err error
	for round := 1; round <= maxRounds; round++ {
		r.parallel(ctx, (*chord.Node).Stabilize)
		r.parallel(ctx, (*chord.Node).CheckPredecessors)
		r.parallel(ctx, (*chord.Node).FixFingers)
		if err = o.Check(nodes); err == nil {
			return round, nil
		}
		if ctx.Err() != nil {
			return round, ctx.Err()
		}
	}
	return maxRounds, fmt.Errorf("not converged after %d rounds: %w", maxRounds, err)
}

// Parallel runs step on every live node, Workers at a time.
func (r *Ring) Parallel(ctx context.Context, step func(*chord.Node, context.Context)) {
	r.parallel(ctx, step)
}

// parallel runs step on every live node, Workers at a time.
func (r *Ring) parallel(ctx context.Context, step func(*chord.Node, context.Context)) {
	nodes := r.Chords()
	work := make(chan *chord.Node)
	var wg sync.WaitGroup
	for range min(r.opts.Workers, len(nodes)) {
		wg.Go(func() {
			for n := range work {
				step(n, ctx)
			}
		})
	}
	for _, n := range nodes {
		work <- n
	}
	close(work)
	wg.Wait()
}

// CheckFingers verifies every finger the nodes list against the true ring
// (chord.Oracle.CheckFingers).
func CheckFingers(nodes []*chord.Node) error {
	return chord.NewOracle(nodes).CheckFingers(nodes)
}

// Crash kills share of the live peers at once, chosen at random, and
// returns them. Nothing is repaired until someone runs maintenance.
func (r *Ring) Crash(share float64) ([]*peer.Node, error) {
	live := r.Live()
	count := int(share*float64(len(live)) + 0.5)
	var killed []*peer.Node
	var errs []error
	for _, i := range r.rng.Perm(len(live))[:count] {
		n := live[i]
		r.mu.Lock()
		r.dead[n] = true
		r.mu.Unlock()
		errs = append(errs, r.Net.Crash(n.Host()))
		killed = append(killed, n)
	}
	return killed, errors.Join(errs...)
}
