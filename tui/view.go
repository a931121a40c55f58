package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"

	"chordshare/peer/api"
)

// The smallest terminal the UI draws in.
const (
	minWidth  = 40
	minHeight = 12
)

// Styles. Every piece of state they show is also in the text (brackets,
// markers, words), so the UI reads the same without colour (NO_COLOR, an
// ASCII colour profile).
var (
	styleTitle  = lipgloss.NewStyle().Bold(true)
	styleTab    = lipgloss.NewStyle().Bold(true).Reverse(true)
	styleHead   = lipgloss.NewStyle().Bold(true).Underline(true)
	styleDim    = lipgloss.NewStyle().Faint(true)
	styleErr    = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	styleOK     = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
	styleSel    = lipgloss.NewStyle().Reverse(true)
	styleKey    = lipgloss.NewStyle().Bold(true)
	styleAccent = lipgloss.NewStyle().Foreground(lipgloss.Color("14"))
)

// View draws the screen: a title bar with the views and the connection, the
// current view, a status line (or the prompt) and the help bar. Every line
// is exactly the terminal's width, so a resize leaves nothing behind.
func (m *Model) View() string {
	w, h := m.width, m.height
	if w < minWidth || h < minHeight {
		msg := fmt.Sprintf("terminal %dx%d is too small: the UI needs %dx%d", w, h, minWidth, minHeight)
		return fit(msg, max(w, 1))
	}
	lines := make([]string, 0, h)
	lines = append(lines, m.titleBar(w), strings.Repeat("-", w))
	body := m.body(w, h-4)
	for len(body) < h-4 {
		body = append(body, "")
	}
	body = body[:h-4]
	if m.prompt != promptNone && m.flash != "" {
		// The prompt has the status line: its message goes just above.
		body[len(body)-1] = m.flashText()
	}
	for _, l := range body {
		lines = append(lines, fit(l, w))
	}
	lines = append(lines, fit(m.statusLine(w), w), fit(m.helpBar(), w))
	return strings.Join(lines, "\n")
}

func (m *Model) titleBar(w int) string {
	var b strings.Builder
	b.WriteString(styleTitle.Render("chordshare"))
	for i, name := range viewNames {
		b.WriteString(" ")
		label := fmt.Sprintf("%d %s", i+1, name)
		if i == m.view {
			b.WriteString(styleTab.Render("[" + label + "]"))
		} else {
			b.WriteString(" " + label + " ")
		}
	}
	conn := styleOK.Render("connected")
	if !m.connected {
		conn = styleErr.Render("DISCONNECTED")
	}
	left := b.String()
	if pad := w - lipgloss.Width(left) - lipgloss.Width(conn); pad >= 1 {
		return left + strings.Repeat(" ", pad) + conn
	}
	return cut(left, w-lipgloss.Width(conn)-1) + " " + conn
}

func (m *Model) statusLine(w int) string {
	if m.prompt != promptNone {
		m.input.Width = max(1, w-len(promptLabels[m.prompt])-1)
		return styleKey.Render(promptLabels[m.prompt]) + m.input.View()
	}
	if m.flash != "" {
		return m.flashText()
	}
	if !m.connected && m.everSeen {
		return styleErr.Render("! lost the daemon" + m.retryText() + ": " + m.connErr)
	}
	return ""
}

func (m *Model) flashText() string {
	if m.flashErr {
		return styleErr.Render("! " + m.flash)
	}
	return m.flash
}

// retryText says when the UI tries the daemon again.
func (m *Model) retryText() string {
	if m.nextTry.IsZero() {
		return ""
	}
	d := m.nextTry.Sub(m.opts.Now())
	if d <= 0 {
		return " (retrying)"
	}
	return fmt.Sprintf(" (retrying in %s)", durationText(d.Round(time.Second)+time.Second/2))
}

func (m *Model) helpBar() string {
	key := func(k, what string) string { return styleKey.Render(k) + " " + what }
	var parts []string
	if m.prompt != promptNone {
		parts = []string{key("enter", "ok")}
		if m.prompt != promptFetchCID {
			parts = append(parts, key("tab", "complete"))
		}
		parts = append(parts, key("esc", "cancel"))
	} else {
		parts = []string{key("1-5/tab", "view"), key("s", "share"), key("f", "fetch"), key("c", "copy CID")}
		switch m.view {
		case viewTransfers, viewPeers:
			parts = append(parts, key("up/dn", "select"))
		case viewLog:
			parts = append(parts, key("up/dn", "scroll"))
		case viewRing:
			if len(m.ring.Vnodes) > 1 {
				parts = append(parts, key("[ ]", "vnode"))
			}
		}
		quit := "quit"
		if m.opts.Embedded {
			quit = "quit+stop daemon"
		}
		parts = append(parts, key("q", quit))
	}
	return strings.Join(parts, "  ")
}

