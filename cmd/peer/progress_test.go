package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func testBar(width int) (*progressBar, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	return &progressBar{w: &buf, label: "fetch", width: width, now: clk.now, total: -1}, &buf, clk
}

// lastLine is what the terminal shows: the text after the last \r, with
// the erase-to-end-of-line codes removed.
func lastLine(s string) string {
	s = s[strings.LastIndex(s, "\r")+1:]
	return strings.ReplaceAll(s, "\x1b[K", "")
}

func TestProgressBar(t *testing.T) {
	b, buf, clk := testBar(100)
	const mib = 1 << 20
	b.update(0, 100*mib)
	clk.advance(time.Second)
	b.update(25*mib, 100*mib)
	clk.advance(time.Second)
	b.update(50*mib, 100*mib)
	line := lastLine(buf.String())
	for _, want := range []string{"fetch  [", "]  50%", "50.0 MiB / 100.0 MiB", "25.0 MiB/s", "ETA 0:02"} {
		if !strings.Contains(line, want) {
			t.Errorf("bar %q lacks %q", line, want)
		}
	}
	if len(line) > 99 {
		t.Errorf("bar is %d columns on a 100-column terminal", len(line))
	}

	// Updates come faster than redraws: only the first of these draws.
	n := strings.Count(buf.String(), "\r")
	clk.advance(time.Second)
	b.update(60*mib, 100*mib)
	b.update(61*mib, 100*mib)
	if got := strings.Count(buf.String(), "\r"); got != n+1 {
		t.Errorf("%d redraws for two updates within %v, want 1", got-n, redrawEvery)
	}

	clk.advance(time.Second)
	b.update(100*mib, 100*mib)
	b.finish()
	if got := buf.String(); !strings.HasSuffix(got, "\n") || lastLine(strings.TrimSuffix(got, "\n")) != "fetch  100.0 MiB in 4s (25.0 MiB/s)" {
		t.Errorf("final line %q", lastLine(strings.TrimSuffix(got, "\n")))
	}
}

func TestProgressBarUnknownTotalAndNarrowTerminal(t *testing.T) {
	b, buf, clk := testBar(30)
	b.update(0, -1)
	clk.advance(2 * time.Second)
	b.update(4<<20, -1)
	if line := lastLine(buf.String()); line != "fetch  4.00 MiB  2.00 MiB/s" {
		t.Errorf("unknown total: %q", line)
	}
	b.total = 8 << 20
	clk.advance(time.Second)
	b.update(5<<20, 8<<20)
	if line := lastLine(buf.String()); len(line) > 29 || !strings.HasPrefix(line, "fetch  62%") {
		t.Errorf("narrow terminal: %q", line)
	}
	b.clear()
	if !strings.HasSuffix(buf.String(), "\r\x1b[K") {
		t.Error("clear does not erase the line")
	}
}

func TestNilProgressBarIsQuiet(t *testing.T) {
	var b *progressBar // what a command gets when stderr is not a terminal
	b.update(1, 2)
	b.finish()
	b.clear()
	if newProgressBar(io.Discard, "share") != nil || newProgressBar(&bytes.Buffer{}, "share") != nil {
		t.Error("a bar for a writer that is not a terminal")
	}
}

func TestClock(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0:00", 59 * time.Second: "0:59", 61 * time.Second: "1:01", 3725 * time.Second: "1:02:05"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	cases := []struct {
		args    []string
		pos     []string
		o       string
		wantErr bool
	}{
		{[]string{"CID", "-o", "x"}, []string{"CID"}, "x", false},
		{[]string{"-o", "x", "CID"}, []string{"CID"}, "x", false},
		{[]string{"--", "-weird"}, []string{"-weird"}, "", false},
		{[]string{"-o", "x"}, nil, "x", true},
		{[]string{"a", "b"}, nil, "", true},
		{[]string{"a", "-nope"}, nil, "", true},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("peer fetch", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := fs.String("o", "", "")
		pos, err := parseArgs(fs, tc.args, 1, 1, "CID")
		if (err != nil) != tc.wantErr || (!tc.wantErr && (strings.Join(pos, " ") != strings.Join(tc.pos, " ") || *o != tc.o)) {
			t.Errorf("%q: pos %q, -o %q, err %v", tc.args, pos, *o, err)
		}
	}
}
