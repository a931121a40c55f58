// Command sim is the in-process simulator of issue 4: a ring of peer.Node
// on libp2p's mocknet, shaped to one of the testnet's link profiles (per
// peer round-trip delay and access rate, see netshape), measured against an
// oracle of the live peers, side by side with go-libp2p-kad-dht on the same
// network. Each subcommand prints a markdown report on stdout:
//
//	sim lookups  lookup latency (recursive, iterative) as a multiple of the
//	             direct round trip; kad-dht's GetClosestPeers and FindPeer
//	             on the same network; maintenance traffic per peer
//	sim churn    timers running, time-scaled, peers crashing and new ones
//	             joining (exponential sessions), a workload of lookups and
//	             block puts/gets; lookups right, latency, blocks lost
//	sim fetch    throughput of a shared file fetched by one peer, against
//	             the bottleneck of its downlink and the holders' uplinks
//	sim balance  keys per peer relative to capacity, with and without
//	             capacity-weighted virtual nodes (no network)
//	sim floor    the lookup latency no routing can beat on a profile: one
//	             round trip from the origin to the nearest peer that knows
//	             the key's successor (no network)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"chordshare/chord"
	"chordshare/internal/cpustat"
	"chordshare/peer"
	"chordshare/testnet/sim/netshape"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

var commands = map[string]func(ctx context.Context, args []string, out io.Writer) error{
	"lookups": lookupsCmd,
	"churn":   churnCmd,
	"fetch":   fetchCmd,
	"balance": balanceCmd,
	"floor":   floorCmd,
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || commands[args[0]] == nil {
		return errors.New("usage: sim lookups|churn|fetch|balance|floor [flags] (sim CMD -h lists the flags)")
	}
	return commands[args[0]](ctx, args[1:], out)
}

// common are the flags every networked subcommand takes.
type common struct {
	peers   int
	profile string
	seed    uint64
	vnodes  int
	// byCapacity, when set, replaces vnodes: peers with an uplink below
	// below bytes/s are clients (0 vnodes), the others run per vnodes per
	// below bytes/s of uplink, at most most.
	byCapacity string
	below, per float64
	most       int
	// chord's switches
	proximity bool
	backoff   int
	choices   int
}

func (c *common) register(fs *flag.FlagSet, peers int) {
	fs.IntVar(&c.peers, "n", peers, "peers")
	fs.StringVar(&c.profile, "profile", "heterogeneous", "link profile: lan, wan or heterogeneous")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of peer IDs, links and every random choice")
	fs.IntVar(&c.vnodes, "vnodes", 1, "virtual nodes per peer")
	fs.StringVar(&c.byCapacity, "capacity-vnodes", "", "vnodes from each peer's uplink instead of -vnodes: \"log\" for chord.CapacityForBandwidth (1 at 32 kbit/s to 8 at 100 Mbit/s, log-scaled), or BELOW:PER:MAX: clients (0) below BELOW bytes/s, else PER per BELOW bytes/s, at most MAX (e.g. 250e3:1:8)")
	fs.BoolVar(&c.proximity, "proximity", chord.DefaultConfig().Proximity, "proximity neighbour selection for fingers")
	fs.IntVar(&c.backoff, "backoff", chord.DefaultConfig().Backoff, "chord Backoff: quiet vnodes run maintenance every 2, 4, ... up to this many intervals (1: every interval)")
	fs.IntVar(&c.choices, "vnode-choices", chord.DefaultConfig().VnodeChoices, "chord VnodeChoices: lookups per vnode at join; every own position in the ring windows they show is a candidate (1: vnode i at index i)")
}

// chordConfig applies the chord switches to cfg.
func (c *common) chordConfig(cfg peer.Config) peer.Config {
	cfg.Chord.Proximity = c.proximity
	cfg.Chord.Backoff = c.backoff
	if c.choices > 0 {
		cfg.Chord.VnodeChoices = c.choices
	}
	return cfg
}

// parse reads -capacity-vnodes.
func (c *common) parse() error {
	if c.byCapacity == "" || c.byCapacity == "log" {
		return nil
	}
	if _, err := fmt.Sscanf(strings.ReplaceAll(c.byCapacity, ":", " "), "%g %g %d", &c.below, &c.per, &c.most); err != nil || c.below <= 0 || c.per <= 0 || c.most < 1 {
		return fmt.Errorf("-capacity-vnodes %q: want BELOW:PER:MAX, all positive", c.byCapacity)
	}
	return nil
}

// vnodesOf is how many vnodes a peer with access link a runs.
func (c *common) vnodesOf(a netshape.Access) int {
	switch c.byCapacity {
	case "":
		return c.vnodes
	case "log":
		if a.Up == 0 {
			return chord.DefaultConfig().Vnodes
		}
		return chord.CapacityForBandwidth(8 * a.Up)
	}
	if a.Up != 0 && a.Up < c.below {
		return 0
	}
	rate := a.Up
	if rate == 0 {
		rate = c.below // an unshaped profile: every peer the smallest storing one
	}
	return max(1, min(c.most, int(math.Round(c.per*rate/c.below))))
}

// vnodesDesc says how vnodes were chosen, for report titles.
func (c *common) vnodesDesc() string {
	pns := "proximity fingers"
	if !c.proximity {
		pns = "no proximity"
	}
	if c.byCapacity == "" {
		return fmt.Sprintf("%d vnodes, %s, backoff %d", c.vnodes, pns, c.backoff)
	}
	return fmt.Sprintf("vnodes by capacity (%s), %s, backoff %d", c.byCapacity, pns, c.backoff)
}

// header is the line every report starts with: what ran, where.
func header(out io.Writer, title string, args []string) {
	fmt.Fprintf(out, "## %s\n\n`sim %s` — %s, %d CPUs (GOMAXPROCS %d), load average %s at the start.\n\n",
		title, strings.Join(args, " "), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), cpustat.LoadAvg())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
