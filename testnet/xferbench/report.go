package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// transfer is one `peer share` or `peer fetch`.
type transfer struct {
	Seconds   float64   // wall time of the peer command
	Rate      float64   // file bytes per second over Seconds
	CLICPU    float64   // CPU seconds of the peer command itself
	DaemonCPU []float64 // CPU seconds of each daemon during the phase
	Machine   usage     // the machine's CPUs while the command ran
	Peak      []int64   // each daemon's peak RSS during the phase
	// PeakReset is false when VmHWM could not be reset before the phase:
	// Peak is then each daemon's lifetime peak.
	PeakReset bool
	// Profile is the daemons' perf samples by category (-perf only);
	// DaemonProfiles, each daemon's, in DaemonCPU's order.
	Profile        profile
	DaemonProfiles []profile
}

// nsPerByte is the CPU the daemons spent per file byte in each category:
// its share of the samples times their CPU time.
func (t transfer) nsPerByte(category string, size int64) float64 {
	n := t.Profile.total()
	if n == 0 {
		return 0
	}
	return float64(t.Profile[category]) / float64(n) * t.daemonsCPU() / float64(size) * 1e9
}

// daemonsCPU is the CPU seconds all daemons spent on the transfer.
func (t transfer) daemonsCPU() float64 {
	sum := 0.0
	for _, c := range t.DaemonCPU {
		sum += c
	}
	return sum
}

// cpuPerByte is the daemons' and the command's CPU per file byte, in ns.
func (t transfer) cpuPerByte(size int64) float64 {
	return (t.daemonsCPU() + t.CLICPU) / float64(size) * 1e9
}

// daemonsNsPerByte is the CPU the daemons in [from, to) spent per file
// byte in category, each daemon's share of its own samples times its own
// CPU time.
func (t transfer) daemonsNsPerByte(category string, from, to int, size int64) float64 {
	sum := 0.0
	for i := from; i < to && i < len(t.DaemonProfiles); i++ {
		if n := t.DaemonProfiles[i].total(); n > 0 {
			sum += float64(t.DaemonProfiles[i][category]) / float64(n) * t.DaemonCPU[i]
		}
	}
	return sum / float64(size) * 1e9
}

// runResult is one round of measureRun.
type runResult struct {
	Limits      limits
	SHA256, CID string
	Idle        []memory // each daemon before the share
	Share       transfer
	Fetch       transfer
	// ReplicatedAfter is when, from the share's start, the ring held every
	// copy (seconds); Copies is how many copies of each byte it added;
	// FetcherHolds is the part of the file the fetcher stores itself,
	// SharerHolds the part the sharer does (those copies cross no link).
	ReplicatedAfter, Copies, FetcherHolds, SharerHolds float64
}

// report is everything the markdown says.
type report struct {
	Command                                      string
	Date                                         time.Time
	NProc                                        int
	MemTotal                                     int64
	CPUModel, Kernel, GoVersion, LoadAvg, Commit string
	Size                                         int64
	Peers, Capacity, Replicas                    int
	IperfSecs                                    int
	Profiled                                     string // the -perf dir, if any
	GoProfiled                                   string // the -pprof dir, if any
	LayoutSeed                                   uint64 // -layout-seed, if any
	FormedIn                                     time.Duration
	Runs                                         []runResult
}

// The targets of issue 3, and kubo's figures they name.
const (
	fetchOfTCP  = 0.15 // fetch >= 15% of loopback TCP
	shareOfDisk = 0.40 // share >= 40% of disk write+fsync / r
	kuboIdleRSS = 70e6
	kuboPeakRSS = 110e6
)

// target is one check of a run against a limit.
type target struct {
	Name     string
	Measured float64 // in Unit
	Limit    float64 // what Measured is divided by, in Unit
	Unit     string
	Ratio    float64
	Need     string // the ratio's condition, for the reader
	Met      bool
	Missing  string // why it could not be checked; then nothing else is set
}

