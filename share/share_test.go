package share

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	unixfs "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"
)

const (
	// The vector for a file holding exactly "hello chord\n".
	helloChordCID = "bafkreihw4tqmgoax7pre32ehip4257lrrg32i2h3clcwvhunfimgbq5aua"
	// What `ipfs add --cid-version=1 --raw-leaves` prints for an empty file:
	// a raw block of no bytes.
	emptyFileCID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
)

// fetchBytes fetches root from get into memory at offsets.
func fetchBytes(t *testing.T, root cid.Cid, get Getter, opts FetchOptions) []byte {
	t.Helper()
	var out memFile
	if err := Fetch(context.Background(), root, get, ToWriterAt(&out), opts); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return out.bytes()
}

// fetchStream fetches root from get in order through a plain io.Writer.
func fetchStream(t *testing.T, root cid.Cid, get Getter, opts FetchOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Fetch(context.Background(), root, get, ToWriter(&out), opts); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return out.Bytes()
}

func TestOneBlockFiles(t *testing.T) {
	for data, want := range map[string]string{
		"hello chord\n": helloChordCID,
		"":              emptyFileCID,
	} {
		root, s := importBytes(t, []byte(data), ImportOptions{})
		if root.String() != want {
			t.Fatalf("Import(%q) = %s, want %s", data, root, want)
		}
		if n := s.puts.Load(); n != 1 {
			t.Errorf("Import(%q) made %d puts, want 1", data, n)
		}
		if got := fetchBytes(t, root, s, FetchOptions{}); string(got) != data {
			t.Errorf("Fetch(%s) to WriterAt = %q, want %q", root, got, data)
		}
		if got := fetchStream(t, root, s, FetchOptions{}); string(got) != data {
			t.Errorf("Fetch(%s) to Writer = %q, want %q", root, got, data)
		}
	}
}

func TestMultiLevelRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		chunk int
	}{
		// 175 default chunks and a bit: two levels, the second root
		// link holding a one-leaf subtree.
		{"44MiB default chunks", 175*DefaultChunkSize + 1000, 0},
		// 30277 leaves: three levels.
		{"7.4MiB 256B chunks", (174*174+1)*256 + 3, 256},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.size, uint64(100+i))
			root, s := importBytes(t, data, ImportOptions{ChunkSize: tc.chunk})
			chunk := tc.chunk
			if chunk == 0 {
				chunk = DefaultChunkSize
			}
			if want := refRoot(data, chunk); !root.Equals(want) {
				t.Fatalf("root %s, reference %s", root, want)
			}
			if !bytes.Equal(fetchBytes(t, root, s, FetchOptions{}), data) {
				t.Fatal("WriterAt fetch differs from the input")
			}
			if !bytes.Equal(fetchStream(t, root, s, FetchOptions{Window: 7}), data) {
				t.Fatal("ordered fetch differs from the input")
			}
		})
	}
}

func TestProgress(t *testing.T) {
	data := randomBytes(3*DefaultChunkSize+5, 1)
	var read []int64
	root, s := importBytes(t, data, ImportOptions{Progress: func(n int64) { read = append(read, n) }})
	if len(read) == 0 || read[len(read)-1] != int64(len(data)) {
		t.Fatalf("import progress %v, want it to end at %d", read, len(data))
	}
	var mu sync.Mutex
	var last, total int64 = -1, -1
	_ = fetchBytes(t, root, s, FetchOptions{Progress: func(done, tot int64) {
		mu.Lock()
		defer mu.Unlock()
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last, total = done, tot
	}})
	if last != int64(len(data)) || total != int64(len(data)) {
		t.Fatalf("fetch progress ended at %d/%d, want %d/%d", last, total, len(data), len(data))
	}
}

// corruptingGetter returns wrong bytes for target the first bad times it is
// asked, then the right ones.
type corruptingGetter struct {
	s      *memStore
	target cid.Cid
	bad    atomic.Int64
}

func (g *corruptingGetter) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	data, err := g.s.Get(ctx, c)
	if err != nil || !c.Equals(g.target) || g.bad.Add(-1) < 0 {
		return data, err
	}
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 1
	return bad, nil
}

