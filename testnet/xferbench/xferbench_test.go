package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chordshare/internal/cpustat"
	"chordshare/peer"
	"chordshare/peer/api"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		size        int64
		peers       int
		iperf       int
		cpuTime     time.Duration
		errContains string
	}{
		{args: nil, size: 256 << 20, peers: 8, iperf: 5, cpuTime: time.Second},
		{args: []string{"-size", "1GB", "-peers", "4"}, size: 1e9, peers: 4, iperf: 5, cpuTime: time.Second},
		{args: []string{"-smoke"}, size: 4 << 20, peers: 3, iperf: 1, cpuTime: 100 * time.Millisecond},
		// What is given explicitly beats -smoke, wherever it stands.
		{args: []string{"-peers", "5", "-smoke", "-size", "1MiB"}, size: 1 << 20, peers: 5, iperf: 1, cpuTime: 100 * time.Millisecond},
		{args: []string{"-size", "12 parsecs"}, errContains: "-size"},
		{args: []string{"-size", "0"}, errContains: "more than 0"},
		{args: []string{"-peers", "1"}, errContains: "write quorum"},
		{args: []string{"-capacity", "0"}, errContains: "at least 1 vnode"},
		{args: []string{"-runs", "0"}, errContains: "-runs"},
		{args: []string{"extra"}, errContains: "unexpected argument"},
	} {
		o, err := parseOptions(tc.args, &bytes.Buffer{})
		if tc.errContains != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errContains) {
				t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.errContains)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if o.size != tc.size || o.peers != tc.peers || o.iperfSecs != tc.iperf || o.cpuTime != tc.cpuTime {
			t.Errorf("%q: size %d peers %d iperf %d cpu %v; want %d %d %d %v",
				tc.args, o.size, o.peers, o.iperfSecs, o.cpuTime, tc.size, tc.peers, tc.iperf, tc.cpuTime)
		}
	}
}