func (m *Model) body(w, h int) []string {
	if !m.everSeen {
		lines := []string{"", "  Waiting for the daemon on repo " + m.client.Repo() + " ..."}
		if m.connErr != "" {
			// The error in full: it says how to start a daemon.
			wrapped := lipgloss.NewStyle().Width(w - 4).Render(m.connErr)
			lines = append(lines, "")
			for _, l := range strings.Split(wrapped, "\n") {
				lines = append(lines, "  "+styleErr.Render(strings.TrimRight(l, " ")))
			}
			lines = append(lines, "  "+strings.TrimSpace(m.retryText()))
		}
		return wrapLines(lines, w)
	}
	var lines []string
	if !m.connected {
		lines = append(lines, styleErr.Render(fmt.Sprintf("(disconnected: the last state read, %s ago)", durationText(m.opts.Now().Sub(m.readAt)))))
		h--
	}
	switch m.view {
	case viewOverview:
		lines = append(lines, m.overview(w, h)...)
	case viewRing:
		lines = append(lines, m.ringView(w, h)...)
	case viewTransfers:
		lines = append(lines, m.transfersView(w, h)...)
	case viewPeers:
		lines = append(lines, m.peersView(w, h)...)
	case viewLog:
		lines = append(lines, m.logView(w, h)...)
	}
	return lines
}

// wrapLines cuts each line to w cells.
func wrapLines(lines []string, w int) []string {
	for i, l := range lines {
		lines[i] = cut(l, w)
	}
	return lines
}

