package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/peer/api"
)

// ring is the daemons of one loopback ring, driven through the peer CLI
// only, as a script would.
type ring struct {
	bin   string // the peer binary
	env   []string
	peers []*ringPeer
	// daemonArgs are added to every daemon's command line (--pprof).
	daemonArgs []string
	gprof      *goProfiler // -pprof: the fetches' Go profiles
	// layoutSeed, if not 0, derives each daemon's identity (-layout-seed).
	layoutSeed uint64
}

type ringPeer struct {
	repo   string
	daemon *daemon
	status api.Status
}

// startRing starts n daemons listening on 127.0.0.1 only: the first starts
// a ring, the others join through it. Started daemons are in r.peers even
// when an error is returned, for the caller to stop.
func startRing(ctx context.Context, r *ring, dir string, n, capacity int) error {
	start := func(i int, bootstrap string) error {
		p := &ringPeer{repo: filepath.Join(dir, strconv.Itoa(i+1))}
		if r.layoutSeed != 0 {
			if err := writeIdentity(p.repo, r.layoutSeed, i); err != nil {
				return err
			}
		}
		args := []string{"daemon", "--repo", p.repo, "--listen", "/ip4/127.0.0.1/tcp/0", "--capacity", strconv.Itoa(capacity)}
		if bootstrap != "" {
			args = append(args, "--bootstrap", bootstrap)
		}
		args = append(args, r.daemonArgs...)
		d, err := startDaemon(fmt.Sprintf("peer %d", i+1), p.repo+".log", r.env, r.bin, args...)
		if err != nil {
			return err
		}
		p.daemon = d
		r.peers = append(r.peers, p)
		return nil
	}
	if err := start(0, ""); err != nil {
		return err
	}
	if err := r.waitStatus(ctx, r.peers[0]); err != nil {
		return err
	}
	boot, err := tcpAddr(r.peers[0].status.Addrs)
	if err != nil {
		return fmt.Errorf("peer 1: %w", err)
	}
	for i := 1; i < n; i++ {
		if err := start(i, boot); err != nil {
			return err
		}
	}
	for _, p := range r.peers[1:] {
		if err := r.waitStatus(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// writeIdentity makes repo with the identity key of peer i of layout seed:
// the same seed gives the same peer IDs, hence (with fixed vnode indices)
// the same ring positions.
func writeIdentity(repo string, seed uint64, i int) error {
	rng := rand.NewChaCha8(seedBytes(seed, uint64(i)))
	key, _, err := crypto.GenerateEd25519Key(rng)
	if err != nil {
		return err
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(repo, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(repo, peer.IdentityFile), data, 0o600)
}

func seedBytes(seed, i uint64) [32]byte {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	binary.LittleEndian.PutUint64(b[8:], i)
	return b
}

// tcpAddr picks the loopback TCP address among a peer's: the one the ring
// and iperf3's baseline both use.
func tcpAddr(addrs []string) (string, error) {
	for _, a := range addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a, nil
		}
	}
	return "", fmt.Errorf("no /ip4/127.0.0.1/tcp address among %q", addrs)
}

// poll calls f every interval until it returns true, ctx ends or timeout
// passes; the error then carries what f said last.
func poll(ctx context.Context, what string, timeout, interval time.Duration, f func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, last, err := f()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v; last: %s", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-time.After(interval):
		}
	}
}

// waitStatus waits until the daemon answers `peer status` with an address.
func (r *ring) waitStatus(ctx context.Context, p *ringPeer) error {
	return poll(ctx, p.daemon.name+" answers peer status", 30*time.Second, 100*time.Millisecond, func() (bool, string, error) {
		if err := p.daemon.exited(); err != nil {
			return false, "", err
		}
		s, err := r.status(ctx, p)
		if err != nil {
			return false, err.Error(), nil
		}
		p.status = s
		return len(s.Addrs) > 0, "no addresses yet", nil
	})
}

func (r *ring) status(ctx context.Context, p *ringPeer) (api.Status, error) {
	var s api.Status
	return s, r.peerJSON(ctx, &s, "status", "--repo", p.repo, "--json")
}

func (r *ring) routing(ctx context.Context, p *ringPeer) (api.Ring, error) {
	var g api.Ring
	return g, r.peerJSON(ctx, &g, "ring", "--repo", p.repo, "--json")
}