func TestParseProc(t *testing.T) {
	m, err := parseStatus("Name:\tpeer\nVmPeak:\t 2000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n")
	if err != nil || m.RSS != 40<<20 || m.Peak != 80<<20 {
		t.Errorf("parseStatus: %+v, %v; want RSS 40 MiB, peak 80 MiB", m, err)
	}
	if _, err := parseStatus("Name:\tpeer\nVmRSS:\t 1 kB\n"); err == nil {
		t.Error("parseStatus without VmHWM: no error")
	}

	// A command name with spaces and a parenthesis must not shift fields.
	stat := "4242 (pe er) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
	if cpu, err := parseStat(stat); err != nil || cpu != 3 {
		t.Errorf("parseStat: %v, %v; want 3 s (300 ticks)", cpu, err)
	}

	a, err := parseMachineCPU("cpu  100 0 100 700 50 0 0 50 0 0\ncpu0 1 2 3\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := parseMachineCPU("cpu  400 0 200 800 100 0 0 100 0 0\n")
	u := a.until(b)
	// 600 ticks passed: 400 busy, 100 idle, 50 iowait, 50 steal.
	if !near(u.Busy, 400.0/600) || !near(u.IOWait, 50.0/600) || !near(u.Steal, 50.0/600) {
		t.Errorf("usage %+v", u)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestMedian(t *testing.T) {
	if m := median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("median odd: %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even: %v", m)
	}
}

// ringOf makes the statuses and rings of a formed ring of peers with the
// given positions, each peer's vnodes listed as its positions.
func ringOf(positions [][]string, listLen int) ([]api.Status, []api.Ring) {
	var all []string
	for _, ps := range positions {
		all = append(all, ps...)
	}
	sorted := slices.Sorted(slices.Values(all))
	at := map[string]int{}
	for i, id := range sorted {
		at[id] = i
	}
	var statuses []api.Status
	var rings []api.Ring
	for _, ps := range positions {
		statuses = append(statuses, api.Status{Positions: ps})
		var g api.Ring
		for _, id := range ps {
			i := at[id]
			v := api.Vnode{ID: id, Predecessor: &api.Neighbour{ID: sorted[(i+len(sorted)-1)%len(sorted)]}}
			for k := 1; k <= min(listLen, len(sorted)-1); k++ {
				v.Successors = append(v.Successors, api.Neighbour{ID: sorted[(i+k)%len(sorted)]})
			}
			g.Vnodes = append(g.Vnodes, v)
		}
		rings = append(rings, g)
	}
	return statuses, rings
}

func TestFormed(t *testing.T) {
	positions := [][]string{{"10", "80"}, {"30", "c0"}, {"50", "e0"}}
	statuses, rings := ringOf(positions, 3)
	if why := formed(statuses, rings, 3); why != "" {
		t.Fatalf("formed ring: %s", why)
	}

	statuses, rings = ringOf(positions, 3)
	rings[1].Vnodes[0].Successors[2].ID = "e0"
	if why := formed(statuses, rings, 3); !strings.Contains(why, "successor 3") {
		t.Errorf("wrong successor: %q", why)
	}
	statuses, rings = ringOf(positions, 3)
	rings[2].Vnodes[1].Predecessor = nil
	if why := formed(statuses, rings, 3); !strings.Contains(why, "predecessor") {
		t.Errorf("no predecessor: %q", why)
	}
	statuses, rings = ringOf(positions, 3)
	rings[0].Vnodes[1].Successors = rings[0].Vnodes[1].Successors[:2]
	if why := formed(statuses, rings, 3); !strings.Contains(why, "2 successors, want 3") {
		t.Errorf("short list: %q", why)
	}
	// Peers 1 and 2 have not taken peer 3 in yet.
	_, twoRings := ringOf(positions[:2], 3)
	statuses, rings = ringOf(positions, 3)
	if why := formed(statuses, append(twoRings, rings[2]), 3); why == "" {
		t.Error("a ring that has not taken in peer 3 counts as formed")
	}
}

func sampleRun() runResult {
	return runResult{
		Limits: limits{TCP: 2.2e9, TCPTool: "iperf 3.12", DiskSync: 150e6, DiskSyncParallel: 450e6, DiskSeq: 600e6, ChaCha: 2.4e9, AESGCM: 3.1e9, AESGCMOpen: 2.5e9, SHA256: 1.7e9,
			TCPCPU: 1.0, DiskCPU: 1.5},
		SHA256:      strings.Repeat("ab", 32),
		CID:         "bafy",
		Idle:        []memory{{RSS: 40e6}, {RSS: 45e6}, {RSS: 42e6}},
		Share:       transfer{Seconds: 10, Rate: 30e6, DaemonCPU: []float64{1, 2, 3}, Machine: usage{Busy: 0.9}, Peak: []int64{90e6, 60e6, 70e6}, PeakReset: true},
		Fetch:       transfer{Seconds: 5, Rate: 340e6, DaemonCPU: []float64{0.5, 0.5, 1}, Machine: usage{Busy: 0.8}, Peak: []int64{50e6, 120e6, 55e6}, PeakReset: true},
		SharerHolds: 0.5,
	}
}

func TestTargets(t *testing.T) {
	rep := &report{Replicas: 3}
	got := rep.targets(sampleRun())
	want := []struct {
		ratio float64
		met   bool
	}{
		{340e6 / 2.2e9, true},  // fetch / TCP = 0.155
		{30e6 / 50e6, true},    // share / (150/3) = 0.6
		{30e6 / 150e6, false},  // share / (450/3) = 0.2
		{30e6 / 200e6, false},  // share / (600/3) = 0.15
		{45e6 / 70e6, true},    // idle
		{120e6 / 110e6, false}, // the fetcher's peak
	}
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d", len(got), len(want))
	}
	for i, w := range want {
		if !near(got[i].Ratio, w.ratio) || got[i].Met != w.met || got[i].Missing != "" {
			t.Errorf("%s: ratio %.4f met %v (%s); want %.4f %v", got[i].Name, got[i].Ratio, got[i].Met, got[i].Missing, w.ratio, w.met)
		}
	}

	noTCP := sampleRun()
	noTCP.Limits.TCP, noTCP.Limits.TCPErr = 0, "iperf3 not found"
	if tg := rep.targets(noTCP)[0]; tg.Missing == "" || tg.Met || !strings.Contains(tg.Missing, "iperf3 not found") {
		t.Errorf("fetch target without a TCP baseline: %+v", tg)
	}
}

func TestMarkdown(t *testing.T) {
	noTCP := sampleRun()
	noTCP.Limits.TCP, noTCP.Limits.TCPErr = 0, "iperf3 not found on $PATH"
	rep := &report{Command: "go run ./testnet/xferbench -size 3MiB -peers 3", Size: 3 << 20, Peers: 3, Capacity: 8, Replicas: 3,
		IperfSecs: 5, NProc: 2, Runs: []runResult{sampleRun(), noTCP}}
	md := rep.markdown()
	for _, want := range []string{
		"# xferbench: share and fetch of 3MiB across a 3-peer loopback ring",
		"`go run ./testnet/xferbench -size 3MiB -peers 3`",
		"| 1 | 2200 MB/s (17.6 Gbit/s) | 150 MB/s | 450 MB/s | 600 MB/s | 2400 MB/s | 3100 MB/s | 1700 MB/s |",
		"| 2 | not measured |",
		"Run 2: no TCP baseline: iperf3 not found on $PATH",
		"| 1 | **30.0 MB/s** (10.00 s) |",
		"Root CIDs (a run's file is the same from one invocation to the next): run 1 `bafy`, run 2 `bafy`.",
		"| 1 | share | 90% | 0% | 0% | 6.00 | 1.00 | 3.00 | 0.00 | 1907.3 |",
		"| 1 | 40.0 | 42.0 | 45.0 | 90.0 | 70.0 | 90.0 | 50.0 | 55.0 | 120.0 |",
		"| 1 | fetch / loopback TCP | 340.0 MB/s | 2200.0 MB/s | 0.155 | >= 0.15 | **yes** |",
		"| 1 | peak RSS, max over daemons and transfers / kubo peak | 120.0 MB | 110.0 MB | 1.091 | < 1 | **no** |",
		"| 2 | fetch / loopback TCP | — | — | — | — | not checked: no TCP baseline: iperf3 not found on $PATH |",
		"reset through /proc/PID/clear_refs",
		// 3 − 0.5 copies sent; floor 4/1.7 + 3 × 1.5 + 2.5 × (1/3.1 + 1/2.5 + 1.0)
		// = 11.16 ns/B; 2 CPUs / floor; 1907.3 / 11.16; 0.40 × 600 / 3; 2 CPUs / 80 MB/s.
		"| 1 | 1.00 ns/B | 1.50 ns/B | 2.50 | 11.2 ns/B | 179 MB/s | 1907.3 ns/B | 170.92 | 80 MB/s | 25.0 ns/B |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// TestShareFloor: every copy costs its disk work, every copy sent its
// cipher and TCP work, and the hash is paid once more than there are
// copies; without a measured part there is no floor.
func TestShareFloor(t *testing.T) {
	l := limits{SHA256: 2e9, AESGCM: 4e9, AESGCMOpen: 2e9, TCPCPU: 1, DiskCPU: 2}
	if got, want := l.shareFloor(3, 3), 4*0.5+3*(0.25+0.5+1+2); !near(got, want) {
		t.Errorf("floor at r = 3, all sent: %.3f ns/B, want %.3f", got, want)
	}
	if got, want := l.shareFloor(3, 2.5), 4*0.5+3*2+2.5*(0.25+0.5+1); !near(got, want) {
		t.Errorf("floor at r = 3, the sharer holding half the file: %.3f ns/B, want %.3f", got, want)
	}
	if got, want := l.shareFloor(1, 1), 2*0.5+(0.25+0.5+1+2); !near(got, want) {
		t.Errorf("floor at r = 1: %.3f ns/B, want %.3f", got, want)
	}
	l.DiskCPU = 0
	if got := l.shareFloor(3, 3); got != 0 {
		t.Errorf("floor without a disk measurement: %.3f, want 0", got)
	}
}

func TestSizeName(t *testing.T) {
	for n, want := range map[int64]string{256 << 20: "256MiB", 4 << 20: "4MiB", 1 << 30: "1GiB", 3072: "3KiB", 1536: "1536 bytes", 1000: "1000 bytes"} {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSmoke runs the whole harness at its smoke size: real daemons, iperf3
// if installed, a 4 MiB share and fetch. It takes minutes on a busy
// machine, so the default `go test ./...` skips it.
//
//	XFERBENCH=1 go test -run Smoke -v ./testnet/xferbench
func TestSmoke(t *testing.T) {
	if os.Getenv("XFERBENCH") != "1" {
		t.Skip("set XFERBENCH=1 to run the smoke benchmark (real daemons)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "REPORT.md")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"-smoke", "-report", path}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(md, stdout.Bytes()) {
		t.Error("the report file differs from what went to stdout")
	}
	for _, want := range []string{"| 1 | fetch / loopback TCP |", "yes (sha256 ", "across a 3-peer loopback ring"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// perfSample is one sample as `perf script -F comm,pid,ip,sym` prints it.
func perfSample(frames ...string) string { return perfSampleOf(4242, frames...) }

// perfSampleOf is a sample of process pid.
func perfSampleOf(pid int, frames ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "peer %d \n", pid)
	for _, f := range frames {
		b.WriteString("\t          4ac9c6 " + f + "\n")
	}
	return b.String() + "\n"
}

func TestClassify(t *testing.T) {
	script := perfSample("crypto/internal/fips140/sha256.blockSHANI.abi0", "crypto/sha256.Sum256",
		"github.com/ipfs/go-cid.Prefix.Sum", "chordshare/peer.verify", "chordshare/peer.(*Node).fetchFrom", "runtime.goexit.abi0") +
		perfSample("crypto/internal/fips140/sha256.blockSHANI.abi0", "chordshare/blocks.verify", "chordshare/blocks.(*Store).GetWith",
			"chordshare/peer.(*Node).readLocal", "chordshare/peer.(*Node).serveBlockRequest") +
		// The sharer storing its own replica: Put's goroutine, not Put itself.
		perfSample("crypto/internal/fips140/sha256.blockSHANI.abi0", "chordshare/blocks.verify", "chordshare/blocks.(*Store).Put",
			"chordshare/peer.(*Node).storeAt", "chordshare/peer.(*Node).Put.func1") +
		// What fetchFrom became: the same check, watched.
		perfSample("crypto/internal/fips140/sha256.blockSHANI.abi0", "chordshare/peer.verify", "chordshare/peer.(*Node).fetchWatched",
			"chordshare/peer.(*Node).Get.func3.3") +
		perfSample("chordshare/chord.(*Node).lookupRecursive", "chordshare/chord.(*Node).LookupMode", "chordshare/peer.(*Node).preference",
			"chordshare/peer.(*Node).replicasNear", "chordshare/peer.(*Node).Locate.func1.1") +
		perfSample("runtime.memmove", "google.golang.org/protobuf/proto.MarshalOptions.marshal") +
		perfSample("runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker") +
		// A put's write with RWF_SYNC: its sync, then its copy.
		perfSample("iowrite16", "ext4_sync_file", "vfs_fsync_range", "ext4_buffered_write_iter", "do_iter_readv_writev",
			"golang.org/x/sys/unix.pwritev2Syscall", "chordshare/blocks.writeSynced", "chordshare/blocks.(*Store).writeUnnamed") +
		perfSample("copy_folio_from_iter_atomic", "generic_perform_write", "ext4_buffered_write_iter",
			"golang.org/x/sys/unix.pwritev2Syscall", "chordshare/blocks.writeSynced", "chordshare/blocks.(*Store).writeUnnamed") +
		perfSample("[unknown]") +
		perfSampleOf(77, "runtime.memmove", "chordshare/peer.readPayload")
	byPid := classify(script)
	if n := byPid[77].total(); n != 1 || byPid[77]["copying elsewhere (memmove)"] != 1 {
		t.Errorf("pid 77: %v, want its one memmove", byPid[77])
	}
	delete(byPid, 77)
	got := merged(byPid)
	want := profile{
		"SHA-256: fetchFrom checking a received block":      2,
		"ring lookups: Locate, Replicas, ring RPCs":         1,
		"SHA-256: Store.Get checking what it read":          1,
		"SHA-256: Store.Put checking before writing":        1,
		"copying in protobuf marshal/unmarshal":             1,
		"Go GC: mark workers, assists, sweeping":            1,
		"block store: fsync/syncfs of files or directories": 1,
		"block store: write, rename, rest":                  1,
		"other":                                             1,
	}
	if len(got) != len(want) || got.total() != 10 {
		t.Errorf("classify: %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("classify: %q has %d samples, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if last := categories[len(categories)-1]; last.name != "other" {
		t.Errorf("the last category is %q: samples no rule matches are lost", last.name)
	}
}

func TestProfileTable(t *testing.T) {
	r := sampleRun()
	// 6 daemon CPU seconds over 3 MiB: a quarter of the samples is 1.5 s,
	// 476.84 ns per byte.
	r.Share.Profile = profile{"Go GC: mark workers, assists, sweeping": 1, "other": 3}
	// The fetch by role: the fetcher (the last of 3 daemons) spent all
	// its samples in pwrite, the two serving peers half of theirs in
	// SHA-256 after a read.
	read := "SHA-256: Store.Get checking what it read"
	r.Fetch.DaemonProfiles = []profile{{read: 1, "other": 1}, {read: 2, "other": 2}, {"fetch output: pwrite": 5}}
	rep := &report{Size: 3 << 20, Peers: 3, Replicas: 3, Profiled: "/tmp/prof", Runs: []runResult{r}}
	md := rep.markdown()
	nsB := func(cpu float64) string { return fmt.Sprintf("%.2f", cpu/float64(3<<20)*1e9) }
	fc := r.Fetch.DaemonCPU
	for _, want := range []string{
		"| category | run 1 share | run 1 fetch |",
		"| Go GC: mark workers, assists, sweeping | 476.84 | |",
		"| SHA-256: import, naming each block | | |",
		"profiles in /tmp/prof",
		"| category | run 1 fetcher | run 1 serving |",
		"| fetch output: pwrite | " + nsB(fc[2]) + " | |",
		"| " + read + " | | " + nsB((fc[0]+fc[1])/2) + " |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// -layout-seed gives peer i the same identity every time, and each peer
// its own.
func TestWriteIdentityIsDerived(t *testing.T) {
	read := func(seed uint64, i int) string {
		repo := filepath.Join(t.TempDir(), "repo")
		if err := writeIdentity(repo, seed, i); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(repo, peer.IdentityFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if first, again := read(7, 1), read(7, 1); first != again {
		t.Error("seed 7, peer 1: two different identities")
	}
	if read(7, 1) == read(7, 2) || read(7, 1) == read(8, 1) {
		t.Error("different peers or seeds share an identity")
	}
}

func TestMarkTopDir(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err != nil {
		t.Skipf("no inode flags here (%v)", err)
	}
	for range 2 { // and again, once set
		err := markTopDir(dir)
		if errors.Is(err, unix.EOPNOTSUPP) {
			// tmpfs (6.0+), xfs and btrfs keep inode flags but not this one.
			t.Skipf("no top-dir flag here (%v)", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil || flags&fsTopdirFL == 0 {
			t.Fatalf("flags %#x (%v): want FS_TOPDIR_FL set", flags, err)
		}
	}
}

func TestOwnBase(t *testing.T) {
	tmp := t.TempDir()
	base, err := ownBase(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ownBase(tmp); err != nil || again != base {
		t.Fatalf("second call: %q, %v; want %q again", again, err, base)
	}
	// Someone else's path there, planted as a link or left open to others:
	// refused, not used.
	for _, plant := range []func(string) error{
		func(p string) error { return os.Symlink(t.TempDir(), p) },
		func(p string) error { return os.Mkdir(p, 0o777) },
	} {
		tmp := t.TempDir()
		if err := plant(filepath.Join(tmp, filepath.Base(base))); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := ownBase(tmp); err == nil {
			t.Errorf("planted %s accepted", got)
		}
	}
}

// TestPerCoreCountsCPU: a round's rate is per second of CPU, not of wall
// time, so time f spends off its core (here asleep, on a busy machine
// waiting for it) does not make it look slower. At wall time this f would
// give 1000 bytes per ms, 1e6 bytes per second.
func TestPerCoreCountsCPU(t *testing.T) {
	if cpustat.ThreadTime() == 0 {
		t.Skip("no per-thread CPU time here")
	}
	got := perCore(50*time.Millisecond, 1000, func() { time.Sleep(time.Millisecond) })
	if got < 1e7 {
		t.Errorf("perCore of a sleeping f: %.3g bytes per second, want far above the wall time's 1e6", got)
	}
}
