// Package tui is the desktop terminal UI of a chordshare peer: a bubbletea
// app that shows a daemon's ring, transfers, peers and events and shares
// and fetches files through it. It talks to the daemon only through the
// local API client (peer/api), like any other client.
package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"chordshare/peer/api"
)

// Options configure the UI. The zero value is usable.
type Options struct {
	// Refresh is how often the status, ring, transfers and peers are read
	// again (uptime, rates, progress); events arrive as they happen
	// whatever it is. Zero: DefaultRefresh.
	Refresh time.Duration
	// Embedded says the UI runs inside `peer daemon --tui`: quitting it
	// stops the daemon, and the help bar says so.
	Embedded bool
	// Clipboard receives the OSC 52 sequence that copies a CID; nil:
	// standard output (the terminal).
	Clipboard io.Writer
	// WorkDir resolves relative paths typed in prompts; "": the current
	// directory.
	WorkDir string
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// DefaultRefresh is how often the UI rereads what changes without an event.
const DefaultRefresh = time.Second

// Reconnection backoff: the first retry after a failed read of the
// daemon, doubled after each further failure up to the maximum.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// requestTimeout bounds one read of the daemon's state.
const requestTimeout = 5 * time.Second

// maxLogEvents is how many events the Log view keeps.
const maxLogEvents = 1000

// Views, in the order of their keys (1-5) and tabs.
const (
	viewOverview = iota
	viewRing
	viewTransfers
	viewPeers
	viewLog
	numViews
)

var viewNames = [numViews]string{"Overview", "Ring", "Transfers", "Peers", "Log"}

// promptMode is what the prompt line is asking for.
type promptMode int

const (
	promptNone promptMode = iota
	promptSharePath
	promptFetchCID
	promptFetchDest
)

// Model is the UI's state. Create it with New; it is a tea.Model.
type Model struct {
	ctx    context.Context
	client *api.Client
	opts   Options

	width, height int
	view          int

	// The connection: whether the last read of the daemon worked, and
	// when to try again after one that did not.
	connected   bool
	everSeen    bool
	connErr     string
	backoff     time.Duration
	nextTry     time.Time
	refreshing  bool
	daemonStart time.Time // when the daemon we see started (detects a restart)

	// The daemon's state as last read.
	status    api.Status
	ring      api.Ring
	transfers []api.Transfer
	peers     []api.Peer
	readAt    time.Time

	// The event stream: gen tells a stream's messages from an older one's.
	events     []api.NodeEvent
	lastSeq    uint64
	stream     *api.EventStream
	streamGen  int
	streamBusy bool // opening or open

	// Prompt and messages.
	prompt   promptMode
	input    textinput.Model
	fetchCID string
	flash    string
	flashErr bool
	flashAt  time.Time

	// Selections.
	transferSel int
	peerSel     int
	vnodeSel    int
	logScroll   int // events scrolled back from the newest
	lastShared  string
}

// New makes the UI for the daemon c talks to. ctx bounds its requests;
// cancel it (or quit) to end them.
func New(ctx context.Context, c *api.Client, opts Options) *Model {
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Clipboard == nil {
		opts.Clipboard = os.Stdout
	}
	in := textinput.New()
	in.Prompt = ""
	// A steady cursor: a blinking one would redraw the screen twice a
	// second for nothing.
	in.Cursor.SetMode(cursor.CursorStatic)
	in.CharLimit = 4096
	return &Model{ctx: ctx, client: c, opts: opts, width: 80, height: 24, input: in, backoff: minBackoff}
}

// Run runs the UI on the terminal until the user quits or ctx ends.
func Run(ctx context.Context, c *api.Client, opts Options, popts ...tea.ProgramOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := New(ctx, c, opts)
	p := tea.NewProgram(m, append([]tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx)}, popts...)...)
	final, err := p.Run()
	if fm, ok := final.(*Model); ok {
		fm.closeStream()
	}
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // stopped from outside (a signal to the daemon)
	}
	return err
}

// Messages.
type (
	tickMsg     time.Time
	retryMsg    struct{} // the backoff after a failed read has run out
	snapshotMsg struct {
		status    api.Status
		ring      api.Ring
		transfers api.Transfers
		peers     api.Peers
		err       error
	}
	streamOpenedMsg struct {
		gen    int
		stream *api.EventStream
	}
	streamEventMsg struct {
		gen int
		e   api.NodeEvent
	}
	streamEndedMsg struct {
		gen int
		err error
	}
	shareDoneMsg struct {
		name string
		res  api.ShareResult
		err  error
	}
	fetchDoneMsg struct {
		cid string
		res api.FetchResult
		err error
	}
)

// Init reads the daemon at once and starts the clock.
func (m *Model) Init() tea.Cmd {
	m.refreshing = true
	return tea.Batch(m.refresh(), m.tick())
}

