package main

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"chordshare/internal/cpustat"
	"chordshare/internal/diskbaseline"
)

// blockSize is share's chunk size: the unit the block store writes and
// fsyncs, and what the CPU micro-benchmarks work on.
const blockSize = 256 << 10

// limits are the same-run measurements the transfers are compared with.
// Rates are bytes per second; a zero rate was not measured, and the
// matching ...Err says why.
type limits struct {
	TCP      float64 // iperf3, one TCP stream over 127.0.0.1
	TCPErr   string
	TCPTool  string  // iperf3's version line
	DiskSync float64 // 256 KiB files, each written and fsync'd, one writer
	// DiskSyncParallel is the same with parallelWriters at once, as the
	// ring's daemons write their replicas at once.
	DiskSyncParallel float64
	DiskSeq          float64 // one big file written sequentially, one fsync
	ChaCha           float64 // ChaCha20-Poly1305 seal, one core
	AESGCM           float64 // AES-256-GCM seal, one core
	AESGCMOpen       float64 // AES-256-GCM open, one core
	SHA256           float64 // one core

	// The CPU, in ns per byte, that moving a byte costs with nothing of
	// the daemons around it: over loopback TCP, both ends together (one
	// plain Go stream in this process, 256 KiB writes), and into a new file
	// durably (the parallelWriters write+fsync above, this process's CPU).
	// Zero when not measured.
	TCPCPU  float64
	DiskCPU float64
}

const parallelWriters = 8

