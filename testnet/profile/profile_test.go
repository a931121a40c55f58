package profile

import (
	"math"
	"testing"
	"time"
)

func TestLinksReproducibleAndInRange(t *testing.T) {
	p, err := Lookup("heterogeneous")
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.Links(7, 500), p.Links(7, 20)
	for i := range b {
		if a[i] != b[i] {
			t.Fatalf("node %d: %v with 500 nodes, %v with 20: a node's link must not depend on N", i+1, a[i], b[i])
		}
	}
	if p.Links(8, 1)[0] == a[0] {
		t.Fatal("seeds 7 and 8 drew the same link")
	}
	// Log-uniform: about half the draws below the geometric mean.
	var belowRTT, belowRate int
	for _, l := range a {
		if l.RTT < time.Millisecond || l.RTT > time.Second || l.Rate < 32e3 || l.Rate > 100e6 {
			t.Fatalf("link %v outside the profile", l)
		}
		if float64(l.RTT) < math.Sqrt(float64(time.Millisecond)*float64(time.Second)) {
			belowRTT++
		}
		if l.Rate < math.Sqrt(32e3*100e6) {
			belowRate++
		}
	}
	if belowRTT < 200 || belowRTT > 300 || belowRate < 200 || belowRate > 300 {
		t.Fatalf("of 500 draws %d RTTs and %d rates below the geometric mean; want about 250", belowRTT, belowRate)
	}
}

func TestLanIsUnshaped(t *testing.T) {
	p, err := Lookup("lan")
	if err != nil {
		t.Fatal(err)
	}
	if p.Shaped() || p.Link(1, 1).Shaped() {
		t.Fatal("lan shapes")
	}
	if _, err := Lookup("moon"); err == nil {
		t.Fatal("an unknown profile was accepted")
	}
}
