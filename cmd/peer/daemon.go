package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/peer/api"
)

var daemonCmd = &command{
	name:  "daemon",
	args:  "[--repo DIR] [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--capacity N] [--lookup MODE]",
	short: "run a peer: join (or start) a ring and serve the local API",
	long: `Runs a peer until interrupted (SIGINT or SIGTERM). The repo is created on
first start, with a new identity key and a config.json holding the defaults;
flags override that config for this run. Without --bootstrap (here or in the
config) the peer starts a new ring. An unreachable bootstrap peer is retried
for about 7.5 s before the daemon gives up.

The daemon prints its addresses on stderr, one per line; 'peer status --json'
lists them too. The local API listens on DIR/api.sock.`,
}

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(daemonCmd, stderr)
	repo := fs.String("repo", "", "repo `DIR` (default $PEER_REPO, else ~/.chordshare)")
	var listen, bootstrap stringList
	fs.Var(&listen, "listen", "listen on `MULTIADDR`; repeatable (default: the repo config's, initially\n"+
		strings.Join(peer.DefaultListen, " and ")+")")
	fs.Var(&bootstrap, "bootstrap", "join the ring through the peer at `MULTIADDR`, which ends in /p2p/<peer id>;\nrepeatable (default: the repo config's, initially none: start a new ring)")
	// Flag defaults are left zero: an unset flag means "the repo config's".
	capacity := fs.Int("capacity", 0, fmt.Sprintf("run `N` vnodes (ring positions); 0 for a client that stores nothing\n(default: the repo config's, initially %d)", chord.DefaultConfig().Vnodes))
	lookup := fs.String("lookup", "", "lookup `MODE`: recursive or iterative (default: the repo config's, initially "+chord.DefaultConfig().Lookup.String()+")")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	dir, err := api.ResolveRepo(*repo)
	if err != nil {
		return err
	}
	opts := peer.DaemonOptions{Repo: dir, Log: stderr}
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
	fmt.Fprintf(stderr, "peer %s: repo %s, %s, %s lookups\n", d.ID(), dir, plural(cfg.Vnodes, "vnode"), cfg.Lookup)
	for _, a := range d.Addrs() {
		fmt.Fprintf(stderr, "listening on %s\n", a)
	}
	fmt.Fprintf(stderr, "api on %s\n", d.SocketPath())
	err = d.Run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "stopped")
	return nil
}
