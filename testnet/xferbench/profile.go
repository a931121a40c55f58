package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profiler samples every daemon with Linux perf during a phase, for finding
// where a transfer's CPU goes: the daemons serve no pprof, and perf needs
// no change to them (Go keeps frame pointers, so call graphs work).
type profiler struct {
	dir string // where the perf.data files and their summaries go
	bin string // perf
	env []string
}

func newProfiler(dir string, env []string) (*profiler, error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("-perf: perf not found on $PATH (apt-get install -y linux-perf)")
	}
	// Absolute: it becomes perf's HOME.
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// perf keeps the profiled binaries in $HOME/.debug, by build ID; the
	// peer binary goes with the temp dir, so HOME is the profile dir, for
	// `perf report -i` to name functions later.
	penv := append(slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }), "HOME="+dir)
	return &profiler{dir: dir, bin: bin, env: penv}, nil
}

// start records pids until the returned stop is called. stop writes
// NAME.perf.data and two summaries over all pids: NAME.txt, the functions
// where samples landed, and NAME-children.txt, the functions with what they
// called (which names the caller of a hot leaf such as memmove); it returns
// each pid's samples sorted into categories.
func (p *profiler) start(ctx context.Context, name string, pids []int) (stop func() (map[int]profile, error), err error) {
	list := make([]string, len(pids))
	for i, pid := range pids {
		list[i] = strconv.Itoa(pid)
	}
	data := filepath.Join(p.dir, name+".perf.data")
	rec, err := startDaemon("perf record", filepath.Join(p.dir, name+".perf.log"), p.env, p.bin,
		"record", "-F", "999", "-g", "-o", data, "-p", strings.Join(list, ","))
	if err != nil {
		return nil, err
	}
	// perf attaches within moments; samples missed then are lost to the
	// profile only, not to the measurement.
	time.Sleep(200 * time.Millisecond)
	if err := rec.exited(); err != nil {
		return nil, err
	}
	return func() (map[int]profile, error) {
		rec.stop(30 * time.Second) // SIGTERM: perf writes its data and exits
		for _, view := range []struct{ suffix, children, limit string }{
			{"", "--no-children", "0.3"},
			{"-children", "--children", "1"},
		} {
			report := command(ctx, p.env, p.bin, "report", "-i", data, "--stdio", view.children,
				"--sort", "sym", "-g", "none", "--percent-limit", view.limit)
			out, err := output(report)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(p.dir, name+view.suffix+".txt"), out, 0o644); err != nil {
				return nil, err
			}
		}
		out, err := output(command(ctx, p.env, p.bin, "script", "-i", data, "-F", "comm,pid,ip,sym"))
		if err != nil {
			return nil, err
		}
		return classify(string(out)), nil
	}, nil
}

// profile is how many samples of a phase fell in each category.
type profile map[string]int

// category is a kind of work, recognised in a sample's stack (leaf
// first, one function a line). A sample counts for the first category that
// matches it. The names are those of the share and fetch paths as they are
// written now; a function renamed later only moves its samples to a
// coarser category further down, down to "other".
type category struct {
	name  string
	match func(leaf, stack string) bool
}