// targets checks one run. The share is checked against each reading of
// "disk write+fsync speed": the block store's own pattern (256 KiB files
// fsync'd, one writer or eight) and the disk's sequential best.
func (rep *report) targets(res runResult) []target {
	rate := func(name string, measured, limit float64, need float64, missing string) target {
		t := target{Name: name, Unit: "MB/s"}
		if limit <= 0 {
			t.Missing = missing
			return t
		}
		t.Measured, t.Limit, t.Ratio = measured/1e6, limit/1e6, measured/limit
		t.Need, t.Met = fmt.Sprintf(">= %.2f", need), t.Ratio >= need
		return t
	}
	rss := func(name string, measured, kubo float64) target {
		t := target{Name: name, Unit: "MB", Measured: measured / 1e6, Limit: kubo / 1e6, Ratio: measured / kubo}
		t.Need, t.Met = "< 1", t.Ratio < 1
		return t
	}
	r := float64(rep.Replicas)
	l := res.Limits
	return []target{
		rate("fetch / loopback TCP", res.Fetch.Rate, l.TCP, fetchOfTCP, "no TCP baseline: "+l.TCPErr),
		rate(fmt.Sprintf("share / (disk 256 KiB+fsync, 1 writer / %d)", rep.Replicas), res.Share.Rate, l.DiskSync/r, shareOfDisk, "no disk baseline"),
		rate(fmt.Sprintf("share / (disk 256 KiB+fsync, %d writers / %d)", parallelWriters, rep.Replicas), res.Share.Rate, l.DiskSyncParallel/r, shareOfDisk, "no disk baseline"),
		rate(fmt.Sprintf("share / (disk sequential+fsync / %d)", rep.Replicas), res.Share.Rate, l.DiskSeq/r, shareOfDisk, "no disk baseline"),
		rss("idle RSS, max over daemons / kubo idle", float64(maxOf(res.Idle, func(m memory) int64 { return m.RSS })), kuboIdleRSS),
		rss("peak RSS, max over daemons and transfers / kubo peak", float64(max(slices.Max(res.Share.Peak), slices.Max(res.Fetch.Peak))), kuboPeakRSS),
	}
}