// leafCIDs lists a two-level DAG's leaves, from its root node in s.
func leafCIDs(t *testing.T, s *memStore, root cid.Cid) []cid.Cid {
	t.Helper()
	data, err := s.Get(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	n, err := decodeFileNode(data)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []cid.Cid
	for _, c := range n.links {
		if c.Type() == cid.Raw {
			leaves = append(leaves, c)
		} else {
			leaves = append(leaves, leafCIDs(t, s, c)...)
		}
	}
	return leaves
}

func TestFetchVerifiesBlocks(t *testing.T) {
	data := randomBytes(10*DefaultChunkSize, 2)
	root, s := importBytes(t, data, ImportOptions{})
	leaf := leafCIDs(t, s, root)[4]

	t.Run("retry succeeds", func(t *testing.T) {
		g := &corruptingGetter{s: s, target: leaf}
		g.bad.Store(DefaultAttempts - 1)
		if !bytes.Equal(fetchBytes(t, root, g, FetchOptions{}), data) {
			t.Fatal("fetch after a retry differs from the input")
		}
	})
	t.Run("persistent mismatch fails", func(t *testing.T) {
		g := &corruptingGetter{s: s, target: leaf}
		g.bad.Store(1 << 30)
		err := Fetch(context.Background(), root, g, ToWriterAt(&memFile{}), FetchOptions{})
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), leaf.String()) {
			t.Fatalf("err = %v, want ErrMismatch naming %s", err, leaf)
		}
	})
	t.Run("corrupt root", func(t *testing.T) {
		g := &corruptingGetter{s: s, target: root}
		g.bad.Store(1 << 30)
		err := Fetch(context.Background(), root, g, ToWriter(io.Discard), FetchOptions{Attempts: 1})
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), root.String()) {
			t.Fatalf("err = %v, want ErrMismatch naming %s", err, root)
		}
	})
	t.Run("missing block", func(t *testing.T) {
		g := getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
			if c.Equals(leaf) {
				return nil, errNotFound
			}
			return s.Get(ctx, c)
		})
		err := Fetch(context.Background(), root, g, ToWriter(io.Discard), FetchOptions{})
		if !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), leaf.String()) {
			t.Fatalf("err = %v, want errNotFound naming %s", err, leaf)
		}
	})
}

// A fetch's Gets see Endgame false until every block has been asked for,
// then true: the root's Get (the walk has not begun) sees false; each leaf
// Get waits for true, which only comes once the walker has asked for the
// last leaf (the window holds every leaf, so it does). A Get outside a
// fetch is its own endgame.
func TestEndgame(t *testing.T) {
	if !Endgame(context.Background()) {
		t.Fatal("a Get outside a fetch is not its own endgame")
	}
	data := randomBytes(6*DefaultChunkSize, 5)
	root, s := importBytes(t, data, ImportOptions{})
	var rootSaw atomic.Int32 // 1: false, 2: true
	g := getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
		if c.Equals(root) {
			rootSaw.Store(1)
			if Endgame(ctx) {
				rootSaw.Store(2)
			}
			return s.Get(ctx, c)
		}
		// A bound for a broken Endgame only: the test fails, not hangs.
		select {
		case <-EndgameBegun(ctx):
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return nil, fmt.Errorf("leaf %s: EndgameBegun never closed", c)
		}
		if !Endgame(ctx) {
			return nil, fmt.Errorf("leaf %s: EndgameBegun closed, Endgame false", c)
		}
		return s.Get(ctx, c)
	})
	if !bytes.Equal(fetchBytes(t, root, g, FetchOptions{Window: 8}), data) {
		t.Fatal("fetch differs from the input")
	}
	if rootSaw.Load() != 1 {
		t.Fatalf("the root's Get saw Endgame %v, want false", rootSaw.Load() == 2)
	}

	// A one-block file's block is all its fetch asks for.
	small := randomBytes(DefaultChunkSize/2, 9)
	one, s1 := importBytes(t, small, ImportOptions{})
	saw := false
	g1 := getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
		saw = Endgame(ctx)
		return s1.Get(ctx, c)
	})
	if !bytes.Equal(fetchBytes(t, one, g1, FetchOptions{}), small) {
		t.Fatal("one-block fetch differs from the input")
	}
	if !saw {
		t.Fatal("the only block of a one-block file was fetched with Endgame false")
	}
}

