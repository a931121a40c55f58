package tui

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"chordshare/peer/api"
)

func init() {
	// Tests read the screen as text: no colour codes.
	lipgloss.SetColorProfile(termenv.Ascii)
}

const (
	selfID  = "12D3KooWSelfSelfSelfSelfSelfSelfSelfSelfSelfSelfAAAA"
	peerB   = "12D3KooWBbbbBbbbBbbbBbbbBbbbBbbbBbbbBbbbBbbbBbbbBBBB"
	peerC   = "12D3KooWCcccCcccCcccCcccCcccCcccCcccCcccCcccCcccCCCC"
	testCID = "bafybeid2emvmjo4gd6jl5kuggmmlx2iu27q4gvabluptp2nzayek43r4ce"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// newTestModel is a UI that has read the fixture below from a daemon. Its
// client points at a repo where no daemon runs: commands are not run.
func newTestModel(t *testing.T) (*Model, *bytes.Buffer) {
	t.Helper()
	c, err := api.NewClient(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var clip bytes.Buffer
	m := New(context.Background(), c, Options{Clipboard: &clip, WorkDir: t.TempDir(), Now: func() time.Time { return t0 }})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(fixture())
	return m, &clip
}

func nb(p string, vnode uint32, id string, rtt float64) api.Neighbour {
	return api.Neighbour{Peer: p, Vnode: vnode, ID: id, RTTMillis: rtt, State: "alive"}
}

func fixture() snapshotMsg {
	return snapshotMsg{
		status: api.Status{
			ID: selfID, Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + selfID},
			Positions: []string{"10" + strings.Repeat("0", 62)}, Capacity: 1, RingSizeEstimate: 3,
			ConnectedPeers: 2, LookupMode: "recursive", UptimeSeconds: 3725,
			BlocksStored: 12, BytesUsed: 3 << 20, StorageMax: 12 << 20, UnderReplicated: 4,
			BytesIn: 5 << 20, BytesOut: 1 << 20, RateIn: 2048, RateOut: 100, Uplink: 10 << 10, UplinkAuto: true,
			PutRoom: api.PutRoom{BytesHeld: 3 << 20, BytesLimit: 128 << 20, Refused: 5, Evicted: 2},
			Repair:  api.Repair{Rounds: 12, BlocksMoved: 3, BytesMoved: 768 << 10, HintsPending: 2, LastRound: t0.Add(-5 * time.Second), InProgress: true},
		},
		ring: api.Ring{ID: selfID, Vnodes: []api.Vnode{{
			Index: 0, ID: "10" + strings.Repeat("0", 62),
			Predecessor: &api.Neighbour{Peer: peerC, ID: "c0" + strings.Repeat("0", 62), RTTMillis: 12.5, State: "suspected"},
			Successors: []api.Neighbour{
				nb(peerB, 0, "50"+strings.Repeat("0", 62), 1.25),
				nb(peerC, 0, "c0"+strings.Repeat("0", 62), 12.5),
			},
			Fingers: []api.Finger{{K: 0, Node: nb(peerB, 0, "50"+strings.Repeat("0", 62), 1.25)}, {K: 255, Node: nb(peerC, 0, "c0"+strings.Repeat("0", 62), 12.5)}},
		}}},
		transfers: api.Transfers{Transfers: []api.Transfer{
			{ID: 3, Kind: "share", Name: "movie.mkv", State: api.TransferRunning, Done: 1 << 20, Total: 4 << 20, Rate: 1 << 20, Started: t0},
			{ID: 2, Kind: "fetch", Name: "/home/me/x", CID: testCID, State: api.TransferFailed, Done: 0, Total: -1, Started: t0, Error: "no replica of the root answered"},
			{ID: 1, Kind: "share", Name: "notes.txt", CID: testCID, State: api.TransferDone, Done: 100, Total: 100, Rate: 50, Started: t0},
		}},
		peers: api.Peers{Peers: []api.Peer{
			{ID: peerB, Addr: "/ip4/127.0.0.1/tcp/4002", RTTMillis: 1.25, BytesIn: 4096, BytesOut: 1 << 20, RateIn: 10, Roles: []string{api.RoleSuccessor, api.RoleFinger}},
			{ID: peerC, Addr: "/ip4/127.0.0.1/tcp/4003", RTTMillis: 12.5, Roles: []string{api.RoleSuccessor, api.RolePredecessor, api.RoleFinger}},
		}},
	}
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func press(m *Model, keys ...string) tea.Cmd {
	var cmd tea.Cmd
	for _, k := range keys {
		_, cmd = m.Update(key(k))
	}
	return cmd
}

func typeText(m *Model, s string) {
	for _, r := range s {
		m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
	}
}

// checkFrame checks that the screen fills the terminal exactly.
func checkFrame(t *testing.T, m *Model, w, h int) string {
	t.Helper()
	v := m.View()
	lines := strings.Split(v, "\n")
	if len(lines) != h {
		t.Fatalf("%dx%d: %d lines\n%s", w, h, len(lines), v)
	}
	for i, l := range lines {
		if got := lipgloss.Width(l); got != w {
			t.Fatalf("%dx%d: line %d is %d wide: %q", w, h, i, got, l)
		}
		for _, r := range l {
			if r > 0x7e {
				t.Fatalf("line %d has a non-ASCII character %q: %q", i, r, l)
			}
		}
	}
	return v
}

func mustContain(t *testing.T, screen string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(screen, w) {
			t.Errorf("screen lacks %q:\n%s", w, screen)
		}
	}
}

func TestOverview(t *testing.T) {
	m, _ := newTestModel(t)
	m.Update(streamEventMsg{gen: m.streamGen, e: api.NodeEvent{Seq: 1, Time: t0, Kind: api.EventRepair, Message: "repair moved 7 blocks"}})
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "[1 Overview]", "connected", selfID, "/ip4/127.0.0.1/tcp/4001/p2p/",
		"Uptime      1h02m", "about 3 peers; here 1 vnode, recursive lookups",
		"12 blocks, 3.0 MiB of 12 MiB [###.......] 25%",
		"Repair      4 block copies missing; 12 rounds, 3 blocks (768 KiB) moved", "2 hints pending handoff, last round 5s ago, one running",
		"in  2.0 KiB/s", "(5.0 MiB total)", "out 100 B/s", "uploads paced to 10 KiB/s (auto)",
		"Puts in     3.0 MiB of 128 MiB room held; 5 refused, 2 evicted",
		"2 connected", "1 running, 1 done, 1 failed",
		"Recent events", "repair moved 7 blocks", "s share", "f fetch", "c copy CID", "q quit")
}

