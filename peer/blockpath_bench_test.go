package peer

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	p2ppeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	mh "github.com/multiformats/go-multihash"

	"chordshare/blocks"
	"chordshare/internal/cpustat"
)

// BenchmarkBlockPath is a fetch's data path between two nodes in this
// process over loopback TCP: the server reads each 256 KiB block from its
// store (and hashes it), the client gets it over the block protocol (and
// hashes it) and writes it at its offset in an output file, 16 blocks in
// flight. It reports the process's CPU per block byte (both ends), with
// stock libp2p TLS or batchedTLS. No ring, no lookups: what the daemons of
// a loopback fetch spend per byte, without the rest. On a shared machine
// run each variant in its own process, alternating, several times:
// contention moves CPU per byte by 10-20% from run to run.
//
//	go test -run '^$' -bench BlockPath -benchtime 4x ./peer
func BenchmarkBlockPath(b *testing.B) {
	b.Cleanup(func() {
		if st := &blockPathStore; st.dir != "" {
			st.store.Close()
			os.RemoveAll(st.dir)
		}
	})
	stock := libp2p.ChainOptions(libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	for _, v := range []struct {
		name string
		sec  libp2p.Option
	}{
		{"stocktls", stock},
		{"batchedtls", streamOptions()},
	} {
		b.Run(v.name, func(b *testing.B) { benchBlockPath(b, v.sec) })
	}
}

// blockPathStore is the server's store of BenchmarkBlockPath, filled once
// for all its variants: count random blocks of blockPathSize.
var blockPathStore struct {
	once  sync.Once
	dir   string
	store *blocks.Store
	cids  []cid.Cid
	err   error
}

const blockPathSize, blockPathCount = 256 << 10, 128

func blockPathBlocks() (*blocks.Store, []cid.Cid, error) {
	st := &blockPathStore
	st.once.Do(func() {
		if st.dir, st.err = os.MkdirTemp("", "blockpath"); st.err != nil {
			return
		}
		if st.store, st.err = blocks.Open(st.dir, blocks.Options{}); st.err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		data := make([]byte, blockPathSize)
		for range blockPathCount {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			sum, err := mh.Sum(data, mh.SHA2_256, -1)
			if err != nil {
				st.err = err
				return
			}
			c := cid.NewCidV1(cid.Raw, sum)
			if st.err = st.store.Put(c, data); st.err != nil {
				return
			}
			st.cids = append(st.cids, c)
		}
	})
	return st.store, st.cids, st.err
}

// BenchmarkBlockPathPut is a share's data path to one replica, the other
// way: the client puts random blocks on the server over the block
// protocol (batchedTLS), 16 in flight, and the server receives each into
// a buffer and checks it against its CID as its store would, but keeps
// nothing (no disk: hashingSink). Like a share, it counts the bytes
// written toward a stall guard (putAt's moved). It reports the process's
// CPU per block byte (both ends).
//
//	go test -run '^$' -bench BlockPathPut -benchtime 4x ./peer
func BenchmarkBlockPathPut(b *testing.B) {
	const blockSize, count, window = blockPathSize, blockPathCount, 16
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([][]byte, count)
	cids := make([]cid.Cid, count)
	for i := range data {
		data[i] = make([]byte, blockSize)
		for j := range data[i] {
			data[i][j] = byte(rng.Uint32())
		}
		sum, err := mh.Sum(data[i], mh.SHA2_256, -1)
		if err != nil {
			b.Fatal(err)
		}
		cids[i] = cid.NewCidV1(cid.Raw, sum)
	}
	server, client := blockPathNodes(b, streamOptions(), hashingSink{}, nil)
	ctx := context.Background()
	var guard stallGuard
	b.SetBytes(blockSize * count)
	cpu0 := cpustat.ProcessTime()
	b.ResetTimer()
	for range b.N {
		if err := windowed(cids, window, func(i int, c cid.Cid) error {
			return client.putAt(ctx, server.h.ID(), "", c, data[i], guard.touch)
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpustat.ProcessTime()-cpu0)/float64(b.N*blockSize*count), "cpu-ns/B")
}

// windowed runs do for every block, window of them at a time, and returns
// the first error.
func windowed(cids []cid.Cid, window int, do func(i int, c cid.Cid) error) error {
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	errs := make(chan error, len(cids))
	for i, c := range cids {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := do(i, c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// hashingSink checks a block put on it against its CID and drops it.
type hashingSink struct{}

func (hashingSink) Put(c cid.Cid, data []byte) error { return verify(c, data) }
func (hashingSink) Get(cid.Cid) ([]byte, error)      { return nil, ErrBlockNotFound }
func (hashingSink) Has(cid.Cid) bool                 { return false }

// blockPathNodes makes the two nodes of a BlockPath benchmark, connected
// over loopback TCP with security and muxer sec: server with store st,
// client with cst (nil: none).
func blockPathNodes(b *testing.B, sec libp2p.Option, st, cst BlockStore) (server, client *Node) {
	mk := func(st BlockStore) *Node {
		priv, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			b.Fatal(err)
		}
		h, err := libp2p.New(libp2p.Identity(priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.Transport(tcp.NewTCPTransport), sec,
			libp2p.ResourceManager(&network.NullResourceManager{}))
		if err != nil {
			b.Fatal(err)
		}
		cfg := DefaultConfig()
		if st != nil {
			cfg.Store = st
		}
		n, err := NewNode(h, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close(); h.Close() })
		return n
	}
	server, client = mk(st), mk(cst)
	if err := client.h.Connect(context.Background(), p2ppeer.AddrInfo{ID: server.h.ID(), Addrs: server.h.Addrs()}); err != nil {
		b.Fatal(err)
	}
	return server, client
}

func benchBlockPath(b *testing.B, sec libp2p.Option) {
	const blockSize, count, window = blockPathSize, blockPathCount, 16
	store, cids, err := blockPathBlocks()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	server, client := blockPathNodes(b, sec, store, nil)
	ctx := context.Background()
	b.SetBytes(blockSize * count)
	cpu0 := cpustat.ProcessTime()
	b.ResetTimer()
	for range b.N {
		out, err := os.Create(filepath.Join(dir, "out"))
		if err != nil {
			b.Fatal(err)
		}
		if err := out.Truncate(blockSize * count); err != nil {
			b.Fatal(err)
		}
		stopFlush := flushBehind(out)
		err = windowed(cids, window, func(i int, c cid.Cid) error {
			d, err := client.fetchFrom(ctx, server.h.ID(), c)
			if err == nil {
				_, err = out.WriteAt(d, int64(i)*blockSize)
				putBuf(d)
			}
			return err
		})
		stopFlush()
		if err != nil {
			b.Fatal(err)
		}
		if err := out.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpustat.ProcessTime()-cpu0)/float64(b.N*blockSize*count), "cpu-ns/B")
}