// internalCIDs lists the dag-pb nodes of a DAG.
func internalCIDs(t *testing.T, s *memStore, root cid.Cid) []cid.Cid {
	t.Helper()
	data, err := s.Get(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	n, err := decodeFileNode(data)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []cid.Cid{root}
	for _, c := range n.links {
		if c.Type() == cid.DagProtobuf {
			nodes = append(nodes, internalCIDs(t, s, c)...)
		}
	}
	return nodes
}

// failAfter lets the first k gets through and fails the rest.
func failAfter(s *memStore, k int64) (Getter, *sync.Map) {
	var n atomic.Int64
	var served sync.Map // CID key -> true: blocks handed to Fetch
	return getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
		if n.Add(1) > k {
			return nil, errors.New("link down")
		}
		data, err := s.Get(ctx, c)
		if err == nil {
			served.Store(c.KeyString(), true)
		}
		return data, err
	}), &served
}

func TestResume(t *testing.T) {
	// 600 leaves of 4 KiB: four internal nodes under a root.
	const chunk = 4 << 10
	data := randomBytes(600*chunk, 3)
	root, s := importBytes(t, data, ImportOptions{ChunkSize: chunk})
	leaves := leafCIDs(t, s, root)
	internal := internalCIDs(t, s, root)
	if len(internal) != 5 {
		t.Fatalf("%d internal nodes, want a root and 4 below it", len(internal))
	}

	for _, interrupt := range []string{"getter fails", "context canceled"} {
		t.Run(interrupt, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			nodes := newMemStore()

			var get Getter
			var served *sync.Map
			ctx := context.Background()
			if interrupt == "getter fails" {
				get, served = failAfter(s, 250)
			} else {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				var n atomic.Int64
				served = new(sync.Map)
				get = getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
					if n.Add(1) == 300 {
						cancel()
					}
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					data, err := s.Get(ctx, c)
					served.Store(c.KeyString(), true)
					return data, err
				})
			}
			if err := Fetch(ctx, root, get, ToWriterAt(f), FetchOptions{Nodes: nodes}); err == nil {
				t.Fatal("interrupted fetch succeeded")
			}

			s.resetCounts()
			if err := Fetch(context.Background(), root, s, ToWriterAt(f), FetchOptions{Nodes: nodes}); err != nil {
				t.Fatalf("resumed fetch: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("resumed file differs from the input")
			}
			var before, leavesBefore int
			for i, c := range append(leaves, internal...) {
				if _, ok := served.Load(c.KeyString()); ok {
					before++
					if i < len(leaves) {
						leavesBefore++
					}
					if n := s.getCount(c); n != 0 {
						t.Errorf("block %s, fetched before the interruption, fetched again %d times", c, n)
					}
				}
			}
			if leavesBefore < 100 {
				t.Errorf("only %d leaves fetched before the interruption; the test proves little", leavesBefore)
			}
			if want := len(leaves) + len(internal) - before; s.totalGets() != want {
				t.Errorf("resume made %d gets, want %d (only blocks not fetched before)", s.totalGets(), want)
			}

			// A third fetch finds everything in place and asks for nothing.
			s.resetCounts()
			if err := Fetch(context.Background(), root, s, ToWriterAt(f), FetchOptions{Nodes: nodes}); err != nil {
				t.Fatal(err)
			}
			if gets := s.totalGets(); gets != 0 {
				t.Errorf("fetch of a complete file made %d gets", gets)
			}
		})
	}
}

func TestResumeIgnoresStaleBytes(t *testing.T) {
	data := randomBytes(20*DefaultChunkSize+7, 4)
	root, s := importBytes(t, data, ImportOptions{})
	path := filepath.Join(t.TempDir(), "out")
	// An old, longer file with the right first half and garbage after it.
	old := append(bytes.Clone(data[:10*DefaultChunkSize]), randomBytes(len(data), 5)...)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Fetch(context.Background(), root, s, ToWriterAt(f), FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("file is %d bytes and differs from the %d input bytes", len(got), len(data))
	}
	// The root and the 11 leaves that were not in place.
	if gets := s.totalGets(); gets != 1+11 {
		t.Errorf("made %d gets, want 12", gets)
	}
}

