package main

// Tests of the terminal UI against real daemons: golden screens driven by
// teatest, and the real binary in tmux.

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/muesli/termenv"

	"chordshare/peer"
	"chordshare/tui"
)

// seedIdentities gives the repos base/1 ... base/n fixed identities, so
// their peer IDs and ring positions are the same in every run.
func seedIdentities(t *testing.T, base string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		seed := bytes.Repeat([]byte{byte(i)}, 32)
		key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := crypto.MarshalPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, peer.IdentityFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFingers waits until every vnode's finger table holds what Chord
// converges to: for each k, the first position at or after self + 2^k,
// each distinct one listed at its lowest k, the vnode itself left out.
func waitFingers(t *testing.T, peers []*ringPeer) {
	t.Helper()
	var ids []*big.Int
	for _, p := range peers {
		for _, pos := range p.status.Positions {
			v, _ := new(big.Int).SetString(pos, 16)
			ids = append(ids, v)
		}
	}
	slices.SortFunc(ids, func(a, b *big.Int) int { return a.Cmp(b) })
	ring := new(big.Int).Lsh(big.NewInt(1), 256)
	successor := func(key *big.Int) string {
		for _, id := range ids {
			if id.Cmp(key) >= 0 {
				return fmt.Sprintf("%064x", id)
			}
		}
		return fmt.Sprintf("%064x", ids[0])
	}
	poll(t, 40*time.Second, "finger tables converge", func() (bool, string) {
		for _, p := range peers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := p.client.Ring(ctx)
			cancel()
			if err != nil {
				return false, err.Error()
			}
			for _, v := range r.Vnodes {
				self, _ := new(big.Int).SetString(v.ID, 16)
				var want []string
				last := ""
				for k := range 256 {
					start := new(big.Int).Add(self, new(big.Int).Lsh(big.NewInt(1), uint(k)))
					s := successor(start.Mod(start, ring))
					if s != last && s != v.ID { // each distinct finger once; never the vnode itself
						want = append(want, fmt.Sprintf("%d %s", k, s))
					}
					last = s
				}
				var got []string
				for _, f := range v.Fingers {
					got = append(got, fmt.Sprintf("%d %s", f.K, f.Node.ID))
				}
				if !slices.Equal(got, want) {
					return false, fmt.Sprintf("vnode %.16s of %s: fingers %v, want %v", v.ID, p.repo, got, want)
				}
			}
		}
		return true, ""
	})
}

// screenModel lets a test read the UI's screen from the program's own
// goroutine, where the model may be read without a race.
type screenModel struct{ m *tui.Model }

type screenRequest chan string

func (s screenModel) Init() tea.Cmd { return s.m.Init() }

func (s screenModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if req, ok := msg.(screenRequest); ok {
		req <- s.m.View()
		return s, nil
	}
	_, cmd := s.m.Update(msg)
	return s, cmd
}

func (s screenModel) View() string { return s.m.View() }

// waitScreen waits until the UI shows a screen that ok accepts, and
// returns it.
func waitScreen(t *testing.T, tm *teatest.TestModel, what string, ok func(string) bool) string {
	t.Helper()
	var screen string
	poll(t, 30*time.Second, what, func() (bool, string) {
		req := make(screenRequest, 1)
		tm.Send(req)
		select {
		case screen = <-req:
		case <-time.After(5 * time.Second):
			return false, "the UI did not answer"
		}
		return ok(screen), screen
	})
	return screen
}

func hasAll(want ...string) func(string) bool {
	return func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}
}

// What changes from run to run on a screen of a real ring: ports, clock
// times, uptime, repair progress, round trips, rates and traffic counts. normalizeScreen
// replaces each with a placeholder padded to the width of the value and
// the spaces after it, which is a table column's width, so the layout is
// kept.
var (
	volatile = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`\b\d\d:\d\d:\d\d\b`), "hh:mm:ss"},
		{regexp.MustCompile(`\d+(\.\d)? ms\b *`), "RTT"},
		{regexp.MustCompile(`\d+(\.\d)? (B|KiB|MiB|GiB)/s *`), "RATE"},
		{regexp.MustCompile(`\(\d+(\.\d)? (B|KiB|MiB|GiB) total\) *`), "(BYTES total)"},
	}
	// The label of a row whose value is volatile: uptime, and repair,
	// which runs on its own timers.
	volatileRow = regexp.MustCompile(`^( Uptime +| Repair +| Puts in +| {13}(\d+ hints? pending))`)
	port        = regexp.MustCompile(`/(tcp|udp)/\d+`)
	peerRow     = regexp.MustCompile(`^[> ] \.\.\S+ +\S+ +RTT +`)
	bytesRe     = regexp.MustCompile(`\d+(\.\d)? (B|KiB|MiB|GiB)\b *`)
)

