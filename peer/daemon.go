package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"

	"chordshare/blocks"
	"chordshare/internal/ctxtime"
	"chordshare/peer/api"
)

// DaemonOptions is what `peer daemon` asks for. Zero fields mean "as the repo
// config says" (RepoConfig); set ones override it for this run only.
type DaemonOptions struct {
	// Repo is the repo directory, already resolved (api.ResolveRepo).
	Repo string
	// Listen and Bootstrap are multiaddrs; nil: the repo config's.
	Listen    []string
	Bootstrap []string
	// Announce, if set, are the addresses told to other peers instead of
	// the listen addresses (this run only; not in the repo config).
	Announce []string
	// Capacity is the number of vnodes; nil: the repo config's.
	Capacity *int
	// Lookup is "recursive" or "iterative"; empty: the repo config's.
	Lookup string
	// VnodeChoices is how many candidate positions per vnode a joining
	// node looks up to place its vnodes (chord.Config.VnodeChoices); 0:
	// the default.
	// This run only.
	VnodeChoices int
	// StorageMax caps the block store's bytes (0: no limit); nil: the
	// repo config's.
	StorageMax *int64
	// RepairRate caps repair's bytes per second (0: no limit); nil: the
	// repo config's.
	RepairRate *int64
	// Uplink is the capacity of the peer's link towards the network in
	// bytes per second (0: unpaced, UplinkAuto: estimated); nil: the repo
	// config's.
	Uplink *int64
	// Replicas (r) and WriteQuorum (W); nil: the repo config's.
	Replicas    *int
	WriteQuorum *int

	// BootstrapAttempts is how many times to try joining through the
	// bootstrap peers before giving up; zero: DefaultBootstrapAttempts.
	BootstrapAttempts int
	// BootstrapBackoff is the wait after the first failed attempt, doubled
	// after each further one; zero: DefaultBootstrapBackoff.
	BootstrapBackoff time.Duration
	// JoinTimeout bounds one join attempt; zero: the chord LookupTimeout.
	JoinTimeout time.Duration

	// Log receives progress lines (join retries, API errors); nil: discarded.
	Log io.Writer
	// Pprof serves Go's runtime profiles on the local API socket, under
	// /debug/pprof/ (apiConfig.Pprof). This run only.
	Pprof bool
}

// Bootstrap retry defaults: 5 attempts, waiting 0.5 + 1 + 2 + 4 s between
// them, so a daemon started together with its bootstrap peer (a testnet, a
// reboot) waits about 7.5 s for it before it gives up.
const (
	DefaultBootstrapAttempts = 5
	DefaultBootstrapBackoff  = 500 * time.Millisecond
)

// apiShutdownGrace bounds how long the API waits for answers in flight when
// the daemon stops. Their contexts are cancelled at once, so it is short.
const apiShutdownGrace = 2 * time.Second

// Daemon is a running peer: the repo it holds, its libp2p host, its ring
// node and the local API on the repo's Unix socket.
type Daemon struct {
	repo  *Repo
	store *blocks.Store // nil for a client (capacity 0)
	host  host.Host
	node  *Node
	cfg   Config
	sock  string
	ln    net.Listener
	api   *http.Server
	apih  *apiHandler
	log   io.Writer

	closeOnce sync.Once
	closeErr  error
}

