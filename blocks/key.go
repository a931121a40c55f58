package blocks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"github.com/ipfs/go-cid"
)

// Key is a block's position on the ring: SHA-256 of its CID's multihash
// bytes, big-endian. The codec is left out on purpose, so the raw and dag-pb
// CIDs of the same bytes share a key and land on the same peers (kubo keys
// its blockstore by multihash for the same reason).
type Key [32]byte

// KeyOf is the ring key of c.
func KeyOf(c cid.Cid) Key { return sha256.Sum256(c.Hash()) }

// Cmp orders keys as unsigned 256-bit integers: -1, 0 or +1.
func (k Key) Cmp(o Key) int { return bytes.Compare(k[:], o[:]) }

// String is the whole key in hex: a key in a log or an error must name one
// block unambiguously.
func (k Key) String() string { return hex.EncodeToString(k[:]) }