func TestRingView(t *testing.T) {
	m, _ := newTestModel(t)
	press(m, "2")
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "[2 Ring]", "Vnode 1 of 1", "Predecessor ..CcccCCCC/0 12 ms", "suspected",
		" 1   ..BbbbBBBB/0 1.2 ms   alive", " 2   ..CcccCCCC/0 12 ms", " 255 ..CcccCCCC/0",
		"@ vnode shown", "P predecessor")
	for _, sym := range []string{"@", "S", "P", "F"} {
		if strings.Count(v, sym) < 2 { // the legend and the circle
			t.Errorf("ring lacks mark %s:\n%s", sym, v)
		}
	}
	// Narrow: the tables go under the circle.
	m.Update(tea.WindowSizeMsg{Width: 50, Height: 40})
	v = checkFrame(t, m, 50, 40)
	mustContain(t, v, "Successors", "@ vnode shown")
}

func TestDrawRingPlacesPositionsClockwiseFromTop(t *testing.T) {
	rows := drawRing(21, 11, []ringMark{{0, symSelf}, {0.25, symSuccessor}, {0.5, symPredecessor}, {0.75, symOwn}, {0.5, symFinger}, {0.75, symFinger}})
	if len(rows) != 11 {
		t.Fatalf("%d rows", len(rows))
	}
	at := func(x, y int) byte { return rows[y][x] }
	if at(10, 0) != symSelf || at(20, 5) != symSuccessor || at(10, 10) != symPredecessor || at(0, 5) != symOwn {
		t.Fatalf("marks misplaced:\n%s", strings.Join(rows, "\n"))
	}
	if position("8"+strings.Repeat("0", 63)) != 0.5 || position("zz") != 0 {
		t.Fatal("position")
	}
}