func (m *Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Refresh, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// refresh reads the daemon's state in one command.
func (m *Model) refresh() tea.Cmd {
	ctx, c := m.ctx, m.client
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		var s snapshotMsg
		if s.status, s.err = c.Status(ctx); s.err != nil {
			return s
		}
		if s.ring, s.err = c.Ring(ctx); s.err != nil {
			return s
		}
		if s.transfers, s.err = c.Transfers(ctx); s.err != nil {
			return s
		}
		s.peers, s.err = c.Peers(ctx)
		return s
	}
}

// openStream opens the event stream after the events already seen.
func (m *Model) openStream() tea.Cmd {
	m.streamGen++
	m.streamBusy = true
	gen, ctx, c, since := m.streamGen, m.ctx, m.client, m.lastSeq
	return func() tea.Msg {
		s, err := c.Events(ctx, since)
		if err != nil {
			return streamEndedMsg{gen: gen, err: err}
		}
		return streamOpenedMsg{gen: gen, stream: s}
	}
}

// nextEvent waits for the stream's next event: the command is issued again
// after each one, so events arrive as they happen without polling.
func nextEvent(gen int, s *api.EventStream) tea.Cmd {
	return func() tea.Msg {
		e, err := s.Next()
		if err != nil {
			return streamEndedMsg{gen: gen, err: err}
		}
		return streamEventMsg{gen: gen, e: e}
	}
}

func (m *Model) closeStream() {
	if m.stream != nil {
		m.stream.Close()
		m.stream = nil
	}
	m.streamBusy = false
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return m, nil
	case tickMsg:
		return m, m.onTick(time.Time(msg))
	case snapshotMsg:
		return m, m.onSnapshot(msg)
	case retryMsg:
		if m.connected || m.refreshing {
			return m, nil
		}
		m.refreshing = true
		return m, m.refresh()
	case streamOpenedMsg:
		if msg.gen != m.streamGen {
			msg.stream.Close()
			return m, nil
		}
		m.stream = msg.stream
		return m, nextEvent(msg.gen, msg.stream)
	case streamEventMsg:
		if msg.gen != m.streamGen {
			return m, nil
		}
		m.addEvent(msg.e)
		cmds := []tea.Cmd{nextEvent(msg.gen, m.stream)}
		if !m.refreshing {
			// Something changed: show it now rather than at the next tick.
			m.refreshing = true
			cmds = append(cmds, m.refresh())
		}
		return m, tea.Batch(cmds...)
	case streamEndedMsg:
		if msg.gen == m.streamGen {
			m.closeStream() // reopened at a tick once the daemon answers
		}
		return m, nil
	case shareDoneMsg:
		m.onShareDone(msg)
		return m, nil
	case fetchDoneMsg:
		m.onFetchDone(msg)
		return m, nil
	case tea.KeyMsg:
		return m.onKey(msg)
	}
	if m.prompt != promptNone {
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, cmd
	}
	return m, nil
}

func (m *Model) onTick(now time.Time) tea.Cmd {
	m.expireFlash(m.opts.Now())
	cmds := []tea.Cmd{m.tick()}
	if !m.refreshing && !now.Before(m.nextTry) {
		m.refreshing = true
		cmds = append(cmds, m.refresh())
	}
	if m.connected && !m.streamBusy {
		cmds = append(cmds, m.openStream())
	}
	return tea.Batch(cmds...)
}

func (m *Model) onSnapshot(s snapshotMsg) tea.Cmd {
	m.refreshing = false
	now := m.opts.Now()
	if s.err != nil {
		if m.connected {
			m.closeStream()
			m.flash = "" // the status line says the daemon is gone
		}
		m.connected = false
		m.connErr = oneLine(s.err.Error())
		m.nextTry = now.Add(m.backoff)
		retry := tea.Tick(m.backoff, func(time.Time) tea.Msg { return retryMsg{} })
		m.backoff = min(2*m.backoff, maxBackoff)
		return retry
	}
	start := now.Add(-time.Duration(s.status.UptimeSeconds * float64(time.Second)))
	if m.everSeen && (s.status.ID != m.status.ID || start.Sub(m.daemonStart).Abs() > 2*time.Second) {
		// Another daemon run: its events are numbered from 1 again.
		m.closeStream()
		m.lastSeq = 0
		m.addEvent(api.NodeEvent{Time: now, Kind: "ui", Message: "the daemon restarted"})
	}
	m.daemonStart = start
	m.everSeen = true
	m.connected, m.connErr, m.backoff, m.nextTry = true, "", minBackoff, time.Time{}
	m.status, m.ring = s.status, s.ring
	m.transfers, m.peers = s.transfers.Transfers, s.peers.Peers
	m.readAt = now
	m.transferSel = clampSel(m.transferSel, len(m.transfers))
	m.peerSel = clampSel(m.peerSel, len(m.peers))
	m.vnodeSel = clampSel(m.vnodeSel, len(m.ring.Vnodes))
	if !m.streamBusy {
		return m.openStream()
	}
	return nil
}

