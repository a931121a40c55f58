// Command xferbench measures `peer share` and `peer fetch` of one large
// random file across a ring of real daemons on loopback, next to the
// limits measured in the same run on the same machine: loopback TCP
// (iperf3), disk write+fsync, and the per-core cost of the transport cipher
// and SHA-256. It also records the daemons' resident memory, idle and at
// the peak of each transfer, and checks the targets of issue 3.
//
//	go run ./testnet/xferbench [-size 256MiB] [-peers 8] [-runs 1] [-report FILE]
//	go run ./testnet/xferbench -smoke     # 4 MiB over 3 peers, short baselines
//
// Peer 1 shares, the last peer fetches. Everything lives in one temp dir;
// the daemons are stopped and the dir removed on success, error or Ctrl-C.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"chordshare/chord"
	"chordshare/peer"
	"chordshare/peer/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "xferbench:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	size        int64
	peers       int
	capacity    int
	runs        int
	report      string
	iperfSecs   int
	cpuTime     time.Duration
	ringTimeout time.Duration
	// keep leaves the temp dir in place at the end.
	keep       bool
	perf       string
	pprof      string
	pprofSpan  time.Duration
	layoutSeed uint64
	peerSrc    string
	uplink     string
}

// smokeDefaults are what -smoke changes, unless given explicitly: a run of
// a few seconds that exercises every step.
var smokeDefaults = map[string]string{
	"size":      "4MiB",
	"peers":     "3",
	"iperf-sec": "1",
	"cpu-time":  "100ms",
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("xferbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeFlag := fs.String("size", "256MiB", "`SIZE` of the shared file: bytes or a number with a unit (4MiB, 1GB)")
	fs.IntVar(&o.peers, "peers", 8, "number of daemons in the ring")
	fs.IntVar(&o.capacity, "capacity", chord.DefaultConfig().Vnodes, "vnodes per daemon (--capacity)")
	fs.IntVar(&o.runs, "runs", 1, "share+fetch rounds, each with a new file and its own baselines, on the same ring")
	fs.StringVar(&o.report, "report", "", "write the markdown report to `FILE` too (it always goes to stdout)")
	fs.IntVar(&o.iperfSecs, "iperf-sec", 5, "seconds of the iperf3 loopback measurement")
	fs.DurationVar(&o.cpuTime, "cpu-time", time.Second, "time of each CPU micro-benchmark")
	fs.DurationVar(&o.ringTimeout, "ring-timeout", 5*time.Minute, "how long the ring may take to form")
	fs.BoolVar(&o.keep, "keep", false, "leave the temp dir (block stores, disk baselines: ~3 GB a run) for the caller to remove\nafter a sitting of invocations: on ext4 without a journal, the thousands of inodes a\ncleanup frees slow every file creation near them for minutes, the next\ninvocation's shares included (README, \"Session 7\")")
	fs.StringVar(&o.perf, "perf", "", "profile the daemons with Linux perf during each transfer into `DIR` (slows them a little)")
	fs.StringVar(&o.pprof, "pprof", "", "run the daemons with --pprof and take each one's Go CPU profile during each fetch into `DIR`")
	fs.DurationVar(&o.pprofSpan, "pprof-span", 3*time.Second, "length of each -pprof profile (whole seconds): the fetch should fit in it")
	fs.Uint64Var(&o.layoutSeed, "layout-seed", 0, "give the daemons identities derived from `N` and fixed vnode positions (--vnode-choices 1), so that\nevery invocation with the same N gets the same ring layout (which peer holds what): for A/B runs of two trees; 0: new identities each time")
	fs.StringVar(&o.peerSrc, "peer-src", "", "build the peer binary from the chordshare tree at `DIR` instead of this one (the A of an A/B run)")
	fs.StringVar(&o.uplink, "uplink", "", "run the daemons with --uplink `SIZE` (or auto), to see what uplink pacing costs on loopback")
	smoke := fs.Bool("smoke", false, "a quick check of the harness: -size 4MiB -peers 3 -iperf-sec 1 -cpu-time 100ms")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *smoke {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range smokeDefaults {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return o, err
				}
			}
		}
	}
	var err error
	if o.size, err = peer.ParseSize(*sizeFlag); err != nil {
		return o, fmt.Errorf("-size: %w", err)
	}
	switch {
	case o.size <= 0:
		return o, fmt.Errorf("-size %s: want more than 0 bytes", *sizeFlag)
	case o.peers < peer.DefaultConfig().WriteQuorum:
		return o, fmt.Errorf("-peers %d: a share needs at least %d (its write quorum)", o.peers, peer.DefaultConfig().WriteQuorum)
	case o.capacity < 1:
		return o, fmt.Errorf("-capacity %d: every daemon must store blocks (at least 1 vnode)", o.capacity)
	case o.runs < 1:
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	case o.iperfSecs < 1:
		return o, fmt.Errorf("-iperf-sec %d: want at least 1", o.iperfSecs)
	case o.pprof != "" && o.pprofSpan < time.Second:
		return o, fmt.Errorf("-pprof-span %v: want at least 1s", o.pprofSpan)
	case o.cpuTime <= 0 || o.ringTimeout <= 0:
		return o, errors.New("-cpu-time and -ring-timeout must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	began := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "xferbench [%5.1fs]: "+format+"\n", append([]any{time.Since(began).Seconds()}, a...)...)
	}
	rep := &report{
		Command:   strings.TrimSpace("go run ./testnet/xferbench " + strings.Join(args, " ")),
		Size:      o.size,
		Peers:     o.peers,
		Capacity:  o.capacity,
		Replicas:  peer.DefaultConfig().Replicas,
		IperfSecs: o.iperfSecs,
	}
	rep.machine(ctx)

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	// A short path: each repo's API socket must fit a sun_path. Under a
	// base flagged as a top dir, so that its files are allocated away
	// from /tmp's churn (topdir.go).
	base, err := ownBase(os.TempDir())
	if err != nil {
		return err
	}
	if err := markTopDir(base); err != nil {
		logf("%s not flagged as a top dir (%v): the stores' inodes may land among /tmp's recently deleted ones", base, err)
	}
	dir, err := os.MkdirTemp(base, "xb")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s: remove it after the sitting", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	env := childEnv(dir)

	logf("building peer in %s", dir)
	bin := filepath.Join(dir, "peer")
	// The build keeps the caller's environment: under the children's HOME
	// it would find no build or module cache and rebuild everything.
	build := command(ctx, os.Environ(), "go", "build", "-o", bin, "./cmd/peer")
	if o.peerSrc != "" {
		root = o.peerSrc
	}
	build.Dir = root
	if _, err := output(build); err != nil {
		return err
	}
	rep.Commit = commit(ctx, root)
	if o.peerSrc != "" {
		rep.Commit = fmt.Sprintf("the peer binary built from %s: %s", o.peerSrc, rep.Commit)
	}

	var prof *profiler
	if o.perf != "" {
		if prof, err = newProfiler(o.perf, env); err != nil {
			return err
		}
		rep.Profiled = o.perf
	}

	r := &ring{bin: bin, env: env, layoutSeed: o.layoutSeed}
	if o.layoutSeed != 0 {
		r.daemonArgs = append(r.daemonArgs, "--vnode-choices", "1")
		rep.LayoutSeed = o.layoutSeed
	}
	if o.uplink != "" {
		r.daemonArgs = append(r.daemonArgs, "--uplink", o.uplink)
	}
	if o.pprof != "" {
		if r.gprof, err = newGoProfiler(o.pprof, o.pprofSpan); err != nil {
			return err
		}
		r.daemonArgs = append(r.daemonArgs, "--pprof")
		rep.GoProfiled = o.pprof
	}
	// Registered before the first daemon starts, so that it runs (before
	// the temp dir goes) however run returns.
	defer r.stop()
	logf("starting %d daemons", o.peers)
	if err := startRing(ctx, r, dir, o.peers, o.capacity); err != nil {
		return err
	}
	if rep.FormedIn, err = r.waitFormed(ctx, o.ringTimeout); err != nil {
		return err
	}
	logf("ring formed in %.1fs", rep.FormedIn.Seconds())

	for i := range o.runs {
		res, err := measureRun(ctx, r, prof, dir, o, uint64(i), logf)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		rep.Runs = append(rep.Runs, res)
	}

	text := rep.markdown()
	if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	if o.report != "" {
		return os.WriteFile(o.report, []byte(text), 0o644)
	}
	return nil
}