// StartDaemon opens (or creates) the repo, starts the host and the ring node,
// joins the ring through the bootstrap peers (or starts a new ring when there
// are none) and opens the API socket. It returns once the daemon can answer;
// Run then serves until its context ends. On error everything it opened is
// closed again.
func StartDaemon(ctx context.Context, opts DaemonOptions) (_ *Daemon, err error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	// Check the socket path first: a too-long repo path should fail before
	// the repo is created.
	sock, err := api.SocketPath(opts.Repo)
	if err != nil {
		return nil, err
	}
	repo, err := OpenRepo(opts.Repo)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			repo.Close()
		}
	}()

	rc := repo.Config()
	if opts.Listen != nil {
		rc.Listen = opts.Listen
	}
	if opts.Bootstrap != nil {
		rc.Bootstrap = opts.Bootstrap
	}
	if opts.Capacity != nil {
		rc.Capacity = *opts.Capacity
	}
	if opts.Lookup != "" {
		rc.Lookup = opts.Lookup
	}
	if opts.StorageMax != nil {
		rc.StorageMax = ByteSize(*opts.StorageMax)
	}
	if opts.RepairRate != nil {
		r := ByteSize(*opts.RepairRate)
		rc.RepairRate = &r
	}
	if opts.Uplink != nil {
		rc.Uplink = UplinkSize(*opts.Uplink)
	}
	// Checked before Validate, to name the flags that set them.
	rName, wName := "replicas", "write_quorum"
	if opts.Replicas != nil {
		rc.Replicas, rName = *opts.Replicas, "--replicas"
	}
	if opts.WriteQuorum != nil {
		rc.WriteQuorum, wName = *opts.WriteQuorum, "--write-quorum"
	}
	if err := checkReplication(rc.Replicas, rc.WriteQuorum, rName, wName); err != nil {
		return nil, err
	}
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	if len(rc.Listen) == 0 {
		return nil, errors.New("no listen address: give --listen or set listen in the repo config")
	}
	listen := make([]multiaddr.Multiaddr, len(rc.Listen))
	for i, s := range rc.Listen {
		if listen[i], err = multiaddr.NewMultiaddr(s); err != nil {
			return nil, fmt.Errorf("listen address %q: %w", s, err)
		}
	}
	announce := make([]multiaddr.Multiaddr, len(opts.Announce))
	for i, s := range opts.Announce {
		if announce[i], err = multiaddr.NewMultiaddr(s); err != nil {
			return nil, fmt.Errorf("announce address %q: %w", s, err)
		}
	}
	boot, err := ParseBootstrap(rc.Bootstrap)
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	if err := rc.applyTo(&cfg); err != nil {
		return nil, err
	}
	if opts.VnodeChoices != 0 {
		cfg.Chord.VnodeChoices = opts.VnodeChoices
	}
	if err := cfg.Chord.Validate(); err != nil {
		return nil, fmt.Errorf("ring config: %w", err)
	}
	// The positions of the last run hold this peer's blocks: chord takes
	// them again if this config could have chosen them. Its error is
	// kept out of the named result err, which the deferred cleanups read.
	if indices, ierr := repo.VnodeIndices(); ierr != nil {
		fmt.Fprintf(logw, "choosing new ring positions: %v\n", ierr)
	} else {
		cfg.Chord.VnodeIndices = indices
	}

	// A peer with ring positions stores the blocks that land on them; a
	// client (capacity 0) has no positions and keeps no store.
	var store *blocks.Store
	if rc.Capacity > 0 {
		store, err = blocks.Open(filepath.Join(repo.Dir(), BlocksDir), blocks.Options{MaxBytes: int64(rc.StorageMax)})
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				store.Close()
			}
		}()
		cfg.Store = store
	}

	cfg.Bandwidth = metrics.NewBandwidthCounter()
	if os.Getenv(GetTraceEnv) != "" {
		cfg.GetTrace = logGetTrace(logw)
	}
	hostOpts := []libp2p.Option{libp2p.BandwidthReporter(cfg.Bandwidth)}
	if len(announce) > 0 {
		hostOpts = append(hostOpts, Announce(announce))
	}
	h, err := NewHost(repo.Identity(), listen, hostOpts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host on %s: %w", strings.Join(rc.Listen, ", "), err)
	}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	node, err := NewNode(h, cfg)
	if err != nil {
		return nil, fmt.Errorf("start ring node: %w", err)
	}
	defer func() {
		if err != nil {
			node.Close()
		}
	}()

	// A config shared by several peers may list this peer among its
	// bootstrap peers: joining through oneself is no join.
	boot = withoutPeer(boot, h.ID())
	if err := joinRing(ctx, node, boot, opts, cfg.Chord.LookupTimeout, logw, func() { clearDialBackoff(h, boot) }); err != nil {
		return nil, err
	}
	if rc.Capacity > 0 {
		if err := repo.SaveVnodeIndices(node.ring.Indices()); err != nil {
			// The positions are chosen anew at the next start, and
			// repair moves the blocks: worth a line, not a failure.
			fmt.Fprintf(logw, "%v\n", err)
		}
	}

	ln, err := listenAPI(sock)
	if err != nil {
		return nil, err
	}
	d := &Daemon{repo: repo, store: store, host: h, node: node, cfg: cfg, sock: sock, ln: ln, log: logw}
	acfg := apiConfig{LookupTimeout: cfg.Chord.LookupTimeout, Log: logw, Events: node.events, VerifiedBlocks: true, Locate: node.Locate, Pprof: opts.Pprof}
	if store != nil {
		acfg.Nodes = storeNodes{store, node}
	}
	d.apih = newAPIHandler(daemonBackend{Node: node, store: store}, acfg)
	d.api = newAPIServer(d.apih, logw)
	return d, nil
}

