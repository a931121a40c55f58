package share

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	cid "github.com/ipfs/go-cid"
	multihash "github.com/multiformats/go-multihash"
)

// This file computes root CIDs a second way, without boxo: the balanced
// layout and the dag-pb / UnixFS encodings written out by hand from the
// specs, hashed with crypto/sha256. Import agreeing with it on DAGs of one,
// two and three levels is the cross-check that Import's root is the one
// `ipfs add --cid-version=1 --raw-leaves` gives, beyond the two published
// one-block vectors.

// refBlock is a block of the reference DAG: its CID, and the Tsize a link
// to it carries (its own bytes plus everything below it).
type refBlock struct {
	c     cid.Cid
	tsize uint64
	fsize uint64 // file bytes under it
}

func refCID(codec uint64, block []byte) cid.Cid {
	sum := sha256.Sum256(block)
	mh, err := multihash.Encode(sum[:], multihash.SHA2_256)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(codec, mh)
}

func appendVarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// appendField appends a protobuf length-delimited field.
func appendField(b []byte, field int, data []byte) []byte {
	b = appendVarint(b, uint64(field<<3|2))
	b = appendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// refInternal encodes a dag-pb node holding a UnixFS File with no data of
// its own. dag-pb's canonical form puts Links (field 2) before Data (field
// 1); go's encoder writes the empty Name of each link.
func refInternal(children []refBlock) refBlock {
	var unixfs []byte
	unixfs = append(unixfs, 1<<3|0, 2) // Type = File
	var fsize, tsize uint64
	for _, ch := range children {
		fsize += ch.fsize
	}
	unixfs = appendVarint(append(unixfs, 3<<3|0), fsize) // filesize
	for _, ch := range children {
		unixfs = appendVarint(append(unixfs, 4<<3|0), ch.fsize) // blocksizes
	}
	var node []byte
	for _, ch := range children {
		var link []byte
		link = appendField(link, 1, ch.c.Bytes())           // Hash
		link = appendField(link, 2, nil)                    // Name ""
		link = appendVarint(append(link, 3<<3|0), ch.tsize) // Tsize
		node = appendField(node, 2, link)
		tsize += ch.tsize
	}
	node = appendField(node, 1, unixfs)
	return refBlock{c: refCID(cid.DagProtobuf, node), tsize: tsize + uint64(len(node)), fsize: fsize}
}

// refRoot is the root of the balanced DAG of data in chunk-byte raw leaves
// with 174 links per node: the smallest complete 174-ary tree that holds all
// leaves, filled left to right, where every subtree below the root keeps its
// full depth even if it holds a single leaf.
func refRoot(data []byte, chunk int) cid.Cid {
	var leaves []refBlock
	for off := 0; off < len(data) || off == 0; off += chunk {
		end := min(off+chunk, len(data))
		leaves = append(leaves, refBlock{
			c:     refCID(cid.Raw, data[off:end]),
			tsize: uint64(end - off),
			fsize: uint64(end - off),
		})
	}
	if len(leaves) == 1 {
		return leaves[0].c
	}
	const fanout = 174
	depth, capacity := 1, fanout
	for capacity < len(leaves) {
		depth++
		capacity *= fanout
	}
	var build func(leaves []refBlock, depth, capacity int) refBlock
	build = func(leaves []refBlock, depth, capacity int) refBlock {
		if depth == 0 {
			return leaves[0]
		}
		sub := capacity / fanout
		var children []refBlock
		for start := 0; start < len(leaves); start += sub {
			children = append(children, build(leaves[start:min(start+sub, len(leaves))], depth-1, sub))
		}
		return refInternal(children)
	}
	return build(leaves, depth, capacity).c
}

func TestRootMatchesReferenceEncoder(t *testing.T) {
	const chunk = 256
	cases := []struct {
		name   string
		chunks int
		tail   int // bytes in a last, partial chunk
	}{
		{"one chunk", 1, 0},
		{"two chunks", 2, 0},
		{"one level full", 174, 0},
		{"two levels", 175, 0},
		{"two levels with tail", 400, 100},
		{"two levels full", 174 * 174, 0},
		{"three levels", 174*174 + 1, 17},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.chunks*chunk+tc.tail, uint64(i))
			root, _ := importBytes(t, data, ImportOptions{ChunkSize: chunk})
			if want := refRoot(data, chunk); !root.Equals(want) {
				t.Fatalf("Import root %s, reference encoder %s", root, want)
			}
		})
	}
}

func TestReferenceEncoderKnownVectors(t *testing.T) {
	// The published one-block vectors pin the reference encoder's CID
	// construction, so agreement with Import above is not two shared bugs.
	for data, want := range map[string]string{
		"hello chord\n": helloChordCID,
		"":              emptyFileCID,
	} {
		if got := refRoot([]byte(data), DefaultChunkSize); got.String() != want {
			t.Errorf("reference root of %q = %s, want %s", data, got, want)
		}
	}
}
