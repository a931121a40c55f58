package chord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// MemNet is an in-memory network of Nodes: calls are plain function calls
// into the receiving node, so a test or a simulation of 10,000+ nodes runs
// with no sockets, goroutines or sleeps. Nodes can be killed (they stop
// answering, as after a crash) and calls are counted by kind.
//
// It ships outside _test files so other packages' tests and the simulator
// can use it.
type MemNet struct {
	mu    sync.RWMutex
	nodes map[string]*Node
	down  map[string]bool

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

// Add creates a node at addr on this network.
func (m *MemNet) Add(addr string, cfg Config) (*Node, error) {
	n, err := NewNode(addr, m, nil, cfg)
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

func (m *MemNet) dest(ctx context.Context, to Ref) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, ok := m.nodes[to.Addr]
	if !ok || m.down[to.Addr] {
		m.Calls.Unreachable.Add(1)
		return nil, fmt.Errorf("%s: %w", to.Addr, ErrUnreachable)
	}
	return n, nil
}

func (m *MemNet) FindSuccessor(ctx context.Context, to Ref, key ID, hops, want int) (LookupResult, error) {
	m.Calls.FindSuccessor.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return LookupResult{}, err
	}
	return n.HandleFindSuccessor(ctx, to.ID, key, hops, want)
}

func (m *MemNet) NextHop(ctx context.Context, to Ref, key ID, want int) (Step, error) {
	m.Calls.NextHop.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return Step{}, err
	}
	return n.HandleNextHop(ctx, to.ID, key, want)
}

func (m *MemNet) Neighbors(ctx context.Context, to, from Ref, known uint64) (Neighbors, error) {
	m.Calls.Neighbors.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return Neighbors{}, err
	}
	return n.HandleNeighbors(ctx, to.ID, from, known)
}

func (m *MemNet) Changed(ctx context.Context, to Ref) error {
	m.Calls.Changed.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return err
	}
	return n.HandleChanged(ctx, to.ID)
}

func (m *MemNet) Owns(ctx context.Context, to Ref, key ID) (bool, error) {
	m.Calls.Owns.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return false, err
	}
	return n.HandleOwns(ctx, to.ID, key)
}

func (m *MemNet) Ping(ctx context.Context, to Ref) error {
	m.Calls.Ping.Add(1)
	n, err := m.dest(ctx, to)
	if err != nil {
		return err
	}
	return n.HandlePing(ctx, to.ID)
}