// childEnv keeps every child off the user's repo and home: no $PEER_REPO,
// HOME inside the temp dir.
func childEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, api.RepoEnv+"=") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+dir)
}

// moduleRoot finds the chordshare module, which the peer binary is built
// from, wherever this runs inside it.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := output(command(ctx, os.Environ(), "go", "env", "GOMOD"))
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module: run xferbench from the chordshare tree")
	}
	return filepath.Dir(mod), nil
}

// measureRun is one round: baselines with the ring idle, then a share from
// peer 1 of a new random file and a fetch of it on the last peer.
func measureRun(ctx context.Context, r *ring, prof *profiler, dir string, o options, seed uint64, logf func(string, ...any)) (runResult, error) {
	var res runResult
	logf("run %d: CPU micro-benchmarks", seed+1)
	if err := measureCPU(o.cpuTime, &res.Limits); err != nil {
		return res, err
	}
	logf("run %d: disk write+fsync of %s, three ways", seed+1, peer.FormatSize(o.size))
	if err := measureDisk(ctx, dir, o.size, &res.Limits); err != nil {
		return res, err
	}
	logf("run %d: iperf3 over 127.0.0.1 for %ds", seed+1, o.iperfSecs)
	var err error
	res.Limits.TCP, res.Limits.TCPTool, err = measureTCP(ctx, r.env, dir, o.iperfSecs)
	if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		res.Limits.TCPErr = err.Error()
		logf("run %d: no TCP baseline: %v", seed+1, err)
	}
	logf("run %d: CPU of %s over loopback TCP", seed+1, peer.FormatSize(o.size))
	if res.Limits.TCPCPU, err = measureTCPCPU(ctx, o.size); err != nil {
		return res, err
	}

	in := filepath.Join(dir, fmt.Sprintf("file-%d", seed+1))
	sum, err := writeRandomFile(in, o.size, seed)
	if err != nil {
		return res, err
	}
	defer os.Remove(in)
	res.SHA256 = sum

	for _, p := range r.peers {
		m, err := readMemory(p.daemon.pid())
		if err != nil {
			return res, err
		}
		res.Idle = append(res.Idle, m)
	}
	storedBefore, eachBefore, err := r.storedBytes(ctx)
	if err != nil {
		return res, err
	}

	callsBefore, err := r.ringCalls(ctx)
	if err != nil {
		return res, err
	}
	sharer, fetcher := r.peers[0], r.peers[len(r.peers)-1]
	logf("run %d: peer share of %s on peer 1", seed+1, peer.FormatSize(o.size))
	var cid string
	res.Share, err = measurePhase(ctx, r, prof, fmt.Sprintf("run%d-share", seed+1), func() (*exec.Cmd, error) {
		cmd := command(ctx, r.env, r.bin, "share", "--repo", sharer.repo, in)
		out, err := output(cmd)
		cid = strings.TrimSpace(string(out))
		return cmd, err
	}, func() error {
		// The share returned at W acknowledgements; the last replicas are
		// written in the background. The phase (its CPU and memory) lasts
		// until they are, so that the fetch does not compete with them.
		var err error
		res.ReplicatedAfter, res.Copies, err = waitReplicated(ctx, r, storedBefore, o.size)
		return err
	})
	if err != nil {
		return res, err
	}
	res.CID = cid
	res.Share.Rate = float64(o.size) / res.Share.Seconds
	res.ReplicatedAfter += res.Share.Seconds
	callsAfter, err := r.ringCalls(ctx)
	if err != nil {
		return res, err
	}
	logf("run %d: shared at %.1f MB/s, all copies stored after %.1fs, %d ring calls: %s", seed+1, res.Share.Rate/1e6, res.ReplicatedAfter, callsAfter-callsBefore, cid)

	// What the fetcher stores itself it need not fetch over the network.
	_, eachAfter, err := r.storedBytes(ctx)
	if err != nil {
		return res, err
	}
	last := len(r.peers) - 1
	res.FetcherHolds = float64(eachAfter[last]-eachBefore[last]) / float64(o.size)
	res.SharerHolds = float64(eachAfter[0]-eachBefore[0]) / float64(o.size)

	out := filepath.Join(dir, fmt.Sprintf("fetched-%d", seed+1))
	defer os.Remove(out)
	logf("run %d: peer fetch on peer %d", seed+1, len(r.peers))
	var gprofWait func() error
	res.Fetch, err = measurePhase(ctx, r, prof, fmt.Sprintf("run%d-fetch", seed+1), func() (*exec.Cmd, error) {
		if r.gprof != nil {
			gprofWait = r.gprof.start(ctx, fmt.Sprintf("run%d-fetch", seed+1), r.peers)
		}
		cmd := command(ctx, r.env, r.bin, "fetch", "--repo", fetcher.repo, cid, "-o", out)
		_, err := output(cmd)
		return cmd, err
	}, nil)
	if gprofWait != nil {
		if perr := gprofWait(); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		return res, err
	}
	res.Fetch.Rate = float64(o.size) / res.Fetch.Seconds
	got, err := fileSHA256(out)
	if err != nil {
		return res, err
	}
	if got != sum {
		return res, fmt.Errorf("peer %d fetched %s with SHA-256 %s; peer 1 shared %s", len(r.peers), cid, got, sum)
	}
	logf("run %d: fetched at %.1f MB/s, identical (sha256 %.16s…)", seed+1, res.Fetch.Rate/1e6, sum)
	return res, nil
}