func has(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func hashIn(callers ...string) func(leaf, stack string) bool {
	return func(leaf, stack string) bool { return has(leaf, "sha256") && has(stack, callers...) }
}

var categories = []category{
	{"SHA-256: import, naming each block", hashIn("V1Builder")},
	{"SHA-256: Store.Put checking before writing", hashIn("blocks.(*Store).Put")},
	{"SHA-256: Store.Get checking what it read", hashIn("blocks.(*Store).Get")}, // and GetWith
	{"SHA-256: fetchFrom checking a received block", hashIn("fetchFrom", "fetchWatched")},
	{"SHA-256: share's fetcher checking the block again", hashIn("share.verify")},
	{"SHA-256: elsewhere", func(leaf, _ string) bool { return has(leaf, "sha256") }},
	{"TLS: AES-GCM seal and open", func(leaf, _ string) bool { return has(leaf, "gcmAes", "aes.encryptBlock", "aes/gcm.") }},
	{"Noise: ChaCha20-Poly1305 seal", func(leaf, _ string) bool { return has(leaf, "chacha20Poly1305Seal") }},
	{"Noise: ChaCha20-Poly1305 open", func(leaf, _ string) bool { return has(leaf, "chacha20Poly1305Open") }},
	{"Go GC: mark workers, assists, sweeping", func(_, stack string) bool {
		return has(stack, "gcBgMarkWorker", "gcAssistAlloc", "bgsweep", "bgscavenge")
	}},
	{"Go allocation: mallocgc, zeroing, faulting in new memory", func(_, stack string) bool {
		return has(stack, "mallocgc", "makeslice", "growslice")
	}},
	{"copying in protobuf marshal/unmarshal", func(leaf, stack string) bool {
		return has(leaf, "memmove") && has(stack, "protobuf")
	}},
	{"copying elsewhere (memmove)", func(leaf, _ string) bool { return has(leaf, "memmove") }},
	{"block store: creating the temp file", func(_, stack string) bool {
		return has(stack, "blocks.(*Store).write") && has(stack, "CreateTemp", "createTemp", "openat")
	}},
	// vfs_fsync_range: also the sync of a write with RWF_SYNC, which a
	// put of an unnamed file makes instead of a write and an fsync.
	{"block store: fsync/syncfs of files or directories", func(_, stack string) bool {
		return has(stack, "do_fsync", "Fsync", "Syncfs", "sync_filesystem", "vfs_fsync_range")
	}},
	{"block store: write, rename, rest", func(_, stack string) bool {
		return has(stack, "blocks.(*Store).write", "blocks.(*Store).Put", "blocks.(*committer)")
	}},
	{"block store: reading a block", func(_, stack string) bool { return has(stack, "blocks.readBlock") }},
	{"fetch output: pwrite", func(_, stack string) bool { return has(stack, "File).WriteAt", "pwrite") }},
	// A fetch looks up its blocks' replicas (Locate); the ring RPCs'
	// bytes cross yamux and TLS on goroutines of their own, counted below.
	{"ring lookups: Locate, Replicas, ring RPCs", func(_, stack string) bool {
		return has(stack, "chordshare/chord.", "ringTransport", "Node).Replicas", "Node).replicasNear", "Node).preference")
	}},
	{"TCP send and receive (syscalls, kernel)", func(_, stack string) bool {
		return has(stack, "tcp_", "sock_", "net.(*conn)")
	}},
	{"scheduling: switches, futexes, idle spinning", func(leaf, stack string) bool {
		return has(stack, "runtime.schedule", "findRunnable", "usleep", "futex", "nanosleep", "sysmon") || has(leaf, "finish_task_switch")
	}},
	{"yamux (rest)", func(_, stack string) bool { return has(stack, "yamux") }},
	{"other", func(string, string) bool { return true }},
}

// classify sorts the samples of `perf script -F comm,pid,ip,sym` output,
// by process: a line "comm pid" starts a sample, indented "addr symbol"
// lines follow, leaf first.
func classify(script string) map[int]profile {
	byPid := map[int]profile{}
	pid := 0
	var frames []string
	flush := func() {
		if len(frames) == 0 {
			return
		}
		stack := strings.Join(frames, "\n") + "\n"
		for _, c := range categories {
			if c.match(frames[0], stack) {
				if byPid[pid] == nil {
					byPid[pid] = profile{}
				}
				byPid[pid][c.name]++
				break
			}
		}
		frames = frames[:0]
	}
	for _, line := range strings.Split(script, "\n") {
		switch {
		case strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " "):
			if _, sym, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
				frames = append(frames, sym)
			}
		case strings.TrimSpace(line) != "":
			flush()
			// The pid is the last field: comm may hold spaces.
			f := strings.Fields(line)
			pid, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	flush()
	return byPid
}

// merged is the samples of all pids together.
func merged(byPid map[int]profile) profile {
	all := profile{}
	for _, p := range byPid {
		for c, n := range p {
			all[c] += n
		}
	}
	return all
}

func (p profile) total() int {
	n := 0
	for _, v := range p {
		n += v
	}
	return n
}