func clampSel(sel, n int) int { return max(0, min(sel, n-1)) }

func (m *Model) addEvent(e api.NodeEvent) {
	if e.Seq > 0 {
		if e.Seq <= m.lastSeq {
			return // replayed twice across a reconnection
		}
		m.lastSeq = e.Seq
	}
	m.events = append(m.events, e)
	if len(m.events) > maxLogEvents {
		m.events = m.events[len(m.events)-maxLogEvents:]
	}
	if m.logScroll > 0 {
		m.logScroll++ // keep the lines being read in place
	}
}

func (m *Model) setFlash(msg string, isErr bool) {
	m.flash, m.flashErr, m.flashAt = oneLine(msg), isErr, m.opts.Now()
}

// How long a message stays on the status line: errors longer, to be read.
const (
	flashTime      = 10 * time.Second
	flashErrorTime = 30 * time.Second
)

// expireFlash clears an old message, unless a prompt it is about is open.
func (m *Model) expireFlash(now time.Time) {
	keep := flashTime
	if m.flashErr {
		keep = flashErrorTime
	}
	if m.flash != "" && m.prompt == promptNone && now.Sub(m.flashAt) >= keep {
		m.flash = ""
	}
}

func (m *Model) onShareDone(msg shareDoneMsg) {
	if msg.err != nil {
		m.setFlash(fmt.Sprintf("share %s failed: %v", msg.name, msg.err), true)
		return
	}
	m.lastShared = msg.res.CID
	m.setFlash(fmt.Sprintf("shared %s: %s", msg.name, msg.res.CID), false)
}

func (m *Model) onFetchDone(msg fetchDoneMsg) {
	if msg.err != nil {
		m.setFlash(fmt.Sprintf("fetch %s failed: %v", shortID(msg.cid, 12), msg.err), true)
		return
	}
	m.setFlash(fmt.Sprintf("fetched %s to %s (%s)", shortID(msg.cid, 12), msg.res.Path, bytesText(msg.res.Size)), false)
}

// onKey handles a key: the prompt's when it is open, else the views'.
func (m *Model) onKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m.quit()
	}
	if m.prompt != promptNone {
		return m.onPromptKey(k)
	}
	switch k.String() {
	case "q":
		return m.quit()
	case "1", "2", "3", "4", "5":
		m.view = int(k.String()[0] - '1')
	case "tab", "right", "l":
		m.view = (m.view + 1) % numViews
	case "shift+tab", "left", "h":
		m.view = (m.view + numViews - 1) % numViews
	case "s":
		m.openPrompt(promptSharePath, "")
	case "f":
		m.openPrompt(promptFetchCID, "")
	case "c":
		m.copyCID()
	case "up", "k":
		m.moveSel(-1)
	case "down", "j":
		m.moveSel(1)
	case "pgup":
		m.moveSel(-10)
	case "pgdown":
		m.moveSel(10)
	case "[":
		m.vnodeSel = clampSel(m.vnodeSel-1, len(m.ring.Vnodes))
	case "]":
		m.vnodeSel = clampSel(m.vnodeSel+1, len(m.ring.Vnodes))
	case "esc":
		m.flash = ""
	}
	return m, nil
}

func (m *Model) quit() (tea.Model, tea.Cmd) {
	m.closeStream()
	return m, tea.Quit
}

func (m *Model) moveSel(d int) {
	switch m.view {
	case viewTransfers:
		m.transferSel = clampSel(m.transferSel+d, len(m.transfers))
	case viewPeers:
		m.peerSel = clampSel(m.peerSel+d, len(m.peers))
	case viewLog:
		m.logScroll = max(0, min(m.logScroll-d, len(m.events)-1))
	case viewRing:
		m.vnodeSel = clampSel(m.vnodeSel+d, len(m.ring.Vnodes))
	}
}

// selectedCID is the CID that c copies: the selected transfer's in the
// Transfers view, else the last one shared from this UI.
func (m *Model) selectedCID() string {
	if m.view == viewTransfers && m.transferSel < len(m.transfers) {
		return m.transfers[m.transferSel].CID
	}
	return m.lastShared
}

// copyCID puts the selected CID on the clipboard with OSC 52, which most
// terminals (and tmux with set-clipboard) pass to the system clipboard, and
// shows it in full so it can be copied by hand where they do not.
func (m *Model) copyCID() {
	c := m.selectedCID()
	if c == "" {
		m.setFlash("no CID to copy: select a transfer that has one (Transfers, up/down), or share a file", true)
		return
	}
	if err := writeOSC52(m.opts.Clipboard, c); err != nil {
		m.setFlash(fmt.Sprintf("copy: %v; the CID is %s", err, c), true)
		return
	}
	m.setFlash("copied "+c, false)
}
