package share

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/ipfs/boxo/ipld/merkledag"
	unixfs "github.com/ipfs/boxo/ipld/unixfs"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	cid "github.com/ipfs/go-cid"
)

// fileNode is a verified dag-pb block read as part of a UnixFS file: its own
// bytes come first in its range, then each child's, in link order.
type fileNode struct {
	data  []byte
	links []cid.Cid
	sizes []uint64 // sizes[i]: file bytes under links[i]
	size  uint64   // len(data) + sum(sizes)
}

// decodeFileNode reads a dag-pb block as a UnixFS file node. The bytes come
// from the network: a hash match proves only that someone made this block,
// not that it is sane, so every count and size is checked before the walker
// relies on it.
func decodeFileNode(raw []byte) (*fileNode, error) {
	if len(raw) > MaxBlockSize {
		return nil, fmt.Errorf("%w: node of %d bytes, over the %d byte block limit", ErrMalformed, len(raw), MaxBlockSize)
	}
	pn, err := merkledag.DecodeProtobuf(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	fs, err := unixfs.FromBytes(pn.Data())
	if err != nil {
		return nil, fmt.Errorf("%w: UnixFS data: %w", ErrMalformed, err)
	}
	switch t := fs.GetType(); t {
	case unixfspb.Data_File, unixfspb.Data_Raw:
	default:
		return nil, fmt.Errorf("%w: it is a UnixFS %s", ErrNotFile, strings.ToLower(t.String()))
	}
	links := pn.Links()
	if len(links) > maxLinks {
		return nil, fmt.Errorf("%w: %d links, more than %d", ErrMalformed, len(links), maxLinks)
	}
	if len(links) != len(fs.Blocksizes) {
		return nil, fmt.Errorf("%w: %d links but %d block sizes", ErrMalformed, len(links), len(fs.Blocksizes))
	}
	n := &fileNode{
		data:  fs.Data,
		links: make([]cid.Cid, len(links)),
		sizes: fs.Blocksizes,
		size:  uint64(len(fs.Data)),
	}
	for i, l := range links {
		if err := checkCID(l.Cid); err != nil {
			return nil, fmt.Errorf("link %d: %w", i, err)
		}
		n.links[i] = l.Cid
		var carry uint64
		n.size, carry = bits.Add64(n.size, n.sizes[i], 0)
		if carry != 0 || n.size > maxFileSize {
			return nil, fmt.Errorf("%w: block sizes add up past %d bytes", ErrMalformed, uint64(maxFileSize))
		}
	}
	// kubo always writes Filesize; where it is present it must agree with
	// the parts, or offsets computed from one would disagree with the other.
	if fs.Filesize != nil && *fs.Filesize != n.size {
		return nil, fmt.Errorf("%w: file size %d, but its parts add up to %d", ErrMalformed, *fs.Filesize, n.size)
	}
	return n, nil
}
