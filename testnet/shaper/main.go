// Command shaper emulates the access links of a testnet's nodes in user
// space (the kernel here has no netem). Node i (from 1) listens on
// 127.0.0.(i+1) and announces a proxy on 127.0.1.(i+1), same port; the
// shaper forwards each connection to the proxy to the node, through the
// dialing node's uplink, the delay between them and the node's downlink
// (see Shaper). testnet/testnet.sh starts it; it runs until SIGTERM or
// SIGINT.
//
//	shaper -dir DIR -n N -profile NAME -seed S
//
// It writes DIR/links (one line per node: index, listen address, proxy
// address, RTT in ms, rate in bit/s; 0 is unlimited) once every proxy
// listens, and DIR/shaper.stats every second (per node: connections, bytes
// up, bytes down; and the connections from no node's address).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"chordshare/testnet/profile"
)

// maxNodes is how many nodes the address plan holds (127.0.0.2-255).
const maxNodes = 254

func main() {
	dir := flag.String("dir", "", "testnet `DIR`: where links and shaper.stats are written")
	n := flag.Int("n", 0, "`N` nodes")
	prof := flag.String("profile", "heterogeneous", "link profile `NAME`")
	seed := flag.Uint64("seed", 1, "`SEED` the links are drawn from")
	flag.Parse()
	if err := run(*dir, *n, *prof, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "shaper:", err)
		os.Exit(1)
	}
}

// nodeIP and proxyIP are node i's own address and its proxy's.
func nodeIP(i int) net.IP  { return net.IPv4(127, 0, 0, byte(i+1)) }
func proxyIP(i int) net.IP { return net.IPv4(127, 0, 1, byte(i+1)) }

func run(dir string, n int, profName string, seed uint64) error {
	if dir == "" || n < 1 || n > maxNodes {
		return fmt.Errorf("need -dir and 1 <= -n <= %d", maxNodes)
	}
	prof, err := profile.Lookup(profName)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	links := prof.Links(seed, n)
	ips := make([]net.IP, n)
	for i := range ips {
		ips[i] = nodeIP(i + 1)
	}
	s := NewShaper(ips, links)
	lns := make([]net.Listener, n)
	var table strings.Builder
	for i := 1; i <= n; i++ {
		ln, port, err := listenProxy(i)
		if err != nil {
			return err
		}
		lns[i-1] = ln
		l := links[i-1]
		fmt.Fprintf(&table, "%d %s:%d %s:%d %.3f %.0f\n", i, nodeIP(i), port, proxyIP(i), port,
			float64(l.RTT)/float64(time.Millisecond), l.Rate)
	}
	if err := writeAtomic(filepath.Join(dir, "links"), table.String()); err != nil {
		return err
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, ln := range lns {
		target := fmt.Sprintf("%s:%d", nodeIP(i+1), ln.Addr().(*net.TCPAddr).Port)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ctx, ln, i+1, target); err != nil {
				errs <- err
				stop()
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if err := writeAtomic(filepath.Join(dir, "shaper.stats"), s.Stats()); err != nil {
				fmt.Fprintln(os.Stderr, "shaper:", err)
			}
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// listenProxy opens node i's proxy on a port that is also free on the
// node's own address, where the node will listen.
func listenProxy(i int) (net.Listener, int, error) {
	var err error
	for range 20 {
		var ln net.Listener
		ln, err = net.Listen("tcp4", proxyIP(i).String()+":0")
		if err != nil {
			return nil, 0, fmt.Errorf("node %d's proxy: %w (this needs Linux, where all of 127.0.0.0/8 is loopback)", i, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		var probe net.Listener
		probe, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", nodeIP(i), port))
		if err == nil {
			probe.Close()
			return ln, port, nil
		}
		ln.Close()
	}
	return nil, 0, fmt.Errorf("no port free on both %s and %s: %w", proxyIP(i), nodeIP(i), err)
}

// Stats is the stats file's text.
func (s *Shaper) Stats() string {
	var b strings.Builder
	b.WriteString("# node conns bytes_up bytes_down\n")
	for _, n := range s.nodes {
		fmt.Fprintf(&b, "%d %d %d %d\n", n.index, n.conns.Load(), n.bytesUp.Load(), n.bytesDown.Load())
	}
	fmt.Fprintf(&b, "unattributed %d\n", s.unattributed.Load())
	return b.String()
}

// writeAtomic replaces path with text, never leaving it half written.
func writeAtomic(path, text string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