func TestTransfersSelectAndCopy(t *testing.T) {
	m, clip := newTestModel(t)
	press(m, "3")
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "[3 Transfers]", "> share movie.mkv", "[###..........]  25%", "1.0 MiB/s", "3s", "running",
		"FAILED", "CID   (known when the share ends)", "Name  movie.mkv")
	press(m, "c")
	if clip.Len() != 0 || !strings.Contains(m.View(), "! no CID to copy") {
		t.Fatalf("copy without a CID: clipboard %q\n%s", clip.String(), m.View())
	}
	press(m, "down")
	v = checkFrame(t, m, 80, 24)
	mustContain(t, v, "> fetch ..ek43r4ce -> /home/me~", "CID   "+testCID, "Error no replica of the root answered")
	// A long error is shown in full, wrapped.
	long := "fetch " + testCID + ": get " + testCID + ": no replica answered: block not found on any of 3 peers"
	m.transfers[1].Error = long
	v = checkFrame(t, m, 80, 24)
	if got := strings.Join(strings.Fields(v[strings.Index(v, "Error "):]), " "); !strings.Contains(got, "Error "+long) {
		t.Fatalf("long error not shown in full:\n%s", v)
	}
	press(m, "c")
	want := "\x1b]52;c;" + base64.StdEncoding.EncodeToString([]byte(testCID)) + "\x07"
	if clip.String() != want {
		t.Fatalf("clipboard got %q, want %q", clip.String(), want)
	}
	mustContain(t, m.View(), "copied "+testCID)
	press(m, "down", "down", "down")
	if m.transferSel != 2 {
		t.Fatalf("selection past the end: %d", m.transferSel)
	}
}

func TestPeersView(t *testing.T) {
	m, _ := newTestModel(t)
	press(m, "4")
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "[4 Peers]", "> ..BbbbBBBB succ,finger", "1.2 ms", "4.0 KiB", "1.0 MiB", "10 B/s",
		"..CcccCCCC succ,pred,finger", "Peer  "+peerB, "Addr  /ip4/127.0.0.1/tcp/4002  roles: successor, finger")
	press(m, "down")
	mustContain(t, m.View(), "Peer  "+peerC)
}

