package merkle

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func randomKey(rng *rand.Rand) Key {
	var k Key
	for i := range k {
		k[i] = byte(rng.Uint32())
	}
	return k
}

func sorted(items []Item) Sorted {
	s := slices.Clone(items)
	slices.SortFunc(s, func(a, b Item) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return s
}

// direct answers through Answers in process, counting queries.
func direct(remote Source, leaf int) Exchange {
	return func(_ context.Context, qs []Query) ([]Answer, error) {
		return Answers(remote, qs, leaf), nil
	}
}

func keysOf(items []Item) map[Key]bool {
	m := map[Key]bool{}
	for _, it := range items {
		m[it.Key] = true
	}
	return m
}

func TestReconcileFindsExactDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ common, onlyA, onlyB int }{
		{0, 0, 0}, {1000, 0, 0}, {0, 500, 0}, {0, 0, 500}, {5000, 3, 7}, {2000, 300, 300}, {10, 1, 1},
	} {
		var a, b, wantA, wantB []Item
		for range tc.common {
			it := Item{Key: randomKey(rng)}
			a, b = append(a, it), append(b, it)
		}
		for range tc.onlyA {
			it := Item{Key: randomKey(rng), Val: []byte("a")}
			a, wantA = append(a, it), append(wantA, it)
		}
		for range tc.onlyB {
			it := Item{Key: randomKey(rng), Val: []byte("b")}
			b, wantB = append(b, it), append(wantB, it)
		}
		// A random arc, and the whole circle.
		for _, r := range []Range{{}, {Lo: randomKey(rng), Hi: randomKey(rng)}} {
			opt := DefaultOptions()
			d, err := Reconcile(context.Background(), sorted(a), r, direct(sorted(b), opt.Leaf), opt)
			if err != nil {
				t.Fatal(err)
			}
			in := func(items []Item) map[Key]bool {
				m := map[Key]bool{}
				for _, it := range items {
					if r.Contains(it.Key) {
						m[it.Key] = true
					}
				}
				return m
			}
			if got, want := keysOf(d.OnlyLocal), in(wantA); !mapsEqual(got, want) {
				t.Errorf("%+v: only local: %d keys, want %d", tc, len(got), len(want))
			}
			if got, want := keysOf(d.OnlyRemote), in(wantB); !mapsEqual(got, want) {
				t.Errorf("%+v: only remote: %d keys, want %d", tc, len(got), len(want))
			}
			for _, it := range d.OnlyRemote {
				if string(it.Val) != "b" {
					t.Fatal("remote item lost its value")
				}
			}
			t.Logf("%+v: %d exchanges, %d queries", tc, d.Exchanges, d.Queries)
		}
	}
}

func mapsEqual(a, b map[Key]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// Sets in sync cost one query, whatever their size.
func TestInSyncCostsOneQuery(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	var a []Item
	for range 10000 {
		a = append(a, Item{Key: randomKey(rng)})
	}
	s := sorted(a)
	opt := DefaultOptions()
	d, err := Reconcile(context.Background(), s, Range{}, direct(s, opt.Leaf), opt)
	if err != nil {
		t.Fatal(err)
	}
	if d.Exchanges != 1 || d.Queries != 1 || len(d.OnlyLocal)+len(d.OnlyRemote) != 0 {
		t.Fatalf("in sync: %+v", d)
	}
}

func TestSplitCoversArc(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for range 100 {
		r := Range{Lo: randomKey(rng), Hi: randomKey(rng)}
		parts := r.Split(16)
		if parts[0].Lo != r.Lo || parts[len(parts)-1].Hi != r.Hi {
			t.Fatal("split does not span the arc")
		}
		for i := 1; i < len(parts); i++ {
			if parts[i].Lo != parts[i-1].Hi {
				t.Fatal("split parts not contiguous")
			}
		}
		for range 50 {
			k := randomKey(rng)
			n := 0
			for _, p := range parts {
				if p.Contains(k) {
					n++
				}
			}
			want := 0
			if r.Contains(k) {
				want = 1
			}
			if n != want {
				t.Fatalf("key in %d parts, want %d", n, want)
			}
		}
	}
	var lo Key
	lo[31] = 5
	hi := lo
	hi[31] = 8
	if got := (Range{lo, hi}).Split(16); len(got) != 1 {
		t.Fatalf("a 3-key arc split into %d", len(got))
	}
}

// The parts of split arcs are disjoint, with and without gaps between
// them; a batch holding an arc and one of its parts, the same arc twice,
// or arcs that cross is not.
func TestDisjoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	queries := func(rs ...Range) []Query {
		qs := make([]Query, len(rs))
		for i, r := range rs {
			qs[i].Range = r
		}
		return qs
	}
	for range 100 {
		r := Range{Lo: randomKey(rng), Hi: randomKey(rng)}
		parts := r.Split(16)
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		if !Disjoint(queries(parts...)) || !Disjoint(queries(parts[:5]...)) {
			t.Fatal("the parts of a split arc overlap")
		}
		if Disjoint(queries(append(parts[:3:3], r)...)) {
			t.Fatal("an arc and its parts are disjoint")
		}
		if Disjoint(queries(parts[0], parts[0])) {
			t.Fatal("an arc twice is disjoint")
		}
		a, b := parts[0], parts[1]
		if Disjoint(queries(Range{a.Lo, b.Hi}, Range{b.Lo, r.Hi})) {
			t.Fatal("crossing arcs are disjoint")
		}
	}
	whole := Range{}
	half := Range{Hi: Key{0x80}}
	if !Disjoint(queries(whole)) || Disjoint(queries(whole, half)) {
		t.Fatal("the whole circle: alone disjoint, with another arc not")
	}
}

