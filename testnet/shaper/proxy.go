package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"chordshare/testnet/profile"
)

// node is one testnet node's access link as the shaper emulates it.
type node struct {
	index    int
	ip       net.IP // the node's own address: connections it dials come from it
	link     profile.Link
	up, down *pacer // shared by every connection of the node

	bytesUp, bytesDown atomic.Int64 // bytes that crossed its uplink / downlink
	conns              atomic.Int64 // proxied connections it took part in
}

func newNode(index int, ip net.IP, link profile.Link) *node {
	return &node{index: index, ip: ip, link: link, up: newPacer(link.Rate), down: newPacer(link.Rate)}
}

// oneWay is the one-way delay from a to b: a quarter of each node's RTT, so
// that the round trip between them is (RTT_a + RTT_b) / 2 (package profile).
func oneWay(a, b *node) time.Duration {
	return (a.link.RTT + b.link.RTT) / 4
}

// Shaper forwards connections to nodes through their emulated access
// links. A connection to node b's proxy that comes from node a's address
// crosses a's uplink, the delay between them, and b's downlink; the answer
// crosses b's uplink and a's downlink. A connection from an address that is
// no node's (a node's fallback dial, a test client) has an ideal link on
// its end and is counted as unattributed.
type Shaper struct {
	nodes        []*node
	byIP         map[string]*node
	unattributed atomic.Int64
	dialTimeout  time.Duration
}

// nobody is the ideal far end of an unattributed connection.
var nobody = newNode(0, nil, profile.Link{})

// NewShaper makes a shaper for nodes whose own addresses are ips[i] and
// links links[i] (index i+1).
func NewShaper(ips []net.IP, links []profile.Link) *Shaper {
	s := &Shaper{byIP: map[string]*node{}, dialTimeout: 5 * time.Second}
	for i := range ips {
		n := newNode(i+1, ips[i], links[i])
		s.nodes = append(s.nodes, n)
		s.byIP[ips[i].String()] = n
	}
	return s
}

// Serve accepts connections on ln, each for node to (index from 1), and
// forwards them to target until ctx ends or ln fails.
func (s *Shaper) Serve(ctx context.Context, ln net.Listener, to int, target string) error {
	dst := s.nodes[to-1]
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("proxy for node %d: %w", to, err)
		}
		src := nobody
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			if n := s.byIP[a.IP.String()]; n != nil {
				src = n
			}
		}
		if src == nobody {
			s.unattributed.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.forward(ctx, c, src, dst, target)
		}()
	}
}

// forward dials the node behind the proxy and moves bytes both ways
// through the two nodes' links until both directions end.
func (s *Shaper) forward(ctx context.Context, c net.Conn, src, dst *node, target string) {
	defer c.Close()
	d := net.Dialer{Timeout: s.dialTimeout}
	t, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return // the node is down: the dialer sees its connection closed
	}
	defer t.Close()
	src.conns.Add(1)
	dst.conns.Add(1)
	// Closing both ends unblocks every read and write when one side fails
	// or the shaper stops.
	var once sync.Once
	abort := func() { once.Do(func() { c.Close(); t.Close() }) }
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(c, t, src, dst, abort) }()
	go func() { defer wg.Done(); pipe(t, c, dst, src, abort) }()
	wg.Wait()
}

// chunk is bytes that have left the sender's uplink at sent.
type chunk struct {
	b    []byte
	sent time.Time
}

// pipe moves bytes from r (sent by node from) to w (received by node to):
// from's uplink paces the reads, the chunks then wait out the one-way
// delay, and to's downlink paces the writes. The queue between holds twice
// the bandwidth-delay product (room for a writer that wakes late), so the
// delay does not cut the rate; when it is full, reads stop and TCP pushes
// back on the sender.
func pipe(r, w net.Conn, from, to *node, abort func()) {
	delay := oneWay(from, to)
	rate := slowest(from.link.Rate, to.link.Rate) / 8
	size := chunkSize(rate)
	depth := 4
	if rate > 0 {
		depth += int(2 * rate * delay.Seconds() / float64(size))
	} else {
		depth += int(delay / time.Millisecond) // unlimited rate: about one chunk per ms of delay
	}
	q := make(chan chunk, min(depth, 4096))

	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			arrive := c.sent.Add(delay)
			sleepUntil(arrive)
			sleepUntil(to.down.reserve(arrive, len(c.b)))
			if _, err := w.Write(c.b); err != nil {
				abort()
				for range q { // let the reader finish
				}
				return
			}
			to.bytesDown.Add(int64(len(c.b)))
		}
		if tc, ok := w.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()

	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			now := time.Now()
			sent := from.up.reserve(now, n)
			sleepUntil(sent)
			// The pacer's slack may put sent in the past; the bytes were
			// read now, so their delay counts from now.
			sent = later(sent, now)
			from.bytesUp.Add(int64(n))
			q <- chunk{b: append([]byte(nil), buf[:n]...), sent: sent}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				abort()
			}
			break
		}
	}
	close(q)
	<-done
}

// slowest is the smaller of two rates where 0 means unlimited.
func slowest(a, b float64) float64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