func TestLogViewScrolls(t *testing.T) {
	m, _ := newTestModel(t)
	press(m, "5")
	mustContain(t, checkFrame(t, m, 80, 24), "No events yet")
	for i := 1; i <= 40; i++ {
		m.Update(streamEventMsg{gen: m.streamGen, e: api.NodeEvent{Seq: uint64(i), Time: t0, Kind: api.EventSuccessorChanged, Message: "change " + itoa(i)}})
	}
	// A replayed event (same Seq) is not shown twice.
	m.Update(streamEventMsg{gen: m.streamGen, e: api.NodeEvent{Seq: 40, Kind: api.EventSuccessorChanged, Message: "change 40"}})
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "40 events", "change 40", "change 22")
	if strings.Contains(v, "change 21\n") || strings.Count(v, "change 40") != 1 {
		t.Fatalf("log shows more than fits, or a replay twice:\n%s", v)
	}
	press(m, "up", "up", "up")
	v = checkFrame(t, m, 80, 24)
	mustContain(t, v, "scrolled back 3", "change 19", "change 37")
	if strings.Contains(v, "change 38") {
		t.Fatalf("scrolled view shows the newest:\n%s", v)
	}
	// A long message wraps in the Log, in full; the overview cuts it.
	long := "fetch " + testCID + ": get " + testCID + ": none of 2 replicas served it"
	m.Update(streamEventMsg{gen: m.streamGen, e: api.NodeEvent{Seq: 41, Time: t0, Kind: api.EventFetchFailed, Message: long}})
	if m.logScroll != 4 {
		t.Fatalf("a new event moved the lines being read: scroll %d, want 4", m.logScroll)
	}
	press(m, "down", "down", "down", "down")
	v = checkFrame(t, m, 80, 24)
	if got := strings.Join(strings.Fields(v), " "); !strings.Contains(got, long) || strings.Contains(v, "scrolled back") {
		t.Fatalf("long event not wrapped in full at the bottom:\n%s", v)
	}
	press(m, "1")
	mustContain(t, checkFrame(t, m, 80, 24), "fetch_failed        fetch "+testCID[:30])
	press(m, "5")
	// An event from an older stream is ignored.
	m.Update(streamEventMsg{gen: m.streamGen - 1, e: api.NodeEvent{Seq: 42, Message: "stale"}})
	if strings.Contains(m.View(), "stale") || m.lastSeq != 41 {
		t.Fatal("event of a stale stream shown")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSwitchViewsAndQuit(t *testing.T) {
	m, _ := newTestModel(t)
	for i, k := range []string{"1", "2", "3", "4", "5"} {
		press(m, k)
		if m.view != i {
			t.Fatalf("key %s: view %d", k, m.view)
		}
	}
	press(m, "tab")
	if m.view != viewOverview {
		t.Fatalf("tab from the last view: %d", m.view)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyShiftTab})
	if m.view != viewLog {
		t.Fatalf("shift+tab from the first view: %d", m.view)
	}
	if cmd := press(m, "q"); cmd == nil || cmd() != tea.Quit() {
		t.Fatal("q does not quit")
	}
}

func TestResizes(t *testing.T) {
	m, _ := newTestModel(t)
	for _, size := range [][2]int{{80, 24}, {200, 60}, {40, 12}, {120, 30}, {80, 24}} {
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		for v := range numViews {
			m.view = v
			checkFrame(t, m, size[0], size[1])
		}
	}
	m.Update(tea.WindowSizeMsg{Width: 30, Height: 8})
	if v := m.View(); !strings.Contains(v, "too small") || strings.Contains(v, "\n") {
		t.Fatalf("tiny terminal: %q", v)
	}
}

func TestSharePrompt(t *testing.T) {
	m, _ := newTestModel(t)
	dir := m.opts.WorkDir
	if err := os.Mkdir(filepath.Join(dir, "folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "photo.jpg"), []byte("jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := m.transfers

	press(m, "s")
	typeText(m, "missing.bin")
	if cmd := press(m, "enter"); cmd != nil {
		t.Fatal("a missing file started a share")
	}
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "! cannot share missing.bin: no such file", "Share file: missing.bin", "esc cancel")

	m.input.SetValue("folder")
	if cmd := press(m, "enter"); cmd != nil {
		t.Fatal("a directory started a share")
	}
	mustContain(t, m.View(), "it is a directory")
	if m.prompt != promptSharePath || len(m.transfers) != len(before) {
		t.Fatal("a bad path closed the prompt or changed the transfers")
	}

	press(m, "esc")
	if m.prompt != promptNone {
		t.Fatal("esc left the prompt open")
	}
	press(m, "s")
	typeText(m, "pho")
	press(m, "tab")
	if got := m.input.Value(); got != "photo.jpg" {
		t.Fatalf("tab completed %q to %q", "pho", got)
	}
	if cmd := press(m, "enter"); cmd == nil {
		t.Fatal("a good file started no share")
	}
	if m.prompt != promptNone || m.view != viewTransfers || !strings.Contains(m.View(), "sharing photo.jpg") {
		t.Fatalf("after a share started: prompt %v, view %d\n%s", m.prompt, m.view, m.View())
	}
	m.Update(shareDoneMsg{name: "photo.jpg", res: api.ShareResult{CID: testCID, Size: 4}})
	mustContain(t, m.View(), "shared photo.jpg: "+testCID)
	m.Update(shareDoneMsg{name: "photo.jpg", err: errors.New("not enough replicas: 1 of 2")})
	mustContain(t, m.View(), "! share photo.jpg failed: not enough replicas: 1 of 2")
	// Messages go after a while; errors stay longer.
	now := t0
	m.opts.Now = func() time.Time { return now }
	m.setFlash("an error", true)
	now = now.Add(flashTime)
	m.onTick(now)
	mustContain(t, m.View(), "! an error")
	now = now.Add(flashErrorTime)
	m.onTick(now)
	if m.flash != "" {
		t.Fatalf("message not cleared after %v", flashErrorTime)
	}
}

func TestTabCompletion(t *testing.T) {
	m, _ := newTestModel(t)
	dir := m.opts.WorkDir
	for _, f := range []string{"alpha.txt", "alpine.txt", "beta", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "albums"), 0o755); err != nil {
		t.Fatal(err)
	}
	press(m, "s")
	typeText(m, "al")
	press(m, "tab")
	if got := m.input.Value(); got != "al" {
		t.Fatalf("ambiguous completion changed %q", got)
	}
	mustContain(t, m.View(), "albums/ alpha.txt alpine.txt")
	typeText(m, "b")
	press(m, "tab")
	if got := m.input.Value(); got != "albums/" {
		t.Fatalf("directory completion: %q", got)
	}
	m.input.SetValue("zz")
	press(m, "tab")
	mustContain(t, m.View(), "! no file matches zz")
	m.input.SetValue(dir + "/alph")
	press(m, "tab")
	if got := m.input.Value(); got != dir+"/alpha.txt" {
		t.Fatalf("absolute completion: %q", got)
	}
}

