package share

import (
	"context"
	"io"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	unixfs "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
)

// fuzzSeeds are real nodes: an internal node of an imported file, an empty
// file, a directory, a node with inline data, and some near-misses.
func fuzzSeeds(f *testing.F) {
	root, s := importBytes(f, randomBytes(5*1024+1, 11), ImportOptions{ChunkSize: 1024})
	data, err := s.Get(context.Background(), root)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(unixfs.EmptyFileNode().RawData())
	f.Add(unixfs.EmptyDirNode().RawData())
	f.Add(merkledag.NodeWithData(unixfs.FilePBData([]byte("inline"), 6)).RawData())
	f.Add(data[:len(data)/2])
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
}

// FuzzDecodeFileNode: decoding a fetched node never panics, and a node it
// accepts is one the walker can trust.
func FuzzDecodeFileNode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := decodeFileNode(raw)
		if err != nil {
			return
		}
		if len(n.links) != len(n.sizes) || len(n.links) > maxLinks {
			t.Fatalf("%d links, %d sizes", len(n.links), len(n.sizes))
		}
		sum := uint64(len(n.data))
		for i, s := range n.sizes {
			sum += s
			if err := checkCID(n.links[i]); err != nil {
				t.Fatalf("accepted link %d: %v", i, err)
			}
		}
		if sum != n.size || n.size > maxFileSize {
			t.Fatalf("size %d, parts add up to %d", n.size, sum)
		}
	})
}

// FuzzFetchRoot: Fetch of a root made of arbitrary bytes (hashed, so it
// verifies) fails cleanly or succeeds, and never panics or hangs; its
// children are not found.
func FuzzFetchRoot(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		root, err := cidBuilder.Sum(raw)
		if err != nil {
			t.Fatal(err)
		}
		get := getterFunc(func(_ context.Context, c cid.Cid) ([]byte, error) {
			if c.Equals(root) {
				return raw, nil
			}
			return nil, errNotFound
		})
		for _, out := range []Output{ToWriterAt(&memFile{}), ToWriter(io.Discard)} {
			_ = Fetch(context.Background(), root, get, out, FetchOptions{Window: 4})
		}
	})
}