// peerJSON runs a `peer` query command and decodes what it prints.
func (r *ring) peerJSON(ctx context.Context, v any, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := output(command(ctx, r.env, r.bin, args...))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("peer %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// waitFormed polls `peer ring --json` of every daemon until the ring is the
// one stabilization converges to (see formed) and returns how long that
// took.
func (r *ring) waitFormed(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := poll(ctx, "the ring forms", timeout, 250*time.Millisecond, func() (bool, string, error) {
		statuses := make([]api.Status, len(r.peers))
		rings := make([]api.Ring, len(r.peers))
		for i, p := range r.peers {
			if err := p.daemon.exited(); err != nil {
				return false, "", err
			}
			var err error
			if rings[i], err = r.routing(ctx, p); err != nil {
				return false, err.Error(), nil
			}
			statuses[i] = p.status
		}
		why := formed(statuses, rings, chord.DefaultConfig().SuccessorListLen)
		return why == "", why, nil
	})
	return time.Since(start), err
}

// formed says why the ring is not yet the one Chord's stabilization
// converges to, or "" once it is: every vnode of every peer has the vnode
// before it on the circle of all peers' positions as its predecessor and
// the ones after it (all others, at most listLen) as its successor list.
// Then every peer names every replica set alike, and a put or a get meets
// no routing still in motion.
func formed(statuses []api.Status, rings []api.Ring, listLen int) string {
	var ids []string
	for _, s := range statuses {
		ids = append(ids, s.Positions...)
	}
	if len(ids) == 0 {
		return "no positions"
	}
	slices.Sort(ids) // equal-length hex sorts as the numbers do
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	want := min(len(ids)-1, listLen)
	for p, g := range rings {
		if len(g.Vnodes) != len(statuses[p].Positions) {
			return fmt.Sprintf("peer %d: %d vnodes in its ring, %d positions in its status", p+1, len(g.Vnodes), len(statuses[p].Positions))
		}
		for _, v := range g.Vnodes {
			i, ok := index[v.ID]
			if !ok {
				return fmt.Sprintf("peer %d: vnode %.16s is not among the peers' positions", p+1, v.ID)
			}
			if len(ids) > 1 {
				if prev := ids[(i+len(ids)-1)%len(ids)]; v.Predecessor == nil || v.Predecessor.ID != prev {
					return fmt.Sprintf("peer %d: vnode %.16s: predecessor is not %.16s", p+1, v.ID, prev)
				}
			}
			if len(v.Successors) != want {
				return fmt.Sprintf("peer %d: vnode %.16s: %d successors, want %d", p+1, v.ID, len(v.Successors), want)
			}
			for k, s := range v.Successors {
				if next := ids[(i+1+k)%len(ids)]; s.ID != next {
					return fmt.Sprintf("peer %d: vnode %.16s: successor %d is %.16s, want %.16s", p+1, v.ID, k+1, s.ID, next)
				}
			}
		}
	}
	return ""
}

// stop stops every daemon at once and waits. Each gets a moment for its
// graceful leave; the ring is being thrown away, so not for long.
func (r *ring) stop() {
	done := make(chan struct{})
	for _, p := range r.peers {
		go func() {
			p.daemon.stop(3 * time.Second)
			done <- struct{}{}
		}()
	}
	for range r.peers {
		<-done
	}
}

// storedBytes sums the block stores of all daemons.
func (r *ring) storedBytes(ctx context.Context) (total int64, each []int64, err error) {
	each = make([]int64, len(r.peers))
	for i, p := range r.peers {
		s, err := r.status(ctx, p)
		if err != nil {
			return 0, nil, err
		}
		each[i] = s.BytesUsed
		total += s.BytesUsed
	}
	return total, each, nil
}

// ringCalls sums the ring calls the daemons have made (each daemon's
// status): a count that the machine's load does not move, unlike CPU.
func (r *ring) ringCalls(ctx context.Context) (int64, error) {
	var n int64
	for _, p := range r.peers {
		s, err := r.status(ctx, p)
		if err != nil {
			return 0, err
		}
		n += s.RingCalls.Out
	}
	return n, nil
}