// slowStore delays every call a little so that many are in flight at once.
func slowStore(s *memStore) *memStore {
	s.hook = func(ctx context.Context, _ cid.Cid) error {
		select {
		case <-time.After(200 * time.Microsecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s
}

func TestConcurrencyLimits(t *testing.T) {
	data := randomBytes(300*(4<<10), 6)
	for _, limit := range []int{1, 5} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			s := slowStore(newMemStore())
			root, err := Import(context.Background(), bytes.NewReader(data), s, ImportOptions{ChunkSize: 4 << 10, Parallelism: limit})
			if err != nil {
				t.Fatal(err)
			}
			if m := s.maxInFlight.Load(); m > int64(limit) || (limit > 1 && m < 2) {
				t.Errorf("import: %d puts in flight at most, limit %d", m, limit)
			}
			if n := s.inFlight.Load(); n != 0 {
				t.Errorf("import returned with %d puts in flight", n)
			}
			for _, stream := range []bool{false, true} {
				s.resetCounts()
				var got []byte
				if stream {
					got = fetchStream(t, root, s, FetchOptions{Window: limit})
				} else {
					got = fetchBytes(t, root, s, FetchOptions{Window: limit})
				}
				if !bytes.Equal(got, data) {
					t.Fatal("fetched bytes differ from the input")
				}
				if m := s.maxInFlight.Load(); m > int64(limit) || (limit > 1 && m < 2) {
					t.Errorf("fetch (stream %v): %d gets in flight at most, window %d", stream, m, limit)
				}
			}
		})
	}
}

