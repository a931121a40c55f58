package tui

import (
	"math"
	"strconv"
	"strings"
)

// ringMark is something to show on the circle: a position (a fraction of
// the ring, clockwise from 0 at the top) and its symbol. The symbol of
// higher rank (rankOf) wins a cell two marks share.
type ringMark struct {
	pos float64
	sym byte
}

// Ring symbols, in rank order: what a shared cell shows.
const (
	symSelf        = '@' // the vnode whose tables are shown
	symOwn         = 'o' // this peer's other vnodes
	symPredecessor = 'P'
	symSuccessor   = 'S'
	symFinger      = 'F'
	symEdge        = '.'
)

func rankOf(sym byte) int {
	return strings.IndexByte(string([]byte{symFinger, symSuccessor, symPredecessor, symOwn, symSelf}), sym) + 1
}

// position reads a ring position (hex, most significant first) as a
// fraction of the circle; 0 for one that does not parse.
func position(hexID string) float64 {
	if len(hexID) > 16 {
		hexID = hexID[:16]
	}
	v, err := strconv.ParseUint(hexID, 16, 64)
	if err != nil {
		return 0
	}
	return float64(v) / math.Exp2(float64(4*len(hexID)))
}

// drawRing draws the ring as an ellipse of '.' in a w x h box of ASCII,
// with 0 at the top and positions growing clockwise, and the marks on it.
// Terminal cells are about twice as tall as wide, so the ellipse is twice
// as wide as tall to look round.
func drawRing(w, h int, marks []ringMark) []string {
	if w < 5 || h < 3 {
		return nil
	}
	grid := make([][]byte, h)
	for i := range grid {
		grid[i] = []byte(strings.Repeat(" ", w))
	}
	rank := make([][]int, h)
	for i := range rank {
		rank[i] = make([]int, w)
	}
	ry := float64(h-1) / 2
	rx := float64(w-1) / 2
	if rx > 2*ry {
		rx = 2 * ry
	} else {
		ry = rx / 2
	}
	cx, cy := float64(w-1)/2, float64(h-1)/2
	cell := func(f float64) (int, int) {
		a := 2 * math.Pi * f
		x := int(math.Round(cx + rx*math.Sin(a)))
		y := int(math.Round(cy - ry*math.Cos(a)))
		return min(max(x, 0), w-1), min(max(y, 0), h-1)
	}
	steps := int(2*math.Pi*max(rx, ry)) * 2
	for i := range steps {
		x, y := cell(float64(i) / float64(steps))
		grid[y][x] = symEdge
	}
	for _, m := range marks {
		x, y := cell(m.pos)
		if r := rankOf(m.sym); r > rank[y][x] {
			grid[y][x], rank[y][x] = m.sym, r
		}
	}
	out := make([]string, h)
	for i, row := range grid {
		out[i] = string(row)
	}
	return out
}