func TestFetchPrompt(t *testing.T) {
	m, _ := newTestModel(t)
	press(m, "f")
	typeText(m, "not-a-cid")
	if cmd := press(m, "enter"); cmd != nil {
		t.Fatal("a bad CID went on")
	}
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, `! "not-a-cid" is not a CID`, "Fetch CID: not-a-cid")
	if m.prompt != promptFetchCID {
		t.Fatal("a bad CID closed the prompt")
	}
	m.input.SetValue(testCID)
	press(m, "enter")
	if m.prompt != promptFetchDest || m.input.Value() != filepath.Join(m.opts.WorkDir, testCID) {
		t.Fatalf("destination prompt %v with %q", m.prompt, m.input.Value())
	}
	m.input.SetValue("/no/such/dir/out")
	if cmd := press(m, "enter"); cmd != nil {
		t.Fatal("a destination in a missing directory started a fetch")
	}
	mustContain(t, m.View(), "! cannot save to /no/such/dir/out: no directory /no/such/dir")
	// A directory gets a file named by the CID.
	m.input.SetValue(m.opts.WorkDir)
	if cmd := press(m, "enter"); cmd == nil {
		t.Fatal("a good destination started no fetch")
	}
	if m.prompt != promptNone || m.view != viewTransfers {
		t.Fatalf("after a fetch started: prompt %v, view %d", m.prompt, m.view)
	}
	mustContain(t, m.View(), "fetching ..nzayek43r4ce to "+m.opts.WorkDir)
	m.Update(fetchDoneMsg{cid: testCID, res: api.FetchResult{CID: testCID, Path: "/tmp/x", Size: 2048}})
	mustContain(t, m.View(), "fetched ..nzayek43r4ce to /tmp/x (2.0 KiB)")
}