// Run maintains the ring and serves the API until ctx ends, then stops both,
// closes the node and the host and releases the repo. It returns nil after a
// clean stop. Call it once.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { d.node.Run(ctx) })
	// The log hears of corrupt blocks until the leave is over: its
	// hand-off reads every block this peer holds.
	logCtx, stopLog := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLog()
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		d.logCorrupt(logCtx)
	}()
	// Answers in flight (a slow lookup) are cancelled as soon as we stop.
	d.api.BaseContext = func(net.Listener) context.Context { return ctx }
	served := make(chan error, 1)
	go func() { served <- d.api.Serve(d.ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		served = nil
		err = fmt.Errorf("api server: %w", err)
	}
	cancel()

	sctx, scancel := context.WithTimeout(context.Background(), apiShutdownGrace)
	defer scancel()
	if serr := d.api.Shutdown(sctx); serr != nil {
		d.api.Close()
	}
	if served != nil {
		<-served // http.ErrServerClosed
	}
	// Transfers still running were cancelled with ctx; they must be over
	// before the node and the store they use are closed.
	d.apih.Wait()
	wg.Wait()
	d.leave()
	stopLog()
	<-logged
	return errors.Join(err, d.Close())
}

// leaveGrace bounds a graceful leave: the blocks not handed on by then
// are left to the other replicas' repair.
const leaveGrace = 30 * time.Second

// leave hands this peer's blocks on and tells its neighbours before the
// daemon stops (SIGINT, SIGTERM).
func (d *Daemon) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveGrace)
	defer cancel()
	start := time.Now()
	rs, err := d.node.Leave(ctx)
	fmt.Fprintf(d.log, "leaving: handed %d blocks (%s) on in %v\n", rs.Blocks, FormatSize(rs.Bytes), time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(d.log, "leaving: %v\n", err)
	}
}

// Close stops everything without waiting for answers in flight: the API
// socket (removing its file), the node, the host, and the repo lock. Run
// calls it; call it yourself only if Run never ran.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		// After Serve the server owns the listener and has closed it; closing
		// it again only reports that.
		if err := d.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close api socket: %w", err))
		}
		if err := d.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring node: %w", err))
		}
		if err := d.host.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close libp2p host: %w", err))
		}
		// After the node: its unfinished replica writes and inbound puts
		// go to the store until then.
		if d.store != nil {
			if err := d.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close block store: %w", err))
			}
		}
		if err := d.repo.Close(); err != nil {
			errs = append(errs, err)
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// ID is the daemon's peer ID.
func (d *Daemon) ID() libp2ppeer.ID { return d.host.ID() }

// Addrs are the daemon's listen addresses with /p2p/<id> appended: what
// another peer passes as --bootstrap.
func (d *Daemon) Addrs() []string {
	ai := libp2ppeer.AddrInfo{ID: d.host.ID(), Addrs: d.host.Addrs()}
	mas, err := libp2ppeer.AddrInfoToP2pAddrs(&ai)
	if err != nil {
		return nil
	}
	out := make([]string, len(mas))
	for i, m := range mas {
		out[i] = m.String()
	}
	return out
}

// SocketPath is the API socket.
func (d *Daemon) SocketPath() string { return d.sock }

// Repo is the repo the daemon holds.
func (d *Daemon) Repo() *Repo { return d.repo }

// Config is the node config the daemon runs with.
func (d *Daemon) Config() Config { return d.cfg }

// Node is the daemon's ring node.
func (d *Daemon) Node() *Node { return d.node }

// Store is the daemon's block store; nil for a client (capacity 0).
func (d *Daemon) Store() *blocks.Store { return d.store }

// daemonBackend is what the daemon's API serves: its node, with the block
// store's counts in the status.
type daemonBackend struct {
	*Node
	store *blocks.Store // nil for a client
}

func (b daemonBackend) Status() api.Status {
	st := b.Node.Status()
	if b.store != nil {
		s := b.store.Stats()
		st.BlocksStored, st.BytesUsed, st.StorageMax = s.Count, s.Bytes, s.MaxBytes
	}
	return st
}

// ParseBootstrap reads bootstrap multiaddrs, each ending in /p2p/<peer id>,
// and groups them by peer.
func ParseBootstrap(addrs []string) ([]libp2ppeer.AddrInfo, error) {
	mas := make([]multiaddr.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		m, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap address %q: %w", s, err)
		}
		if _, id := libp2ppeer.SplitAddr(m); id == "" {
			return nil, fmt.Errorf("bootstrap address %q: must end in /p2p/<peer id> (as `peer status` prints)", s)
		}
		mas = append(mas, m)
	}
	infos, err := libp2ppeer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap addresses: %w", err)
	}
	return infos, nil
}

