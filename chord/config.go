package chord

import (
	"errors"
	"fmt"
	"time"
)

// LookupMode selects how a lookup walks the ring.
type LookupMode int

const (
	// Recursive: each hop forwards the query; one message per hop, one reply.
	Recursive LookupMode = iota
	// Iterative: the asker contacts every hop itself; a round trip per hop,
	// but the asker sees and routes around every failure.
	Iterative
)

func (m LookupMode) String() string {
	if m == Iterative {
		return "iterative"
	}
	return "recursive"
}

// ParseLookupMode reads "recursive" or "iterative".
func ParseLookupMode(s string) (LookupMode, error) {
	switch s {
	case "recursive":
		return Recursive, nil
	case "iterative":
		return Iterative, nil
	}
	return 0, fmt.Errorf("lookup mode %q: want recursive or iterative", s)
}

// Config holds every timing and size of the protocol in one place.
type Config struct {
	// Vnodes is how many ring positions this peer runs (its capacity).
	Vnodes int
	// SuccessorListLen is how many successors each vnode tracks. The paper's
	// result: with 2·log2(N) entries the ring survives half its nodes failing.
	// 16 covers rings up to 2^8 peers at that bound and far more in practice.
	SuccessorListLen int
	// Lookup is the default lookup mode.
	Lookup LookupMode
	// MaxHops bounds a lookup; beyond it the ring is treated as inconsistent.
	MaxHops int
	// StabilizeInterval: how often each vnode checks its successor and
	// notifies it. Each round is re-armed at a random point in
	// [interval/2, 3·interval/2) so peers do not synchronize.
	StabilizeInterval time.Duration
	// FixFingerInterval: how often one finger (and every later finger the same
	// node covers) is refreshed.
	FixFingerInterval time.Duration
	// CheckPredecessorInterval: how often each vnode checks its predecessor.
	// A predecessor heard from since (its stabilization reaches us) is not
	// pinged.
	CheckPredecessorInterval time.Duration
	// Backoff (adaptive intervals): a vnode whose stabilization or finger
	// check found nothing changed waits twice as many intervals before the
	// next one, up to Backoff intervals; any change, a failed call to a
	// neighbour or a Changed message from its successor snaps it back to
	// every interval. 1 turns it off. Quiet rings cost about 1/Backoff of
	// the traffic; a crash is noticed up to Backoff intervals later.
	Backoff int
	// Proximity (proximity neighbour selection): finger k may be any node
	// in [self+2^k, self+2^(k+1)); among the first candidates there the
	// one with the lowest measured round trip is taken, so each hop of a
	// lookup is short. Off: finger k is the successor of self+2^k.
	Proximity bool
	// VnodeChoices (load balance): a joining node looks up this many
	// candidate positions per vnode (indices 0 .. Vnodes·VnodeChoices-1);
	// each answer shows a window of the ring (the successor's predecessor
	// and successor list), and every one of the node's MaxVnodes
	// positions inside a window is a candidate. Each vnode takes the one
	// that splits the longest arc most evenly (chooseIndices), so arcs,
	// and keys per vnode, are far more even than with one hash each.
	// Positions stay derived (vnode index x sits at VnodeID(addr, x),
	// x < MaxVnodes). Joining costs Vnodes·VnodeChoices lookups and as
	// many Neighbors calls, placeConcurrency at a time. 1: vnode i is
	// index i, as the first node of a ring always has.
	VnodeChoices int
	// VnodeIndices are the vnode indices the peer ran before a restart
	// (Node.Indices), which its stored blocks sit on. While they are
	// still a choice this config could make (one distinct index per
	// vnode, below MaxVnodes; with one choice 0..Vnodes-1), the node
	// takes them again, at Create as at Join, rather than choosing anew;
	// otherwise they are ignored.
	VnodeIndices []uint32
	// RTT estimator bounds (RFC 6298 style). InitialRTO applies to a peer
	// never measured; MaxRTO caps timeouts so a dead peer is found in bounded
	// time, and is well above the 1000 ms round trips of the slowest peers.
	InitialRTO time.Duration
	MinRTO     time.Duration
	MaxRTO     time.Duration
	// LookupTimeout bounds a whole lookup.
	LookupTimeout time.Duration
}

// DefaultConfig suits a ring of ordinary peers, including slow ones.
func DefaultConfig() Config {
	return Config{
		Vnodes:                   8,
		SuccessorListLen:         16,
		Lookup:                   Recursive,
		MaxHops:                  64,
		StabilizeInterval:        2 * time.Second,
		FixFingerInterval:        2 * time.Second,
		CheckPredecessorInterval: 4 * time.Second,
		Backoff:                  8,
		Proximity:                true,
		VnodeChoices:             8,
		InitialRTO:               2 * time.Second,
		MinRTO:                   200 * time.Millisecond,
		MaxRTO:                   8 * time.Second,
		LookupTimeout:            30 * time.Second,
	}
}

// TestConfig is DefaultConfig with short timers for in-process tests.
func TestConfig() Config {
	c := DefaultConfig()
	c.Vnodes = 2
	c.StabilizeInterval = 50 * time.Millisecond
	c.FixFingerInterval = 50 * time.Millisecond
	c.CheckPredecessorInterval = 100 * time.Millisecond
	// Round trips in process are microseconds, but a loaded test machine
	// (the race detector, two cores) stalls goroutines for far longer; a
	// timeout must not mistake that for a dead peer.
	c.InitialRTO = time.Second
	c.MinRTO = 500 * time.Millisecond
	c.MaxRTO = 4 * time.Second
	c.LookupTimeout = 10 * time.Second
	// Choosing positions costs a lookup per candidate at every join;
	// tests that are not about it keep one, so their rings build fast.
	c.VnodeChoices = 1
	return c
}

// maxBackoff bounds Config.Backoff: a quiet vnode still checks its
// neighbours every few minutes at the default intervals.
const maxBackoff = 64

// maxVnodeChoices bounds Config.VnodeChoices: each choice costs a lookup
// per vnode at join.
const maxVnodeChoices = 64

// MaxVnodes bounds Vnodes, and the vnode index a peer will accept on the wire.
const MaxVnodes = 1024

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Vnodes < 0 || c.Vnodes > MaxVnodes:
		return fmt.Errorf("vnodes %d: want 0..%d", c.Vnodes, MaxVnodes)
	case c.SuccessorListLen < 1:
		return errors.New("successor list length must be at least 1")
	case c.MaxHops < 1:
		return errors.New("max hops must be at least 1")
	case c.StabilizeInterval <= 0 || c.FixFingerInterval <= 0 || c.CheckPredecessorInterval <= 0:
		return errors.New("maintenance intervals must be positive")
	case c.VnodeChoices < 1 || c.VnodeChoices > maxVnodeChoices:
		return fmt.Errorf("vnode choices %d: want 1..%d", c.VnodeChoices, maxVnodeChoices)
	case c.Backoff < 1 || c.Backoff > maxBackoff:
		return fmt.Errorf("backoff %d: want 1..%d", c.Backoff, maxBackoff)
	case c.MinRTO <= 0 || c.MinRTO > c.MaxRTO || c.InitialRTO < c.MinRTO || c.InitialRTO > c.MaxRTO:
		return errors.New("want 0 < MinRTO <= InitialRTO <= MaxRTO")
	case c.LookupTimeout <= 0:
		return errors.New("lookup timeout must be positive")
	}
	return nil
}
