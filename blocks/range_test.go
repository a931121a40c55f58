package blocks

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
)

var ring = new(big.Int).Lsh(big.NewInt(1), 256)

func toInt(k Key) *big.Int { return new(big.Int).SetBytes(k[:]) }

func fromInt(x *big.Int) Key {
	var k Key
	new(big.Int).Mod(x, ring).FillBytes(k[:])
	return k
}

// clockwise is how far one goes clockwise from a, not standing still, to
// reach b: b - a mod 2^256 as 33 big-endian bytes, except that a itself is a
// whole turn, 2^256, away.
func clockwise(a, b Key) [33]byte {
	var d [33]byte
	borrow := 0
	for i := 31; i >= 0; i-- {
		x := int(b[i]) - int(a[i]) - borrow
		borrow = 0
		if x < 0 {
			x += 256
			borrow = 1
		}
		d[i+1] = byte(x)
	}
	if a == b {
		d[0] = 1
	}
	return d
}

// modelRange is what Range must report, by brute force on distances: the
// keys k with d(from, k) <= d(from, to), sorted by d(from, k). So (from, to]
// is the whole circle when from == to, ending with from, as in chord's
// BetweenRightIncl.
func modelRange(keys []Key, from, to Key) []Key {
	span := clockwise(from, to)
	var in []Key
	for _, k := range keys {
		if d := clockwise(from, k); bytes.Compare(d[:], span[:]) <= 0 {
			in = append(in, k)
		}
	}
	slices.SortFunc(in, func(a, b Key) int {
		da, db := clockwise(from, a), clockwise(from, b)
		return bytes.Compare(da[:], db[:])
	})
	return in
}

func TestRangeModel(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	rng := rand.New(rand.NewPCG(21, 22))
	var keys []Key
	cids := map[Key]cid.Cid{}
	for range 300 {
		data, c := randBlock(t, rng, 16)
		put(t, s, c, data)
		keys = append(keys, KeyOf(c))
		cids[KeyOf(c)] = c
	}
	// Endpoints that stress the boundaries: random points, stored keys
	// (inclusive at to, exclusive at from), their neighbours, 0 and 2^256-1.
	point := func() Key {
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(6) {
		case 0:
			var r Key
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			return r
		case 1:
			return k
		case 2:
			return fromInt(new(big.Int).Add(toInt(k), big.NewInt(1)))
		case 3:
			return fromInt(new(big.Int).Sub(toInt(k), big.NewInt(1)))
		case 4:
			return Key{}
		default:
			return fromInt(big.NewInt(-1))
		}
	}
	for i := range 1000 {
		from, to := point(), point()
		switch i % 10 {
		case 0:
			to = from // the whole circle
		case 1:
			to = fromInt(new(big.Int).Add(toInt(from), big.NewInt(1))) // one position
		case 2:
			to = fromInt(new(big.Int).Sub(toInt(from), big.NewInt(1))) // all but from
		}
		want := modelRange(keys, from, to)
		limit := len(want) + 1 // no early stop
		if i%3 == 0 && len(want) > 0 {
			limit = rng.IntN(len(want)) + 1
		}
		var got []Key
		s.Range(from, to, func(k Key, c cid.Cid) bool {
			if !c.Equals(cids[k]) {
				t.Fatalf("key %s reported with CID %s, want %s", k, c, cids[k])
			}
			got = append(got, k)
			return len(got) < limit
		})
		if limit <= len(want) {
			want = want[:limit]
		}
		if !slices.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("Range(%s, %s): got %d keys, want %d; first difference at %d", from, to, len(got), len(want), i)
		}
	}
}

func TestRangeEmpty(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	s.Range(Key{}, Key{}, func(Key, cid.Cid) bool {
		t.Fatal("Range of an empty store called fn")
		return false
	})
}

// fn may call the store: Range holds no lock while it runs.
func TestRangeCallbackUsesStore(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	rng := rand.New(rand.NewPCG(23, 24))
	for range 50 {
		data, c := randBlock(t, rng, 100)
		put(t, s, c, data)
	}
	data, extra := randBlock(t, rng, 100)
	s.Range(Key{}, Key{}, func(_ Key, c cid.Cid) bool {
		if err := s.Delete(c); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(extra, data); err != nil {
			t.Fatal(err)
		}
		return true
	})
	// extra was put during the walk, so it may have been listed and deleted.
	if n := s.Stats().Count; n > 1 {
		t.Fatalf("%d blocks left after deleting every listed one", n)
	}
}