func maxOf[T any](xs []T, f func(T) int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, f(x))
	}
	return m
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	n := len(rep.Runs)

	p("# xferbench: share and fetch of %s across a %d-peer loopback ring\n\n", sizeName(rep.Size), rep.Peers)
	p("- Command: `%s` (from the module root)\n", rep.Command)
	p("- Date: %s; load average at start: %s\n", rep.Date.Format("2006-01-02 15:04 MST"), rep.LoadAvg)
	p("- Machine: nproc %d (%s), %.1f GB RAM, Linux %s, %s\n", rep.NProc, rep.CPUModel, float64(rep.MemTotal)/1e9, rep.Kernel, rep.GoVersion)
	p("- Tree: %s\n", rep.Commit)
	p("- Ring: %d daemons, `peer daemon --listen /ip4/127.0.0.1/tcp/0 --capacity %d` (TCP, TLS 1.3 preferred over Noise, yamux), formed in %.1f s; r = %d. "+
		"Peer 1 runs `peer share FILE`, peer %d `peer fetch CID -o PATH` (the daemon writes PATH). Each run shares a new random file.\n",
		rep.Peers, rep.Capacity, rep.FormedIn.Seconds(), rep.Replicas, rep.Peers)
	if rep.Profiled != "" {
		p("- Profiled: Linux perf sampled every daemon during each transfer (profiles in %s), which costs them some CPU: the rates are a little low.\n", rep.Profiled)
	}
	if rep.LayoutSeed != 0 {
		p("- Layout: fixed by -layout-seed %d (identities derived from it, `--vnode-choices 1`): every invocation with that seed has the same ring layout.\n", rep.LayoutSeed)
	}
	if rep.GoProfiled != "" {
		p("- Go CPU profiles (`peer daemon --pprof`) of every daemon during each fetch are in %s (NAME-peerN.pprof, with a `go tool pprof -top` summary in NAME-peerN.txt).\n", rep.GoProfiled)
	}
	p("- Units: MB = 10^6 bytes. A transfer's rate is the file's size over the wall time of the `peer` command. " +
		"Limits are measured in the same run, just before the transfers, with the ring idle.\n\n")

	p("## Limits measured in the same run\n\n")
	p("| run | loopback TCP, iperf3 1 stream | disk 256 KiB files + fsync, 1 writer | same, %d writers | disk sequential + 1 fsync | ChaCha20-Poly1305 seal, 1 core | AES-256-GCM seal, 1 core | SHA-256, 1 core |\n", parallelWriters)
	p("|---|---|---|---|---|---|---|---|\n")
	for i, r := range rep.Runs {
		l := r.Limits
		tcp := "not measured"
		if l.TCP > 0 {
			tcp = fmt.Sprintf("%.0f MB/s (%.1f Gbit/s)", l.TCP/1e6, l.TCP*8/1e9)
		}
		p("| %d | %s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.0f MB/s |\n",
			i+1, tcp, l.DiskSync/1e6, l.DiskSyncParallel/1e6, l.DiskSeq/1e6, l.ChaCha/1e6, l.AESGCM/1e6, l.SHA256/1e6)
	}
	for i, r := range rep.Runs {
		if r.Limits.TCPErr != "" {
			p("\nRun %d: no TCP baseline: %s\n", i+1, r.Limits.TCPErr)
		}
	}
	tool := "iperf3"
	if n > 0 && rep.Runs[0].Limits.TCPTool != "" {
		tool = rep.Runs[0].Limits.TCPTool
	}
	p("\nTCP: %s, `iperf3 -c 127.0.0.1 -t %d` against `iperf3 -s -B 127.0.0.1`, the receiver's rate. "+
		"Disk: %s written each way in the run's temp dir, on the disk that holds the repos. CPU: one goroutine on 256 KiB buffers, the median of 5 rounds.\n",
		tool, rep.IperfSecs, sizeName(rep.Size))

	p("\n## Transfers\n\n")
	p("| run | share | all %d copies stored after | copies added | fetch | fetcher stored itself | bytes identical |\n", rep.Replicas)
	p("|---|---|---|---|---|---|---|\n")
	for i, r := range rep.Runs {
		p("| %d | **%.1f MB/s** (%.2f s) | %.2f s | %.2f | **%.1f MB/s** (%.2f s) | %.0f%% | yes (sha256 %.16s…) |\n",
			i+1, r.Share.Rate/1e6, r.Share.Seconds, r.ReplicatedAfter, r.Copies, r.Fetch.Rate/1e6, r.Fetch.Seconds, r.FetcherHolds*100, r.SHA256)
	}
	var roots []string
	for i, r := range rep.Runs {
		roots = append(roots, fmt.Sprintf("run %d `%s`", i+1, r.CID))
	}
	p("\nRoot CIDs (a run's file is the same from one invocation to the next): %s.\n", strings.Join(roots, ", "))
	p("\nWhere the CPU went. \"Machine\" is all %d CPUs while the `peer` command ran; \"daemons\" is CPU time summed over all daemons "+
		"for the phase (a share's until all copies were stored); ns/B is daemons' plus the command's CPU per file byte.\n\n", rep.NProc)
	p("| run | phase | machine busy | iowait | steal | daemons CPU s | of which sharer | of which fetcher | command CPU s | CPU ns/B |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rep.Runs {
		for _, ph := range []struct {
			name string
			t    transfer
		}{{"share", r.Share}, {"fetch", r.Fetch}} {
			t := ph.t
			p("| %d | %s | %.0f%% | %.0f%% | %.0f%% | %.2f | %.2f | %.2f | %.2f | %.1f |\n",
				i+1, ph.name, t.Machine.Busy*100, t.Machine.IOWait*100, t.Machine.Steal*100,
				t.daemonsCPU(), t.DaemonCPU[0], t.DaemonCPU[len(t.DaemonCPU)-1], t.CLICPU, t.cpuPerByte(rep.Size))
		}
	}
	if n > 0 {
		l := rep.Runs[0].Limits
		p("\nFor scale, run 1's micro-benchmarks cost %.2f ns/B (ChaCha20-Poly1305), %.2f ns/B (AES-256-GCM seal), %.2f ns/B (its open), %.2f ns/B (SHA-256) on one core.\n",
			1e9/l.ChaCha, 1e9/l.AESGCM, 1e9/l.AESGCMOpen, 1e9/l.SHA256)
		rep.floorTable(p)
	}

	if rep.Profiled != "" {
		rep.profileTable(p)
	}

	p("\n## Memory (RSS, MB)\n\n")
	p("| run | idle: sharer | idle: fetcher | idle: max | share peak: sharer | share peak: fetcher | share peak: max | fetch peak: sharer | fetch peak: fetcher | fetch peak: max |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	reset := true
	for i, r := range rep.Runs {
		idle := func(j int) float64 { return float64(r.Idle[j].RSS) / 1e6 }
		last := len(r.Idle) - 1
		p("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", i+1,
			idle(0), idle(last), float64(maxOf(r.Idle, func(m memory) int64 { return m.RSS }))/1e6,
			float64(r.Share.Peak[0])/1e6, float64(r.Share.Peak[last])/1e6, float64(slices.Max(r.Share.Peak))/1e6,
			float64(r.Fetch.Peak[0])/1e6, float64(r.Fetch.Peak[last])/1e6, float64(slices.Max(r.Fetch.Peak))/1e6)
		reset = reset && r.Share.PeakReset && r.Fetch.PeakReset
	}
	p("\nIdle is VmRSS just before the share (run 1: after the ring formed and the baselines ran; later runs: after the earlier transfers). ")
	if reset {
		p("A peak is VmHWM, reset through /proc/PID/clear_refs at the start of the phase, so it is the phase's own.\n")
	} else {
		p("A peak is VmHWM; it could not be reset (/proc/PID/clear_refs), so it is the daemon's lifetime peak up to the end of the phase.\n")
	}

	p("\n## Targets (issue 3)\n\n")
	p("Ratios are against the same run's limits; the RSS ones against kubo's figures in the issue (70 MB idle, 110 MB peak), not measured here.\n\n")
	p("| run | target | measured | limit | ratio | needed | met |\n")
	p("|---|---|---|---|---|---|---|\n")
	for i, r := range rep.Runs {
		for _, t := range rep.targets(r) {
			if t.Missing != "" {
				p("| %d | %s | — | — | — | — | not checked: %s |\n", i+1, t.Name, t.Missing)
				continue
			}
			p("| %d | %s | %.1f %s | %.1f %s | %.3f | %s | %s |\n", i+1, t.Name, t.Measured, t.Unit, t.Limit, t.Unit, t.Ratio, t.Need, yesNo(t.Met))
		}
	}
	return b.String()
}