func withoutPeer(infos []libp2ppeer.AddrInfo, self libp2ppeer.ID) []libp2ppeer.AddrInfo {
	out := infos[:0:0]
	for _, ai := range infos {
		if ai.ID != self {
			out = append(out, ai)
		}
	}
	return out
}

// joiner is the part of Node that joinRing needs.
type joiner interface {
	Join(ctx context.Context, bootstrap []libp2ppeer.AddrInfo) error
}

// clearDialBackoff forgets failed dials to the bootstrap peers. After a
// failed dial libp2p refuses to dial that address again for a while ("dial
// backoff"), which would make every retry fail without trying.
func clearDialBackoff(h host.Host, boot []libp2ppeer.AddrInfo) {
	sw, ok := h.Network().(*swarm.Swarm)
	if !ok {
		return
	}
	for _, ai := range boot {
		sw.Backoff().Clear(ai.ID)
	}
}

// joinRing joins through boot, or creates a ring when boot is empty. A
// bootstrap peer that is not up yet is retried with exponential backoff,
// calling beforeRetry before each retry; when every attempt failed it gives
// up with the last error rather than starting a ring of its own, which would
// split the network.
func joinRing(ctx context.Context, n joiner, boot []libp2ppeer.AddrInfo, opts DaemonOptions, defaultTimeout time.Duration, logw io.Writer, beforeRetry func()) error {
	if len(boot) == 0 {
		if err := n.Join(ctx, nil); err != nil {
			return fmt.Errorf("create a new ring: %w", err)
		}
		return nil
	}
	attempts := opts.BootstrapAttempts
	if attempts <= 0 {
		attempts = DefaultBootstrapAttempts
	}
	wait := opts.BootstrapBackoff
	if wait <= 0 {
		wait = DefaultBootstrapBackoff
	}
	timeout := opts.JoinTimeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	names := make([]string, len(boot))
	for i, ai := range boot {
		names[i] = ai.ID.String()
	}
	via := strings.Join(names, ", ")

	var err error
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = n.Join(actx, boot)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("join the ring through %s: %w", via, ctx.Err())
		}
		if i == attempts {
			break
		}
		fmt.Fprintf(logw, "join through %s failed (attempt %d of %d), retrying in %v: %s\n",
			via, i, attempts, wait, OneLine(err.Error()))
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("join the ring through %s: %w", via, err)
		}
		wait *= 2
		if beforeRetry != nil {
			beforeRetry()
		}
	}
	return fmt.Errorf("join the ring through %s: gave up after %d attempts: %w", via, attempts, err)
}

// OneLine folds a multi-line message (libp2p's dial errors list every
// address tried, one per line) into one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// logCorrupt writes each block found corrupt on this node's disk
// (api.EventBlockCorrupt) to the daemon's log until ctx ends, those
// published before it ended included: a failing disk is its owner's to
// know of with no UI attached. The event bus drops a subscriber that
// falls behind; this one then subscribes again after the last event it
// saw.
func (d *Daemon) logCorrupt(ctx context.Context) {
	var seen uint64
	log := func(e api.NodeEvent) {
		seen = e.Seq
		if e.Kind == api.EventBlockCorrupt {
			fmt.Fprintf(d.log, "%s\n", e.Message)
		}
	}
	for {
		recent, ch := d.node.events.subscribe(seen)
		for _, e := range recent {
			log(e)
		}
		for open := true; open; {
			select {
			case e, ok := <-ch:
				if open = ok; ok {
					log(e)
				}
			case <-ctx.Done():
				// Those still queued, and (had the bus just dropped
				// us) those the log holds after them.
				d.node.events.unsubscribe(ch)
				for e := range ch {
					log(e)
				}
				for _, e := range d.node.events.recent(seen) {
					log(e)
				}
				return
			}
		}
	}
}
