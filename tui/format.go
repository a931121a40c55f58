package tui

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// bytesText prints a byte count with a binary unit: 0 B, 512 B, 1.5 KiB.
func bytesText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || u == "TiB" {
			if v < 10 {
				return fmt.Sprintf("%.1f %s", v, u)
			}
			return fmt.Sprintf("%.0f %s", v, u)
		}
	}
	return "" // unreachable: TiB ends the loop
}

// rateText prints bytes per second.
func rateText(bps float64) string {
	if bps < 0.5 || math.IsNaN(bps) || math.IsInf(bps, 0) {
		return "0 B/s"
	}
	return bytesText(int64(bps+0.5)) + "/s"
}

// durationText prints a duration at a person's precision: 45s, 12m05s,
// 3h02m, 2d04h.
func durationText(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// rttText prints a round trip in milliseconds; "-" if unmeasured.
func rttText(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// shortID is a peer ID or CID as a table shows it: its last n characters
// after "..", enough to tell a ring's peers apart.
func shortID(id string, n int) string {
	if len(id) <= n+2 {
		return id
	}
	return ".." + id[len(id)-n:]
}

// bar draws a progress bar of width cells in ASCII: [#####.....]. frac < 0
// (size unknown) draws an empty bar with "?".
func bar(frac float64, width int) string {
	inner := width - 2
	if inner < 1 {
		return ""
	}
	if frac < 0 {
		return "[" + strings.Repeat("?", 1) + strings.Repeat(".", inner-1) + "]"
	}
	frac = min(max(frac, 0), 1)
	full := int(frac*float64(inner) + 0.5)
	return "[" + strings.Repeat("#", full) + strings.Repeat(".", inner-full) + "]"
}

// fit cuts or pads s to exactly w cells, keeping any styling intact.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if lipgloss.Width(s) > w {
		s = ansi.Truncate(s, w, "")
	}
	if pad := w - lipgloss.Width(s); pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	return s
}

// cut shortens s to at most w cells, marking the cut with "~".
func cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if lipgloss.Width(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "~")
}