// floorTable sets each share's CPU against the least this machine could
// spend on it (limits.shareFloor), and against what the share may spend
// per byte, with all CPUs its own, to reach the sequential-disk target.
func (rep *report) floorTable(p func(string, ...any)) {
	p("\nA share's floor is the CPU per file byte it cannot do without, at the same run's speeds: SHA-256 %d times (naming each block, "+
		"then at each replica that checks it), for each of the %d copies a durable write (the %d writers' write+fsync, this process's CPU), "+
		"and for each copy sent to another peer (all but the copies the sharer stores itself) an AES-GCM seal and open (TLS) and a pass over loopback TCP "+
		"(a plain Go stream, both ends). "+
		"Ceiling: the rate if all %d CPUs did that and nothing else. "+
		"The sequential-disk target needs the share's rate shown; \"may cost\" is the CPU per byte that rate leaves a share with all %d CPUs its own.\n\n",
		rep.Replicas+1, rep.Replicas, parallelWriters, rep.NProc, rep.NProc)
	p("| run | loopback TCP CPU, both ends | write+fsync CPU | copies sent | floor | ceiling rate | share cost | share / floor | sequential target needs | may cost |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rep.Runs {
		l := r.Limits
		sent := float64(rep.Replicas) - r.SharerHolds
		floor := l.shareFloor(rep.Replicas, sent)
		if floor == 0 {
			p("| %d | not measured |\n", i+1)
			continue
		}
		cost := r.Share.cpuPerByte(rep.Size)
		need := shareOfDisk * l.DiskSeq / float64(rep.Replicas)
		ceiling := float64(rep.NProc) * 1e9 / floor
		p("| %d | %.2f ns/B | %.2f ns/B | %.2f | %.1f ns/B | %.0f MB/s | %.1f ns/B | %.2f | %.0f MB/s | %.1f ns/B |\n",
			i+1, l.TCPCPU, l.DiskCPU, sent, floor, ceiling/1e6, cost, cost/floor, need/1e6, float64(rep.NProc)*1e9/need)
	}
}

// profileTable breaks the daemons' CPU per file byte down by category,
// from perf's samples of every daemon (see categories).
func (rep *report) profileTable(p func(string, ...any)) {
	p("\n### Where the daemons' CPU went, by perf (ns of CPU per file byte)\n\n")
	p("Every sample of every daemon is put in the first category its stack matches (testnet/xferbench/profile.go); " +
		"a category's ns/B is its share of the samples times the daemons' CPU time, over the file's size.\n\n")
	rep.categoryTable(p, "share", "fetch", func(r runResult, c string) [2]float64 {
		return [2]float64{r.Share.nsPerByte(c, rep.Size), r.Fetch.nsPerByte(c, rep.Size)}
	})

	// The fetch again, the fetcher (the last daemon) and the daemons that
	// served it apart.
	last := rep.Peers - 1
	p("\nThe fetches, the fetcher (peer %d) and the peers serving it (peers 1-%d) apart: "+
		"each daemon's share of its own samples times its own CPU time, summed over the role, over the file's size.\n\n", rep.Peers, last)
	rep.categoryTable(p, "fetcher", "serving", func(r runResult, c string) [2]float64 {
		return [2]float64{r.Fetch.daemonsNsPerByte(c, last, last+1, rep.Size), r.Fetch.daemonsNsPerByte(c, 0, last, rep.Size)}
	})
}

// categoryTable prints one row per category and two columns per run, named
// a and b, with the ns/B that cells gives them (blank where 0).
func (rep *report) categoryTable(p func(string, ...any), a, b string, cells func(r runResult, category string) [2]float64) {
	p("| category |")
	for i := range rep.Runs {
		p(" run %d %s | run %d %s |", i+1, a, i+1, b)
	}
	p("\n|---|")
	for range rep.Runs {
		p("---|---|")
	}
	p("\n")
	for _, c := range categories {
		p("| %s |", c.name)
		for _, r := range rep.Runs {
			for _, v := range cells(r, c.name) {
				if v > 0 {
					p(" %.2f |", v)
				} else {
					p(" |")
				}
			}
		}
		p("\n")
	}
}

func yesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

// sizeName prints a size the way -size takes it back: "256MiB", "4MiB".
func sizeName(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