func TestDisconnectReconnect(t *testing.T) {
	m, _ := newTestModel(t)
	now := t0
	m.opts.Now = func() time.Time { return now }
	m.Update(streamEventMsg{gen: m.streamGen, e: api.NodeEvent{Seq: 9, Time: t0, Kind: api.EventJoined, Message: "joined"}})
	fail := snapshotMsg{err: &api.NoDaemonError{Repo: "/r"}}

	_, retry := m.Update(fail)
	if retry == nil {
		t.Fatal("a failed read scheduled no retry")
	}
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "DISCONNECTED", "(disconnected: the last state read, 0s ago)", "! lost the daemon (retrying in 1s): no daemon running on repo /r")
	if m.streamBusy || m.backoff != 2*minBackoff {
		t.Fatalf("after a failure: stream %v, backoff %v", m.streamBusy, m.backoff)
	}
	for range 10 {
		m.Update(fail)
	}
	if m.backoff != maxBackoff {
		t.Fatalf("backoff %v, want the cap %v", m.backoff, maxBackoff)
	}
	// The retry timer reads the daemon again, unless a read is under way.
	m.refreshing = false
	if _, cmd := m.Update(retryMsg{}); cmd == nil || !m.refreshing {
		t.Fatal("the retry timer did not read the daemon")
	}
	if _, cmd := m.Update(retryMsg{}); cmd != nil {
		t.Fatal("a second read started while one was under way")
	}
	// The clock's ticks also retry, not before the backoff has run out.
	m.refreshing = false
	m.onTick(now)
	if m.refreshing {
		t.Fatal("retried before the backoff ran out")
	}
	now = now.Add(maxBackoff)
	m.onTick(now)
	if !m.refreshing {
		t.Fatal("no retry once the backoff ran out")
	}

	// The daemon is back, restarted: events count from 1 again.
	s := fixture()
	s.status.UptimeSeconds = 1
	m.Update(s)
	v = checkFrame(t, m, 80, 24)
	if !m.connected || m.backoff != minBackoff || m.lastSeq != 0 || !m.streamBusy {
		t.Fatalf("after reconnecting: connected %v, backoff %v, lastSeq %d, stream %v", m.connected, m.backoff, m.lastSeq, m.streamBusy)
	}
	mustContain(t, v, "connected", "the daemon restarted")
	if strings.Contains(v, "DISCONNECTED") {
		t.Fatal("still shown disconnected")
	}
}

func TestWaitingForDaemon(t *testing.T) {
	c, err := api.NewClient("/tmp/no-repo")
	if err != nil {
		t.Fatal(err)
	}
	m := New(context.Background(), c, Options{Now: func() time.Time { return t0 }})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(snapshotMsg{err: &api.NoDaemonError{Repo: "/tmp/no-repo"}})
	v := checkFrame(t, m, 80, 24)
	mustContain(t, v, "DISCONNECTED", "Waiting for the daemon on repo /tmp/no-repo", "no daemon running on repo /tmp/no-repo",
		"(start one with: peer daemon --repo", "/tmp/no-repo)", "(retrying in 1s)")
	// Keys work while waiting.
	press(m, "3")
	checkFrame(t, m, 80, 24)
}

func TestWordWrap(t *testing.T) {
	for _, c := range []struct {
		s           string
		first, rest int
		want        []string
	}{
		{"", 5, 5, []string{""}},
		{"a bb ccc", 4, 8, []string{"a bb", "ccc"}},
		{"abcdefghij klm", 4, 6, []string{"abcd", "efghij", "klm"}},
		{"xy abcdefghij", 4, 4, []string{"xy", "abcd", "efgh", "ij"}},
	} {
		if got := wordWrap(c.s, c.first, c.rest); !slices.Equal(got, c.want) {
			t.Errorf("wordWrap(%q, %d, %d) = %q, want %q", c.s, c.first, c.rest, got, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{bytesText(0), "0 B"}, {bytesText(1023), "1023 B"}, {bytesText(1536), "1.5 KiB"}, {bytesText(300 << 20), "300 MiB"},
		{rateText(0.2), "0 B/s"}, {rateText(2048), "2.0 KiB/s"},
		{durationText(45 * time.Second), "45s"}, {durationText(725 * time.Second), "12m05s"}, {durationText(50 * time.Hour), "2d02h"},
		{rttText(0), "-"}, {rttText(1.25), "1.2 ms"}, {rttText(250), "250 ms"},
		{bar(0.5, 12), "[#####.....]"}, {bar(-1, 6), "[?...]"}, {bar(2, 4), "[##]"},
		{shortID(peerB, 8), "..BbbbBBBB"}, {shortID("abc", 8), "abc"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