// TestOrderedOutputReorders makes leaves arrive in reverse order within
// each window, so the ordered writer must hold them back, and checks it
// never holds more than the window.
func TestOrderedOutputReorders(t *testing.T) {
	const window = 8
	data := randomBytes(100*(1<<10)+3, 7)
	root, s := importBytes(t, data, ImportOptions{ChunkSize: 1 << 10})
	leaves := leafCIDs(t, s, root)
	index := make(map[string]int)
	for i, c := range leaves {
		index[c.KeyString()] = i
	}
	// Leaf i waits until leaf i+1 of the same group of `window` returned.
	done := make([]chan struct{}, len(leaves)+1)
	for i := range done {
		done[i] = make(chan struct{})
	}
	get := getterFunc(func(ctx context.Context, c cid.Cid) ([]byte, error) {
		i, ok := index[c.KeyString()]
		if !ok {
			return s.Get(ctx, c)
		}
		if (i+1)%window != 0 && i+1 < len(leaves) {
			select {
			case <-done[i+1]:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		defer close(done[i])
		return s.Get(ctx, c)
	})
	w := &trackingWriter{}
	if err := Fetch(context.Background(), root, get, ToWriter(w), FetchOptions{Window: window}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf.Bytes(), data) {
		t.Fatal("ordered output differs from the input")
	}
	if w.writes != len(leaves) {
		t.Errorf("%d writes, want one per leaf (%d)", w.writes, len(leaves))
	}
}

// trackingWriter is a non-seekable writer that counts writes.
type trackingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *trackingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func TestOrderedOutputWriteError(t *testing.T) {
	data := randomBytes(50*(1<<10), 8)
	root, s := importBytes(t, data, ImportOptions{ChunkSize: 1 << 10})
	errFull := errors.New("disk full")
	err := Fetch(context.Background(), root, s, ToWriter(failingWriter{errFull}), FetchOptions{Window: 4})
	if !errors.Is(err, errFull) {
		t.Fatalf("err = %v, want %v", err, errFull)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestImportPutFailure(t *testing.T) {
	s := slowStore(newMemStore())
	errDown := errors.New("ring unreachable")
	var n atomic.Int64
	inner := s.hook
	s.hook = func(ctx context.Context, c cid.Cid) error {
		if n.Add(1) == 20 {
			return errDown
		}
		return inner(ctx, c)
	}
	_, err := Import(context.Background(), bytes.NewReader(randomBytes(200*(1<<10), 9)), s, ImportOptions{ChunkSize: 1 << 10, Parallelism: 4})
	if !errors.Is(err, errDown) || !strings.Contains(err.Error(), "put bafk") {
		t.Fatalf("err = %v, want %v naming the block", err, errDown)
	}
	if left := s.inFlight.Load(); left != 0 {
		t.Errorf("Import returned with %d puts still running", left)
	}
	if puts := n.Load(); puts > 20+4 {
		t.Errorf("%d puts started; the failure should stop the import soon after put 20", puts)
	}
}

func TestImportReadFailure(t *testing.T) {
	errRead := errors.New("input gone")
	r := io.MultiReader(bytes.NewReader(randomBytes(5*(1<<10), 10)), iotestErrReader{errRead})
	s := slowStore(newMemStore())
	if _, err := Import(context.Background(), r, s, ImportOptions{ChunkSize: 1 << 10}); !errors.Is(err, errRead) {
		t.Fatalf("err = %v, want %v", err, errRead)
	}
	if left := s.inFlight.Load(); left != 0 {
		t.Errorf("Import returned with %d puts still running", left)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestImportOptionsValidated(t *testing.T) {
	for _, opts := range []ImportOptions{{ChunkSize: -1}, {ChunkSize: 4 << 20}, {Parallelism: -2}} {
		if _, err := Import(context.Background(), strings.NewReader("x"), newMemStore(), opts); err == nil {
			t.Errorf("Import with %+v succeeded", opts)
		}
	}
	for _, opts := range []FetchOptions{{Window: -1}, {Attempts: -1}} {
		c, _ := cid.Decode(helloChordCID)
		if err := Fetch(context.Background(), c, newMemStore(), ToWriter(io.Discard), opts); err == nil {
			t.Errorf("Fetch with %+v succeeded", opts)
		}
	}
	c, _ := cid.Decode(helloChordCID)
	if err := Fetch(context.Background(), c, newMemStore(), Output{}, FetchOptions{}); err == nil {
		t.Error("Fetch to the zero Output succeeded")
	}
}

// putNode stores a dag-pb node with a CIDv1 and returns its CID.
func putNode(t *testing.T, s *memStore, n *merkledag.ProtoNode) cid.Cid {
	t.Helper()
	if err := n.SetCidBuilder(cidBuilder); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), n.Cid(), n.RawData()); err != nil {
		t.Fatal(err)
	}
	return n.Cid()
}

func TestFetchRejectsNonFiles(t *testing.T) {
	s := newMemStore()
	symlink, err := unixfs.SymlinkData("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*merkledag.ProtoNode{
		"directory": unixfs.EmptyDirNode(),
		"symlink":   merkledag.NodeWithData(symlink),
	} {
		c := putNode(t, s, n)
		err := Fetch(context.Background(), c, s, ToWriter(io.Discard), FetchOptions{})
		if !errors.Is(err, ErrNotFile) || !strings.Contains(strings.ToLower(err.Error()), name) {
			t.Errorf("%s: err = %v, want ErrNotFile naming it", name, err)
		}
	}
	// A CID whose codec is neither raw nor dag-pb.
	c := cid.NewCidV1(cid.DagCBOR, putNode(t, s, unixfs.EmptyFileNode()).Hash())
	if err := Fetch(context.Background(), c, s, ToWriter(io.Discard), FetchOptions{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("dag-cbor root: err = %v, want ErrMalformed", err)
	}
}

// fileNodeOf builds a UnixFS file node over children with the given sizes.
func fileNodeOf(t *testing.T, s *memStore, data []byte, links []cid.Cid, sizes []uint64) cid.Cid {
	t.Helper()
	fs := unixfs.NewFSNode(unixfs.TFile)
	fs.SetData(data)
	for _, sz := range sizes {
		fs.AddBlockSize(sz)
	}
	b, err := fs.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	n := merkledag.NodeWithData(b)
	for _, c := range links {
		if err := n.AddRawLink("", &format.Link{Cid: c}); err != nil {
			t.Fatal(err)
		}
	}
	return putNode(t, s, n)
}

func TestFetchRejectsMalformedDAGs(t *testing.T) {
	leaf, s := importBytes(t, []byte("hello chord\n"), ImportOptions{})
	cases := map[string]cid.Cid{
		// The parent claims 5 bytes under a 12-byte leaf.
		"leaf size disagrees": fileNodeOf(t, s, nil, []cid.Cid{leaf}, []uint64{5}),
		// A raw leaf too large to be a block.
		"oversized raw leaf": fileNodeOf(t, s, nil, []cid.Cid{leaf}, []uint64{MaxBlockSize + 1}),
		// Two links, one block size.
		"links and sizes differ": fileNodeOf(t, s, nil, []cid.Cid{leaf, leaf}, []uint64{12}),
	}
	// A chain of one-child nodes deeper than the walker goes.
	deep := fileNodeOf(t, s, nil, []cid.Cid{leaf}, []uint64{12})
	for range maxDepth {
		deep = fileNodeOf(t, s, nil, []cid.Cid{deep}, []uint64{12})
	}
	cases["too deep"] = deep
	// An internal node whose own size disagrees with what its parent says.
	inner := fileNodeOf(t, s, nil, []cid.Cid{leaf}, []uint64{12})
	cases["child size disagrees"] = fileNodeOf(t, s, nil, []cid.Cid{inner}, []uint64{13})
	for name, root := range cases {
		err := Fetch(context.Background(), root, s, ToWriterAt(&memFile{}), FetchOptions{})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// TestFetchDagPBLeaves fetches a DAG in the older layout, with dag-pb
// leaves and data inline in nodes, as kubo makes without --raw-leaves.
func TestFetchDagPBLeaves(t *testing.T) {
	s := newMemStore()
	a := fileNodeOf(t, s, []byte("hello "), nil, nil)
	b := fileNodeOf(t, s, []byte("chord"), nil, nil)
	root := fileNodeOf(t, s, []byte(">"), []cid.Cid{a, b}, []uint64{6, 5})
	if got := string(fetchBytes(t, root, s, FetchOptions{})); got != ">hello chord" {
		t.Errorf("fetch to WriterAt = %q", got)
	}
	if got := string(fetchStream(t, root, s, FetchOptions{Window: 1})); got != ">hello chord" {
		t.Errorf("fetch to Writer = %q", got)
	}
}

// aheadReader fails the test if the importer reads more than limit bytes
// ahead of the file bytes whose puts have completed.
type aheadReader struct {
	t         *testing.T
	r         io.Reader
	read      int64
	completed *atomic.Int64
	limit     int64
}

func (a *aheadReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	a.read += int64(n)
	if ahead := a.read - a.completed.Load(); ahead > a.limit {
		a.t.Errorf("read %d bytes ahead of completed puts, limit %d", ahead, a.limit)
	}
	return n, err
}

// TestImportStreams checks that Import pipelines: with slow puts, it reads
// only as far as the chunks in flight plus the one or two the importer
// holds, never the whole file.
func TestImportStreams(t *testing.T) {
	const chunk, parallelism = 4 << 10, 4
	data := randomBytes(300*chunk, 12)
	var completed atomic.Int64
	s := slowStore(newMemStore())
	slow := s.hook
	s.hook = func(ctx context.Context, c cid.Cid) error {
		err := slow(ctx, c)
		if c.Type() == cid.Raw {
			// Counted before the put returns, which is conservative:
			// the importer cannot use this slot yet.
			completed.Add(chunk)
		}
		return err
	}
	r := &aheadReader{t: t, r: bytes.NewReader(data), completed: &completed, limit: (parallelism + 2) * chunk}
	root, err := Import(context.Background(), r, s, ImportOptions{ChunkSize: chunk, Parallelism: parallelism})
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equals(refRoot(data, chunk)) {
		t.Fatal("root differs from the reference")
	}
}

// copyingGetter hands out a fresh copy of each block, as a pooled Getter
// would, and records which buffers it gave.
type copyingGetter struct {
	s     *memStore
	mu    sync.Mutex
	given map[*byte]bool
}

func (g *copyingGetter) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	data, err := g.s.Get(ctx, c)
	if err != nil || len(data) == 0 {
		return data, err
	}
	cp := bytes.Clone(data)
	g.mu.Lock()
	g.given[&cp[0]] = true
	g.mu.Unlock()
	return cp, nil
}

// Release receives every raw leaf once, after it is written, whichever the
// output; scribbling over a released buffer does not change the output.
func TestReleaseGetsEachLeafOnceWritten(t *testing.T) {
	data := randomBytes(40*DefaultChunkSize+123, 7)
	root, s := importBytes(t, data, ImportOptions{})
	leaves := len(leafCIDs(t, s, root))
	for _, ordered := range []bool{false, true} {
		g := &copyingGetter{s: s, given: map[*byte]bool{}}
		var mu sync.Mutex
		released := map[*byte]int{}
		opts := FetchOptions{Window: 5, Release: func(b []byte) {
			mu.Lock()
			defer mu.Unlock()
			released[&b[0]]++
			clear(b) // the pool would reuse it at once
		}}
		var got []byte
		if ordered {
			got = fetchStream(t, root, g, opts)
		} else {
			got = fetchBytes(t, root, g, opts)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("ordered=%v: output differs from the input", ordered)
		}
		if len(released) != leaves {
			t.Errorf("ordered=%v: %d buffers released, want %d leaves", ordered, len(released), leaves)
		}
		for b, n := range released {
			if n != 1 || !g.given[b] {
				t.Errorf("ordered=%v: a buffer released %d times, given by the getter: %v", ordered, n, g.given[b])
			}
		}
	}
}

// Import lends raw leaves to a LendingPutter and reuses a chunk's buffer
// only once the putter is done with it.
func TestImportLendsChunks(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(40*DefaultChunkSize+1234, 21)
	want, _ := importBytes(t, data, ImportOptions{})

	held := &lendingStore{memStore: newMemStore()}
	root, err := Import(ctx, bytes.NewReader(data), held, ImportOptions{})
	if err != nil || root != want {
		t.Fatalf("import: %s, %v; want %s", root, err, want)
	}
	// Nothing was handed back, so every block still holds its bytes.
	held.mu.Lock()
	leaves := len(held.dones)
	held.mu.Unlock()
	if leaves != 41 {
		t.Errorf("%d leaves lent, want 41", leaves)
	}
	for k, b := range held.blocks {
		c, _ := cid.Cast([]byte(k))
		if err := verify(c, b); err != nil {
			t.Fatalf("block %s changed while lent: %v", c, err)
		}
	}
	for _, done := range held.dones {
		done()
	}

	// Buffers handed back at once are reused for later chunks, and the
	// file is still what was shared.
	s := &lendingStore{memStore: newMemStore(), copyAndRelease: true}
	other := randomBytes(40*DefaultChunkSize+99, 22)
	root, err = Import(ctx, bytes.NewReader(other), s, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchBytes(t, root, s, FetchOptions{}); !bytes.Equal(got, other) {
		t.Fatal("fetched bytes differ from the imported ones")
	}
}

// locatingGetter records which blocks were located and fails a Get for
// one that was not.
type locatingGetter struct {
	s       *memStore
	mu      sync.Mutex
	located map[cid.Cid]bool
	calls   int
}

func (g *locatingGetter) locate(ctx context.Context, cids []cid.Cid) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	for _, c := range cids {
		g.located[c] = true
	}
}

func (g *locatingGetter) Get(ctx context.Context, c cid.Cid) ([]byte, error) {
	g.mu.Lock()
	ok := g.located[c]
	g.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %s before it was located", c)
	}
	return g.s.Get(ctx, c)
}

// Locate is handed every internal node's links before any of them is
// asked for: each block but the root is located ahead of its Get.
func TestFetchLocatesAhead(t *testing.T) {
	data := randomBytes((174*174+1)*256+3, 3) // three levels of 256 B chunks
	root, s := importBytes(t, data, ImportOptions{ChunkSize: 256})
	g := &locatingGetter{s: s, located: map[cid.Cid]bool{root: true}}
	got := fetchBytes(t, root, g, FetchOptions{Window: 9, Locate: g.locate})
	if !bytes.Equal(got, data) {
		t.Fatal("output differs from the input")
	}
	// The root, its 2 children and their 174 + 1 children have links.
	if g.calls != 1+2+175 {
		t.Errorf("Locate called %d times, want once per internal node (178)", g.calls)
	}
}