// measureTCP runs an iperf3 server and client on 127.0.0.1 for secs
// seconds and returns the receiver's rate. An iperf3 that is not installed
// is not an error: the report says so.
func measureTCP(ctx context.Context, env []string, dir string, secs int) (rate float64, tool string, err error) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		return 0, "", fmt.Errorf("iperf3 not found on $PATH (apt-get install -y iperf3)")
	}
	if out, err := output(command(ctx, env, bin, "--version")); err == nil {
		tool, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	port, err := freePort()
	if err != nil {
		return 0, tool, err
	}
	srv, err := startDaemon("iperf3 server", filepath.Join(dir, "iperf3-server.log"), env, bin, "-s", "-B", "127.0.0.1", "-p", port)
	if err != nil {
		return 0, tool, err
	}
	defer srv.stop(time.Second)

	// The server is listening once a client connects; until then a client
	// is refused, which is retried rather than probed with a bare connect
	// (that would cost the server a test).
	var res iperfResult
	err = poll(ctx, "iperf3 client connects", 5*time.Second, 100*time.Millisecond, func() (bool, string, error) {
		if err := srv.exited(); err != nil {
			return false, "", err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
		defer cancel()
		out, _ := output(command(cctx, env, bin, "-c", "127.0.0.1", "-p", port, "-t", strconv.Itoa(secs), "-J"))
		res = iperfResult{}
		if err := json.Unmarshal(out, &res); err != nil {
			return false, "", fmt.Errorf("iperf3 -J printed no JSON: %w", err)
		}
		if res.Error != "" {
			if strings.Contains(res.Error, "refused") {
				return false, res.Error, nil
			}
			return false, "", fmt.Errorf("iperf3: %s", res.Error)
		}
		return true, "", nil
	})
	if err != nil {
		return 0, tool, err
	}
	return res.End.SumReceived.BitsPerSecond / 8, tool, nil
}

// iperfResult is the part of `iperf3 -J` that is used.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// measureDisk measures write+fsync three ways, size bytes each, in a new
// directory under dir. The files stay until dir goes at the end of the
// program: on ext4 without a journal (as here) a new inode is not taken
// from those deleted in the last minutes, and the search past thousands of
// them would cost the block stores' next file creations CPU that a fresh
// disk does not.
func measureDisk(ctx context.Context, dir string, size int64, l *limits) error {
	d, err := os.MkdirTemp(dir, "disk")
	if err != nil {
		return err
	}
	buf := randomBytes(blockSize)
	blocks := int(max(1, size/blockSize))
	if l.DiskSync, err = timedWrite(ctx, d, "sync", blocks, 1, buf); err != nil {
		return err
	}
	cpu := cpustat.ProcessTime()
	if l.DiskSyncParallel, err = timedWrite(ctx, d, "psync", blocks, parallelWriters, buf); err != nil {
		return err
	}
	l.DiskCPU = cpuNsPerByte(cpustat.ProcessTime()-cpu, int64(blocks)*blockSize)
	l.DiskSeq, err = sequentialWrite(d, int64(blocks)*blockSize, buf)
	return err
}

// timedWrite writes blocks files of buf from writers goroutines, each file
// created, written and fsync'd as the block store makes a block durable
// (less its rename and directory fsync, which are the store's own cost),
// and returns bytes per second.
func timedWrite(ctx context.Context, dir, name string, blocks, writers int, buf []byte) (float64, error) {
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		return 0, err
	}
	next := make(chan int)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for i := range next {
				if err := diskbaseline.WriteFsync(filepath.Join(d, strconv.Itoa(i)), buf); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range blocks {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = context.Cause(ctx)
			break feed
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	if err != nil {
		return 0, fmt.Errorf("disk baseline: %w", err)
	}
	return float64(blocks*len(buf)) / elapsed.Seconds(), nil
}

// sequentialWrite writes size bytes to one file and fsyncs once: the most
// the disk takes when nothing asks for durability along the way.
func sequentialWrite(dir string, size int64, buf []byte) (float64, error) {
	path := filepath.Join(dir, "seq")
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, fmt.Errorf("disk baseline: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("disk baseline: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return float64(size) / time.Since(start).Seconds(), nil
}

// measureCPU runs the per-byte work of the pipeline on one core, each for
// about d: the transport's cipher (Noise in libp2p uses ChaCha20-Poly1305;
// AES-GCM is what TLS would pick) and SHA-256, which names and verifies
// every block.
func measureCPU(d time.Duration, l *limits) error {
	buf := randomBytes(blockSize)
	key := randomBytes(32)
	chacha, err := chacha20poly1305.New(key)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	l.ChaCha = perCore(d, len(buf), sealer(chacha, buf))
	l.AESGCM = perCore(d, len(buf), sealer(gcm, buf))
	l.AESGCMOpen = perCore(d, len(buf), opener(gcm, buf))
	l.SHA256 = perCore(d, len(buf), func() { sha256.Sum256(buf) })
	return nil
}

// sealer seals buf again and again into one reused buffer. The fixed
// nonce would be fatal in use; the cost per byte does not depend on it.
func sealer(aead cipher.AEAD, buf []byte) func() {
	nonce := make([]byte, aead.NonceSize())
	dst := make([]byte, 0, len(buf)+aead.Overhead())
	return func() { dst = aead.Seal(dst[:0], nonce, buf, nil) }
}

// opener opens one sealed copy of buf again and again into one reused
// buffer, as a receiver's TLS opens every record.
func opener(aead cipher.AEAD, buf []byte) func() {
	nonce := make([]byte, aead.NonceSize())
	sealed := aead.Seal(nil, nonce, buf, nil)
	dst := make([]byte, 0, len(buf))
	return func() {
		var err error
		if dst, err = aead.Open(dst[:0], nonce, sealed, nil); err != nil {
			panic(err) // it sealed these bytes itself
		}
	}
}

// perCore calls f (which handles n bytes) on this goroutine for about d in
// five rounds and returns the median round's bytes per second of the
// thread's CPU time (wall time where there is none): on a shared machine a
// round can wait for its core behind a neighbour, which says nothing of
// what f costs, and the share's floor adds these costs to CPU times.
func perCore(d time.Duration, n int, f func()) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f() // warm up: tables, first-touch page faults
	rates := make([]float64, 5)
	for r := range rates {
		start, cpu := time.Now(), cpustat.ThreadTime()
		calls := 0
		for time.Since(start) < d/time.Duration(len(rates)) {
			f()
			calls++
		}
		spent := cpustat.ThreadTime() - cpu
		if spent <= 0 {
			spent = time.Since(start)
		}
		rates[r] = float64(calls*n) / spent.Seconds()
	}
	return median(rates)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// randomBytes is incompressible data: nothing on the way may shortcut it.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), 'x', 'b'}).Read(b)
	return b
}

// measureTCPCPU sends size bytes over one loopback TCP connection inside
// this process, in blockSize writes, and returns the process's CPU per
// byte: what the kernel and Go's netpoller charge to move a byte from one
// socket to another, the sender's and the receiver's side together. The
// daemons pay it once for every copy of a block they send.
func measureTCPCPU(ctx context.Context, size int64) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	sent := make(chan error, 1)
	cpu := cpustat.ProcessTime()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		buf := randomBytes(blockSize)
		for n := int64(0); n < size && err == nil && ctx.Err() == nil; n += int64(len(buf)) {
			_, err = c.Write(buf)
		}
		sent <- cmp.Or(err, context.Cause(ctx))
	}()
	c, err := l.Accept()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	got, err := io.CopyBuffer(io.Discard, io.LimitReader(c, size), make([]byte, blockSize))
	if err == nil && got < size {
		err = io.ErrUnexpectedEOF
	}
	if err := cmp.Or(err, <-sent); err != nil {
		return 0, fmt.Errorf("loopback TCP baseline: %w", err)
	}
	return cpuNsPerByte(cpustat.ProcessTime()-cpu, size), nil
}

// cpuNsPerByte is cpu spread over n bytes, in ns per byte.
func cpuNsPerByte(cpu time.Duration, n int64) float64 {
	return float64(cpu.Nanoseconds()) / float64(n)
}

// shareFloor is the CPU per file byte that a share with r copies, sent of
// them over the network, cannot do without on this machine, from the same
// run's limits: SHA-256 once to name each block and once per copy at the
// replica that checks it (the sharer's own store checks too), a durable
// write per copy, and AES-GCM seal and open (TLS) and loopback TCP per copy
// sent (a copy the sharer stores itself crosses no link). It leaves out
// what a share also pays (reading the file, yamux, the ring's lookups, the
// runtime's scheduling); 0 if a limit is missing.
func (l limits) shareFloor(r int, sent float64) float64 {
	if l.SHA256 <= 0 || l.AESGCM <= 0 || l.AESGCMOpen <= 0 || l.TCPCPU <= 0 || l.DiskCPU <= 0 {
		return 0
	}
	copies := float64(r)
	return 1e9*(1+copies)/l.SHA256 + copies*l.DiskCPU + sent*(1e9/l.AESGCM+1e9/l.AESGCMOpen+l.TCPCPU)
}