// measurePhase runs one transfer: cli runs and times the `peer` command,
// then settle (if not nil) waits for the work it left behind. Each
// daemon's CPU time and peak RSS cover both, and so does the profile named
// name when prof is not nil; the machine's CPU use covers the command.
func measurePhase(ctx context.Context, r *ring, prof *profiler, name string, cli func() (*exec.Cmd, error), settle func() error) (t transfer, err error) {
	if prof != nil {
		pids := make([]int, len(r.peers))
		for i, p := range r.peers {
			pids[i] = p.daemon.pid()
		}
		stop, perr := prof.start(ctx, name, pids)
		if perr != nil {
			return t, perr
		}
		defer func() {
			byPid, perr := stop()
			if perr != nil && err == nil {
				err = perr
			}
			t.Profile = merged(byPid)
			t.DaemonProfiles = make([]profile, len(pids))
			for i, pid := range pids {
				t.DaemonProfiles[i] = byPid[pid]
			}
		}()
	}
	t.PeakReset = true
	cpu0 := make([]float64, len(r.peers))
	for i, p := range r.peers {
		if resetPeak(p.daemon.pid()) != nil {
			t.PeakReset = false // then the peak is the daemon's lifetime's
		}
		var err error
		if cpu0[i], err = cpuSeconds(p.daemon.pid()); err != nil {
			return t, err
		}
	}
	m0, err := readMachineCPU()
	if err != nil {
		return t, err
	}
	start := time.Now()
	cmd, err := cli()
	t.Seconds = time.Since(start).Seconds()
	if err != nil {
		for _, p := range r.peers {
			if derr := p.daemon.exited(); derr != nil {
				return t, fmt.Errorf("%w; %w", err, derr)
			}
		}
		return t, err
	}
	m1, err := readMachineCPU()
	if err != nil {
		return t, err
	}
	t.Machine = m0.until(m1)
	t.CLICPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	if settle != nil {
		if err := settle(); err != nil {
			return t, err
		}
	}
	for i, p := range r.peers {
		c, err := cpuSeconds(p.daemon.pid())
		if err != nil {
			return t, err
		}
		t.DaemonCPU = append(t.DaemonCPU, c-cpu0[i])
		m, err := readMemory(p.daemon.pid())
		if err != nil {
			return t, err
		}
		t.Peak = append(t.Peak, m.Peak)
	}
	return t, nil
}

