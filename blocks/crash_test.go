package blocks

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// crashDirEnv, when set, turns TestCrashHelper into the victim process: it
// puts blocks into the store in that directory until it is killed. With
// crashNamedEnv set too, its puts use named temp files and renames rather
// than unnamed files.
const (
	crashDirEnv   = "BLOCKS_CRASH_HELPER_DIR"
	crashNamedEnv = "BLOCKS_CRASH_HELPER_NAMED"
)

// TestCrashHelper is the process TestCrash kills. Four writers put random
// blocks of up to 1 MiB; each prints "put CID" once its Put has returned.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as TestCrash's subprocess")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if os.Getenv(crashNamedEnv) != "" {
		s.named = true
	}
	var out sync.Mutex
	for w := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for {
				data, c := randBlock(t, rng, 1+rng.IntN(1<<20))
				if err := s.Put(c, data); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Println("put", c)
				out.Unlock()
			}
		}()
	}
	select {}
}

// TestCrash SIGKILLs a process in the middle of writing blocks, several
// times over the same store, once with unnamed temp files (O_TMPFILE, where
// the system has them) and once with named ones. After each crash every
// block the store lists is whole and valid, every put that returned is
// there, and no temp file is left once the store is open again.
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("already the subprocess")
	}
	for _, named := range []bool{false, true} {
		t.Run(map[bool]string{false: "unnamed", true: "named"}[named], func(t *testing.T) {
			crash(t, named)
		})
	}
}

func crash(t *testing.T, named bool) {
	dir := t.TempDir()
	if !named {
		probe, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		fallback := probe.named
		if err := probe.Close(); err != nil {
			t.Fatal(err)
		}
		if fallback {
			t.Skip("no unnamed files here")
		}
	}
	acked := map[cid.Cid]bool{}
	rng := rand.New(rand.NewPCG(31, 32))
	aimed, leftovers := 0, 0
	// At least 4 rounds, and more until a kill has been aimed at a put in
	// progress, and with named temp files until one has left a temp file:
	// proof that it landed mid-put.
	for round := 0; round < 4 || aimed == 0 || named && leftovers == 0; round++ {
		if round == 20 {
			t.Fatalf("20 kills: %d aimed at a put in progress, %d temp files left", aimed, leftovers)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		if named {
			cmd.Env = append(cmd.Env, crashNamedEnv+"=1")
		}
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // if the test fails before the kill
			cmd.Process.Kill()
			cmd.Wait()
		})
		// Kill after a random number of acknowledged puts, while the four
		// writers are busy with the next ones.
		n := 5 + rng.IntN(20)
		lines := bufio.NewScanner(stdout)
		for got := 0; got < n; {
			if !lines.Scan() {
				t.Fatalf("round %d: helper stopped after %d puts: %v", round, got, lines.Err())
			}
			switch f := strings.Fields(lines.Text()); {
			case len(f) == 2 && f[0] == "put":
				acked[cid.MustParse(f[1])] = true
				got++
			case strings.HasPrefix(lines.Text(), "error"):
				t.Fatalf("helper: %s", lines.Text())
			}
		}
		// Aim the kill at a put that holds its temp file, before its rename
		// or link.
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
			if tempOpen(cmd.Process.Pid, dir) {
				aimed++
				break
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		tmp, err := filepath.Glob(filepath.Join(dir, "*", tempPrefix+"*"))
		if err != nil {
			t.Fatal(err)
		}
		leftovers += len(tmp)

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if tmp, _ := filepath.Glob(filepath.Join(dir, "*", "tmp-*")); len(tmp) != 0 {
			t.Fatalf("round %d: temp files survive Open: %v", round, tmp)
		}
		listed := all(s)
		for _, c := range listed {
			if _, err := s.Get(c); err != nil {
				t.Fatalf("round %d: listed block %s: %v", round, c, err)
			}
		}
		for c := range acked {
			if !s.Has(c) {
				t.Fatalf("round %d: acknowledged put of %s lost", round, c)
			}
		}
		t.Logf("round %d: %d blocks listed and valid, %d acknowledged", round, len(listed), len(acked))
		s.Close()
	}
	t.Logf("%d kills aimed at a put in progress; %d temp files left, all removed at Open", aimed, leftovers)
}

// tempOpen reports whether process pid holds a temp file of the store in
// dir: an unnamed file there, which /proc shows as "dir/shard/#INODE
// (deleted)", or a named one.
func tempOpen(pid int, dir string) bool {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	des, err := os.ReadDir(fds)
	if err != nil {
		// No /proc: look for named temp files only.
		tmp, _ := filepath.Glob(filepath.Join(dir, "*", tempPrefix+"*"))
		return len(tmp) > 0
	}
	for _, de := range des {
		target, err := os.Readlink(filepath.Join(fds, de.Name()))
		if err != nil || !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			continue
		}
		if name := filepath.Base(target); strings.HasPrefix(name, "#") || strings.HasPrefix(name, tempPrefix) {
			return true
		}
	}
	return false
}
