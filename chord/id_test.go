package chord

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

func idOf(n uint64) ID {
	var id ID
	new(big.Int).SetUint64(n).FillBytes(id[:])
	return id
}

func bigOf(a ID) *big.Int { return new(big.Int).SetBytes(a[:]) }

var ringSize = new(big.Int).Lsh(big.NewInt(1), Bits)

func TestBetweenWrapAround(t *testing.T) {
	max := bigOf(ID{}).Sub(ringSize, big.NewInt(1))
	var top ID
	max.FillBytes(top[:])
	cases := []struct {
		a, x, b ID
		open    bool
		incl    bool
	}{
		{idOf(10), idOf(15), idOf(20), true, true},
		{idOf(10), idOf(20), idOf(20), false, true},
		{idOf(10), idOf(10), idOf(20), false, false},
		{idOf(10), idOf(25), idOf(20), false, false},
		// wrapping arc (top-5, 5): contains top, 0 and 4, not 5 or 100
		{top.AddPow2(0).AddPow2(0), top, idOf(5), false, false}, // a = 1 after wrap: (1, 5)
		{idOf(20), top, idOf(5), true, true},
		{idOf(20), idOf(0), idOf(5), true, true},
		{idOf(20), idOf(5), idOf(5), false, true},
		{idOf(20), idOf(7), idOf(5), false, false},
		// a == b: the whole circle but a (open) / the whole circle (incl)
		{idOf(7), idOf(7), idOf(7), false, true},
		{idOf(7), idOf(8), idOf(7), true, true},
		{idOf(7), top, idOf(7), true, true},
	}
	for i, c := range cases {
		if got := Between(c.a, c.x, c.b); got != c.open {
			t.Errorf("case %d: Between(%s, %s, %s) = %v", i, c.a, c.x, c.b, got)
		}
		if got := BetweenRightIncl(c.a, c.x, c.b); got != c.incl {
			t.Errorf("case %d: BetweenRightIncl(%s, %s, %s) = %v", i, c.a, c.x, c.b, got)
		}
	}
}

// Between must agree with arithmetic on big integers for random points.
func TestBetweenMatchesBigInt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func() ID {
		var id ID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		return id
	}
	for range 10000 {
		a, x, b := rnd(), rnd(), rnd()
		if r.IntN(4) == 0 {
			x = a
		}
		// x in (a, b) iff 0 < (x-a) mod 2^256 < (b-a) mod 2^256, or a == b and x != a.
		dx := new(big.Int).Mod(new(big.Int).Sub(bigOf(x), bigOf(a)), ringSize)
		db := new(big.Int).Mod(new(big.Int).Sub(bigOf(b), bigOf(a)), ringSize)
		want := dx.Sign() > 0 && (db.Sign() == 0 || dx.Cmp(db) < 0)
		if got := Between(a, x, b); got != want {
			t.Fatalf("Between(%x, %x, %x) = %v, want %v", a, x, b, got, want)
		}
		if Distance(a, x) != idFromBig(dx) {
			t.Fatalf("Distance(%x, %x) wrong", a, x)
		}
	}
}

func idFromBig(b *big.Int) ID {
	var id ID
	b.FillBytes(id[:])
	return id
}

func TestAddPow2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		var a ID
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		k := r.IntN(Bits)
		want := new(big.Int).Add(bigOf(a), new(big.Int).Lsh(big.NewInt(1), uint(k)))
		want.Mod(want, ringSize)
		if got := a.AddPow2(k); got != idFromBig(want) {
			t.Fatalf("%x + 2^%d = %x, want %x", a, k, got, idFromBig(want))
		}
	}
	var top ID
	for i := range top {
		top[i] = 0xff
	}
	if top.AddPow2(0) != (ID{}) {
		t.Fatal("2^256-1 + 1 must wrap to 0")
	}
}

func TestVnodeIDsAreDistinctAndStable(t *testing.T) {
	seen := map[ID]bool{}
	for i := uint32(0); i < 64; i++ {
		id := VnodeID([]byte("peer-a"), i)
		if seen[id] {
			t.Fatalf("vnode %d collides", i)
		}
		seen[id] = true
		if VnodeID([]byte("peer-a"), i) != id {
			t.Fatal("VnodeID not deterministic")
		}
	}
	if VnodeID([]byte("peer-a"), 0) != KeyID([]byte("peer-a")) {
		t.Fatal("vnode 0 must be SHA-256 of the peer ID bytes")
	}
}