// waitReplicated polls the daemons' stores until they hold every copy of
// the new file (r per byte, or one per peer on a smaller ring) or stop
// growing for a while, and returns when that was (seconds from now) and how
// many copies per byte they added.
func waitReplicated(ctx context.Context, r *ring, before, size int64) (after, copies float64, err error) {
	want := float64(min(peer.DefaultConfig().Replicas, len(r.peers)))
	start := time.Now()
	var last int64 = -1
	lastChange := start
	err = poll(ctx, "all replicas are written", 2*time.Minute, 250*time.Millisecond, func() (bool, string, error) {
		total, _, err := r.storedBytes(ctx)
		if err != nil {
			return false, "", err
		}
		if total != last {
			last, lastChange = total, time.Now()
			after = time.Since(start).Seconds()
		}
		copies = float64(total-before) / float64(size)
		return copies >= want || time.Since(lastChange) > 2*time.Second, fmt.Sprintf("%.2f copies", copies), nil
	})
	return after, copies, err
}

// writeRandomFile writes size random bytes to path, fsyncs them (so that
// their writeback does not compete with the share) and returns their
// SHA-256.
func writeRandomFile(path string, size int64, seed uint64) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'x', 'f', 'e', 'r'}), size)
	if _, err := io.Copy(io.MultiWriter(f, h), src); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// commit names the tree the peer binary was built from, and says so when
// it has changes not committed (other engineers work in it).
func commit(ctx context.Context, root string) string {
	git := func(args ...string) string {
		cmd := command(ctx, os.Environ(), "git", args...)
		cmd.Dir = root
		out, err := output(cmd)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	head := git("log", "-1", "--format=%h %s")
	if head == "" {
		return "unknown (no git)"
	}
	if len(head) > 80 {
		head = head[:77] + "..."
	}
	if dirty := git("status", "--porcelain", "--untracked-files=no"); dirty != "" {
		head += fmt.Sprintf(" (+ uncommitted changes to %d files)", len(strings.Split(dirty, "\n")))
	}
	return head
}

// machine records what the run ran on, before anything starts.
func (rep *report) machine(ctx context.Context) {
	rep.Date = time.Now().UTC()
	rep.NProc = runtime.NumCPU()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		rep.LoadAvg = strings.Join(f[:min(3, len(f))], " ")
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				rep.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		rep.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := output(command(ctx, os.Environ(), "go", "version")); err == nil {
		rep.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) == 3 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				rep.MemTotal = kb << 10
			}
		}
	}
}