func plural(n int64, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

func (m *Model) overview(w, h int) []string {
	s := m.status
	label := func(l string) string { return styleHead.Render(l) + strings.Repeat(" ", max(1, 12-len(l))) }
	row := func(l, v string) string { return " " + label(l) + v }
	lines := []string{row("Peer ID", s.ID)}
	for i, a := range s.Addrs {
		if i == 0 {
			lines = append(lines, row("Addresses", a))
		} else if i < 3 {
			lines = append(lines, strings.Repeat(" ", 13)+a)
		}
	}
	if len(s.Addrs) == 0 {
		lines = append(lines, row("Addresses", "none"))
	}
	lines = append(lines, row("Uptime", durationText(time.Duration(s.UptimeSeconds*float64(time.Second)))))
	lines = append(lines, row("Ring", fmt.Sprintf("about %s; here %s, %s lookups",
		plural(int64(s.RingSizeEstimate), "peer"), plural(int64(s.Capacity), "vnode"), s.LookupMode)))
	storage := fmt.Sprintf("%s, %s", plural(int64(s.BlocksStored), "block"), bytesText(s.BytesUsed))
	switch {
	case s.Capacity == 0:
		storage = "none: a client (capacity 0) stores no blocks"
	case s.StorageMax > 0:
		frac := float64(s.BytesUsed) / float64(s.StorageMax)
		storage += fmt.Sprintf(" of %s %s %d%%", bytesText(s.StorageMax), bar(frac, 12), int(frac*100))
	default:
		storage += " (no limit)"
	}
	lines = append(lines, row("Storage", storage))
	under := fmt.Sprintf("%d block copies missing", s.UnderReplicated)
	if s.UnderReplicated == 1 {
		under = "1 block copy missing"
	}
	if s.UnderReplicated > 0 {
		under = styleErr.Render(under)
	}
	r := s.Repair
	lines = append(lines, row("Repair", fmt.Sprintf("%s; %s, %s (%s) moved", under,
		plural(r.Rounds, "round"), plural(r.BlocksMoved, "block"), bytesText(r.BytesMoved))))
	last := "no round yet"
	if !r.LastRound.IsZero() {
		last = "last round " + durationText(m.opts.Now().Sub(r.LastRound)) + " ago"
	}
	if r.InProgress {
		last += ", one running"
	}
	lines = append(lines, strings.Repeat(" ", 13)+fmt.Sprintf("%s pending handoff, %s", plural(r.HintsPending, "hint"), last))
	out := fmt.Sprintf("out %-10s (%s total)", rateText(s.RateOut), bytesText(s.BytesOut))
	if s.Uplink > 0 {
		out += ", uploads paced to " + rateText(float64(s.Uplink))
		if s.UplinkAuto {
			out += " (auto)"
		}
	}
	lines = append(lines,
		row("Traffic", fmt.Sprintf("in  %-10s (%s total)", rateText(s.RateIn), bytesText(s.BytesIn))),
		strings.Repeat(" ", 13)+out)
	if p := s.PutRoom; p.BytesLimit > 0 { // a daemon that predates the put room sends none
		puts := fmt.Sprintf("%s of %s room held", bytesText(p.BytesHeld), bytesText(p.BytesLimit))
		if p.Refused+p.Evicted > 0 {
			puts += fmt.Sprintf("; %d refused, %d evicted", p.Refused, p.Evicted)
		}
		lines = append(lines, row("Puts in", puts))
	}
	lines = append(lines, row("Peers", fmt.Sprintf("%d connected", s.ConnectedPeers)))
	var running, done, failed int
	for _, t := range m.transfers {
		switch t.State {
		case api.TransferRunning:
			running++
		case api.TransferDone:
			done++
		case api.TransferFailed:
			failed++
		}
	}
	lines = append(lines, row("Transfers", fmt.Sprintf("%d running, %d done, %d failed", running, done, failed)))
	if room := h - len(lines) - 2; room > 0 && len(m.events) > 0 {
		lines = append(lines, "", " "+styleHead.Render("Recent events"))
		lines = append(lines, m.eventLines(w, room, 0, false)...)
	}
	return wrapLines(lines, w)
}

// eventLines are the last n events (skipping the newest skip), oldest first.
// eventLines are the last n lines of events (skipping the newest skip
// events), oldest first. With wrap each event's message is shown in full
// over as many lines as it takes; without, one line each.
func (m *Model) eventLines(w, n, skip int, wrap bool) []string {
	const indent = 10 // continuation lines start under the kind
	var out []string
	for i := len(m.events) - 1 - skip; i >= 0 && len(out) < n; i-- {
		e := m.events[i]
		head := fmt.Sprintf(" %s %-19s ", e.Time.Local().Format("15:04:05"), e.Kind)
		msg := []string{e.Message}
		if wrap {
			msg = wordWrap(e.Message, w-len(head), w-indent)
		}
		lines := make([]string, len(msg))
		for j, l := range msg {
			if j == 0 {
				lines[j] = cut(head+l, w)
			} else {
				lines[j] = strings.Repeat(" ", indent) + l
			}
			switch e.Kind {
			case api.EventPeerFailed, api.EventShareFailed, api.EventFetchFailed, api.EventUnderReplicated:
				lines[j] = styleErr.Render(lines[j])
			case api.EventRepair, api.EventHandoff:
				lines[j] = styleAccent.Render(lines[j])
			}
		}
		out = append(lines, out...)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func (m *Model) logView(w, h int) []string {
	if len(m.events) == 0 {
		return []string{"", "  No events yet: joins, ring changes, failed peers, repairs and transfers show here."}
	}
	header := fmt.Sprintf(" %d events", len(m.events))
	if m.logScroll > 0 {
		header += fmt.Sprintf(" (scrolled back %d; down returns to the newest)", m.logScroll)
	}
	lines := []string{styleDim.Render(header)}
	lines = append(lines, m.eventLines(w, h-1, m.logScroll, true)...)
	return wrapLines(lines, w)
}

func stateText(s string) string {
	switch s {
	case "alive", "":
		return "alive"
	case "suspected":
		return styleErr.Render("suspected")
	}
	return styleErr.Render(s)
}

func (m *Model) neighbourText(n api.Neighbour) string {
	if n.Peer == m.ring.ID {
		return fmt.Sprintf("self/%d", n.Vnode)
	}
	return fmt.Sprintf("%s/%d", shortID(n.Peer, 8), n.Vnode)
}

// ringView draws the circle of this peer's vnodes and the selected vnode's
// neighbours beside (or, on a narrow terminal, above) its tables.
func (m *Model) ringView(w, h int) []string {
	if len(m.ring.Vnodes) == 0 {
		return []string{"", "  This peer has no positions on the ring (a client, capacity 0): it routes through others."}
	}
	sel := m.ring.Vnodes[m.vnodeSel]
	var marks []ringMark
	for i, v := range m.ring.Vnodes {
		sym := byte(symOwn)
		if i == m.vnodeSel {
			sym = symSelf
		}
		marks = append(marks, ringMark{position(v.ID), sym})
	}
	if sel.Predecessor != nil {
		marks = append(marks, ringMark{position(sel.Predecessor.ID), symPredecessor})
	}
	for _, s := range sel.Successors {
		marks = append(marks, ringMark{position(s.ID), symSuccessor})
	}
	for _, f := range sel.Fingers {
		marks = append(marks, ringMark{position(f.Node.ID), symFinger})
	}
	legend := []string{"@ vnode shown  o other vnodes", "P predecessor  S successors", "F fingers  (0 at top, clockwise)"}
	tables := m.ringTables(sel)

	side := w >= 72
	circleW := 30
	if side {
		circleW = min(max(30, w*2/5), 2*(h-len(legend))+1)
	} else {
		circleW = min(w, 2*(h/2)+1)
	}
	circleH := min(h-len(legend), circleW/2+1)
	if !side {
		circleH = min(h/2-1, circleW/2+1)
	}
	circle := append(drawRing(circleW, circleH, marks), legend...)
	if !side {
		return wrapLines(append(circle, tables...), w)
	}
	var out []string
	for i := 0; i < h; i++ {
		var l, r string
		if i < len(circle) {
			l = circle[i]
		}
		if i < len(tables) {
			r = tables[i]
		}
		out = append(out, fit(l, circleW+2)+cut(r, w-circleW-2))
	}
	return out
}

func (m *Model) ringTables(v api.Vnode) []string {
	head := fmt.Sprintf("Vnode %d of %d  %s", m.vnodeSel+1, len(m.ring.Vnodes), shortID(v.ID, 16))
	lines := []string{styleHead.Render(head)}
	if v.Predecessor != nil {
		p := v.Predecessor
		lines = append(lines, fmt.Sprintf("Predecessor %-12s %-8s %s", m.neighbourText(*p), rttText(p.RTTMillis), stateText(p.State)))
	} else {
		lines = append(lines, "Predecessor unknown")
	}
	lines = append(lines, "", styleHead.Render("Successors"), styleDim.Render(fmt.Sprintf(" %-3s %-12s %-8s %s", "#", "peer/vnode", "rtt", "state")))
	for i, s := range v.Successors {
		lines = append(lines, fmt.Sprintf(" %-3d %-12s %-8s %s", i+1, m.neighbourText(s), rttText(s.RTTMillis), stateText(s.State)))
	}
	lines = append(lines, "", styleHead.Render("Fingers"), styleDim.Render(fmt.Sprintf(" %-3s %-12s %-8s %s", "k", "peer/vnode", "rtt", "state")))
	for _, f := range v.Fingers {
		lines = append(lines, fmt.Sprintf(" %-3d %-12s %-8s %s", f.K, m.neighbourText(f.Node), rttText(f.Node.RTTMillis), stateText(f.Node.State)))
	}
	if len(v.Fingers) == 0 {
		lines = append(lines, " none yet")
	}
	return lines
}

// transfersView lists the daemon's transfers with a progress bar each, and
// the selected one's CID and error in full below.
func (m *Model) transfersView(w, h int) []string {
	if len(m.transfers) == 0 {
		return []string{"", "  No transfers yet: s shares a file, f fetches a CID."}
	}
	t := m.transfers[m.transferSel]
	var details []string
	if t.Error != "" {
		// The error in full, over as many lines as it needs (up to 4).
		wrapped := strings.Split(lipgloss.NewStyle().Width(w-6).Render(t.Error), "\n")
		for i, l := range wrapped[:min(len(wrapped), 4)] {
			prefix := "      "
			if i == 0 {
				prefix = "Error "
			}
			details = append(details, styleErr.Render(prefix+strings.TrimRight(l, " ")))
		}
	} else if t.Name != "" {
		details = append(details, "Name  "+t.Name)
	}
	nameW := max(8, w-2-6-16-6-11-7-8)
	head := fmt.Sprintf("  %-6s%-*s%-16s%-5s%-11s%-7s%s", "KIND", nameW, "NAME", "PROGRESS", "", "RATE", "ETA", "STATE")
	lines := []string{styleDim.Render(head)}
	rows := h - 1 - 3 - len(details) // room for the details
	first := max(0, min(m.transferSel-rows/2, len(m.transfers)-rows))
	for i := first; i < len(m.transfers) && i < first+rows; i++ {
		t := m.transfers[i]
		name := t.Name
		if name == "" || t.Kind == "fetch" {
			name = t.CID
			if t.Kind == "fetch" && t.Name != "" {
				name = shortID(t.CID, 8) + " -> " + t.Name
			}
		}
		frac, pct := -1.0, "  ?"
		if t.Total > 0 {
			frac = float64(t.Done) / float64(t.Total)
			pct = fmt.Sprintf("%3d%%", int(frac*100))
		} else if t.Total == 0 && t.State == api.TransferDone {
			frac, pct = 1, "100%"
		}
		eta := "-"
		if t.State == api.TransferRunning && t.Total > 0 && t.Rate > 0 {
			eta = durationText(time.Duration(float64(t.Total-t.Done) / t.Rate * float64(time.Second)))
		}
		state := t.State
		switch t.State {
		case api.TransferFailed:
			state = styleErr.Render("FAILED")
		case api.TransferDone:
			state = styleOK.Render("done")
		}
		marker := "  "
		if i == m.transferSel {
			marker = "> "
		}
		line := fmt.Sprintf("%s%-6s%s%s %-5s%-11s%-7s%s", marker, t.Kind, fit(cut(name, nameW-1), nameW),
			bar(frac, 15), pct, rateText(t.Rate), eta, state)
		if i == m.transferSel {
			line = styleSel.Render(fit(line, w))
		}
		lines = append(lines, line)
	}
	for len(lines) < h-3-len(details) {
		lines = append(lines, "")
	}
	cidText := t.CID
	if cidText == "" {
		cidText = "(known when the share ends)"
	}
	lines = append(lines, strings.Repeat("-", w),
		"CID   "+cidText,
		fmt.Sprintf("%s %s: %s of %s, started %s", t.Kind, t.State, bytesText(t.Done), totalText(t.Total), t.Started.Local().Format("15:04:05")))
	return wrapLines(append(lines, details...), w)
}

func totalText(n int64) string {
	if n < 0 {
		return "?"
	}
	return bytesText(n)
}

// peersView lists the connected peers with their roles in the ring
// tables, round trips and traffic.
func (m *Model) peersView(w, h int) []string {
	if len(m.peers) == 0 {
		return []string{"", "  No connected peers."}
	}
	head := fmt.Sprintf("  %-11s%-17s%-9s%-10s%-10s%-11s%s", "PEER", "ROLES", "RTT", "IN", "OUT", "IN/s", "OUT/s")
	lines := []string{styleDim.Render(head)}
	rows := h - 1 - 3
	first := max(0, min(m.peerSel-rows/2, len(m.peers)-rows))
	for i := first; i < len(m.peers) && i < first+rows; i++ {
		p := m.peers[i]
		roles := rolesText(p.Roles)
		marker := "  "
		if i == m.peerSel {
			marker = "> "
		}
		line := fmt.Sprintf("%s%-11s%-17s%-9s%-10s%-10s%-11s%s", marker, shortID(p.ID, 8), cut(roles, 16), rttText(p.RTTMillis),
			bytesText(p.BytesIn), bytesText(p.BytesOut), rateText(p.RateIn), rateText(p.RateOut))
		if i == m.peerSel {
			line = styleSel.Render(fit(line, w))
		}
		lines = append(lines, line)
	}
	for len(lines) < h-3 {
		lines = append(lines, "")
	}
	p := m.peers[m.peerSel]
	lines = append(lines, strings.Repeat("-", w), "Peer  "+p.ID, "Addr  "+p.Addr+"  roles: "+strings.Join(p.Roles, ", "))
	return wrapLines(lines, w)
}

// rolesText abbreviates a peer's roles for the table: succ,pred,finger.
func rolesText(roles []string) string {
	if len(roles) == 0 {
		return "-"
	}
	short := make([]string, len(roles))
	for i, r := range roles {
		switch r {
		case api.RoleSuccessor:
			short[i] = "succ"
		case api.RolePredecessor:
			short[i] = "pred"
		default:
			short[i] = r
		}
	}
	return strings.Join(short, ",")
}

// wordWrap breaks s into lines of at most first cells, then rest cells,
// between words; a word longer than a line is cut.
func wordWrap(s string, first, rest int) []string {
	first, rest = max(first, 1), max(rest, 1)
	var lines []string
	line, width := "", first
	for _, word := range strings.Fields(s) {
		for len(word) > width && line == "" {
			lines = append(lines, word[:width])
			word, width = word[width:], rest
		}
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line, width = word, rest
			for len(line) > width {
				lines = append(lines, line[:width])
				line = line[width:]
			}
		}
	}
	if line != "" || len(lines) == 0 {
		lines = append(lines, line)
	}
	return lines
}
