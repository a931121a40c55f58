package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/peer/api"
)

var daemonCmd = &command{
	name:  "daemon",
	args:  "[--repo DIR] [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--announce MULTIADDR]... [--capacity N] [--vnode-choices N] [--storage-max SIZE] [--repair-rate SIZE] [--uplink SIZE|auto] [--replicas N] [--write-quorum N] [--lookup MODE] [--pprof] [--tui]",
	short: "run a peer: join (or start) a ring and serve the local API",
	long: `Runs a peer until interrupted (SIGINT or SIGTERM). The repo is created on
first start, with a new identity key and a config.json holding the defaults;
flags override that config for this run. Without --bootstrap (here or in the
config) the peer starts a new ring. An unreachable bootstrap peer is retried
for about 7.5 s before the daemon gives up.

A peer with capacity keeps the blocks it is responsible for in DIR/blocks,
at most --storage-max of them (puts beyond it are refused as "store full",
and the share that wanted them fails unless other replicas take them).

The daemon prints its addresses on stderr, one per line; 'peer status --json'
lists them too. The local API listens on DIR/api.sock.

With --tui the terminal UI (as 'peer tui' opens it) runs attached to the
daemon, whose log lines go to DIR/daemon.log instead; quitting the UI stops
the daemon.

With --pprof the local API also serves Go's runtime profiles under
/debug/pprof/ (net/http/pprof), to profile a transfer in place:
  curl --unix-socket DIR/api.sock -o cpu.pprof 'http://peer/debug/pprof/profile?seconds=10'
  go tool pprof -top cpu.pprof`,
}

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(daemonCmd, stderr)
	repo := fs.String("repo", "", "repo `DIR` (default $PEER_REPO, else ~/.chordshare)")
	var listen, bootstrap, announce stringList
	fs.Var(&listen, "listen", "listen on `MULTIADDR`; repeatable (default: the repo config's, initially\n"+
		strings.Join(peer.DefaultListen, " and ")+")")
	fs.Var(&bootstrap, "bootstrap", "join the ring through the peer at `MULTIADDR`, which ends in /p2p/<peer id>;\nrepeatable (default: the repo config's, initially none: start a new ring)")
	fs.Var(&announce, "announce", "tell other peers `MULTIADDR` instead of the listen addresses (behind a proxy\nor port forward); repeatable; this run only (default: the listen addresses)")
	// Flag defaults are left zero: an unset flag means "the repo config's".
	capacity := fs.Int("capacity", 0, fmt.Sprintf("run `N` vnodes (ring positions); 0 for a client that stores nothing\n(default: the repo config's, initially %d)", chord.DefaultConfig().Vnodes))
	choices := fs.Int("vnode-choices", 0, fmt.Sprintf("place the vnodes, when joining, by `N` lookups per vnode: among every own position\nin the parts of the ring they show, the ones splitting the largest arcs most evenly\n(1: fixed positions); this run only (default %d)", chord.DefaultConfig().VnodeChoices))
	var storageMax *int64
	fs.Func("storage-max", "store at most `SIZE` of blocks: bytes or a number with a unit (500MB, 2GiB);\n0 for no limit (default: the repo config's, initially 0)", func(v string) error {
		n, err := peer.ParseSize(v)
		storageMax = &n
		return err
	})
	var repairRate *int64
	fs.Func("repair-rate", "re-replicate at most `SIZE` per second (blocks and range summaries), e.g. 4KB\nfor a 32 kbit/s link; 0 for no limit (default: the repo config's, initially 1MiB)", func(v string) error {
		n, err := peer.ParseSize(v)
		repairRate = &n
		return err
	})
	var uplink *int64
	fs.Func("uplink", "the `SIZE` per second this peer's link sends (10KB for 80 kbit/s): block uploads\nare paced below it, so ring calls on a slow link stay fast; auto: the peer\nestimates it from ring call delays; 0 for no pacing, else at least 1280\n(default: the repo config's, initially 0)", func(v string) error {
		n, err := peer.ParseUplink(v)
		uplink = &n
		return err
	})
	replicas := fs.Int("replicas", 0, fmt.Sprintf("store each block on `N` distinct peers, 1..%d; give every peer of a ring the same N\n(default: the repo config's, initially %d)", peer.MaxReplicas(), peer.DefaultConfig().Replicas))
	quorum := fs.Int("write-quorum", 0, fmt.Sprintf("a put returns once `N` replicas have stored the block durably, 1..replicas;\nthe others are written in the background (default: the repo config's, initially %d)", peer.DefaultConfig().WriteQuorum))
	withTUI := fs.Bool("tui", false, "run the terminal UI attached; the log goes to DIR/"+daemonLogName)
	pprof := fs.Bool("pprof", false, "serve Go's runtime profiles on the local API socket, under /debug/pprof/;\nthis run only")
	lookup := fs.String("lookup", "", "lookup `MODE`: recursive or iterative (default: the repo config's, initially "+chord.DefaultConfig().Lookup.String()+")")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	dir, err := api.ResolveRepo(*repo)
	if err != nil {
		return err
	}
	logw := stderr
	var logf *os.File
	if *withTUI {
		if logf, err = openDaemonLog(dir); err != nil {
			return err
		}
		defer logf.Close()
		logw = logf
		fmt.Fprintf(stderr, "starting the peer (its log: %s)\n", logf.Name())
	}
	opts := peer.DaemonOptions{Repo: dir, Log: logw, Announce: announce, Pprof: *pprof}
	set := setFlags(fs)
	if set["listen"] {
		opts.Listen = listen
	}
	if set["bootstrap"] {
		opts.Bootstrap = bootstrap
	}
	if set["capacity"] {
		opts.Capacity = capacity
	}
	if set["vnode-choices"] {
		opts.VnodeChoices = *choices
	}
	if set["replicas"] {
		opts.Replicas = replicas
	}
	if set["write-quorum"] {
		opts.WriteQuorum = quorum
	}
	opts.StorageMax = storageMax
	opts.RepairRate = repairRate
	opts.Uplink = uplink
	if set["lookup"] {
		if _, err := chord.ParseLookupMode(*lookup); err != nil {
			return fmt.Errorf("--lookup: %w", err)
		}
		opts.Lookup = *lookup
	}

	d, err := peer.StartDaemon(ctx, opts)
	if err != nil {
		return err
	}
	cfg := d.Config().Chord
	fmt.Fprintf(logw, "peer %s: repo %s, %s, %s lookups\n", d.ID(), dir, plural(cfg.Vnodes, "vnode"), cfg.Lookup)
	if st := d.Store(); st != nil {
		s := st.Stats()
		fmt.Fprintf(logw, "blocks: %s (%s) in %s, limit %s\n", plural(s.Count, "block"), peer.FormatSize(s.Bytes),
			filepath.Join(dir, peer.BlocksDir), storageLimit(s.MaxBytes))
		if s.NamedTemps {
			fmt.Fprintln(logw, "blocks: no unnamed temp files (O_TMPFILE) here: puts use named ones and rename them")
		}
	} else {
		fmt.Fprintln(logw, "blocks: none stored (a client, capacity 0)")
	}
	for _, a := range d.Addrs() {
		fmt.Fprintf(logw, "listening on %s\n", a)
	}
	fmt.Fprintf(logw, "api on %s\n", d.SocketPath())
	if *withTUI {
		return runDaemonTUI(ctx, d, dir, logf)
	}
	err = d.Run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "stopped")
	return nil
}

// storageLimit prints a --storage-max value.
func storageLimit(max int64) string {
	if max == 0 {
		return "none"
	}
	return peer.FormatSize(max)
}
