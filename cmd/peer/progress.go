package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/charmbracelet/x/term"

	"chordshare/peer"
)

// terminalWidth reports whether w is a terminal, and its width.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(f.Fd()) {
		return 0, false
	}
	width, _, err := term.GetSize(f.Fd())
	if err != nil || width <= 0 {
		width = 80
	}
	return width, true
}

// progressBar draws one line, redrawn in place, with the bytes done, the
// rate and the time left. Only one goroutine uses it. A nil *progressBar
// draws nothing, which is what a command uses when stderr is not a
// terminal.
type progressBar struct {
	w     io.Writer
	label string
	width int
	now   func() time.Time

	start    time.Time
	lastDraw time.Time
	samples  []sample // recent (time, done) pairs, for the rate
	done     int64
	total    int64 // -1: unknown
	drawn    bool
}

type sample struct {
	t    time.Time
	done int64
}

const (
	// redrawEvery limits redraws; a terminal does not need more.
	redrawEvery = 100 * time.Millisecond
	// rateWindow is the span the rate is measured over: short enough to
	// follow a change of pace, long enough not to jitter.
	rateWindow = 3 * time.Second
)

// newProgressBar returns a bar drawing on w if w is a terminal, else nil.
func newProgressBar(w io.Writer, label string) *progressBar {
	width, ok := terminalWidth(w)
	if !ok {
		return nil
	}
	return &progressBar{w: w, label: label, width: width, now: time.Now, total: -1}
}

// update records progress and redraws if it is time to.
func (b *progressBar) update(done, total int64) {
	if b == nil {
		return
	}
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	b.done, b.total = done, total
	if b.drawn && now.Sub(b.lastDraw) < redrawEvery {
		return
	}
	// Sampled at each redraw only: a few dozen samples span the window
	// however often progress is reported.
	b.samples = append(b.samples, sample{now, done})
	for len(b.samples) > 2 && now.Sub(b.samples[1].t) >= rateWindow {
		b.samples = b.samples[1:]
	}
	b.draw(b.line())
	b.lastDraw = now
}

// finish draws the final state and ends the line.
func (b *progressBar) finish() {
	if b == nil {
		return
	}
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	elapsed := now.Sub(b.start)
	text := fmt.Sprintf("%s  %s in %v", b.label, peer.FormatSize(b.done), elapsed.Round(10*time.Millisecond))
	if secs := elapsed.Seconds(); secs > 0 {
		text += fmt.Sprintf(" (%s/s)", peer.FormatSize(int64(float64(b.done)/secs)))
	}
	b.draw(text)
	fmt.Fprintln(b.w)
}

// clear erases the bar, so that an error message starts a clean line.
func (b *progressBar) clear() {
	if b == nil || !b.drawn {
		return
	}
	fmt.Fprint(b.w, "\r\x1b[K")
	b.drawn = false
}

func (b *progressBar) draw(text string) {
	if len(text) > b.width-1 {
		text = text[:b.width-1]
	}
	fmt.Fprintf(b.w, "\r%s\x1b[K", text)
	b.drawn = true
}

// rate is bytes per second over the recent samples; 0 until it can tell.
func (b *progressBar) rate() float64 {
	if len(b.samples) < 2 {
		return 0
	}
	first, last := b.samples[0], b.samples[len(b.samples)-1]
	secs := last.t.Sub(first.t).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(last.done-first.done) / secs
}

// line is the bar's text, fitted to the terminal's width.
func (b *progressBar) line() string {
	rate := b.rate()
	speed := peer.FormatSize(int64(rate)) + "/s"
	if b.total < 0 {
		return fmt.Sprintf("%s  %s  %s", b.label, peer.FormatSize(b.done), speed)
	}
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(b.done)/float64(b.total), 1)
	}
	eta := "--:--"
	if rate > 0 {
		eta = clock(time.Duration(float64(b.total-b.done) / rate * float64(time.Second)))
	}
	tail := fmt.Sprintf(" %3d%%  %s / %s  %s  ETA %s", int(frac*100), peer.FormatSize(b.done), peer.FormatSize(b.total), speed, eta)
	cells := b.width - 1 - len(b.label) - 4 - len(tail)
	if cells < 5 {
		return b.label + tail
	}
	cells = min(cells, 40)
	full := int(frac * float64(cells))
	bar := strings.Repeat("=", full)
	if full < cells {
		bar += ">" + strings.Repeat(" ", cells-full-1)
	}
	return fmt.Sprintf("%s  [%s]%s", b.label, bar, tail)
}

// clock prints a duration as h:mm:ss, or m:ss under an hour.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
