package chord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MemNet is an in-memory network of Nodes: calls are plain function calls
// into the receiving node, so a test or a simulation of 10,000+ nodes runs
// with no sockets, goroutines or sleeps. Nodes can be killed (they stop
// answering, as after a crash) and calls are counted by kind. A MemNet
// made with NewLatencyMemNet also delays each message on a virtual clock.
//
// It ships outside _test files so other packages' tests and the simulator
// can use it.
type MemNet struct {
	mu    sync.RWMutex
	nodes map[string]*Node
	down  map[string]bool

	// delay and clock, if set: each message from a to b advances clock
	// by delay(a, b).
	delay func(from, to string) time.Duration
	clock *VirtualClock

	// Calls counts RPCs attempted, by kind, and those that failed because
	// their peer was dead: on MemNet such a call fails at once, on a real
	// network each costs a timeout.
	Calls struct{ FindSuccessor, NextHop, Neighbors, Changed, Owns, Ping, Unreachable atomic.Int64 }
}

// ErrUnreachable is what a call to a dead or unknown address returns.
var ErrUnreachable = errors.New("memnet: peer unreachable")

// NewMemNet returns an empty network.
func NewMemNet() *MemNet {
	return &MemNet{nodes: make(map[string]*Node), down: make(map[string]bool)}
}

// NewLatencyMemNet returns an empty network whose messages from a to b
// take delay(a, b) on a virtual clock, which its nodes use as theirs. The
// clock is shared: only a simulation that makes one call at a time (no
// parallel maintenance, no concurrent lookups) measures true latencies.
func NewLatencyMemNet(delay func(from, to string) time.Duration) *MemNet {
	m := NewMemNet()
	m.delay, m.clock = delay, &VirtualClock{}
	return m
}

// Clock is the network's virtual clock; nil without link delays.
func (m *MemNet) Clock() *VirtualClock { return m.clock }

// newNode makes a node at addr that talks over m, on m's virtual clock if
// it has one.
func (m *MemNet) newNode(addr string, cfg Config) (*Node, error) {
	var clock Clock // a nil *VirtualClock in the interface would not be nil
	if m.clock != nil {
		clock = m.clock
	}
	return NewNode(addr, memEndpoint{m, addr}, clock, cfg)
}

// Add creates a node at addr on this network.
func (m *MemNet) Add(addr string, cfg Config) (*Node, error) {
	n, err := m.newNode(addr, cfg)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[addr]; ok {
		return nil, fmt.Errorf("memnet: %q already added", addr)
	}
	m.nodes[addr] = n
	return n, nil
}

// Restart replaces the node at addr, which must have been killed, with a
// new one (same address, so the same vnode IDs, and no state): a peer that
// crashed and came back before the ring forgot it.
func (m *MemNet) Restart(addr string, cfg Config) (*Node, error) {
	n, err := m.newNode(addr, cfg)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[addr]; !ok || !m.down[addr] {
		return nil, fmt.Errorf("memnet: %q is not a killed node", addr)
	}
	m.nodes[addr] = n
	delete(m.down, addr)
	return n, nil
}

// Kill makes the node at addr stop answering, as if it had crashed.
func (m *MemNet) Kill(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[addr] = true
}

// Alive reports whether addr is up.
func (m *MemNet) Alive(addr string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.nodes[addr]
	return ok && !m.down[addr]
}

// dest finds the node a call from from to to reaches and delays the
// request; answered delays the answer.
func (m *MemNet) dest(ctx context.Context, from string, to Ref) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	n, ok := m.nodes[to.Addr]
	alive := ok && !m.down[to.Addr]
	m.mu.RUnlock()
	if m.clock != nil {
		m.clock.Advance(m.delay(from, to.Addr))
	}
	if !alive {
		m.Calls.Unreachable.Add(1)
		return nil, fmt.Errorf("%s: %w", to.Addr, ErrUnreachable)
	}
	return n, nil
}

// answered delays the answer of a call from from to to.
func (m *MemNet) answered(from string, to Ref) {
	if m.clock != nil {
		m.clock.Advance(m.delay(to.Addr, from))
	}
}

// memEndpoint is one node's Transport on a MemNet: the network, and who
// is calling.
type memEndpoint struct {
	m    *MemNet
	from string
}

func (e memEndpoint) FindSuccessor(ctx context.Context, to Ref, key ID, hops, want int) (LookupResult, error) {
	e.m.Calls.FindSuccessor.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return LookupResult{}, err
	}
	defer e.m.answered(e.from, to)
	return n.HandleFindSuccessor(ctx, to.ID, key, hops, want)
}

func (e memEndpoint) NextHop(ctx context.Context, to Ref, key ID, want int, hopCost time.Duration, brief bool) (Step, error) {
	e.m.Calls.NextHop.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return Step{}, err
	}
	defer e.m.answered(e.from, to)
	return n.HandleNextHop(ctx, to.ID, key, want, hopCost, brief)
}

func (e memEndpoint) Neighbors(ctx context.Context, to, from Ref, known uint64) (Neighbors, error) {
	e.m.Calls.Neighbors.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return Neighbors{}, err
	}
	defer e.m.answered(e.from, to)
	return n.HandleNeighbors(ctx, to.ID, from, known)
}

func (e memEndpoint) Changed(ctx context.Context, to Ref) error {
	e.m.Calls.Changed.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return err
	}
	defer e.m.answered(e.from, to)
	return n.HandleChanged(ctx, to.ID)
}

func (e memEndpoint) Owns(ctx context.Context, to Ref, key ID) (bool, error) {
	e.m.Calls.Owns.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return false, err
	}
	defer e.m.answered(e.from, to)
	return n.HandleOwns(ctx, to.ID, key)
}

func (e memEndpoint) Ping(ctx context.Context, to Ref) error {
	e.m.Calls.Ping.Add(1)
	n, err := e.m.dest(ctx, e.from, to)
	if err != nil {
		return err
	}
	defer e.m.answered(e.from, to)
	return n.HandlePing(ctx, to.ID)
}