// padTo replaces every match of re in s with what, padded with spaces to
// the match's width.
func padTo(re *regexp.Regexp, s, what string) string {
	return re.ReplaceAllStringFunc(s, func(m string) string {
		if len(what) >= len(m) {
			return what
		}
		return what + strings.Repeat(" ", len(m)-len(what))
	})
}

func normalizeScreen(screen string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		// Ports: ephemeral ones have five digits, so the width holds.
		l = port.ReplaceAllString(l, "/$1/PORT_")
		for _, v := range volatile {
			l = padTo(v.re, l, v.with)
		}
		if m := volatileRow.FindStringSubmatch(l); m != nil {
			label := strings.TrimSuffix(m[1], m[2])
			l = label + padTo(regexp.MustCompile(`^.*$`), l[len(label):], "VALUE")
		}
		if peerRow.MatchString(l) {
			l = padTo(bytesRe, l, "BYTES") // traffic with a peer
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n") + "\n"
}

// withoutRecentEvents drops the overview's recent events, whose order
// depends on how the peers happened to meet; the unit tests pin them.
func withoutRecentEvents(screen string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, " Recent events") && i < len(lines)-2 {
			lines = append(append(lines[:i:i], " Recent events ..."), lines[len(lines)-2:]...)
			break
		}
	}
	return strings.Join(lines, "\n")
}

