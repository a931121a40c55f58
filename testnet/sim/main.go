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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"
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
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || commands[args[0]] == nil {
		return errors.New("usage: sim lookups|churn|fetch|balance [flags] (sim CMD -h lists the flags)")
	}
	return commands[args[0]](ctx, args[1:], out)
}

// common are the flags every networked subcommand takes.
type common struct {
	peers   int
	profile string
	seed    uint64
	vnodes  int
}

func (c *common) register(fs *flag.FlagSet, peers int) {
	fs.IntVar(&c.peers, "n", peers, "peers")
	fs.StringVar(&c.profile, "profile", "heterogeneous", "link profile: lan, wan or heterogeneous")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of peer IDs, links and every random choice")
	fs.IntVar(&c.vnodes, "vnodes", 1, "virtual nodes per peer")
}

// header is the line every report starts with: what ran, where.
func header(out io.Writer, title string, args []string) {
	fmt.Fprintf(out, "## %s\n\n`sim %s` — %s, %d CPUs (GOMAXPROCS %d), load average %s at the start.\n\n",
		title, strings.Join(args, " "), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), loadavg())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return "unknown"
	}
	return f[0]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
