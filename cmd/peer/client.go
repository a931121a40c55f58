package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"chordshare/peer"
	"chordshare/peer/api"
)

// clientTimeout bounds a status or ring call: the daemon answers them from
// memory, so a daemon that takes longer is stuck.
const clientTimeout = 10 * time.Second

var statusCmd = &command{
	name:  "status",
	args:  "[--repo DIR] [--json]",
	short: "show the running peer's ID, addresses, ring positions and counts",
	long: `Asks the daemon of the repo. With --json the answer is printed as the API
gives it: "id" is the peer ID and "addrs" are multiaddrs ending in /p2p/<id>,
each usable as another daemon's --bootstrap.`,
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClient(ctx, statusCmd, args, stdout, stderr, func(ctx context.Context, c *api.Client) (any, func(io.Writer), error) {
		s, err := c.Status(ctx)
		return s, func(w io.Writer) { printStatus(w, s) }, err
	})
}

var ringCmd = &command{
	name:  "ring",
	args:  "[--repo DIR] [--json]",
	short: "show each vnode's predecessor, successors and fingers",
	long: `Asks the daemon of the repo. Neighbours are named by peer ID and vnode index;
"self" marks this peer's own vnodes. With --json the answer is printed as the
API gives it.`,
}

func runRing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClient(ctx, ringCmd, args, stdout, stderr, func(ctx context.Context, c *api.Client) (any, func(io.Writer), error) {
		r, err := c.Ring(ctx)
		return r, func(w io.Writer) { printRing(w, r) }, err
	})
}

// runClient parses the flags every client command has, asks the daemon,
// and prints its answer as JSON or as text.
func runClient(ctx context.Context, c *command, args []string, stdout, stderr io.Writer,
	ask func(context.Context, *api.Client) (answer any, text func(io.Writer), err error)) error {
	fs := newFlagSet(c, stderr)
	repo := fs.String("repo", "", "repo `DIR` of the daemon to ask (default $PEER_REPO, else ~/.chordshare)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	dir, err := api.ResolveRepo(*repo)
	if err != nil {
		return err
	}
	client, err := api.NewClient(dir)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	answer, text, err := ask(ctx, client)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(answer)
	}
	text(stdout)
	return nil
}

func printStatus(w io.Writer, s api.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("peer id", s.ID)
	for i, a := range s.Addrs {
		k := ""
		if i == 0 {
			k = "addresses"
		}
		row(k, a)
	}
	if len(s.Addrs) == 0 {
		row("addresses", "(none)")
	}
	if s.Capacity == 0 {
		row("capacity", "0 vnodes (client only)")
	} else {
		row("capacity", plural(s.Capacity, "vnode"))
	}
	for i, p := range s.Positions {
		k := ""
		if i == 0 {
			k = "positions"
		}
		row(k, p)
	}
	if s.Capacity > 0 {
		row("blocks", fmt.Sprintf("%s, %s of %s", plural(s.BlocksStored, "block"), peer.FormatSize(s.BytesUsed), storageLimit(s.StorageMax)))
	} else {
		row("blocks", "none (a client stores nothing)")
	}
	if s.Capacity > 0 {
		row("repair", repairLine(s))
		row("puts in", putRoomLine(s.PutRoom))
	}
	row("ring size", "~"+plural(s.RingSizeEstimate, "peer"))
	row("connected", plural(s.ConnectedPeers, "peer"))
	row("lookups", s.LookupMode)
	row("uplink", uplinkLine(s))
	row("uptime", (time.Duration(s.UptimeSeconds) * time.Second).String())
	tw.Flush()
}

func printRing(w io.Writer, r api.Ring) {
	fmt.Fprintf(w, "peer %s, %s\n", r.ID, plural(len(r.Vnodes), "vnode"))
	if len(r.Vnodes) == 0 {
		fmt.Fprintln(w, "a client: no ring positions of its own")
	}
	name := func(n api.Neighbour) string {
		if n.Peer == r.ID {
			return fmt.Sprintf("self/%d", n.Vnode)
		}
		return fmt.Sprintf("%s/%d", n.Peer, n.Vnode)
	}
	for _, v := range r.Vnodes {
		fmt.Fprintf(w, "\nvnode %d at %s\n", v.Index, v.ID)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(role string, n api.Neighbour) {
			rtt := "-"
			if n.RTTMillis > 0 {
				rtt = fmt.Sprintf("%.1f ms", n.RTTMillis)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", role, name(n), short(n.ID), rtt)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", "", "PEER/VNODE", "POSITION", "RTT")
		if v.Predecessor != nil {
			row("predecessor", *v.Predecessor)
		} else {
			fmt.Fprintf(tw, "  predecessor\t(unknown)\t\t\n")
		}
		for i, s := range v.Successors {
			row(fmt.Sprintf("successor %d", i+1), s)
		}
		for _, f := range v.Fingers {
			row(fmt.Sprintf("finger %d", f.K), f.Node)
		}
		tw.Flush()
	}
}

// short is the first 16 hex digits of a position, as chord.ID.String
// prints it: enough to tell nodes apart.
func short(hexID string) string {
	if len(hexID) > 16 {
		return hexID[:16]
	}
	return hexID
}

// plural is "1 peer", "2 peers".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// repairLine sums up repair for `peer status`.
func repairLine(s api.Status) string {
	r := s.Repair
	state := "idle"
	if r.InProgress {
		state = "round in progress"
	}
	last := "no round yet"
	if !r.LastRound.IsZero() {
		last = "last round " + time.Since(r.LastRound).Round(time.Second).String() + " ago"
	}
	line := fmt.Sprintf("%d block copies under-replicated, %s moved (%s) in %s, %s pending; %s, %s",
		s.UnderReplicated, plural(int(r.BlocksMoved), "block"), peer.FormatSize(r.BytesMoved),
		plural(int(r.Rounds), "round"), plural(int(r.HintsPending), "hint"), state, last)
	if r.Refused > 0 {
		line += fmt.Sprintf("; %s refused, busy", plural(int(r.Refused), "summary request"))
	}
	return line
}

// putRoomLine sums up the room for blocks being put on this peer, and
// the puts it turned away, when there are some.
func putRoomLine(r api.PutRoom) string {
	line := fmt.Sprintf("%s of %s held for blocks being received", peer.FormatSize(r.BytesHeld), peer.FormatSize(r.BytesLimit))
	if r.Refused+r.Evicted > 0 {
		line += fmt.Sprintf("; turned away: %d refused for want of room, %d evicted after going silent", r.Refused, r.Evicted)
	}
	return line
}

// uplinkLine says how block uploads are paced (--uplink).
func uplinkLine(s api.Status) string {
	switch {
	case s.UplinkAuto:
		return peer.FormatSize(s.Uplink) + "/s, estimated (auto)"
	case s.Uplink > 0:
		return peer.FormatSize(s.Uplink) + "/s, as configured"
	}
	return "unpaced"
}