// TestTUIGolden pins the main screens of the UI against a real 3-peer ring
// whose peers have fixed identities, at 80x24 without colour.
func TestTUIGolden(t *testing.T) {
	t.Parallel()
	lipgloss.SetColorProfile(termenv.Ascii)
	env := testEnv(t)
	base := shortTempDir(t)
	seedIdentities(t, base, 3)
	// Peers 2 and 3 join at once: positions chosen at join would depend
	// on which came first.
	peers := startRingIn(t, env, base, 3, "--capacity", "1", "--vnode-choices", "1")
	waitFingers(t, peers)

	work := t.TempDir()
	data := bytes.Repeat([]byte("chordshare golden file\n"), 40000) // 920,000 bytes: 4 blocks and a root
	if err := os.WriteFile(filepath.Join(work, "golden.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := tui.New(ctx, peers[0].client, tui.Options{Refresh: 200 * time.Millisecond, WorkDir: work, Clipboard: &bytes.Buffer{}})
	tm := teatest.NewTestModel(t, screenModel{m}, teatest.WithInitialTermSize(80, 24))
	t.Cleanup(func() { _ = tm.Quit() })

	// The overview's recent events depend on the order the peers met in:
	// they are left to the unit tests; the rest of the screen is pinned.
	t.Run("overview", func(t *testing.T) {
		s := waitScreen(t, tm, "the overview of a converged ring", hasAll("connected", "about 3 peers", "2 connected", "Recent events"))
		golden.RequireEqual(t, []byte(normalizeScreen(withoutRecentEvents(s))))
	})
	t.Run("transfers", func(t *testing.T) {
		tm.Type("s")
		tm.Type("gold")
		tm.Send(tea.KeyMsg{Type: tea.KeyTab})
		tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
		s := waitScreen(t, tm, "the share in Transfers", hasAll("[3 Transfers]", "done", "shared golden.txt"))
		golden.RequireEqual(t, []byte(normalizeScreen(s)))
	})
	t.Run("ring", func(t *testing.T) {
		tm.Type("2")
		s := waitScreen(t, tm, "the ring view", hasAll("[2 Ring]", "Fingers"))
		golden.RequireEqual(t, []byte(normalizeScreen(s)))
	})
	t.Run("peers", func(t *testing.T) {
		tm.Type("4")
		s := waitScreen(t, tm, "the peers view", hasAll("[4 Peers]", "succ,pred"))
		golden.RequireEqual(t, []byte(normalizeScreen(s)))
	})
	t.Run("overview-after-share", func(t *testing.T) {
		tm.Type("1")
		s := waitScreen(t, tm, "the overview after the share", hasAll("[1 Overview]", "5 blocks", "1 done"))
		golden.RequireEqual(t, []byte(normalizeScreen(withoutRecentEvents(s))))
	})
	tm.Type("q")
	tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
}

// tmux runs tmux on a server of the test's own, so it never touches the
// user's sessions.
type tmux struct {
	t    *testing.T
	sock string
	env  []string
}

func newTmux(t *testing.T, env []string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed: this end-to-end test of the terminal UI needs it (apt-get install tmux)")
	}
	tx := &tmux{t: t, sock: filepath.Join(shortTempDir(t), "tmux.sock"), env: env}
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", tx.sock, "kill-server").Run() })
	return tx
}

func (tx *tmux) run(args ...string) (string, error) {
	cmd := exec.Command("tmux", append([]string{"-S", tx.sock}, args...)...)
	cmd.Env = tx.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (tx *tmux) must(args ...string) string {
	tx.t.Helper()
	out, err := tx.run(args...)
	if err != nil {
		tx.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return out
}

// screen is what the session's window shows.
func (tx *tmux) screen(session string) string {
	out, _ := tx.run("capture-pane", "-p", "-t", session)
	return out
}

func (tx *tmux) waitScreen(session, what string, ok func(string) bool) string {
	tx.t.Helper()
	var s string
	poll(tx.t, 30*time.Second, what, func() (bool, string) {
		s = tx.screen(session)
		return ok(s), s
	})
	return s
}

// key presses key in session until the screen shows want: a first key
// sent as soon as the UI had drawn its screen was lost in one run here (not
// reproduced since, cause unknown), and the test should not hang on that.
func (tx *tmux) key(session, key, want string) {
	tx.t.Helper()
	for range 20 {
		tx.must("send-keys", "-t", session, key)
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if strings.Contains(tx.screen(session), want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tx.t.Fatalf("key %q in %s: the screen never showed %q:\n%s", key, session, want, tx.screen(session))
}

var screenCID = regexp.MustCompile(`CID +(b[a-z2-7]{58})`)

// TestE2ETUIInTmux runs `peer tui` in tmux on a 3-peer ring as a person
// would: share a file through the prompt, see it in Transfers, read its CID
// off the screen, fetch it through the UI of another peer, quit with q.
func TestE2ETUIInTmux(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	tx := newTmux(t, env)
	peers := startRing(t, env, 3, "--capacity", "2")
	path, data := writeRandomFile(t, 1<<20+4321, 61)
	out := filepath.Join(t.TempDir(), "fetched.bin")

	for i, name := range []string{"ui1", "ui2"} {
		tx.must("new-session", "-d", "-s", name, "-x", "100", "-y", "30", peerBinary(t), "tui", "--repo", peers[i].repo)
	}
	tx.waitScreen("ui1", "the UI of peer 1 connects", hasAll("connected", "about 3 peers"))

	tx.key("ui1", "s", "Share file:")
	tx.must("send-keys", "-t", "ui1", "C-u") // in case a retried s reached the prompt
	tx.must("send-keys", "-t", "ui1", "-l", path)
	tx.must("send-keys", "-t", "ui1", "Enter")
	s := tx.waitScreen("ui1", "the share done in Transfers", hasAll("[3 Transfers]", "done", "shared "+filepath.Base(path)))
	m := screenCID.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no CID on the screen:\n%s", s)
	}
	root := m[1]

	tx.waitScreen("ui2", "the UI of peer 2 connects", hasAll("connected"))
	tx.key("ui2", "f", "Fetch CID:")
	tx.must("send-keys", "-t", "ui2", "C-u")
	tx.must("send-keys", "-t", "ui2", "-l", root)
	tx.must("send-keys", "-t", "ui2", "Enter")
	tx.waitScreen("ui2", "the destination prompt", hasAll("Save to:"))
	tx.must("send-keys", "-t", "ui2", "C-u")
	tx.must("send-keys", "-t", "ui2", "-l", out)
	tx.must("send-keys", "-t", "ui2", "Enter")
	tx.waitScreen("ui2", "the fetch done", hasAll("fetched ", "done"))

	for _, name := range []string{"ui1", "ui2"} {
		tx.must("send-keys", "-t", name, "q")
		poll(t, 10*time.Second, "the UI in "+name+" quits on q", func() (bool, string) {
			_, err := tx.run("has-session", "-t", name)
			return err != nil, tx.screen(name)
		})
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes differ from the %d shared", len(got), len(data))
	}
	// The daemons outlive their UIs.
	if _, errs, code := peerCmd(t, env, "status", "--repo", peers[0].repo); code != 0 {
		t.Fatalf("daemon 1 after its UI quit: %s", errs)
	}

	// peer daemon --tui: a fourth peer joins with the UI attached, its log
	// in the repo; q stops both.
	repo := repoDir(t, "tui4")
	tx.must("new-session", "-d", "-s", "d4", "-x", "80", "-y", "24", peerBinary(t), "daemon", "--tui", "--repo", repo,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--capacity", "2", "--bootstrap", peers[0].status.Addrs[0])
	tx.waitScreen("d4", "the attached UI shows the joined peer", hasAll("connected", "joined the ring through", "quit+stop daemon"))
	tx.key("d4", "2", "[2 Ring]")
	tx.must("send-keys", "-t", "d4", "q")
	poll(t, 15*time.Second, "daemon --tui stops on q", func() (bool, string) {
		_, err := tx.run("has-session", "-t", "d4")
		return err != nil, tx.screen("d4")
	})
	log, err := os.ReadFile(filepath.Join(repo, daemonLogName))
	if err != nil || !strings.Contains(string(log), "listening on ") || !strings.HasSuffix(string(log), "stopped\n") {
		t.Fatalf("daemon.log (%v):\n%s", err, log)
	}
	if _, errs, code := peerCmd(t, env, "status", "--repo", repo); code == 0 || !strings.Contains(errs, "no daemon running") {
		t.Fatalf("after q the daemon still answers: exit %d, %s", code, errs)
	}
}
