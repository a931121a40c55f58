package tui

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/ipfs/go-cid"

	"chordshare/peer/api"
)

// promptLabels are the questions the prompt line asks.
var promptLabels = map[promptMode]string{
	promptSharePath: "Share file: ",
	promptFetchCID:  "Fetch CID: ",
	promptFetchDest: "Save to: ",
}

func (m *Model) openPrompt(mode promptMode, value string) {
	m.prompt = mode
	m.input.SetValue(value)
	m.input.CursorEnd()
	m.input.Focus()
}

func (m *Model) closePrompt() {
	m.prompt = promptNone
	m.input.Blur()
	m.input.SetValue("")
}

func (m *Model) onPromptKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEsc:
		m.closePrompt()
		m.setFlash("cancelled", false)
		return m, nil
	case tea.KeyTab:
		if m.prompt == promptSharePath || m.prompt == promptFetchDest {
			m.complete()
		}
		return m, nil
	case tea.KeyEnter:
		return m, m.submit()
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	return m, cmd
}

// submit acts on the prompt's answer, or says what is wrong with it and
// keeps the prompt open so it can be corrected.
func (m *Model) submit() tea.Cmd {
	v := strings.TrimSpace(m.input.Value())
	switch m.prompt {
	case promptSharePath:
		path, size, err := m.checkShare(v)
		if err != nil {
			m.setFlash(err.Error(), true)
			return nil
		}
		m.closePrompt()
		name := filepath.Base(path)
		m.setFlash("sharing "+name+"...", false)
		m.view = viewTransfers
		m.transferSel = 0
		return m.share(path, name, size)
	case promptFetchCID:
		c, err := checkCID(v)
		if err != nil {
			m.setFlash(err.Error(), true)
			return nil
		}
		m.fetchCID = c
		m.openPrompt(promptFetchDest, m.abs(c))
		m.setFlash("", false)
	case promptFetchDest:
		path, err := m.checkDest(v, m.fetchCID)
		if err != nil {
			m.setFlash(err.Error(), true)
			return nil
		}
		m.closePrompt()
		m.setFlash("fetching "+shortID(m.fetchCID, 12)+" to "+path+"...", false)
		m.view = viewTransfers
		m.transferSel = 0
		return m.fetch(m.fetchCID, path)
	}
	return nil
}

// abs resolves a path typed in a prompt: ~ is the home directory,
// relative paths start at WorkDir.
func (m *Model) abs(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	dir := m.opts.WorkDir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	return filepath.Join(dir, p)
}

// checkShare says why a path cannot be shared, or returns it resolved with
// its size.
func (m *Model) checkShare(v string) (string, int64, error) {
	if v == "" {
		return "", 0, errors.New("type the path of a file to share (tab completes; esc cancels)")
	}
	path := m.abs(v)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", 0, fmt.Errorf("cannot share %s: no such file", v)
	case err != nil:
		return "", 0, fmt.Errorf("cannot share %s: %v", v, unwrapPath(err))
	case fi.IsDir():
		return "", 0, fmt.Errorf("cannot share %s: it is a directory (share one file at a time)", v)
	case !fi.Mode().IsRegular():
		return "", 0, fmt.Errorf("cannot share %s: not a regular file", v)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("cannot share %s: %v", v, unwrapPath(err))
	}
	f.Close()
	return path, fi.Size(), nil
}

// unwrapPath drops the path a *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkCID says why v is not a CID, or returns it in its canonical form.
func checkCID(v string) (string, error) {
	if v == "" {
		return "", errors.New("type or paste the CID to fetch (esc cancels)")
	}
	c, err := cid.Decode(v)
	if err != nil {
		return "", fmt.Errorf("%q is not a CID: %v", cut(v, 24), err)
	}
	return c.String(), nil
}

// checkDest resolves where a fetch writes: a directory gets a file named
// by the CID; the parent must exist.
func (m *Model) checkDest(v, c string) (string, error) {
	if v == "" {
		return "", errors.New("type the path to save to (tab completes; esc cancels)")
	}
	path := m.abs(v)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, c)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("cannot save to %s: no directory %s", v, dir)
	case err != nil:
		return "", fmt.Errorf("cannot save to %s: %v", v, unwrapPath(err))
	case !fi.IsDir():
		return "", fmt.Errorf("cannot save to %s: %s is not a directory", v, dir)
	}
	return path, nil
}

// complete extends the path typed so far as far as the files that match it
// agree, as a shell's tab does, and lists them when they differ.
func (m *Model) complete() {
	typed := m.input.Value()
	dirPart, base := filepath.Split(typed)
	dir := dirPart
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(m.abs(dir))
	if err != nil {
		m.setFlash(fmt.Sprintf("no completion: %v", unwrapPath(err)), true)
		return
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, base) || (strings.HasPrefix(n, ".") && !strings.HasPrefix(base, ".")) {
			continue
		}
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(m.abs(dirPart+n))) {
			n += string(filepath.Separator)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	switch len(names) {
	case 0:
		m.setFlash("no file matches "+typed, true)
		return
	case 1:
		m.setFlash("", false)
	default:
		m.setFlash(strings.Join(names, "  "), false)
	}
	m.input.SetValue(dirPart + commonPrefix(names))
	m.input.CursorEnd()
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func commonPrefix(names []string) string {
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// share streams the file at path to the daemon, which shares it; progress
// shows in the daemon's transfer list.
func (m *Model) share(path, name string, size int64) tea.Cmd {
	ctx, c := m.ctx, m.client
	return func() tea.Msg {
		f, err := os.Open(path)
		if err != nil {
			return shareDoneMsg{name: name, err: unwrapPath(err)}
		}
		defer f.Close()
		res, err := c.Share(ctx, f, size, api.TransferOptions{Name: name})
		return shareDoneMsg{name: name, res: res, err: err}
	}
}

// fetch has the daemon write the file named by root to path.
func (m *Model) fetch(root, path string) tea.Cmd {
	ctx, c := m.ctx, m.client
	return func() tea.Msg {
		res, err := c.Fetch(ctx, root, path, api.TransferOptions{})
		return fetchDoneMsg{cid: root, res: res, err: err}
	}
}

// writeOSC52 asks the terminal to put s on the system clipboard (tmux
// passes it on with set-clipboard on).
func writeOSC52(w io.Writer, s string) error {
	_, err := io.WriteString(w, "\x1b]52;c;"+base64.StdEncoding.EncodeToString([]byte(s))+"\x07")
	return err
}

// oneLine folds a message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
