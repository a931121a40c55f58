// Package share turns files into content-addressed blocks and back.
//
// Import cuts a stream into a UnixFS DAG exactly as
// `ipfs add --cid-version=1 --raw-leaves` does (boxo's balanced importer,
// 256 KiB chunks, raw leaves, CIDv1), handing every block to a Putter with a
// bounded number of puts in flight. Fetch walks such a DAG from its root
// through a Getter, verifies every block against its CID, and writes the file
// either at offsets (resuming a partial file) or in order to a stream.
//
// share never touches the network: peer supplies a Getter and Putter backed
// by the ring, and tests use a map.
package share

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	cid "github.com/ipfs/go-cid"
	multihash "github.com/multiformats/go-multihash"
)

// Putter stores a block under its CID. Import calls it from several
// goroutines at once; it may be slow (it replicates to the ring). Its
// error need not name the block: Import's does ("put CID: ...").
type Putter interface {
	Put(ctx context.Context, c cid.Cid, data []byte) error
}

// LendingPutter is a Putter that may go on using a block's bytes after Put
// returns (peer's node completes the last replica write in the
// background). PutLent calls done once, when it will not touch data again,
// whatever the outcome; Import then reuses the chunk's buffer for a later
// chunk instead of allocating one per block.
type LendingPutter interface {
	Putter
	PutLent(ctx context.Context, c cid.Cid, data []byte, done func()) error
}

// Getter returns the bytes claimed to be block c. share verifies them: a
// Getter need not (but peer's tries another replica on a mismatch anyway).
type Getter interface {
	Get(ctx context.Context, c cid.Cid) ([]byte, error)
}

const (
	// DefaultChunkSize is kubo's default, so root CIDs match `ipfs add`.
	DefaultChunkSize = 256 << 10
	// MaxBlockSize caps every block share makes or accepts: the block
	// protocol's limit (DESIGN.md), which is also bitswap's.
	MaxBlockSize = 2 << 20
	// DefaultPutParallelism is how many puts Import keeps in flight: enough
	// to cover replication round trips, small enough that the chunks held
	// (16 × 256 KiB) stay a few MiB.
	DefaultPutParallelism = 16
	// DefaultWindow is how many blocks Fetch keeps in flight: 8 MiB of
	// 256 KiB leaves, which fills a 100 Mbit/s link at ~600 ms round trips.
	DefaultWindow = 32
	// DefaultAttempts is how many times Fetch asks the Getter for a block
	// whose bytes did not match its CID before giving up.
	DefaultAttempts = 3

	// maxLinks bounds the children of one fetched node. Importers use 174
	// (balanced, trickle); 2 MiB of minimal links holds about 50k, so
	// anything past this is hostile or broken, and refusing it bounds what
	// one node costs to decode and walk.
	maxLinks = 8192
	// maxDepth bounds the walk of a DAG. A balanced DAG of 2^63 bytes in
	// 256 KiB leaves is 8 levels deep; deeper trees come from chains of
	// one-child nodes built to exhaust the walker's stack.
	maxDepth = 32
	// maxFileSize keeps offsets within int64, which io.WriterAt takes.
	maxFileSize = 1 << 62
)

var (
	// ErrMismatch: the Getter kept returning bytes that do not hash to the
	// requested CID.
	ErrMismatch = errors.New("block does not match its CID")
	// ErrNotFile: the root is UnixFS but not a file (a directory, a
	// symlink, ...).
	ErrNotFile = errors.New("not a UnixFS file")
	// ErrMalformed: a block decoded but breaks UnixFS's rules or share's
	// bounds (sizes that do not add up, too many links, too deep, an
	// unsupported codec or hash).
	ErrMalformed = errors.New("malformed DAG")
)

// cidBuilder makes the CIDs `ipfs add --cid-version=1` makes: dag-pb for
// internal nodes (raw for leaves via WithCodec), SHA-256.
var cidBuilder = cid.V1Builder{Codec: cid.DagProtobuf, MhType: multihash.SHA2_256}

// checkCID refuses CIDs that Fetch cannot verify meaningfully: codecs other
// than the two UnixFS uses, and hash functions that are not
// collision-resistant (identity, murmur, ...), under which "verified" would
// mean nothing.
func checkCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("%w: undefined CID", ErrMalformed)
	}
	p := c.Prefix()
	switch p.Codec {
	case cid.Raw, cid.DagProtobuf:
	default:
		return fmt.Errorf("%w: %s: codec 0x%x is neither raw nor dag-pb", ErrMalformed, c, p.Codec)
	}
	switch p.MhType {
	case multihash.SHA2_256, multihash.SHA2_512, multihash.SHA3_256, multihash.SHA3_512,
		multihash.BLAKE2B_MIN + 31, multihash.BLAKE3:
	default:
		return fmt.Errorf("%w: %s: hash function 0x%x is not accepted", ErrMalformed, c, p.MhType)
	}
	return nil
}

// verify reports whether data is block c.
func verify(c cid.Cid, data []byte) error {
	if len(data) > MaxBlockSize {
		return fmt.Errorf("%w: %d bytes, over the %d byte block limit", ErrMismatch, len(data), MaxBlockSize)
	}
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return fmt.Errorf("hash %s: %w", c, err)
	}
	if !bytes.Equal(got.Hash(), c.Hash()) {
		return ErrMismatch
	}
	return nil
}