// A remote that lists keys outside the range, too many, or keeps
// differing forever is refused, not followed.
func TestBadAnswersRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	r := Range{Lo: randomKey(rng), Hi: randomKey(rng)}
	opt := DefaultOptions()
	outside := Key{}
	for r.Contains(outside) {
		outside = randomKey(rng)
	}
	cases := map[string]Exchange{
		"outside": func(_ context.Context, qs []Query) ([]Answer, error) {
			return []Answer{{Listed: true, Count: 1, Items: []Item{{Key: outside}}}}, nil
		},
		"count": func(_ context.Context, qs []Query) ([]Answer, error) { return nil, nil },
		"endless": func(_ context.Context, qs []Query) ([]Answer, error) {
			return make([]Answer, len(qs)), nil // never match, never list
		},
		"too many": func(_ context.Context, qs []Query) ([]Answer, error) {
			return []Answer{{Listed: true, Items: make([]Item, opt.Leaf+1)}}, nil
		},
	}
	for name, ex := range cases {
		o := opt
		o.Fanout, o.MaxDepth = 2, 10
		if _, err := Reconcile(context.Background(), Sorted{}, r, ex, o); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("%s: %v, want ErrBadAnswer", name, err)
		}
	}
}

// keysOnly is a Sorted whose summaries list keys only, counting the
// listings of whole items.
type keysOnly struct {
	Sorted
	eachCalls *int
}

func (k keysOnly) Each(r Range, fn func(Item) bool) {
	*k.eachCalls++
	k.Sorted.Each(r, fn)
}

func (k keysOnly) EachKey(r Range, fn func(Key) bool) {
	k.Sorted.Each(r, func(it Item) bool { return fn(it.Key) })
}

// A KeySource's summaries come from its keys alone and equal those of its
// items; reconciling through it finds the same differences.
func TestSummarizeKeySource(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var a, b []Item
	for i := range 3000 {
		it := Item{Key: randomKey(rng), Val: []byte{byte(i)}}
		if i%500 != 0 {
			a = append(a, it)
		}
		if i%700 != 0 {
			b = append(b, it)
		}
	}
	calls := 0
	ka := keysOnly{sorted(a), &calls}
	r := Range{Lo: randomKey(rng), Hi: randomKey(rng)}
	if got, want := Summarize(ka, r), Summarize(sorted(a), r); got != want || calls != 0 {
		t.Fatalf("summary %v with %d item listings, want %v and none", got, calls, want)
	}
	want, err := Reconcile(context.Background(), sorted(a), Range{}, direct(sorted(b), 8), Options{Fanout: 4, Leaf: 8, Batch: 16, MaxDepth: 40})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Reconcile(context.Background(), ka, Range{}, direct(keysOnly{sorted(b), new(int)}, 8), Options{Fanout: 4, Leaf: 8, Batch: 16, MaxDepth: 40})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got.OnlyLocal, want.OnlyLocal, itemEqual) || !slices.EqualFunc(got.OnlyRemote, want.OnlyRemote, itemEqual) || len(want.OnlyLocal) == 0 || len(want.OnlyRemote) == 0 {
		t.Fatalf("through keys: %d only local, %d only remote; through items %d, %d", len(got.OnlyLocal), len(got.OnlyRemote), len(want.OnlyLocal), len(want.OnlyRemote))
	}
}

func itemEqual(x, y Item) bool { return x.Key == y.Key && bytes.Equal(x.Val, y.Val) }
