package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"chordshare/chord"
	"chordshare/internal/cpustat"
)

// table is one result table, printed aligned on a terminal or as markdown.
type table struct {
	title, note string
	head        []string
	rows        [][]string
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.rows = append(t.rows, row)
}

func (t *table) addSummary(n int, killed string, mode chord.LookupMode, want int, s chord.Summary) {
	t.add(n, killed, mode, want, s.Lookups, s.Errors, pct(s.FirstLiveShare), pct(s.RightShare),
		f2(s.MeanHops), s.P99Hops, f2(s.CallsPerLookup), f2(s.FailedPerLookup), s.Fallbacks)
}

func (t *table) text(w io.Writer) {
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n", t.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.head, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
}

func (t *table) markdown(w io.Writer) {
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## %s\n\n%s\n\n", t.title, t.note)
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.head, " | "), strings.Repeat(" ---: |", len(t.head)))
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

type report struct {
	o                        options
	args                     []string
	build, hops, maint, fail *table
	reconverge, latency      *table
	targetsMet               bool
	load                     string // 1-minute load average when the run started
}

func newReport(o options, args []string) *report {
	return &report{
		o: o, args: args, targetsMet: true, load: cpustat.LoadAvg(),
		build: &table{
			title: "Build",
			note: "Peers join one at a time through the real Join; the vnodes whose successor lists a newcomer " +
				"enters then stabilize, the newcomer fixes its fingers, and a last pass fixes every peer's fingers " +
				"(chord.NewSim). Every ring is verified before it is measured: every vnode's predecessor, whole " +
				"successor list and all 256 finger entries equal the true ring's (check time).",
			head: []string{"N", "vnodes", "build", "check", "RPCs", "RPCs/peer", "converged"},
		},
		hops: &table{
			title: "Lookup path length",
			note: fmt.Sprintf("Hops: LookupResult.Hops, the remote nodes a lookup visits after its origin "+
				"(recursive: forwards; iterative: nodes asked). %d lookups per row of random keys from random "+
				"peers, each asking for %d successor(s); every one checked against the true ring (all right). "+
				"Targets (issue 2): mean <= ½·log2 N + 0.5, p99 <= log2 N + 1. p50/p99 are nearest-rank. "+
				"RPCs/lookup: FindSuccessor plus NextHop calls.", o.lookups, o.want),
			head: []string{"N", "mode", "lookups", "mean", "p50", "p99", "max", "mean target", "p99 target", "met", "RPCs/lookup"},
		},
		maint: &table{
			title: "Maintenance at steady state",
			note: "RPCs per peer per round, counted over -rounds chord.Round calls on the converged ring " +
				"(stabilize, check-predecessor and fix-fingers on every peer, each with its adaptive backoff: a " +
				"quiet vnode runs a task every 2, 4, ... up to Config.Backoff rounds). Neighbors: stabilization " +
				"(notify rides on it); Changed: a vnode telling its predecessor its list changed; Ping: " +
				"predecessor checks not answered by the predecessor's own stabilization, and finger checks " +
				"(proximity); Owns: finger checks of exact fingers; lookup RPCs: fingers looked up again. A round " +
				"is one period of each timer (DefaultConfig: stabilize and fix-fingers every 2 s, " +
				"check-predecessor every 4 s).",
			head: []string{"N", "rounds", "Neighbors", "Changed", "Ping", "Owns", "lookup RPCs", "total", "ring still correct"},
		},
		fail: &table{
			title: "Lookups right after a mass failure, no repair",
			note: fmt.Sprintf("The share -fail of the peers is killed at once (MemNet.Kill); no maintenance runs "+
				"after. Lookups run one after another, so a peer that found a node dead in one lookup has "+
				"dropped it from its fingers for the next (successor lists change only through "+
				"stabilization, which does not run). Each asks for the successor list (want = %d). "+
				"first live right: the first live node of the answer is the true successor among live peers "+
				"(CheckFirstLive); first right: the first node returned is. Failed calls: RPCs that found their "+
				"peer dead (each a timeout on a real network). Mean hops is LookupResult.Hops, which counts "+
				"those failed calls in iterative lookups but not in recursive ones. fallbacks: recursive lookups that failed and were "+
				"redone iteratively. Rows with 0 killed are the same ring just before.", o.failWant),
			head: []string{"N", "killed", "mode", "want", "lookups", "errors", "first live right", "first right",
				"mean hops", "p99 hops", "RPCs/lookup", "failed calls/lookup", "fallbacks"},
		},
		reconverge: &table{
			title: "Reconvergence after the mass failure",
			note: "chord.Round on every live peer, after the failure's lookups, until every live vnode's " +
				"predecessor and successor list is right (chord.Oracle.Check). The failure hit a ring that had " +
				"run -rounds quiet rounds, so vnodes were at their backed-off intervals (up to backoff rounds). " +
				"A round is one period of each timer (2 s by default).",
			head: []string{"N", "killed", "backoff", "rounds to right"},
		},
		latency: &table{
			title: "Lookup latency with and without proximity neighbour selection",
			note: "Virtual-clock MemNet (chord.NewLatencySim): each peer's access delay log-uniform in [0.5, 500] ms, " +
				"a round trip the sum of the two peers' (1-1000 ms); the ring is built and fingers chosen " +
				"through the protocol, round trips measured by its own calls, then 128 maintenance rounds run " +
				"(proximity pings at most 4 unknown candidates per finger choice and re-chooses every 8th finger " +
				"check, so its choice widens as it runs). Latency as a multiple of the " +
				"median round trip between two random peers.",
			head: []string{"N", "mode", "proximity", "lookups", "mean hops", "median RTT ms", "p50 ms", "p99 ms", "p50/RTT", "p99/RTT"},
		},
	}
}

func (r *report) tables() []*table {
	return []*table{r.build, r.hops, r.maint, r.fail, r.reconverge, r.latency}
}

func (r *report) verdict() string {
	if r.targetsMet {
		return "Path-length targets met for every N and both modes."
	}
	return "Path-length targets NOT met for some rows (see the met column)."
}

func (r *report) text(w io.Writer) {
	for _, t := range r.tables() {
		t.text(w)
	}
	fmt.Fprintf(w, "\n%s\n", r.verdict())
}

func (r *report) markdown(w io.Writer) {
	cmd := []string{"go", "run", "./testnet/ringsim"}
	for _, a := range r.args {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a) // as typed in a shell
		}
		cmd = append(cmd, a)
	}
	fmt.Fprintf(w, "# ringsim report\n\nGenerated by:\n\n```\n%s\n```\n\n", strings.Join(cmd, " "))
	fmt.Fprintf(w, "Machine: %s, nproc %d, %s %s/%s; load average %s at the start (times are wall clock, "+
		"shared with whatever else ran). Date: %s.\n\n", cpuModel(), runtime.NumCPU(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, r.load, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Config: chord.SimConfig (DefaultConfig with timeouts no in-memory call reaches) with %d "+
		"vnode(s) per peer and a successor list of %d; "+
		"MemNet (in memory: no latency, a call to a dead peer fails at once); seed %d.\n\n**%s**\n",
		r.o.vnodes, r.o.succList, r.o.seed, r.verdict())
	for _, t := range r.tables() {
		t.markdown(w)
	}
}

// cpuModel is the processor's name from /proc/cpuinfo, where there is one.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
