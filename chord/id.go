// Package chord is the Chord ring: identifiers on a 2^256 circle, finger tables,
// successor lists, lookups and the stabilization protocol that keeps them right.
//
// It holds no sockets. Everything it says to another node goes through a
// Transport, and time comes from a Clock, so the same code runs over libp2p
// (package peer), over an in-memory network (MemNet, for unit tests and
// simulations of 10,000+ nodes) and under a test that steps it by hand.
package chord

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/big"
	"math/bits"
)

// Bits is the size of the identifier space: positions are 0 .. 2^Bits-1.
const Bits = 256

// ID is a position on the ring, big-endian.
type ID [32]byte

// KeyID is the ring position of arbitrary bytes (a block's multihash, say).
func KeyID(b []byte) ID { return sha256.Sum256(b) }

// VnodeID is the position of virtual node i of the peer whose identity bytes
// are addr. Vnode 0 sits at SHA-256(addr), as DESIGN.md promises for a peer's
// main position; vnode i>0 at SHA-256(addr || uint32 i). Positions are
// therefore derived, never claimed: a peer cannot pick where it sits.
func VnodeID(addr []byte, i uint32) ID {
	if i == 0 {
		return sha256.Sum256(addr)
	}
	h := sha256.New()
	h.Write(addr)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], i)
	h.Write(n[:])
	var id ID
	h.Sum(id[:0])
	return id
}

// Cmp orders IDs as unsigned 256-bit integers.
func (a ID) Cmp(b ID) int { return bytes.Compare(a[:], b[:]) }

// String is the first 8 bytes in hex, enough to tell nodes apart in logs.
func (a ID) String() string { return hex.EncodeToString(a[:8]) }

// Hex is the whole ID in hex.
func (a ID) Hex() string { return hex.EncodeToString(a[:]) }

// Between reports whether x lies on the open arc (a, b) going clockwise from a.
// When a == b the arc is the whole circle except a.
func Between(a, x, b ID) bool {
	switch a.Cmp(b) {
	case -1:
		return a.Cmp(x) < 0 && x.Cmp(b) < 0
	case 1:
		return a.Cmp(x) < 0 || x.Cmp(b) < 0
	default:
		return x != a
	}
}

// BetweenRightIncl reports whether x lies on the half-open arc (a, b].
// When a == b the arc is the whole circle.
func BetweenRightIncl(a, x, b ID) bool {
	return x == b || Between(a, x, b)
}

// AddPow2 returns a + 2^k mod 2^Bits, the start of finger k.
func (a ID) AddPow2(k int) ID {
	out := a
	byteIdx := len(out) - 1 - k/8
	carry := uint16(1) << (k % 8)
	for i := byteIdx; i >= 0 && carry != 0; i-- {
		s := uint16(out[i]) + carry
		out[i] = byte(s)
		carry = s >> 8
	}
	return out
}

// Distance is the clockwise distance from a to b, as an ID (b - a mod 2^Bits).
func Distance(a, b ID) ID {
	var out ID
	borrow := 0
	for i := len(a) - 1; i >= 0; i-- {
		d := int(b[i]) - int(a[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		out[i] = byte(d)
	}
	return out
}

// Fraction is the ID as a fraction of the circle, for reports and load figures.
func (a ID) Fraction() float64 {
	f, _ := new(big.Float).SetInt(new(big.Int).SetBytes(a[:])).Float64()
	return f / 0x1p256
}

// highBit is the index of the highest set bit of a (bit 0 is the lowest),
// or -1 for zero: the finger interval [2^k, 2^(k+1)) a distance falls in.
func highBit(a ID) int {
	for i, b := range a {
		if b != 0 {
			return (len(a)-1-i)*8 + bits.Len8(b) - 1
		}
	}
	return -1
}
